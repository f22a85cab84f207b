"""Turn a drawing into the 28x28 glyph a recognizer sees.

This module is the single place where images are normalized, for serving *and* for training:
`training/` passes every dataset image through :func:`normalize_glyph`, and the TorchServe
handler passes every canvas through :func:`decode_image`, :func:`ink_map` and then the same
:func:`normalize_glyph`. Keeping one implementation is what prevents train/serve skew, the classic
reason why a digit model that scores 99% on MNIST guesses on real drawings.

The pipeline, all pure functions on numpy arrays and PIL images:

1. ``decode_image``: bytes -> PIL image, with size limits checked *before* pixels are decoded.
2. ``ink_map``: image -> float array in [0, 1] where 1 is ink, whatever the canvas style
   (dark ink on light, light ink on dark, ink on a transparent background).
3. ``normalize_glyph``: ink map -> 28x28 float32: crop to the ink, keep the aspect ratio, bring
   strokes to one width, resize into a fixed box, smooth, centre.

:func:`canvas_to_glyph` (the handler's call) computes exactly ``normalize_glyph(ink_map(...))``
of the decoded image, but keeps an 8-bit image as its levels and a 256-entry ink table until the
ink is cropped, so a large canvas is never turned into floats whole
(``tests/test_bench_glyph.py`` checks that the results are identical, bit for bit).

Everything the user can get wrong raises :class:`InputError` (a ``ValueError``) with a message
that says what to fix; the handler turns it into an HTTP 4xx.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np
from PIL import Image, ImageFilter, UnidentifiedImageError

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")


class InputError(ValueError):
    """A request the service cannot answer because of its input; ``status`` is the HTTP code."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class BlankImageError(InputError):
    """The image holds no drawing: empty, uniform, or with too little contrast to find ink."""


@dataclass(frozen=True)
class GlyphSettings:
    """Parameters of the normalization. Training exports them beside the model
    (``preprocessing.json``) so the handler normalizes exactly as the model was trained."""

    size: int = 28  # side of the output image
    box: int = 20  # the glyph's longer side is scaled to this many pixels (MNIST's convention)
    stroke_width: float = 2.4  # stroke width in output pixels after normalization; 0 disables
    work_scale: int = 4  # strokes are measured and thickened at box * work_scale pixels
    max_stroke_steps: int = 6  # at most this many 1-pixel dilations or erosions at work scale
    blur_radius: float = 0.5  # Gaussian smoothing of the output, in output pixels
    noise_floor: float = 0.15  # ink below this fraction of the strongest ink is background
    min_contrast: float = 0.08  # weaker strongest ink than this (0..1) means a blank image
    min_ink_fraction: float = 0.0001  # fewer ink pixels than this fraction means a blank image

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "GlyphSettings":
        """Build from a mapping such as ``preprocessing.json``; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise KeyError(f"unknown glyph settings: {sorted(unknown)}")
        return cls(**values)


@dataclass(frozen=True)
class ImageLimits:
    """What a request may contain. Checked before decoding so a small file that declares a huge
    image (a decompression bomb) costs nothing."""

    max_bytes: int = 4 * 1024 * 1024
    max_side: int = 4096
    max_pixels: int = 4096 * 4096
    min_side: int = 8


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Decode PNG, JPEG, WebP, GIF (first frame) or BMP bytes into a PIL image.

    Raises :class:`InputError` for an empty or over-size body, an unknown format, dimensions out
    of bounds (before any pixel is decoded) and truncated or corrupt files.
    """
    if not data:
        raise InputError("the request has no image: send PNG, JPEG, WebP, GIF or BMP bytes")
    if len(data) > limits.max_bytes:
        raise InputError(
            f"the image is {len(data)} bytes; the limit is {limits.max_bytes} bytes", status=413
        )
    too_large = (
        f"the limit is {limits.max_side} pixels a side and {limits.max_pixels} pixels in all: "
        "scale the drawing down"
    )
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:  # PIL's own guard, for the most extreme sizes
        raise InputError(f"the image declares far too many pixels; {too_large}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(
            "the body is not a readable image: send PNG, JPEG, WebP, GIF or BMP bytes"
        ) from exc
    width, height = image.size
    if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        raise InputError(f"the image is {width}x{height} pixels; {too_large}")
    if width < limits.min_side or height < limits.min_side:
        raise InputError(
            f"the image is {width}x{height} pixels; draw on a canvas of at least "
            f"{limits.min_side}x{limits.min_side}"
        )
    try:
        image.seek(0)  # animated GIF or WebP: the first frame
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise InputError(f"the image could not be decoded (truncated or corrupt): {exc}") from exc
    return image


