"""``make bench-quick`` runs every benchmark for a few seconds: the benchmark cannot silently rot.

Speeds are not asserted (the machine is shared and noisy; ``make bench`` reports them): only that
every part ran, every key is there and every figure is sane.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from benchmarks.profile import Profile
from benchmarks.report import BEGIN, END, markdown, update_readme
from handler.server import MODELS

PROJECT = Path(__file__).resolve().parent.parent
HEADLINE = ("throughput_ratio_c8", "p50_ratio_c1", "preprocess_ms_per_image", "cold_start_s", "rss_mb")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory, shipped_models: Path) -> dict:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    data_dir = os.environ.get("DATA_DIR") or str(PROJECT / "data")
    subprocess.run(
        ["make", "--no-print-directory", "bench-quick", f"BENCH_QUICK_OUT={out}",
         f"MODELS_DIR={shipped_models}", f"DATA_DIR={data_dir}"],
        cwd=PROJECT, check=True, timeout=300,
    )
    return json.loads(out.read_text())


def positive(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_headline_keys_are_present_and_sane(quick):
    for key in HEADLINE:
        assert key in quick, key
    for key in ("throughput_ratio_c8", "p50_ratio_c1", "preprocess_ms_per_image", "cold_start_s"):
        assert positive(quick[key]), (key, quick[key])
    assert set(quick["goals"]) >= {"throughput_ratio_c8", "p50_ratio_c1", "preprocess_ms_per_image", "cold_start_s"}
    assert all(isinstance(goal["met"], bool) for goal in quick["goals"].values())
    for key in ("machine", "date", "command", "profile", "elapsed_s"):
        assert quick[key], key
    assert quick["profile"] == "quick"


def test_every_process_memory_is_reported(quick):
    workers = yaml.safe_load((PROJECT / "config" / "serving.yaml").read_text())["defaults"]["minWorkers"]
    rss = quick["rss_mb"]
    assert positive(rss["jvm"]) and rss["jvm_heap_cap"].startswith("-Xmx")
    for name in (*MODELS, "noop"):
        assert len(rss["workers"][name]) == workers and all(map(positive, rss["workers"][name]))
    assert rss["total"] >= rss["jvm"] + sum(sum(values) for values in rss["workers"].values()) - 1


def test_the_load_ran_without_errors_against_the_baseline(quick):
    load = quick["serving"]["load"]
    assert set(load) == {"c1", "c8"}
    for by_target in load.values():
        assert set(by_target) == {*MODELS, "noop"}
        for name, figures in by_target.items():
            assert figures["errors"] == 0 and figures["requests"] > 0, name
            assert figures["p50_ms"] <= figures["p90_ms"] <= figures["p99_ms"], name
            if name != "noop":
                assert positive(figures["ratio_to_baseline"]["rps"]), name


def test_the_sweep_covers_its_grid_and_batches_when_asked(quick):
    quick_sweep = Profile.load("quick").sweep
    cells = {(cell["workers"], cell["batch_size"]) for cell in quick["sweep"]}
    assert cells == {(w, b) for w in quick_sweep.workers for b in quick_sweep.batch_sizes}
    for cell in quick["sweep"]:
        ours = cell["c8"]["model"]
        assert ours["errors"] == 0 and ours["requests"] > 0
        assert 1 <= ours["mean_batch_size"] <= cell["batch_size"]


def test_handler_figures(quick):
    handler = quick["handler"]
    assert handler["torch_threads"] == 1
    assert set(handler["all_canvases"]["stages"]) == {"decode_image", "canvas_to_glyph"}
    assert set(handler["all_canvases"]["preprocess_by_mode"]) <= {"L", "RGBA"}
    for name in MODELS:
        assert set(handler["models"][name]["forward"]) == {"1", "8", "32"}
        assert positive(handler["models"][name]["whole_request"]["ms_per_image"])


def test_accuracy_over_http_agrees_with_the_handler_in_process_or_says_why_it_was_skipped(quick):
    for name in MODELS:
        figures = quick["accuracy"][name]
        if isinstance(figures, str):
            assert figures.startswith("skipped: no test data")
            continue
        for part in ("images", "canvases"):
            assert figures[part]["count"] > 0
            assert figures[part]["different_from_handler"] == 0, (name, part, figures[part])


def test_the_report_renders_and_replaces_only_its_section(quick, tmp_path):
    assert BEGIN in (PROJECT / "README.md").read_text()
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n## Benchmarks\n\n{BEGIN}\nthe previous table\n{END}\n\n## After\n")
    update_readme(readme, quick)
    text = readme.read_text()
    assert "the previous table" not in text and text.startswith("# title") and text.endswith("## After\n")
    assert markdown(quick) in text


def test_the_load_generator_answers_every_request_when_errors_close_the_connection(torchserve):
    """TorchServe answers each error with ``Connection: close``: the generator opens a new
    connection instead of losing the requests that would have followed on the closed one."""
    from benchmarks.loadgen import Target, run_load, send_each
    from tests.canvases import drawing_png

    target = Target(torchserve.endpoints.inference, "/predictions/digits", torchserve.client().keys.inference)
    bodies = [drawing_png("7"), b"not an image"] * 6
    answers = send_each(target, bodies, concurrency=2)
    assert [a.status for a in answers] == [200, 400] * 6
    load = run_load(target, bodies, concurrency=2, seconds=1.0, max_requests=40)
    # Each connection alternates good and bad drawings, so the refused ones are half of what each
    # sent, rounded down (19 or 20); a request lost on a closed connection would add errors.
    assert load.requests == 40 and 19 <= load.errors <= 20
