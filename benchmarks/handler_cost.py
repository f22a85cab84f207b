"""What the handler costs in process, on one torch thread, without TorchServe around it.

The handler is built the way a TorchServe worker builds it (:class:`ts.context.Context` with the
model's folder, its ``handler:`` settings from ``config/serving.yaml`` and TorchServe's metrics
cache), so every figure is the handler's own code path:

- :func:`request_stages`: one request at a time (batch 1), each held-out canvas through each
  stage of a request and then through the whole request (``RecognizerHandler.handle``: what a
  worker spends on it, TorchServe aside), in the same passes: decode
  (:func:`handler.glyph.decode_image`), normalize (the handler's ``preprocess`` of a one-request
  batch minus the decoding), forward (``inference`` of that batch: the model and its softmax),
  postprocess (``postprocess`` of that batch: the JSON answer). Each canvas's figure is its median
  over the passes; each group (all canvases, a canvas style, an image mode, a model) reports the
  median and the mean over its canvases, and the sum of the stages beside the whole request;
- :func:`forward` for batches of 1, 8 and 32 (what batching would save in the model);
- :func:`text_request`: one whole ``mode=text`` request reading an 8-digit number (segmentation,
  every candidate character in one forward pass, the choice among segmentations, the JSON answer).
"""

from __future__ import annotations

import base64
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from handler.archive import model_config
from handler.forward import BACKENDS, load_backend
from handler.glyph import decode_image
from handler.inprocess import start_batch, worker_context
from handler.recognizer import RecognizerHandler

STAGES = ("decode", "normalize", "forward", "postprocess")


def worker_handler(model_dir: Path, name: str, serving_config: dict[str, Any], batch_size: int = 32) -> RecognizerHandler:
    """A :class:`RecognizerHandler` initialized as a TorchServe worker initializes it."""
    context = worker_context(model_dir, name, model_config(serving_config, name), batch_size)
    handler = RecognizerHandler()
    handler.initialize(context)
    handler.context = context  # as handle() sets it for each batch: postprocess answers through it
    return handler


def per_item_ms(work: Callable[[Any], Any], items: Sequence[Any], repeats: int) -> dict[str, Any]:
    """``work`` on every item, ``repeats`` passes: ms per item (median pass, min-max) and items/s."""
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            work(item)
        passes.append((time.perf_counter() - start) * 1000.0 / len(items))
    median = statistics.median(passes)
    return {
        "ms_per_image": round(median, 4),
        "ms_per_image_spread": [round(min(passes), 4), round(max(passes), 4)],
        "images_per_s": round(1000.0 / median, 1),
    }


@dataclass(frozen=True)
class Canvas:
    """A held-out canvas PNG, the model whose test image it shows and its style
    (:data:`training.canvas.CANVAS_STYLES`)."""

    model: str
    style: str
    png: bytes


def _stage_times(handler: RecognizerHandler, png: bytes) -> dict[str, float]:
    """Seconds of each stage of one request, and of the whole request, on ``png``."""
    context = handler.context
    start = time.perf_counter()
    decode_image(png, handler.limits)
    decoded = time.perf_counter()
    batch = handler.preprocess([{"body": png}])
    preprocessed = time.perf_counter()
    batch = handler.inference(batch)
    inferred = time.perf_counter()
    start_batch(context, 1, "bench")  # the worker's part: a response slot for the answer
    answered = time.perf_counter()
    handler.postprocess(batch)
    postprocessed = time.perf_counter()
    start_batch(context, 1, "bench")
    whole = time.perf_counter()
    handler.handle([{"body": png}], context)
    done = time.perf_counter()
    return {
        "decode": decoded - start,
        "normalize": (preprocessed - decoded) - (decoded - start),  # preprocess decodes too
        "forward": inferred - preprocessed,
        "postprocess": postprocessed - answered,
        "whole": done - whole,
    }


def _group(times: dict[str, np.ndarray], members: np.ndarray) -> dict[str, Any]:
    """The figures of the canvases ``members`` (bool mask) from ``times`` (stage -> seconds
    [passes, canvases]): per stage, the median and the mean over the canvases of each canvas's
    median pass (ms), and the min-max over passes of the mean; the stages' sums beside the whole."""
    figures: dict[str, Any] = {"canvases": int(members.sum())}
    for stage, seconds in times.items():
        per_canvas = np.median(seconds[:, members], axis=0) * 1000.0
        pass_means = seconds[:, members].mean(axis=1) * 1000.0
        figures[stage] = {
            "median_ms": round(float(np.median(per_canvas)), 4),
            "mean_ms": round(float(per_canvas.mean()), 4),
            "pass_mean_spread_ms": [round(float(pass_means.min()), 4), round(float(pass_means.max()), 4)],
        }
    figures["stages_sum"] = {
        average: round(sum(figures[stage][average] for stage in STAGES), 4) for average in ("median_ms", "mean_ms")
    }
    return figures