LEVELS = np.arange(256, dtype=np.float32) / 255.0  # each 8-bit value as a level in [0, 1]


def _border(values: np.ndarray) -> np.ndarray:
    """The pixels along the four edges of a 2-D array."""
    return np.concatenate([values[0], values[-1], values[:, 0], values[:, -1]])


def _has_transparent_background(alpha: np.ndarray) -> bool:
    """True when the image's border is mostly transparent (``alpha`` 8-bit): the ink is then in
    the alpha channel (Gradio's Sketchpad and most canvas exports draw black ink on a transparent
    background)."""
    return float(np.median(LEVELS[_border(alpha)])) < 0.5


def _luminance(image: Image.Image) -> np.ndarray:
    """Grey levels in [0, 1] of a 16-bit or float image."""
    if image.mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float32) / 65535.0
    grey = np.asarray(image, dtype=np.float32)
    low, high = float(grey.min()), float(grey.max())
    return (grey - low) / (high - low) if high > low else np.zeros_like(grey)


def _ink_levels(image: Image.Image) -> tuple[np.ndarray, np.ndarray] | None:
    """The ink map of an image with 8-bit levels, as ``(values, table)``: one 8-bit channel and
    the ink of each of its 256 values, so that the ink map is ``table[values]``. ``None`` for
    16-bit and float images, whose ink is computed from their own levels.

    The ink is the alpha channel on a transparent background; otherwise the grey level's distance
    from the border's median grey. Either way ``table`` is monotone, or falls then rises: the
    strongest ink of an image is the ink of its lowest or its highest value.
    """
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"))
        if _has_transparent_background(alpha):
            return alpha, LEVELS
        # Opaque background: judge the colours, as if shown on white.
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        return None
    grey = np.asarray(image if image.mode == "L" else image.convert("L"))
    return grey, np.abs(LEVELS - np.median(LEVELS[_border(grey)]))


def ink_map(image: Image.Image) -> np.ndarray:
    """Where the ink is, as float32 in [0, 1] (1 = strongest ink), for any canvas style.

    The background is whatever fills the image's border: transparent, light or dark. Ink is the
    difference from it, so black-on-white, white-on-black and coloured ink all work.
    """
    levels = _ink_levels(image)
    if levels is None:
        grey = _luminance(image)
        return np.abs(grey - np.median(_border(grey))).astype(np.float32, copy=False)
    values, table = levels
    return np.take(table, values)


def _clean_ink(ink: np.ndarray, peak: float, settings: GlyphSettings) -> np.ndarray:
    """Scale ink so that ``peak`` becomes 1 and zero out faint noise (JPEG ringing, paper)."""
    floor = settings.noise_floor
    return np.clip((ink / peak - floor) / (1.0 - floor), 0.0, 1.0)


