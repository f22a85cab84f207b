"""What the handler costs in process, on one torch thread, without TorchServe around it.

The handler is built the way a TorchServe worker builds it (:class:`ts.context.Context` with the
model's folder, its ``handler:`` settings from ``config/serving.yaml`` and TorchServe's metrics
cache), so every figure is the handler's own code path:

- preprocessing: ``RecognizerHandler.preprocess`` of one request (payload parsing, PNG decoding,
  :func:`handler.glyph.canvas_to_glyph`, the model's input tensor), by image mode, and two of its
  stages alone (``decode_image``; ``canvas_to_glyph``, decoding included) to show where the time
  goes;
- the forward pass (``RecognizerHandler.inference``: the model and its softmax) for batches of
  1, 8 and 32;
- one whole request through ``RecognizerHandler.handle`` (preprocess, forward, JSON answer);
- one whole ``mode=text`` request reading an 8-digit number (segmentation, every candidate
  character in one forward pass, the choice among segmentations, the JSON answer).

Each figure is the median of several passes over the same canvases, with the min-max spread.
"""

from __future__ import annotations

import base64
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from handler.archive import model_config
from handler.glyph import canvas_to_glyph, decode_image
from handler.inprocess import start_batch, worker_context
from handler.recognizer import RecognizerHandler

def worker_handler(model_dir: Path, name: str, serving_config: dict[str, Any], batch_size: int = 32) -> RecognizerHandler:
    """A :class:`RecognizerHandler` initialized as a TorchServe worker initializes it."""
    context = worker_context(model_dir, name, model_config(serving_config, name), batch_size)
    handler = RecognizerHandler()
    handler.initialize(context)
    handler.context = context  # as handle() sets it for each batch: postprocess answers through it
    return handler


def _per_item_ms(work: Callable[[Any], Any], items: Sequence[Any], repeats: int) -> dict[str, Any]:
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


def preprocessing(handler: RecognizerHandler, canvases: list[bytes], repeats: int) -> dict[str, Any]:
    """Per canvas: the handler's whole preprocess of a one-request batch, also by image mode
    (transparent canvases are RGBA: four times the pixels to inflate), and each stage."""
    settings, limits = handler.glyph_settings, handler.limits
    images = [decode_image(png, limits) for png in canvases]
    by_mode: dict[str, list[bytes]] = {}
    for png, image in zip(canvases, images):
        by_mode.setdefault(image.mode, []).append(png)

    def preprocess(png: bytes) -> None:
        handler.preprocess([{"body": png}])

    return {
        "canvases": len(canvases),
        "canvas_side": images[0].size[0],
        "mean_png_bytes": round(sum(map(len, canvases)) / len(canvases)),
        "preprocess": _per_item_ms(preprocess, canvases, repeats),
        "preprocess_by_mode": {
            mode: {"canvases": len(pngs), **_per_item_ms(preprocess, pngs, repeats)} for mode, pngs in sorted(by_mode.items())
        },
        "stages": {
            "decode_image": _per_item_ms(lambda png: decode_image(png, limits), canvases, repeats),
            "canvas_to_glyph": _per_item_ms(lambda png: canvas_to_glyph(png, settings, limits), canvases, repeats),
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


def whole_request(handler: RecognizerHandler, canvases: list[bytes], repeats: int) -> dict[str, Any]:
    """One request at a time through ``handle``: what a worker spends on it, TorchServe aside."""

    def handle(png: bytes) -> None:
        start_batch(handler.context, 1, "bench")
        handler.handle([{"body": png}], handler.context)

    return _per_item_ms(handle, canvases, repeats)


def measure(
    handlers: dict[str, RecognizerHandler],
    canvases: dict[str, list[bytes]],
    repeats: int,
    batch_sizes: Sequence[int],
    forward_seconds: float,
) -> dict[str, Any]:
    """Every figure for each model's handler (:func:`worker_handler`) on its own canvases, and the
    preprocessing of all canvases together (what ``preprocess_ms_per_image`` reports)."""
    every_canvas = [png for name in handlers for png in canvases[name]]
    first = next(iter(handlers.values()))  # the glyph settings are shared; any model's handler will do
    result: dict[str, Any] = {
        "torch_threads": torch.get_num_threads(),
        "all_canvases": preprocessing(first, every_canvas, repeats),
        "models": {},
    }
    for name, handler in handlers.items():
        result["models"][name] = {
            "forward": forward(handler, canvases[name], batch_sizes, forward_seconds),
            "whole_request": whole_request(handler, canvases[name], repeats),
        }
    return result


def text_request(handler: RecognizerHandler, numbers: list[tuple[str, bytes]], repeats: int) -> dict[str, Any]:
    """One ``mode=text`` request at a time through ``handle`` on canvases of numbers (text, PNG):
    ms per number, and how many were read right."""

    def handle(png: bytes) -> str:
        start_batch(handler.context, 1, "bench")
        [answer] = handler.handle([{"body": {"image": base64.b64encode(png).decode("ascii"), "mode": "text"}}], handler.context)
        return json.loads(answer).get("text", "")

    right = sum(handle(png) == number for number, png in numbers)
    return {"numbers": len(numbers), "read_right": right,
            **_per_item_ms(handle, [png for _, png in numbers], repeats)}
