"""The handler's fast path is the specified normalization, bit for bit, on canvases.

``canvas_to_glyph`` keeps 8-bit images as levels and a 256-entry ink table until it has cropped
the ink (handler/glyph.py, made faster for the benchmarks' preprocessing budget); the models were
trained on ``normalize_glyph(ink_map(image))``. Any difference on a canvas that has ink enough for
``normalize_glyph``, even in the last bit, or a different error, fails here. (Photos, whose
background is not flat, are read differently: tests/test_photo.py.)
"""

from __future__ import annotations

import functools
import io
import itertools

import numpy as np
import pytest
from PIL import Image

from benchmarks.heldout import canvas_pngs, typeset_heldout
from handler.glyph import GlyphSettings, canvas_to_glyph, decode_image, ink_map, normalize_glyph
from tests.canvases import STROKES, animated_gif, cmyk_jpeg, drawing, sixteen_bit_png, transparent_sketch, uniform_png

MODES = ("L", "RGB", "RGBA", "LA", "P", "1", "CMYK")


def reference(data: bytes, settings: GlyphSettings = GlyphSettings()) -> np.ndarray:
    return normalize_glyph(ink_map(decode_image(data)), settings)


def outcome(normalize, data: bytes, settings: GlyphSettings = GlyphSettings()) -> tuple:
    try:
        glyph = normalize(data, settings)
    except ValueError as error:
        return type(error).__name__, str(error)
    return glyph.dtype.str, glyph.shape, glyph.tobytes()


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@functools.cache
def images() -> list[bytes]:
    """Drawings in every mode, style and size the service accepts, and blank ones."""
    found = [sixteen_bit_png(), cmyk_jpeg(), animated_gif(), transparent_sketch(), *map(uniform_png, (0, 128, 255))]
    for char, side in itertools.product(STROKES, (8, 28, 280, 600)):
        ink = drawing(char, side=side, width=max(1, side // 14))
        found += [encode(ink.convert(mode), "JPEG" if mode == "CMYK" else "PNG") for mode in MODES]
        found += [encode(Image.eval(ink, lambda v: 255 - v)), encode(ink, "JPEG"), encode(ink, "WEBP")]
        found.append(encode(Image.merge("LA", (Image.new("L", ink.size, 0), Image.eval(ink, lambda v: 255 - v)))))
    return found


@pytest.mark.parametrize("index", range(len(images())))
def test_every_mode_and_style(index):
    data = images()[index]
    assert outcome(canvas_to_glyph, data) == outcome(reference, data)


def test_canvases_of_every_style_and_pen():
    """The renderer of the model cards' canvases: every canvas style and pen in turn."""
    glyphs = typeset_heldout("balanced", [*"0123456789", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ"])
    for data in canvas_pngs(glyphs.images, range(180)):
        assert outcome(canvas_to_glyph, data) == outcome(reference, data)


def test_random_ink_on_a_flat_background_and_other_settings():
    """Random levels inside a canvas of one level (a photo's noisy background is read as a
    photo, tests/test_photo.py), with the default settings and others."""
    rng = np.random.default_rng(5)
    settings = GlyphSettings(noise_floor=0.4, stroke_width=0, blur_radius=0)
    for index in range(60):
        side = int(rng.integers(8, 200))
        shape = (side, side) + ((), (3,), (4,))[index % 3]
        levels = np.full(shape, rng.integers(0, 256), dtype=np.uint8)
        margin = side // 4
        inside = (slice(margin, side - margin),) * 2
        levels[inside] = rng.integers(0, 256, size=levels[inside].shape, dtype=np.uint8) // (1 + index % 4 * 60)
        data = encode(Image.fromarray(levels))
        for chosen in (GlyphSettings(), settings):
            assert outcome(canvas_to_glyph, data, chosen) == outcome(reference, data, chosen)
