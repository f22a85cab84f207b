"""Drawings that are not characters, as pen strokes: dashes, dots, scribbles and filled blobs, and
the doodles people draw to try a recognizer: faces, hearts, spirals and stars.

The recognizers learn an extra "not a character" class from these (and the digits model from
letters that look like no digit, :data:`NOT_DIGIT_LETTERS`), so that the service can answer
``"accepted": false`` instead of a confident guess. Each generator returns strokes in image
coordinates (y down, arbitrary units) for :func:`training.strokes.draw_strokes`. None of them
draws a shape that is one of the recognizers' characters: dashes stay near horizontal (a steep
one is a ``1``, ``I`` or ``l``), scribbles cross themselves many times, a face is a ring with
marks inside that touch nothing (a ``0`` or ``O`` has none), a spiral turns at least twice (a
``6`` or ``e`` once) and a star crosses itself five times. Closed outlines alone (a circle, a
box, a triangle) are left out: people write ``0``, ``O`` and ``D`` that way.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

# Capital letters that no way of writing a digit resembles (no O/D/Q ~ 0, I/J/L/T ~ 1/7,
# Z ~ 2, S ~ 5, G/b ~ 6, B ~ 8, C ~ an open 0, U ~ an open 4).
NOT_DIGIT_LETTERS = tuple("AEFHKMNPRVWXY")


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


def _ellipse(radii: tuple[float, float], start: float, end: float, points: int) -> np.ndarray:
    """Points of an arc of the ellipse centred on the origin, from angle ``start`` to ``end``
    (radians; y down)."""
    t = np.linspace(start, end, points)
    return np.stack([radii[0] * np.cos(t), radii[1] * np.sin(t)], axis=1)


def face(rng: np.random.Generator) -> list[np.ndarray]:
    """A smiley: a ring (started anywhere, closed with a little overlap), two eyes (dots or short
    strokes) and a smiling, straight or frowning mouth, all inside the ring and apart from it."""
    aspect = rng.uniform(0.8, 1.25)
    start = rng.uniform(0.0, 2.0 * math.pi)
    ring = _ellipse((aspect, 1.0), start, start + rng.uniform(2.05, 2.2) * math.pi, 48)
    eye_y, eye_x, size = rng.uniform(-0.45, -0.2), rng.uniform(0.25, 0.45) * aspect, rng.uniform(0.0, 0.08)
    eyes = [np.array([[x, eye_y], [x + rng.normal(0, 0.02), eye_y + size]]) for x in (-eye_x, eye_x)]
    width, curve = rng.uniform(0.3, 0.55) * aspect, rng.uniform(-0.25, 0.3)
    x = np.linspace(-width, width, 12)
    mouth = np.stack([x, rng.uniform(0.25, 0.45) + curve * (1.0 - (x / width) ** 2)], axis=1)
    return [ring, *eyes, mouth]


def heart(rng: np.random.Generator) -> list[np.ndarray]:
    """A heart outline in one stroke (the classic parametric curve, squashed and jittered)."""
    t = np.linspace(0.0, 2.0 * math.pi, 60)
    x = 16.0 * np.sin(t) ** 3
    y = -(13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t))
    points = np.stack([x * rng.uniform(0.8, 1.2), y], axis=1) / 16.0
    return [points + rng.normal(0.0, 0.01, points.shape)]


def spiral(rng: np.random.Generator) -> list[np.ndarray]:
    """An Archimedean spiral of 2-4 turns, either way round."""
    turns = rng.uniform(2.0, 4.0)
    t = np.linspace(0.0, turns * 2.0 * math.pi, int(40 * turns))
    r = rng.uniform(0.0, 0.1) + t / t[-1]
    direction = rng.choice([-1.0, 1.0])
    return [np.stack([r * np.cos(direction * t), r * np.sin(direction * t) * rng.uniform(0.8, 1.2)], axis=1)]


def star(rng: np.random.Generator) -> list[np.ndarray]:
    """A five-pointed star drawn in one stroke (every second point of a pentagon, closed)."""
    start = -math.pi / 2 + rng.normal(0.0, 0.15)
    corners = [start + k * 4.0 * math.pi / 5.0 for k in range(6)]
    points = np.array([[math.cos(a), math.sin(a)] for a in corners])
    return [points + rng.normal(0.0, 0.03, points.shape)]


GENERATORS: dict[str, Callable[[np.random.Generator], list[np.ndarray]]] = {
    "dash": dash, "dot": dot, "scribble": scribble, "blob": blob,
    "face": face, "heart": heart, "spiral": spiral, "star": star,
}
KINDS = tuple(GENERATORS)  # the order in which the kinds take turns (:func:`nonchar`)


def nonchar(index: int, seed: int) -> tuple[str, list[np.ndarray]]:
    """Non-character number ``index`` of a seeded series: the kinds take turns; the strokes
    depend only on ``(seed, index)``."""
    kind = KINDS[index % len(KINDS)]
    return kind, GENERATORS[kind](np.random.default_rng([seed, index]))
