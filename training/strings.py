"""Strings written by one writer, for the ``text`` evaluation: a pen-data writer's own characters
side by side on one canvas, the way a person writes a number or a code in a box.

:func:`compose_string` places a writer's pen samples (:class:`training.strokes.PenSample`) at one
height, bottoms on one line, with gaps of a realistic width (a quarter of them nearly touching),
and draws them with one round pen 5-14 pixels wide in one of the three canvas styles
(:func:`training.strokes.strokes_png`, the renderer of the pen training data).
:func:`writer_strings` draws a reproducible series of them from one part of the writer split
(:func:`training.pen.split_writers`): numbers of 2-8 digits for ``digits``, upper-case codes of
3-6 letters for ``letters``, mixed codes of 3-6 digits and capitals for ``balanced``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from training.canvas import CANVAS_STYLES
from training.strokes import PenSample, strokes_png, upright

# What each recognizer reads in the evaluation: the kinds of pen samples and the string lengths.
STRING_KINDS = {"digits": ("digit",), "letters": ("uppercase",), "balanced": ("digit", "uppercase")}
STRING_LENGTHS = {"digits": (2, 8), "letters": (3, 6), "balanced": (3, 6)}
MIN_WRITER_SAMPLES = 5  # a writer with fewer samples of the kinds writes no string


@dataclass(frozen=True)
class StringStyle:
    """How a string is written; sizes in canvas pixels, gaps in character heights."""

    height: tuple[float, float] = (70.0, 150.0)  # the characters' height
    height_jitter: float = 0.06  # each character's height varies by this share
    baseline_jitter: float = 0.04  # each character's bottom moves by this share of the height
    max_aspect: float = 1.3  # a character is at most this many heights wide
    touching_share: float = 0.25  # this share of the gaps is nearly touching ...
    near_gap: tuple[float, float] = (0.02, 0.08)  # ... a gap of ink this wide
    gap: tuple[float, float] = (0.1, 0.4)  # the other gaps
    margin: tuple[float, float] = (0.3, 0.8)  # paper around the string
    pen_width: tuple[float, float] = (5.0, 14.0)


@dataclass(frozen=True)
class WrittenString:
    """A drawn string: its ``text``, the writer, the canvas ``style`` and the ``png`` bytes."""

    text: str
    writer: str
    style: str
    png: bytes


def compose_string(
    samples: Sequence[PenSample], style: str, rng: np.random.Generator, writing: StringStyle = StringStyle()
) -> bytes:
    """PNG bytes of ``samples`` written left to right on one canvas (see the module docstring).
    Each sample is scaled by its own bounding box (pen data's units differ between sites)."""
    height = rng.uniform(*writing.height)
    pen = rng.uniform(*writing.pen_width)
    top, left = (rng.uniform(*writing.margin) * height for _ in range(2))
    placed: list[np.ndarray] = []
    x = left + pen / 2.0
    for index, sample in enumerate(samples):
        strokes = upright(sample.strokes)
        points = np.concatenate(strokes)
        low, extent = points.min(axis=0), np.ptp(points, axis=0)
        size = height * (1.0 + rng.uniform(-writing.height_jitter, writing.height_jitter))
        scale = min(size / max(extent[1], 1e-9), writing.max_aspect * height / max(extent[0], 1e-9))
        bottom = top + pen / 2.0 + height * (1.0 + rng.uniform(-writing.baseline_jitter, writing.baseline_jitter))
        shift = np.array([x, bottom - extent[1] * scale])
        placed += [(stroke - low) * scale + shift for stroke in strokes]
        near = rng.random() < writing.touching_share
        gap = rng.uniform(*(writing.near_gap if near else writing.gap)) * height
        x += extent[0] * scale + pen + gap  # the pen's ink reaches pen / 2 beyond each centre line
    everything = np.concatenate(placed)
    right = everything[:, 0].max() + pen / 2.0 + rng.uniform(*writing.margin) * height
    below = everything[:, 1].max() + pen / 2.0 + rng.uniform(*writing.margin) * height
    return strokes_png(placed, pen, (int(np.ceil(below)), int(np.ceil(right))), style)


def writer_strings(
    recognizer: str, samples: Sequence[PenSample], count: int, seed: int, writing: StringStyle = StringStyle(),
    length: int | None = None,
) -> list[WrittenString]:
    """``count`` strings for ``recognizer`` (:data:`STRING_KINDS`, :data:`STRING_LENGTHS`, or all
    ``length`` characters long), each
    by one writer of ``samples`` (writers take turns, each in the three canvas styles in turn), its characters
    drawn from that writer's samples of the kinds; reproducible for a ``seed``. Raises
    ``ValueError`` when no writer has :data:`MIN_WRITER_SAMPLES` samples of the kinds."""
    kinds = STRING_KINDS[recognizer]
    by_writer: dict[str, list[PenSample]] = {}
    for sample in samples:
        if sample.kind in kinds:
            by_writer.setdefault(sample.writer, []).append(sample)
    writers = sorted(w for w, own in by_writer.items() if len(own) >= MIN_WRITER_SAMPLES)
    if not writers:
        raise ValueError(f"no writer has {MIN_WRITER_SAMPLES} samples of {kinds}")
    shortest, longest = STRING_LENGTHS[recognizer]
    strings = []
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        writer = writers[index % len(writers)]
        own = by_writer[writer]
        size = length or int(rng.integers(shortest, longest + 1))
        picked = [own[i] for i in rng.choice(len(own), size=size, replace=len(own) < size)]
        # Each writer in every style in turn (index % 3 alone would tie a style to the writers
        # whose turn falls on it whenever the writer count is a multiple of 3).
        style = CANVAS_STYLES[(index + index // len(writers)) % len(CANVAS_STYLES)]
        text = "".join(s.label.upper() if recognizer == "letters" else s.label for s in picked)
        strings.append(WrittenString(text, writer, style, compose_string(picked, style, rng, writing)))
    return strings
