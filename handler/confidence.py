"""From a recognizer's outputs to what the service answers: calibrated probabilities and whether
the drawing is accepted as one of the model's characters.

A recognizer's outputs are logits ``[N, K]`` over its ``K`` characters, or ``[N, K + 1]`` when it
was trained with a "not a character" class (dashes, dots, scribbles, blobs, faces, hearts,
spirals, stars; for ``digits`` also letters). ``preprocessing.json`` holds the ``calibration``
fitted on validation data by ``training/calibrate.py``:

- ``temperature`` ``T``: the answered probabilities are ``softmax(logits[:, :K] / T)`` (temperature
  scaling, Guo et al. 2017): the same ranking, confidences that mean what they say;
- ``reject_threshold``: a drawing is accepted when ``softmax(logits / T)[:, K]``, its probability
  of not being a character, is below it.

Shared by the handler and the training's evaluation, so the model cards measure the very rule
the service applies.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

NO_CALIBRATION = {"temperature": 1.0, "reject_threshold": None}


def answered_probabilities(outputs: torch.Tensor, num_classes: int, temperature: float) -> torch.Tensor:
    """Calibrated probabilities over the ``num_classes`` characters (float [N, K], rows sum to 1)."""
    return torch.softmax(outputs[:, :num_classes] / temperature, dim=1)


def reject_probability(outputs: torch.Tensor, num_classes: int, temperature: float) -> torch.Tensor:
    """P(not a character) of each drawing (float [N]); raises ``ValueError`` for a model without
    the extra output."""
    if outputs.shape[1] != num_classes + 1:
        raise ValueError(f"the model has {outputs.shape[1]} outputs, not {num_classes} characters + 1")
    return torch.softmax(outputs / temperature, dim=1)[:, num_classes]


def accepted(outputs: torch.Tensor, num_classes: int, calibration: Mapping[str, Any]) -> torch.Tensor:
    """Bool [N]: the drawing is accepted as a character (always, for a model without a reject
    output or a calibration without a threshold)."""
    threshold = calibration.get("reject_threshold")
    if threshold is None or outputs.shape[1] == num_classes:
        return torch.ones(len(outputs), dtype=torch.bool)
    return reject_probability(outputs, num_classes, calibration["temperature"]) < threshold


def character_probability(outputs: torch.Tensor, num_classes: int, temperature: float) -> torch.Tensor:
    """The calibrated probability of each drawing's best character when "not a character"
    competes too (float [N]): ``max softmax(outputs / T)[:, :K]``, all outputs in the softmax.
    For a model without the extra output it is the answered confidence."""
    return torch.softmax(outputs / temperature, dim=1)[:, :num_classes].max(dim=1).values


def ranking(probabilities: Sequence[float], classes: Sequence[str], count: int) -> list[dict[str, Any]]:
    """The ``count`` most probable labels of one drawing (``probabilities``: its K class
    probabilities, e.g. a row's ``tolist()``, which the answer's ``probabilities`` reuses), best
    first (ties in class order): ``[{"label", "probability"}, ...]``, the answers' ``top_k``."""
    order = sorted(range(len(probabilities)), key=lambda i: -probabilities[i])  # a stable sort
    return [{"label": classes[i], "probability": probabilities[i]} for i in order[:count]]
