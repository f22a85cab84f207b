"""What the benchmarks send: held-out test images, as 28x28 PNGs or drawn on 280x280 canvases.

Canvases are drawn by :func:`training.evaluate.canvas_png`, the function the model cards'
canvas robustness draws with: canvas ``i`` sent here is the very canvas the evaluation drew for
test image ``i``.

Without data (no ``DATA_DIR``), the serving and handler benchmarks still need realistic drawings:
:func:`typeset_heldout` sets each class label in PIL's font as a 28x28 glyph and the same
renderer draws it on a canvas. Accuracy is only measured on real held-out data.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from handler.glyph import BlankImageError
from training.datasets import DatasetNotFound, load_recognizer_data
from training.evaluate import canvas_png

GLYPH_SIDE = 28


@dataclass(frozen=True)
class HeldOut:
    """Test images of one recognizer (uint8 N x 28 x 28, upright, ink 255 on 0) and their class
    indices (``None`` for typeset stand-ins, which are not a test set)."""

    model: str
    images: np.ndarray
    labels: np.ndarray | None
    source: str


def load_heldout(model: str, data_dir: str | os.PathLike | None) -> HeldOut | None:
    """The test split the model card was measured on, or ``None`` when ``data_dir`` lacks it."""
    if data_dir is None or not Path(data_dir).is_dir():
        return None
    try:
        data = load_recognizer_data(model, data_dir)
    except (DatasetNotFound, FileNotFoundError):
        return None
    return HeldOut(model, data.test.images, data.test.labels, data.source)


def typeset_heldout(model: str, classes: list[str]) -> HeldOut:
    """Each class label set in PIL's default font as a 28x28 glyph: drawings for the speed
    benchmarks when no test data is available (never for accuracy)."""
    font = ImageFont.load_default(size=22)
    glyphs = []
    for label in classes:
        image = Image.new("L", (GLYPH_SIDE, GLYPH_SIDE), 0)
        ImageDraw.Draw(image).text((GLYPH_SIDE / 2, GLYPH_SIDE / 2), label, fill=255, font=font, anchor="mm")
        glyphs.append(np.asarray(image))
    return HeldOut(model, np.stack(glyphs), None, "typeset class labels (no DATA_DIR)")


def glyph_png(image: np.ndarray) -> bytes:
    """A 28x28 test image as the PNG a client would send (white ink on black, greyscale)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _canvas(job: tuple[np.ndarray, int]) -> bytes | None:
    image, index = job
    try:
        return canvas_png(image, index)
    except BlankImageError:  # a blank test image: nothing to draw (the evaluation feeds zeros)
        return None


def canvas_pngs(images: np.ndarray, indices: Sequence[int]) -> list[bytes | None]:
    """The evaluation's canvases number ``indices`` (of image ``i % len(images)``: typeset
    stand-ins, fewer than the canvases wanted, are drawn again on other canvases), drawn on two
    processes; ``None`` for a blank test image."""
    jobs = [(images[i % len(images)], int(i)) for i in indices]
    with Pool(processes=min(2, os.cpu_count() or 1)) as pool:
        return pool.map(_canvas, jobs, chunksize=64)
