"""``python -m benchmarks``: run every benchmark and write the results as JSON.

    python -m benchmarks --profile full --models-dir models --data-dir DIR \\
        --out benchmarks/results/latest.json --readme README.md

Order: the handler in process first (nothing else of ours running), then one TorchServe in a
temporary folder: cold starts of the three models, the no-op baseline registered beside them and
the plain Flask baseline started beside TorchServe (:mod:`benchmarks.flask_baseline`), the load
rounds, the memory after the load, the workers x batch size sweep, and last the accuracy over
HTTP (skipped, and said so, when ``--data-dir`` holds no test data). The top-level figures of
:func:`headline` and ``rss_mb`` are the headline; ``goals`` says which goals of
``config/benchmarks.yaml`` were met.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import psutil
import torch
import ts
import yaml

from benchmarks import accuracy, flask_baseline, handler_cost
from benchmarks.flask_baseline import FLASK
from benchmarks.heldout import HeldOut, canvas_pngs, load_heldout, typeset_heldout
from benchmarks.profile import Goal, Profile, load_goals
from benchmarks.report import update_readme
from benchmarks.serving import BASELINE, SERVING_CONFIG, BenchServer, measure_series, memory, sweep
from handler.archive import model_version
from handler.inprocess import unpack_archive
from handler.server import MODELS
from training.canvas import CANVAS_STYLES
from training.evaluate import TEXT_SEED
from training.pen import writer_parts
from training.strings import writer_strings
from training.strokes import find_pen_data

PROJECT = Path(__file__).resolve().parent.parent
SERVING_SETTINGS = ("minWorkers", "maxWorkers", "batchSize", "maxBatchDelay")  # reported with the load


def machine() -> dict[str, Any]:
    """What the figures were measured on, and what else was using the CPU meanwhile."""
    cpu_model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    return {
        "platform": platform.platform(),
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchserve": ts.__version__,
        "java": java[0] if java else None,
    }


def busy_processes(seconds: float = 1.0, threshold: float = 20.0) -> list[str]:
    """Command lines of other processes using more than ``threshold`` % of a core right now."""
    processes = [p for p in psutil.process_iter(["pid", "cmdline"]) if p.pid != os.getpid()]
    for process in processes:
        try:
            process.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(seconds)
    busy = []
    for process in processes:
        try:
            if process.cpu_percent(None) > threshold:
                busy.append(" ".join(process.info["cmdline"] or [])[:120])
        except psutil.Error:
            pass
    return busy


def load_conditions() -> dict[str, Any]:
    return {"load_average": [round(x, 2) for x in os.getloadavg()], "busy_processes": busy_processes()}


def model_files(models_dir: Path) -> dict[str, Any]:
    """Which models were measured: folder, version and the start of each model.pt's SHA-256."""
    described = {"folder": str(models_dir)}
    for name in MODELS:
        model = models_dir / name
        digest = hashlib.sha256((model / "model.pt").read_bytes()).hexdigest()[:12]
        described[name] = {"version": model_version(model), "model_pt_sha256": digest}
    return described


def class_names(models_dir: Path, name: str) -> list[str]:
    mapping = json.loads((models_dir / name / "index_to_name.json").read_text())
    return [mapping[str(i)] for i in range(len(mapping))]


def drawings(models_dir: Path, data_dir: Path | None) -> tuple[dict[str, HeldOut | None], dict[str, HeldOut]]:
    """Each recognizer's test split (``None`` without data), and what the speed benchmarks draw:
    the test split, or typeset labels when there is none."""
    heldout = {name: load_heldout(name, data_dir) for name in MODELS}
    for_speed = {name: heldout[name] or typeset_heldout(name, class_names(models_dir, name)) for name in MODELS}
    return heldout, for_speed


def eight_digit_numbers(data_dir: Path | None, count: int) -> list[tuple[str, bytes]]:
    """``count`` 8-digit numbers written by the pen data's test writers, drawn as the text
    evaluation draws them (:func:`training.strings.writer_strings`); none without pen data."""
    files = find_pen_data(data_dir) if data_dir else []
    if not files:
        return []
    test = writer_parts(files)["test"]
    return [(s.text, s.png) for s in writer_strings("digits", test, count, TEXT_SEED, length=8)]


