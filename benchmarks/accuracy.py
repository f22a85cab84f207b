"""The shipped models' accuracy through the HTTP API, against their model cards.

Two sets per recognizer, from the test split its card (``models/<name>/metrics.json``) was
measured on:

- **images**: every held-out 28x28 image, sent as a PNG; the card's ``test_accuracy`` was
  measured on the same images, so the figures must be equal;
- **canvases**: held-out images spread evenly over the test split, each drawn on the very 280x280
  canvas the card's canvas robustness drew for it (:mod:`benchmarks.heldout`) and sent as a PNG:
  a sample of the card's ``canvas_accuracy``, reported with its standard error.

Every label the server answers is compared with the handler's own code in process
(:class:`handler.recognizer.RecognizerHandler`): they must all agree, which proves that what
TorchServe runs is the handler of this repository with this model. The images are also compared
one by one with the evaluation behind the card (:func:`training.evaluate.predict` on
:func:`training.datasets.normalize_images`): it feeds the model glyphs rounded to 8 bits (as
training did, from its cache) where the handler feeds the float glyph, so a handful of borderline
images may get another label; they are counted.
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
from handler.glyph import GlyphSettings, InputError
from handler.recognizer import RecognizerHandler
from training.datasets import normalize_images
from training.evaluate import predict

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
    return np.asarray(labels, dtype=np.int64), errors


def _handler_labels(handler: RecognizerHandler, bodies: list[bytes], batch_size: int = 32) -> np.ndarray:
    """What the handler's code answers in process, ``batch_size`` requests per forward pass."""
    labels = []
    for start in range(0, len(bodies), batch_size):
        batch = handler.inference(handler.preprocess([{"body": body} for body in bodies[start : start + batch_size]]))
        predicted = iter(batch.probabilities.argmax(dim=1).tolist())
        labels += [UNANSWERED if isinstance(outcome, InputError) else next(predicted) for outcome in batch.outcomes]
    return np.asarray(labels, dtype=np.int64)


def _compare(served: np.ndarray, handler: np.ndarray, truth: np.ndarray, errors: Counter) -> dict[str, Any]:
    """The served labels against the truth and against the handler in process."""
    return {
        "count": int(len(truth)),
        "accuracy_http": round(float((served == truth).mean()), 5),
        "accuracy_handler_in_process": round(float((handler == truth).mean()), 5),
        "different_from_handler": int((served != handler).sum()),
        "refused": dict(errors),
    }


def evaluate_model(
    target: Target,
    handler: RecognizerHandler,
    model_dir: Path,
    heldout: HeldOut,
    images: int | None,
    canvases: int,
    concurrency: int,
) -> dict[str, Any]:
    """Both sets for one recognizer, with its card's figures beside them."""
    preprocessing = json.loads((model_dir / "preprocessing.json").read_text())
    settings = GlyphSettings.from_dict(preprocessing["glyph"])
    card_file = model_dir / "metrics.json"
    card = json.loads(card_file.read_text()) if card_file.is_file() else None

    count = len(heldout.images) if images is None else min(images, len(heldout.images))
    test_images, truth = heldout.images[:count], heldout.labels[:count]
    pngs = [glyph_png(image) for image in test_images]
    served, errors = _served_labels(target, pngs, handler.classes, concurrency)
    plain = _compare(served, _handler_labels(handler, pngs), truth, errors)
    model = torch.jit.load(str(model_dir / "model.pt"))
    evaluation = predict(model, normalize_images(test_images, settings), preprocessing["mean"], preprocessing["std"],
                         len(handler.classes))
    plain["accuracy_evaluation"] = round(float((evaluation == truth).mean()), 5)
    plain["different_from_evaluation"] = int((served != evaluation).sum())

    indices = np.unique(np.linspace(0, len(heldout.images) - 1, min(canvases, len(heldout.images))).round().astype(int))
    drawings = canvas_pngs(heldout.images, indices)
    sendable = np.asarray([png is not None for png in drawings])
    bodies = [png for png in drawings if png is not None]
    answers, canvas_errors = _served_labels(target, bodies, handler.classes, concurrency)
    served_canvas, handler_canvas = np.full(len(indices), UNANSWERED), np.full(len(indices), UNANSWERED)
    served_canvas[sendable] = answers
    handler_canvas[sendable] = _handler_labels(handler, bodies)
    on_canvas = _compare(served_canvas, handler_canvas, heldout.labels[indices], canvas_errors)
    share = on_canvas["accuracy_http"]
    on_canvas["standard_error"] = round(float(np.sqrt(share * (1 - share) / len(indices))), 5)
    on_canvas["blank_test_images_not_sent"] = int((~sendable).sum())

    result: dict[str, Any] = {"data": heldout.source, "images": plain, "canvases": on_canvas, "card": None}
    if card is not None:
        result["card"] = {
            "test_images": card["test_images"],
            "test_accuracy": round(card["test_accuracy"], 5),
            "canvas_images": card["canvas"]["images"],
            "canvas_accuracy": round(card["canvas_accuracy"], 5),
        }
        if count == card["test_images"]:  # the very same images: the evaluation must match the card
            plain["evaluation_matches_card"] = abs(plain["accuracy_evaluation"] - result["card"]["test_accuracy"]) < 1e-5
    return result
