"""The shipped models' accuracy through the HTTP API, against their model cards.

Two sets per recognizer, from the test split its card (``models/<name>/metrics.json``) was
measured on:

- **images**: the held-out 28x28 images, each sent as a PNG. The card's ``test_accuracy`` was
  measured on the same images normalized by ``normalize_glyph`` in process, so the served
  pipeline must give the same labels;
- **canvases**: the first held-out images drawn on 280x280 canvases exactly as the card's canvas
  robustness drew them (:mod:`benchmarks.heldout`), sent as PNGs, compared with the card's
  ``canvas_accuracy``.

For both, the labels the server answers are compared one by one with the evaluation's own
in-process predictions (:func:`training.evaluate.predict` on the same images, through
:func:`training.datasets.normalize_images` or :func:`training.evaluate.canvas_glyphs`): the
agreement shows that the served pipeline is the evaluated one, and every disagreement is counted
by its cause.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.heldout import HeldOut, canvas_pngs, glyph_png
from benchmarks.loadgen import Target, send_each
from handler.glyph import GlyphSettings
from training.datasets import normalize_images
from training.evaluate import canvas_glyphs, predict

UNANSWERED = -1  # the label index of a request the server refused


def _served_labels(target: Target, bodies: list[bytes], classes: list[str], concurrency: int) -> tuple[np.ndarray, Counter]:
    """The class index the server answers for each body (``UNANSWERED`` for an error) and the
    errors by ``<status> <type>``."""
    index = {label: i for i, label in enumerate(classes)}
    labels, errors = [], Counter()
    for response in send_each(target, bodies, concurrency):
        body = json.loads(response.body)
        if response.status == 200:
            labels.append(index[body["label"]])
        else:
            labels.append(UNANSWERED)
            errors[f"{response.status} {body.get('type', '')}".strip()] += 1
    return np.asarray(labels), errors


def _compare(served: np.ndarray, expected: np.ndarray, truth: np.ndarray, errors: Counter) -> dict[str, Any]:
    """HTTP against the in-process evaluation on the same inputs."""
    answered = served != UNANSWERED
    return {
        "count": int(len(truth)),
        "accuracy_http": round(float((served == truth).mean()), 5),
        "accuracy_in_process": round(float((expected == truth).mean()), 5),
        "agreement": round(float((served == expected).mean()), 5),
        "different_labels": int((answered & (served != expected)).sum()),
        "refused": dict(errors),
    }


def evaluate_model(
    target: Target, model_dir: Path, heldout: HeldOut, images: int | None, canvases: int, concurrency: int
) -> dict[str, Any]:
    """Both sets for one recognizer, with its card's figures beside them."""
    preprocessing = json.loads((model_dir / "preprocessing.json").read_text())
    settings = GlyphSettings.from_dict(preprocessing["glyph"])
    mean, std = preprocessing["mean"], preprocessing["std"]
    mapping = json.loads((model_dir / "index_to_name.json").read_text())
    classes = [mapping[str(i)] for i in range(len(mapping))]
    model = torch.jit.load(str(model_dir / "model.pt"))
    card_file = model_dir / "metrics.json"
    card = json.loads(card_file.read_text()) if card_file.is_file() else None

    count = len(heldout.images) if images is None else min(images, len(heldout.images))
    test_images, truth = heldout.images[:count], heldout.labels[:count]
    expected = predict(model, normalize_images(test_images, settings), mean, std)
    served, errors = _served_labels(target, [glyph_png(image) for image in test_images], classes, concurrency)
    plain = _compare(served, expected, truth, errors)

    drawn = min(canvases, len(heldout.images))
    pngs = canvas_pngs(heldout.images[:drawn], drawn)
    sendable = np.asarray([png is not None for png in pngs])
    expected_canvas = predict(model, canvas_glyphs(heldout.images[:drawn], settings), mean, std)
    answers, canvas_errors = _served_labels(target, [png for png in pngs if png is not None], classes, concurrency)
    served_canvas = np.full(drawn, UNANSWERED)
    served_canvas[sendable] = answers
    on_canvas = _compare(served_canvas, expected_canvas, heldout.labels[:drawn], canvas_errors)
    on_canvas["blank_test_images_not_sent"] = int((~sendable).sum())

    result: dict[str, Any] = {"data": heldout.source, "images": plain, "canvases": on_canvas}
    if card is None:
        result["card"] = None
    else:
        result["card"] = {
            "test_images": card["test_images"],
            "test_accuracy": round(card["test_accuracy"], 5),
            "canvas_images": card["canvas"]["images"],
            "canvas_accuracy": round(card["canvas_accuracy"], 5),
        }
        if count == card["test_images"]:  # the very same images: the figures must be equal
            result["images"]["http_minus_card_points"] = round(
                100 * (plain["accuracy_http"] - card["test_accuracy"]), 3
            )
    return result