def request_stages(handlers: dict[str, RecognizerHandler], canvases: list[Canvas], repeats: int) -> dict[str, Any]:
    """One request at a time, ``repeats`` passes over ``canvases`` (each sent to its model's
    handler), every stage and the whole request timed on each canvas in every pass: the figures
    (:func:`_group`) of all canvases, of each canvas style, image mode (``L``, ``RGBA``) and model,
    and of each model's canvases of each style."""
    times = {stage: np.zeros((repeats, len(canvases))) for stage in (*STAGES, "whole")}
    for index in range(repeats):
        for column, canvas in enumerate(canvases):
            for stage, seconds in _stage_times(handlers[canvas.model], canvas.png).items():
                times[stage][index, column] = seconds
    models = np.array([canvas.model for canvas in canvases])
    styles = np.array([canvas.style for canvas in canvases])
    decoded = [decode_image(canvas.png) for canvas in canvases]
    modes = np.array([image.mode for image in decoded])
    return {
        "canvases": len(canvases),
        "repeats": repeats,
        "canvas_side": decoded[0].size[0],
        "mean_png_bytes": round(sum(len(canvas.png) for canvas in canvases) / len(canvases)),
        "all": _group(times, np.ones(len(canvases), dtype=bool)),
        "by_style": {style: _group(times, styles == style) for style in dict.fromkeys(styles)},
        "by_mode": {mode: _group(times, modes == mode) for mode in sorted(set(modes))},
        "by_model": {
            name: {
                "all": _group(times, models == name),
                **{style: _group(times, (models == name) & (styles == style)) for style in dict.fromkeys(styles)},
            }
            for name in dict.fromkeys(models)
        },
    }


def forward(
    handler: RecognizerHandler, canvases: list[bytes], batch_sizes: Sequence[int], seconds: float
) -> dict[str, Any]:
    """The forward pass (model and softmax) on batches of each size, for about ``seconds`` each:
    median ms per batch and per image, images per second."""
    figures = {}
    for size in batch_sizes:
        batch = handler.preprocess([{"body": canvases[i % len(canvases)]} for i in range(size)])
        times = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 5:
            start = time.perf_counter()
            handler.inference(batch)
            times.append((time.perf_counter() - start) * 1000.0)
        median = statistics.median(times)
        figures[str(size)] = {
            "passes": len(times),
            "ms_per_batch": round(median, 4),
            "ms_per_image": round(median / size, 4),
            "images_per_s": round(1000.0 * size / median, 1),
        }
    return figures


def measure(
    handlers: dict[str, RecognizerHandler],
    canvases: list[Canvas],
    repeats: int,
    batch_sizes: Sequence[int],
    forward_seconds: float,
) -> dict[str, Any]:
    """:func:`request_stages` over every model's canvases, and :func:`forward` for each model's
    handler on its own canvases."""
    return {
        "torch_threads": torch.get_num_threads(),
        "requests": request_stages(handlers, canvases, repeats),
        "forward_batches": {
            name: forward(handler, [c.png for c in canvases if c.model == name], batch_sizes, forward_seconds)
            for name, handler in handlers.items()
        },
    }


LOADED = "model.pt as loaded"  # torch.jit.load alone: how the handler ran the model before handler.backend


def backends(handler: RecognizerHandler, model_dir: Path, canvases: list[bytes], seconds: float) -> dict[str, Any]:
    """The forward pass of one drawing (batch 1) by each way of running ``model_dir``'s
    ``model.pt``: as loaded (:data:`LOADED`) and each of :data:`handler.forward.BACKENDS`, taking
    turns over the canvases' model inputs (``handler``'s preprocessing) for about ``seconds`` in
    all. Per way: the median ms per drawing, and how many labels differ from the model as loaded."""
    loaded = torch.jit.load(str(model_dir / "model.pt")).eval()
    runs = {LOADED: loaded, **{name: load_backend(name, torch.jit.load(str(model_dir / "model.pt")), model_dir, threads=1)
                               for name in BACKENDS}}
    inputs = [handler.preprocess([{"body": png}]).inputs for png in canvases]
    times: dict[str, list[float]] = {name: [] for name in runs}
    deadline = time.perf_counter() + seconds
    with torch.inference_mode():
        while time.perf_counter() < deadline or len(times[LOADED]) < 5 * len(inputs):
            for name, run in runs.items():
                for glyph in inputs:
                    start = time.perf_counter()
                    run(glyph)
                    times[name].append((time.perf_counter() - start) * 1000.0)
        expected = [int(loaded(glyph).argmax()) for glyph in inputs]
        figures = {}
        for name, run in runs.items():
            different = sum(int(run(glyph).argmax()) != label for glyph, label in zip(inputs, expected))
            figures[name] = {"ms_per_image": round(statistics.median(times[name]), 4), "passes": len(times[name]),
                             "labels_different": different, "drawings": len(inputs)}
    return figures


def text_request(handler: RecognizerHandler, numbers: list[tuple[str, bytes]], repeats: int) -> dict[str, Any]:
    """One ``mode=text`` request at a time through ``handle`` on canvases of numbers (text, PNG):
    ms per number, and how many were read right."""

    def handle(png: bytes) -> str:
        start_batch(handler.context, 1, "bench")
        [answer] = handler.handle([{"body": {"image": base64.b64encode(png).decode("ascii"), "mode": "text"}}], handler.context)
        return json.loads(answer).get("text", "")

    right = sum(handle(png) == number for number, png in numbers)
    return {"numbers": len(numbers), "read_right": right,
            **per_item_ms(handle, [png for _, png in numbers], repeats)}
