"""Clean canvases and their glyphs as the normalization of commit be383c3 made them.

Models are trained on glyphs of ``handler.glyph`` (``normalize_glyph`` on dataset images,
``canvas_to_glyph`` on the canvases of ``training.evaluate.canvas_png``). Reading photos and
layered images must not move a single bit of those: ``tests/test_clean_canvas_glyphs.py`` compares
today's glyphs with ``tests/fixtures/clean_canvas_glyphs.json``, the sha256 of every glyph (or the
error) computed by :func:`digests` with the code of be383c3, before photo support was added.

The fixture was written once with ``python -m tests.clean_canvases DATA_DIR`` at be383c3. Do not
write it again to make a failing comparison pass: a difference means training data would drift.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from benchmarks.heldout import typeset_heldout
from handler.glyph import InputError, canvas_to_glyph, normalize_glyph
from training.datasets import load_mnist
from training.evaluate import canvas_png

FIXTURE = Path(__file__).parent / "fixtures" / "clean_canvas_glyphs.json"
MNIST_IMAGES = 300  # the first test images of MNIST: drawn with canvas_png and normalized as is
CHARACTERS = [*"0123456789", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
# Opaque canvases of one colour with ink of another: (background, ink), RGB.
COLOURS = [
    ((128, 128, 128), (0, 0, 0)),
    ((250, 240, 120), (20, 40, 200)),
    ((30, 60, 30), (240, 240, 240)),
    ((255, 255, 255), (200, 0, 0)),
]


def digest(make: Callable[[], np.ndarray]) -> str:
    """sha256 of a glyph's dtype, shape and bytes, or of the error it raised instead."""
    try:
        glyph = make()
    except InputError as error:
        return "error:" + hashlib.sha256(f"{type(error).__name__}: {error}".encode()).hexdigest()
    return hashlib.sha256(f"{glyph.dtype.str}{glyph.shape}".encode() + glyph.tobytes()).hexdigest()


def _encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def recoloured(canvas: bytes, background: tuple[int, ...], ink: tuple[int, ...], alpha: bool) -> bytes:
    """A black-on-white canvas redrawn in other colours: an opaque RGB canvas, or an RGBA one whose
    background is fully transparent (``alpha``) with the ink's coverage as its alpha."""
    coverage = 1.0 - np.asarray(Image.open(io.BytesIO(canvas)).convert("L"), dtype=np.float32) / 255.0
    cover = coverage[..., None]
    if alpha:
        colour = np.broadcast_to(np.array(ink, dtype=np.uint8), coverage.shape + (3,))
        level = np.uint8(coverage * 255.0 + 0.5)
        return _encode(Image.fromarray(np.dstack([colour, level]), mode="RGBA"))
    mixed = np.array(background, np.float32) * (1.0 - cover) + np.array(ink, np.float32) * cover
    return _encode(Image.fromarray(np.uint8(mixed + 0.5), mode="RGB"))


def synthetic_canvases() -> Iterator[bytes]:
    """Typeset characters drawn by the model cards' renderer in its three styles, and the same
    canvases in other opaque colours and as coloured ink on a transparent background."""
    glyphs = typeset_heldout("balanced", CHARACTERS).images
    for index, glyph in enumerate(glyphs):
        for turn in range(3):  # canvas_png cycles the styles with the index
            yield canvas_png(glyph, index * 3 + turn)
        black_on_white = canvas_png(glyph, index * 3)  # index % 3 == 0: black on white
        background, ink = COLOURS[index % len(COLOURS)]
        yield recoloured(black_on_white, background, ink, alpha=False)
        yield recoloured(black_on_white, background, ink, alpha=True)


def mnist_test_images(data_dir: str | Path) -> np.ndarray:
    """The first :data:`MNIST_IMAGES` MNIST test images (uint8, ink 255 on 0)."""
    return load_mnist(data_dir)[1].images[:MNIST_IMAGES]


def digests(data_dir: str | Path | None) -> dict[str, list[str]]:
    """The digests the fixture holds: synthetic canvases always; with MNIST in ``data_dir``, its
    test images drawn by ``canvas_png`` (``mnist_canvas``) and normalized as training does
    (``mnist_dataset``)."""
    found = {"synthetic": [digest(lambda: canvas_to_glyph(data)) for data in synthetic_canvases()]}
    if data_dir is not None:
        images = mnist_test_images(data_dir)
        found["mnist_canvas"] = [
            digest(lambda: canvas_to_glyph(canvas_png(image, index))) for index, image in enumerate(images)
        ]
        found["mnist_dataset"] = [
            digest(lambda: normalize_glyph(image.astype(np.float32) / 255.0)) for image in images
        ]
    return found


if __name__ == "__main__":
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(digests(sys.argv[1]), indent=0) + "\n")