def sendable(canvases: list[bytes | None]) -> list[bytes]:
    """The canvases of :func:`canvas_pngs` that can be sent (a blank test image has none)."""
    return [png for png in canvases if png is not None]


def headline(
    handler: dict[str, Any], serving: dict[str, Any], cold_starts: list[float], reference_rps: float
) -> dict[str, Any]:
    """The top-level figures: for ratios to the no-op baseline, the worst of the three
    recognizers; against Flask, the model it serves, round by round."""
    load = serving["load"]
    ours = [name for name in MODELS if name in load["c8"]]
    against_flask = load["c8"][serving["flask"]["model"]][f"ratio_to_{FLASK}"]
    requests = handler["requests"]
    whole = {mode: figures["whole"]["median_ms"] for mode, figures in requests["by_mode"].items()}
    return {
        "handler_ms_per_request": requests["all"]["whole"]["median_ms"],
        "rgba_over_grey": round(whole["RGBA"] / whole["L"], 3) if {"RGBA", "L"} <= set(whole) else None,
        "throughput_ratio_c8": min(load["c8"][name]["ratio_to_baseline"]["rps"] for name in ours),
        "p50_ratio_c1": max(load["c1"][name]["ratio_to_baseline"]["p50_ms"] for name in ours),
        "flask_ratio_c8": against_flask["rps"],
        "p99_over_flask_c8": against_flask["p99_ms"],
        "p99_over_p50": max(
            round(load[c][name]["p99_ms"] / load[c][name]["p50_ms"], 2) for c in ("c1", "c8") for name in ours
        ),
        "text_8_digits_ms": text["ms_per_image"] if isinstance(text := handler.get("text_8_digits"), dict) else None,
        "cold_start_s": round(statistics.median(cold_starts), 2),
        "rps_c8": {name: load["c8"][name]["rps"] for name in load["c8"]},
        "rps_c8_vs_platform_notes": round(min(load["c8"][name]["rps"] for name in ours) / reference_rps, 3),
    }


def goals(figures: dict[str, Any], bounds: dict[str, Goal]) -> dict[str, Any]:
    return {
        key: {"goal": str(goal), "measured": figures[key], "met": goal.met(figures[key])}
        for key, goal in bounds.items() if figures.get(key) is not None  # None: not measured (no data)
    }


