"""Markdown tables from a benchmark's JSON results, and the README section that holds them.

    python -m benchmarks.report benchmarks/results/latest.json [--readme README.md]

prints the tables, or rewrites the part of the README between ``BEGIN`` and ``END`` with them
(``make bench`` does that), so the README shows only measured numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.flask_baseline import FLASK
from benchmarks.handler_cost import STAGES
from benchmarks.serving import BASELINE

BEGIN = "<!-- benchmark results: written by make bench from benchmarks/results/latest.json -->"
END = "<!-- end of benchmark results -->"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _spread(figures: dict[str, Any], key: str, digits: int = 1) -> str:
    low, high = figures[f"{key}_spread"]
    return f"{figures[key]:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def headline(results: dict[str, Any]) -> list[str]:
    rows = [
        [key, value["measured"], value["goal"], "yes" if value["met"] else "**no**"]
        for key, value in results["goals"].items()
    ]
    return _table(["figure", "measured", "goal", "met"], rows)


def serving(results: dict[str, Any]) -> list[str]:
    rows = []
    for concurrency, by_target in results["serving"]["load"].items():
        for name, figures in by_target.items():
            ratios = figures.get("ratio_to_baseline")
            flask = figures.get(f"ratio_to_{FLASK}")
            rows.append([
                concurrency[1:], name, _spread(figures, "rps"), _spread(figures, "p50_ms", 2),
                f"{figures['p90_ms']:.2f}", f"{figures['p99_ms']:.2f}", figures["errors"],
                f"{ratios['rps']:.2f}" if ratios else "1", f"{ratios['p50_ms']:.2f}" if ratios else "1",
                f"{ratios['p99_ms']:.2f}" if ratios else "1",
                f"{flask['rps']:.2f}" if flask else "", f"{flask['p99_ms']:.2f}" if flask else "",
                f"{100 * figures['client_cpu_share']:.0f}%",
            ])
    return _table(
        ["concurrency", "target", "req/s (min-max)", "p50 ms (min-max)", "p90 ms", "p99 ms", "errors",
         "req/s / no-op", "p50 / no-op", "p99 / no-op", "req/s / Flask", "p99 / Flask", "load generator CPU"],
        rows,
    )


CPU_ROLES = ("frontend", "workers", "server", "client")  # loadgen's cpu_ms_<role>, in table order


def cpu(results: dict[str, Any]) -> list[str]:
    """Where each request's CPU went, by process role, and its total over the no-op's."""
    rows = []
    for concurrency, by_target in results["serving"]["load"].items():
        noop = by_target.get(BASELINE, {}).get("cpu_ms_total")
        for name, figures in by_target.items():
            if "cpu_ms_total" not in figures:
                continue
            cells = [f"{figures[f'cpu_ms_{role}']:.3f}" if f"cpu_ms_{role}" in figures else "" for role in CPU_ROLES]
            share = figures["rps"] * figures["cpu_ms_total"] / 1000.0
            ratio = f"{figures['cpu_ms_total'] / noop:.2f}" if noop else ""
            rows.append([concurrency[1:], name, *cells, f"{figures['cpu_ms_total']:.3f}", ratio, f"{share:.2f}"])
    return _table(
        ["concurrency", "target", "TorchServe frontend (JVM)", "the target's workers", "Flask process",
         "load generator", "total", "total / no-op's", "cores busy"],
        rows,
    )


def sweep(results: dict[str, Any]) -> list[str]:
    rows = []
    for cell in results["sweep"]:
        for concurrency in (key for key in cell if key.startswith("c")):
            ours, base = cell[concurrency]["model"], cell[concurrency]["baseline"]
            rows.append([
                cell["workers"], cell["batch_size"], concurrency[1:], f"{ours['rps']:.0f}", f"{base['rps']:.0f}",
                f"{ours['ratio_to_baseline']['rps']:.2f}", f"{ours['p50_ms']:.2f}", f"{base['p50_ms']:.2f}",
                f"{ours['p99_ms']:.2f}", ours.get("mean_batch_size", "-"),
            ])
    return _table(
        ["workers", "batch", "concurrency", "req/s", "no-op req/s", "ratio", "p50 ms", "no-op p50 ms",
         "p99 ms", "mean batch"],
        rows,
    )


def _stage_row(label: str, figures: dict[str, Any]) -> list[Any]:
    whole = figures["whole"]
    low, high = whole["pass_mean_spread_ms"]
    return [
        label, figures["canvases"], *(f"{figures[stage]['median_ms']:.3f}" for stage in STAGES),
        f"{figures['stages_sum']['median_ms']:.3f}", f"**{whole['median_ms']:.3f}**",
        f"{whole['mean_ms']:.3f}", f"{low:.3f}-{high:.3f}",
    ]


def handler(results: dict[str, Any]) -> list[str]:
    cost = results["handler"]
    requests = cost["requests"]
    rows = [_stage_row("all canvases", requests["all"])]
    rows += [_stage_row(f"{style} (all models)", figures) for style, figures in requests["by_style"].items()]
    for name, groups in requests["by_model"].items():
        rows += [_stage_row(f"{name}: {group}", figures) for group, figures in groups.items()]
    lead = [f"{requests['canvases']} held-out canvases {requests['canvas_side']}x{requests['canvas_side']} "
            f"({requests['mean_png_bytes']} bytes on average; the three styles in turn), one request at a time, "
            f"{cost['torch_threads']} torch thread, {requests['repeats']} passes; each canvas's median pass, then "
            "the median over the canvases (ms). Each stage is timed alone on the same canvases in the same passes "
            "as the whole request (`handle`), so the sum of the stages and the whole request should agree. The "
            "last columns: the whole request's mean over the canvases (of each canvas's median pass), and the "
            "min-max over passes of its plain mean (every timing, outliers included).", ""]
    table = _table(["canvases", "n", *STAGES, "sum of stages", "whole request", "whole, mean",
                    "whole, pass means min-max"], rows)
    forward_rows = [
        [name, size, f"{figures['ms_per_batch']:.3f}", f"{figures['ms_per_image']:.3f}", figures["images_per_s"]]
        for name, batches in cost["forward_batches"].items() for size, figures in batches.items()
    ]
    text = cost.get("text_8_digits")
    reading = (
        ["", f"Reading an 8-digit number (`mode=text`, the whole request; the numbers written by the pen data's "
         f"test writers, as the text evaluation writes them; {text['read_right']} of {text['numbers']} read "
         f"right): {_spread(text, 'ms_per_image', 3)} ms."] if isinstance(text, dict) else []
    )
    backend_rows = [
        [name, way, f"{figures['ms_per_image']:.3f}", f"{figures['labels_different']} of {figures['drawings']}"]
        for name, ways in cost.get("backends", {}).items() for way, figures in ways.items()
    ]
    backends = (
        ["", "The forward pass of one drawing by each way of running `model.pt` (`handler.backend`, "
         "handler/forward.py; \"as loaded\" is `torch.jit.load` alone), in turns over the same canvases "
         "(median ms), and the labels that differ from the model as loaded:", "",
         *_table(["model", "backend", "ms a drawing", "labels different"], backend_rows)] if backend_rows else []
    )
    return [*lead, *table, "", "Forward pass (model and softmax) by batch size, in process:", "",
            *_table(["model", "batch", "ms a batch", "ms an image", "images/s"], forward_rows), *backends, *reading]


def memory(results: dict[str, Any]) -> list[str]:
    rss = results["rss_mb"]
    rows = [["JVM", rss["jvm"], f"heap cap {rss['jvm_heap_cap']}"]]
    rows += [[f"{name} worker", ", ".join(str(value) for value in values), f"{len(values)} workers"]
             for name, values in rss["workers"].items()]
    rows.append(["total", rss["total"], ""])
    flask = results["serving"]["flask"]
    rows.append([f"Flask baseline ({flask['model']} only)", flask["rss_mb_after_load"],
                 f"one process, {flask['torch_threads']} torch threads"])
    cold = results["cold_start"]
    lead = [f"Cold start (TorchServe started until all of {', '.join(cold['models'])} READY): "
            f"{', '.join(str(s) for s in cold['runs_s'])} s. Memory after the load (RSS, MiB):", ""]
    return lead + _table(["process", "RSS MiB", ""], rows)


def accuracy(results: dict[str, Any]) -> list[str]:
    rows = []
    for name, figures in results["accuracy"].items():
        if isinstance(figures, str):
            rows.append([name, figures, "", "", "", "", ""])
            continue
        card, images, canvases = figures["card"], figures["images"], figures["canvases"]
        rows.append([
            name,
            f"{images['count']} images",
            f"{100 * images['accuracy_http']:.2f}%",
            f"{100 * card['test_accuracy']:.2f}% ({card['test_images']} images)" if card else "no card",
            images["different_from_handler"],
            f"{images['different_from_evaluation']} (evaluation {100 * images['accuracy_evaluation']:.2f}%)",
            ", ".join(f"{count} x {kind}" for kind, count in images["refused"].items()) or "0",
        ])
        rows.append([
            name,
            f"{canvases['count']} canvases",
            f"{100 * canvases['accuracy_http']:.2f}% (+-{100 * canvases['standard_error']:.2f})",
            f"{100 * card['canvas_accuracy']:.2f}% ({card['canvas_images']} canvases)" if card else "no card",
            canvases["different_from_handler"],
            "",
            ", ".join(f"{count} x {kind}" for kind, count in canvases["refused"].items()) or "0",
        ])
    return _table(
        ["model", "held-out set", "over HTTP", "model card", "labels unlike the handler in process",
         "labels unlike the card's evaluation", "refused"],
        rows,
    )


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    busy = results["conditions_at_start"]["busy_processes"]
    parts = [
        f"Measured {results['date']} with `{results['command']}` ({results['elapsed_s']} s) on "
        f"{machine['cores']} cores ({machine['cpu']}), {machine['platform']}, torch {machine['torch']}, "
        f"TorchServe {machine['torchserve']}. Load average at the start "
        f"{results['conditions_at_start']['load_average']}" + (f"; also busy: {'; '.join(busy)}." if busy else "."),
        "Models: " + ", ".join(
            f"{name} {model['version']} (model.pt sha256 {model['model_pt_sha256']})"
            for name, model in results["models"].items() if name != "folder"
        ) + ".",
        "",
        *headline(results),
        "",
        "**Handler in process** (a request's stages):",
        "",
        *handler(results),
        "",
        "**End to end** (the shipped configuration "
        + ", ".join(f"{k} {v}" for k, v in results["serving"]["configuration"].items())
        + f"; the plain Flask baseline serves {results['serving']['flask']['model']} on the same canvases; "
        "median round, min-max over rounds; ratios are to the no-op baseline, or to Flask, of the same round):",
        "",
        *serving(results),
        "",
        "Where the cores went: CPU milliseconds a request (user + system, median round) of each process "
        "while it was measured, and the cores busy at that rate (req/s x total):",
        "",
        *cpu(results),
        "",
        "**Workers x batch size** (the recognizer and the no-op baseline with the same settings):",
        "",
        *sweep(results),
        "",
        *memory(results),
        "",
        "**Accuracy through the API** (the test split sent as 28x28 PNGs, all of it in the full profile, "
        "and canvases spread "
        "over it, each the very canvas the card's evaluation drew; every served label is compared with "
        "the handler's code in process, and each image's with the card's evaluation, which feeds the "
        "model glyphs rounded to 8 bits):",
        "",
        *accuracy(results),
    ]
    return "\n".join(parts) + "\n"


def update_readme(readme: Path, results: dict[str, Any]) -> None:
    """Replace the README's text between ``BEGIN`` and ``END`` with the tables."""
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{readme} has no benchmark section (lines {BEGIN!r} and {END!r})")
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    readme.write_text(f"{before}{BEGIN}\n{markdown(results)}{END}{after}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--readme", type=Path)
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    if args.readme:
        update_readme(args.readme, results)
    else:
        print(markdown(results), end="")


if __name__ == "__main__":
    main()