def measure_stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary glyph, in pixels: a stroke of length L and width w covers
    about L*w pixels and has about 2L boundary pixels, so w ~ 2 * area / boundary."""
    area = int(np.count_nonzero(mask))
    # Interior: ink with ink on its four sides (a pixel on the image's edge never is).
    interior = (
        mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    )
    boundary = area - int(np.count_nonzero(interior))
    return 2.0 * area / max(boundary, 1)


def _morph3(image: np.ndarray, grow: bool) -> np.ndarray:
    """One 3x3 dilation (``grow``) or erosion, separable, on a 2-D array; a window that crosses
    the edge sees only the pixels inside (as with the edge replicated), in place on copies."""
    pick = np.maximum if grow else np.minimum
    rows = image.copy()
    pick(rows[1:], image[:-1], out=rows[1:])
    pick(rows[:-1], image[1:], out=rows[:-1])
    both = rows.copy()
    pick(both[:, 1:], rows[:, :-1], out=both[:, 1:])
    pick(both[:, :-1], rows[:, 1:], out=both[:, :-1])
    return both


def _even_strokes(work: np.ndarray, settings: GlyphSettings) -> np.ndarray:
    """Dilate or erode a work-scale glyph (uint8) until its strokes are about the target width.
    Pens range from hairlines to markers; the model should see one stroke width."""
    mask = work >= 128
    if not mask.any():
        return work
    width = measure_stroke_width(mask)
    target = settings.stroke_width * settings.work_scale
    steps = int(round((target - width) / 2.0))  # each 3x3 step changes the width by 2
    steps = max(-settings.max_stroke_steps, min(settings.max_stroke_steps, steps))
    steps = max(steps, -int((width - 2.0) // 2.0))  # never erode a stroke away entirely
    for _ in range(abs(steps)):
        work = _morph3(work, grow=steps > 0)
    return work


def _ink_box(mask: np.ndarray, settings: GlyphSettings) -> tuple[slice, slice]:
    """The rows and columns holding the ink of ``mask`` (what survives the noise floor)."""
    if np.count_nonzero(mask) < max(1, settings.min_ink_fraction * mask.size):
        raise BlankImageError("the drawing is blank: draw a character with a visible stroke")
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))  # ink only in those rows
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _check_contrast(peak: float, settings: GlyphSettings) -> None:
    if peak < settings.min_contrast:
        raise BlankImageError(
            "the drawing is blank (or uniformly filled): draw a character with a visible stroke"
        )


def normalize_glyph(ink: np.ndarray, settings: GlyphSettings = GlyphSettings()) -> np.ndarray:
    """Normalize an ink map (float in [0, 1], 1 = ink, upright) into a ``size`` x ``size``
    float32 glyph of 8-bit levels (k / 255): crop to the ink, keep the aspect ratio, even the strokes, scale the
    longer side to ``box`` pixels, smooth and centre. Used for training data and canvases alike.

    Raises :class:`BlankImageError` when there is no ink.
    """
    ink = np.asarray(ink, dtype=np.float32)
    peak = float(ink.max()) if ink.size else 0.0
    _check_contrast(peak, settings)
    box = _ink_box(ink > settings.noise_floor * peak, settings)
    return _glyph(ink[box], peak, settings)


def _normalize_levels(values: np.ndarray, table: np.ndarray, settings: GlyphSettings) -> np.ndarray:
    """:func:`normalize_glyph` of the ink map ``table[values]`` (see :func:`_ink_levels`), with
    the same result: only the cropped ink is ever made into floats."""
    peak = float(max(table[values.min()], table[values.max()]))
    _check_contrast(peak, settings)
    # The values that are ink: since the table is monotone or falls then rises, the faint ones
    # are one run [low, high] and two comparisons find the ink without a lookup per pixel.
    faint = np.flatnonzero(~(table > settings.noise_floor * peak))
    low, high = int(faint[0]), int(faint[-1])
    box = _ink_box((values < low) | (values > high), settings)
    return _glyph(np.take(table, values[box]), peak, settings)


def _glyph(crop: np.ndarray, peak: float, settings: GlyphSettings) -> np.ndarray:
    """The glyph from the ink cropped to its bounding box (``peak``: the strongest ink)."""
    # Only the crop is cleaned: on a large canvas most pixels are background.
    crop = _clean_ink(crop, peak, settings)

    # Square frame around the crop, so scaling keeps the aspect ratio.
    height, width = crop.shape
    side = max(height, width)
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = crop

    # Strokes are measured and evened at a working resolution, then scaled to the box.
    work_side = settings.box * settings.work_scale
    work = np.asarray(
        Image.fromarray(np.uint8(square * 255.0 + 0.5)).resize(
            (work_side, work_side), Image.BILINEAR
        )
    )
    if settings.stroke_width > 0:
        work = _even_strokes(work, settings)
    glyph = Image.fromarray(work).resize((settings.box, settings.box), Image.BILINEAR)
    if settings.blur_radius > 0:
        glyph = glyph.filter(ImageFilter.GaussianBlur(settings.blur_radius))

    out = np.zeros((settings.size, settings.size), dtype=np.float32)
    offset = (settings.size - settings.box) // 2
    out[offset : offset + settings.box, offset : offset + settings.box] = (
        np.asarray(glyph, dtype=np.float32) / 255.0
    )
    peak = float(out.max())
    if peak > 0:
        out /= peak
    # 8-bit levels: training stores its normalized images as uint8, so the handler must hand the
    # model the same levels, not values a rounding away from them.
    return np.floor(out * 255.0 + 0.5) / 255.0


def canvas_to_glyph(
    data: bytes,
    settings: GlyphSettings = GlyphSettings(),
    limits: ImageLimits = ImageLimits(),
) -> np.ndarray:
    """Encoded canvas bytes -> normalized glyph: what the handler does to each request.

    The same as ``normalize_glyph(ink_map(decode_image(data, limits)), settings)``, bit for bit;
    an 8-bit image stays 8-bit until it is cropped to its ink (a third of the work on a canvas).
    """
    image = decode_image(data, limits)
    levels = _ink_levels(image)
    if levels is None:
        return normalize_glyph(ink_map(image), settings)
    return _normalize_levels(*levels, settings)
