"""Drawings that are not characters: dashes, dots, scribbles and filled blobs, as pen strokes.

The recognizers learn an extra "not a character" class from these (and the digits model from
letters that look like no digit, :data:`NOT_DIGIT_LETTERS`), so that the service can answer
``"accepted": false`` instead of a confident guess. Each generator returns strokes in image
coordinates (y down, arbitrary units) for :func:`training.strokes.draw_strokes`. None of them
draws a shape that is one of the recognizers' characters: dashes stay near horizontal (a steep
one is a ``1``, ``I`` or ``l``) and scribbles cross themselves many times.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

# Capital letters that no way of writing a digit resembles (no O/D/Q ~ 0, I/J/L/T ~ 1/7,
# Z ~ 2, S ~ 5, G/b ~ 6, B ~ 8, C ~ an open 0, U ~ an open 4).
NOT_DIGIT_LETTERS = tuple("AEFHKMNPRVWXY")
KINDS = ("dash", "dot", "scribble", "blob")


def dash(rng: np.random.Generator) -> list[np.ndarray]:
    """A near-horizontal line (within 12 degrees), drawn with a slight wobble."""
    angle = math.radians(rng.uniform(-12, 12))
    t = np.linspace(0.0, 1.0, int(rng.integers(8, 30)))[:, None]
    line = t * np.array([math.cos(angle), math.sin(angle)])
    return [line + rng.normal(0.0, 0.004, line.shape)]


def dot(rng: np.random.Generator) -> list[np.ndarray]:
    """One dab of the pen: a tap of 1-3 samples at one point (drawn at the pen's width: a
    character with no extent is not scaled up, see :func:`training.strokes.draw_strokes`)."""
    return [np.zeros((int(rng.integers(1, 4)), 2))]


def scribble(rng: np.random.Generator) -> list[np.ndarray]:
    """A random zigzag of 12-40 sharp turns in a box, 1-2 strokes: crosses itself many times."""
    strokes = []
    for _ in range(int(rng.integers(1, 3))):
        turns = int(rng.integers(12, 40))
        aspect = rng.uniform(0.4, 2.5)
        strokes.append(rng.uniform(0.0, 1.0, (turns, 2)) * (aspect, 1.0))
    return strokes


def blob(rng: np.random.Generator) -> list[np.ndarray]:
    """A filled-in shape: a dense back-and-forth hatching of an ellipse, as a person colours a
    region in (it becomes a solid area on the canvas)."""
    rows = int(rng.integers(14, 30))
    y = np.linspace(-1.0, 1.0, rows)
    half = np.sqrt(np.clip(1.0 - y**2, 0.02, None)) * rng.uniform(0.6, 1.6)
    x = np.where(np.arange(rows) % 2 == 0, -half, half)
    return [np.stack([x, y], axis=1)]


GENERATORS: dict[str, Callable[[np.random.Generator], list[np.ndarray]]] = {
    "dash": dash, "dot": dot, "scribble": scribble, "blob": blob,
}


def nonchar(index: int, seed: int) -> tuple[str, list[np.ndarray]]:
    """Non-character number ``index`` of a seeded series: the kinds take turns; the strokes
    depend only on ``(seed, index)``."""
    kind = KINDS[index % len(KINDS)]
    return kind, GENERATORS[kind](np.random.default_rng([seed, index]))