class Phases:
    """Says which part runs and records how long each one took (``phase_seconds``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        print(f"{name} ...", flush=True)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 1)
            print(f"{name}: {self.seconds[name]} s", flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    profile = Profile.load(args.profile)
    config = yaml.safe_load(SERVING_CONFIG.read_text())
    models_dir = args.models_dir.resolve()
    data_dir = args.data_dir.resolve() if args.data_dir else None
    started = time.perf_counter()
    phase = Phases()
    results: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, "-m", "benchmarks", *sys.argv[1:]]),
        "profile": profile.name,
        "machine": machine(),
        "models": model_files(models_dir),
        "conditions_at_start": load_conditions(),
    }
    with phase("drawings"):
        heldout, for_speed = drawings(models_dir, data_dir)
        per_model = max(1, profile.handler.canvases // len(MODELS))
        drawn = {name: canvas_pngs(for_speed[name].images, range(max(per_model, profile.serving.canvases_per_model)))
                 for name in MODELS}  # canvas i is the same whichever count asks for it: draw once
        in_process = [  # canvas i is drawn in style i % 3 (training.evaluate.canvas_png)
            handler_cost.Canvas(name, CANVAS_STYLES[index % len(CANVAS_STYLES)], png)
            for name in MODELS for index, png in enumerate(drawn[name][:per_model]) if png is not None
        ]
        canvases = {name: sendable(drawn[name][: profile.serving.canvases_per_model]) for name in MODELS}
        numbers = eight_digit_numbers(data_dir, per_model)
    results["drawings"] = {name: source.source for name, source in for_speed.items()}
    args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-", dir=args.workdir) as workdir:
        bench = BenchServer(models_dir, Path(workdir), config)
        try:
            with phase("archives"):
                bench.archive(MODELS)
            with phase("handler in process"):
                # Each handler is built from its archive, unpacked as a worker unpacks it (model.onnx
                # is made by make archive), with the shipped handler settings.
                unpacked = {name: unpack_archive(bench.store / f"{name}.mar", Path(workdir) / "unpacked" / name)
                            for name in MODELS}
                handlers = {name: handler_cost.worker_handler(unpacked[name], name, config) for name in MODELS}
                handler = handler_cost.measure(
                    handlers, in_process, profile.handler.repeats,
                    profile.handler.forward_batch_sizes, profile.handler.forward_seconds,
                )
                handler["backends"] = {
                    name: handler_cost.backends(handlers[name], unpacked[name], canvases[name], profile.handler.forward_seconds)
                    for name in MODELS
                }
                handler["text_8_digits"] = (
                    handler_cost.text_request(handlers["digits"], numbers, profile.handler.repeats) if numbers
                    else f"skipped: no pen data under DATA_DIR ({data_dir})"
                )
            cold_starts = []
            with phase("cold starts"):
                for attempt in range(profile.serving.cold_starts):
                    if attempt:
                        bench.stop()
                    cold_starts.append(round(bench.cold_start(MODELS), 2))
            with phase("load against the baselines"):
                bench.register_baseline()
                flask_model = profile.serving.flask_model
                with flask_baseline.serving(models_dir, [flask_model], Path(workdir) / "flask.log") as flask:
                    targets = {name: (bench.target(name), canvases[name]) for name in MODELS}
                    targets[BASELINE] = (bench.target(BASELINE), canvases[MODELS[0]])
                    targets[FLASK] = (flask.target(flask_model), canvases[flask_model])
                    serving = {
                        "configuration": {key: config["defaults"][key] for key in SERVING_SETTINGS},
                        "load": measure_series(
                            targets, BASELINE, profile.serving.load, compare={flask_model: FLASK},
                            processes={**{name: bench.roles(name) for name in (*MODELS, BASELINE)},
                                       FLASK: flask.roles()},
                        ),
                        "rss_mb_after_load": memory(bench.server),
                        "flask": {"model": flask_model, "torch_threads": flask.ping["torch_threads"],
                                  "rss_mb_after_load": flask.rss_mb()},
                    }
            with phase("workers x batch size sweep"):
                results["sweep"] = sweep(bench, profile.sweep, canvases[profile.sweep.model])
            with phase("accuracy over HTTP"):
                results["accuracy"] = {
                    name: accuracy.evaluate_model(
                        bench.target(name), handlers[name],
                        models_dir / name, heldout[name], profile.accuracy.images,
                        profile.accuracy.canvases, profile.accuracy.concurrency,
                    ) if heldout[name] is not None else f"skipped: no test data for {name} under DATA_DIR ({data_dir})"
                    for name in MODELS
                }
        finally:
            bench.stop()
    bounds, reference_rps = load_goals()
    figures = headline(handler, serving, cold_starts, reference_rps)
    return {
        **figures,
        "rss_mb": serving["rss_mb_after_load"],
        "goals": goals(figures, bounds),
        **results,
        "handler": handler,
        "serving": serving,
        "cold_start": {"runs_s": cold_starts, "models": list(MODELS), "poll_interval_s": 0.5},
        "conditions_at_end": load_conditions(),
        "phase_seconds": phase.seconds,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="full", help="a profile of config/benchmarks.yaml")
    parser.add_argument("--models-dir", type=Path, default=PROJECT / "models")
    parser.add_argument("--data-dir", type=Path, help="data root with the test splits (accuracy)")
    parser.add_argument("--out", type=Path, required=True, help="where the JSON results go")
    parser.add_argument("--readme", type=Path, help="a README whose benchmark table to rewrite")
    parser.add_argument("--workdir", type=Path, default=PROJECT / "build" / "bench")
    args = parser.parse_args(argv)
    results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results in {args.out} ({results['elapsed_s']} s)")
    if args.readme:
        update_readme(args.readme, results)
        print(f"table in {args.readme}")
