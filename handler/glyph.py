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
of the decoded image, but keeps an 8-bit image as its levels and a 256-entry ink table, so a
canvas is never turned into floats: the float32 operations on its ink are done once on the 256
values, as lookup tables (``tests/test_bench_glyph.py`` checks that the results are identical,
bit for bit).

Everything the user can get wrong raises :class:`InputError` (a ``ValueError``) with a message
that says what to fix; the handler turns it into an HTTP 4xx.
"""

from __future__ import annotations

import functools
import io
import struct
from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError
from scipy import ndimage

from handler.png import decode_png

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
    """Decode PNG, JPEG, WebP, GIF (first frame) or BMP bytes into a PIL image: by Pillow, or by
    zlib-ng and libspng for a plain PNG such as a canvas's (:func:`handler.png.decode_png`, the
    same pixels).

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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error, IndexError) as exc:
        # struct.error, IndexError: Pillow reading a chunk shorter than its kind's (a PNG's gAMA, iCCP)
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
    if image.format == "PNG":
        plain = decode_png(data)  # a canvas's PNG: its pixels, faster (handler/png.py)
        if plain is not None:
            return plain  # nothing to turn: a plain PNG holds no EXIF or XMP orientation
    try:
        image.seek(0)  # animated GIF or WebP: the first frame
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, Image.DecompressionBombError) as exc:
        raise InputError(f"the image could not be decoded (truncated or corrupt): {exc}") from exc
    try:
        # Phones store photos sideways or upside down with an EXIF (or XMP) Orientation tag that
        # every viewer applies; the model must see the drawing the way the user sees it.
        ImageOps.exif_transpose(image, in_place=True)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error) as exc:
        # struct.error: an EXIF block shorter than its header (a PNG's eXIf chunk of 4 bytes)
        raise InputError(f"the image's EXIF metadata is corrupt: {exc}") from exc
    return image


LEVELS = np.arange(256, dtype=np.float32) / 255.0  # each 8-bit value as a level in [0, 1]


def _border(values: np.ndarray) -> np.ndarray:
    """The pixels along the four edges of a 2-D array."""
    return np.concatenate([values[0], values[-1], values[:, 0], values[:, -1]])


TRANSPARENT_BACKGROUND = 0.1  # a background less opaque than this is transparent: ink = alpha
FLAT_BORDER = 0.5  # a canvas: at least this share of its border is exactly one grey level
EDGE_INK = 0.9  # ... and no edge is this much ink (a desk or a scanner lid along a photo's edge) ...
PEN_SHARE = 0.5  # ... unless that ink is one exact level for this share of it: a pen's stroke
INK_AREA = 0.5  # ... and ink covers less than this share of it
STROKE_EXTENT = 0.02  # a stroke this long (share of the image's longer side) is a drawing ...
MIN_STROKE = 8  # ... and at least this many pixels long; anything smaller is a speck
ONE_LEVEL_BORDER = 0.9  # a border with less of one level than this may hold strokes along its edges


def _border_counts(values: np.ndarray) -> np.ndarray:
    """How many pixels along the border of an 8-bit image have each of the 256 values."""
    return np.bincount(_border(values), minlength=256)


def _median_level(counts: np.ndarray) -> np.float32:
    """``np.median(LEVELS[values])``, bit for bit, of the 8-bit values counted in ``counts``: the
    middle level, or for an even count the float32 mean of the two middle ones, as NumPy computes
    it. Found in the histogram because sorting a border's floats costs more than all the rest of
    the border's work on each request."""
    cumulative = np.cumsum(counts)
    size = int(cumulative[-1])
    lower, upper = np.searchsorted(cumulative, [(size - 1) // 2, size // 2], side="right")
    return (LEVELS[lower] + LEVELS[upper]) / np.float32(2)


def _background_alpha(alpha: np.ndarray) -> float:
    """The opacity of the image's background (``alpha`` 8-bit): the median along its border."""
    return float(_median_level(_border_counts(alpha)))


def _composite(rgba: Image.Image, backdrop: int) -> Image.Image:
    """``rgba`` shown over an opaque grey ``backdrop`` (0 black, 255 white)."""
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (backdrop,) * 3 + (255,)), rgba)


def _contrast(grey: np.ndarray) -> float:
    """The strongest difference (8-bit levels) between a grey image and its border's median."""
    median = float(np.median(_border(grey)))
    return max(median - float(grey.min()), float(grey.max()) - median)


def _shown(rgba: Image.Image) -> Image.Image:
    """A partly transparent image as a viewer shows it: over white, like a page; over black when
    that shows the drawing with more contrast (light ink that would vanish on white)."""
    shown = [_composite(rgba, backdrop).convert("L") for backdrop in (255, 0)]
    return max(shown, key=lambda grey: _contrast(np.asarray(grey)))


def _luminance(image: Image.Image) -> np.ndarray:
    """Grey levels in [0, 1] of a 16-bit or float image."""
    if image.mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float32) / 65535.0
    grey = np.asarray(image, dtype=np.float32)
    low, high = float(grey.min()), float(grey.max())
    return (grey - low) / (high - low) if high > low else np.zeros_like(grey)


def _ink_levels(image: Image.Image) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """The ink map of an image with 8-bit levels, as ``(values, table, flat)``: one 8-bit channel
    and the ink of each of its 256 values, so that the ink map is ``table[values]``; ``flat`` is
    true when the background is one exact level, as on a canvas (a photo's never is: sensor noise,
    uneven light). ``None`` for 16-bit and float images, whose ink is computed from their own
    levels.

    The ink is the alpha channel on a transparent background (opacity below
    :data:`TRANSPARENT_BACKGROUND`); otherwise the grey level's distance from the border's median
    grey (from the level that fills the canvas, :func:`_filling_level`, when the border is not
    mostly one level), a partly transparent image being judged as shown (:func:`_shown`), an
    opaque one as on white. Either way ``table`` is monotone, or falls then rises: the strongest ink of an image is
    the ink of its lowest or its highest value.
    """
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        # The raw encoder packs the alpha band straight into bytes: a third of the time of
        # getchannel("A") and np.asarray, which copies the channel twice.
        alpha = np.frombuffer(rgba.tobytes("raw", "A"), dtype=np.uint8).reshape(rgba.height, rgba.width)
        opacity = _background_alpha(alpha)
        if opacity < TRANSPARENT_BACKGROUND:
            return alpha, LEVELS, True
        image = _composite(rgba, 255) if opacity == 1.0 else _shown(rgba)
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        return None
    grey = np.asarray(image if image.mode == "L" else image.convert("L"))
    counts = _border_counts(grey)
    median = _median_level(counts)
    table = np.abs(LEVELS - median)
    # The border pixels within half a level of the median, counted per value: |level - median|
    # of each border pixel is the table's entry for its value.
    at_median = counts[table < 0.5 / 255].sum()
    flat = at_median >= FLAT_BORDER * counts.sum()
    if at_median < ONE_LEVEL_BORDER * counts.sum():
        fill = _filling_level(grey, counts)
        if fill is not None:
            table, flat = np.abs(LEVELS - LEVELS[fill]), True
    return grey, table, bool(flat)


def _filling_level(grey: np.ndarray, border: np.ndarray) -> int | None:
    """The background of a canvas (``grey`` 8-bit, its border's histogram ``border``) whose
    border is not one level, as when strokes run along two or three whole edges (a big ``H`` or
    ``E`` filling it) and the border's median is the pen's, or between the pen's and the
    paper's: the 8-bit value that fills at least :data:`INK_AREA` of the image and at least
    ``1 - ONE_LEVEL_BORDER`` of its border; ``None`` when no value does (a photo). Reads every
    pixel: called only for such borders."""
    counts = np.bincount(grey.ravel(), minlength=256)
    fill = int(np.argmax(counts))
    fills = counts[fill] >= INK_AREA * grey.size and border[fill] >= (1 - ONE_LEVEL_BORDER) * border.sum()
    return fill if fills else None


def ink_map(image: Image.Image) -> np.ndarray:
    """Where the ink is, as float32 in [0, 1] (1 = strongest ink), for any canvas style.

    The background is whatever fills the image's border: transparent, light or dark. Ink is the
    difference from it, so black-on-white, white-on-black and coloured ink all work.
    """
    return _ink_of(image, _ink_levels(image))


def _ink_of(image: Image.Image, levels: tuple[np.ndarray, np.ndarray, bool] | None) -> np.ndarray:
    """:func:`ink_map` of ``image`` whose :func:`_ink_levels` are ``levels``."""
    if levels is None:
        grey = _luminance(image)
        return np.abs(grey - np.median(_border(grey))).astype(np.float32, copy=False)
    values, table, _ = levels
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


def _morph(image: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` 3x3 dilations (``steps`` > 0) or ``-steps`` erosions of a 2-D array, as one
    dilation or erosion by a (2 |steps| + 1)-pixel square, separable; a window that crosses the
    edge sees only the pixels inside (as with the edge replicated), so repeated 3x3 windows and
    the one large window pick from the same pixels. In place on copies."""
    pick = np.maximum if steps > 0 else np.minimum
    rows = image.copy()
    for shift in range(1, abs(steps) + 1):
        pick(rows[shift:], image[:-shift], out=rows[shift:])
        pick(rows[:-shift], image[shift:], out=rows[:-shift])
    both = rows.copy()
    for shift in range(1, abs(steps) + 1):
        pick(both[:, shift:], rows[:, :-shift], out=both[:, shift:])
        pick(both[:, :-shift], rows[:, shift:], out=both[:, :-shift])
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
    return _morph(work, steps) if steps else work


BLANK = "the drawing is blank: draw a character with a visible stroke"
BLANK_PHOTO = "photograph one character written with a visible stroke, clear of the edges of the sheet and of the picture"


def bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns holding the ``True`` pixels of a 2-D boolean mask that has some."""
    width = mask.shape[1]
    # The first and last True in reading order give the rows: argmax of booleans stops at the
    # first, and bytes.rfind searches a copy from the end (NumPy has no backward search), both
    # far cheaper than reducing every row.
    first = int(np.argmax(mask))
    last = mask.tobytes().rfind(1)
    cols = np.flatnonzero(mask[first // width : last // width + 1].any(axis=0))  # ink only in those rows
    return slice(first // width, last // width + 1), slice(cols[0], cols[-1] + 1)


def _ink_box(mask: np.ndarray, settings: GlyphSettings) -> tuple[slice, slice]:
    """The rows and columns holding the ink of ``mask`` (what survives the noise floor)."""
    if np.count_nonzero(mask) < max(1, settings.min_ink_fraction * mask.size):
        raise BlankImageError(BLANK)
    return bounding_box(mask)


def _strokes(mask: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, list[int]]:
    """The labels of ``mask``'s 8-connected components long enough to be strokes of a drawing
    on an image of ``shape`` (:data:`STROKE_EXTENT`, :data:`MIN_STROKE`), as a label image and
    the list of those labels."""
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    shortest = max(MIN_STROKE, STROKE_EXTENT * max(shape))
    long_enough = [
        index + 1
        for index, found in enumerate(ndimage.find_objects(labels))
        if found is not None and max(side.stop - side.start for side in found) >= shortest
    ]
    return labels, long_enough


def _drawing_box(mask: np.ndarray, count: int, settings: GlyphSettings) -> tuple[slice, slice]:
    """:func:`_ink_box` of a canvas, where the drawing, not the canvas, decides what is blank: ink
    of fewer than ``min_ink_fraction`` of the canvas's pixels (``count``) is still a drawing when
    one of its strokes is long enough (a thin pen on a large canvas); a speck is not."""
    if count == 0:
        raise BlankImageError(BLANK)
    box = bounding_box(mask)
    if count < max(1, settings.min_ink_fraction * mask.size) and not _strokes(mask[box], mask.shape)[1]:
        raise BlankImageError(BLANK)
    return box


def _is_canvas(levels: np.ndarray, mask: np.ndarray, count: int) -> bool:
    """Whether the ink found against a flat background (``mask``, ``count`` pixels, of an image
    whose ink or 8-bit values are ``levels``) is a drawing on a canvas: not most of the image, and
    no edge of the image covered with ink that has a photo's grain, as a desk or a scan's dark lid
    along an edge would have. A pen paints one level, so a stroke drawn along the edge of a
    canvas (a big ``T`` or ``L`` filling it) is one level for most of its length."""
    if count >= INK_AREA * mask.size:
        return False
    for edge in (np.s_[0], np.s_[-1], np.s_[:, 0], np.s_[:, -1]):
        # Most canvases cover no edge: the edge's ink levels are gathered only when one is.
        covered = np.count_nonzero(mask[edge]) >= EDGE_INK * mask[edge].size
        if covered and not _one_level(levels[edge][mask[edge]]):
            return False
    return True


def _one_level(ink: np.ndarray) -> bool:
    """Whether at least :data:`PEN_SHARE` of the 1-D array ``ink`` holds one exact value."""
    return int(np.unique(ink, return_counts=True)[1].max()) >= PEN_SHARE * ink.size


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


def _canvas_glyph(
    values: np.ndarray, table: np.ndarray, settings: GlyphSettings, maybe_photo: bool
) -> np.ndarray | None:
    """:func:`normalize_glyph` of the ink map ``table[values]`` (see :func:`_ink_levels`) of a
    canvas, with the same result when the canvas holds enough ink for it, but no pixel is made
    into a float before the output (the ink's float32 cleaning is done on the 256 values), and
    blank is decided by :func:`_drawing_box`. ``None`` when the image ``maybe_photo`` and the ink
    found is not a drawing on a canvas (:func:`_is_canvas`)."""
    peak = float(max(table[values.min()], table[values.max()]))
    _check_contrast(peak, settings)
    # The values that are ink: since the table is monotone or falls then rises, the faint ones
    # are one run [low, high] and two comparisons find the ink without a lookup per pixel.
    faint = np.flatnonzero(~(table > settings.noise_floor * peak))
    low, high = int(faint[0]), int(faint[-1])
    # On a light (dark) background the faint values run up to 255 (down from 0): one comparison.
    if high == 255:
        mask = values < low
    elif low == 0:
        mask = values > high
    else:
        mask = (values < low) | (values > high)
    count = int(np.count_nonzero(mask))
    if maybe_photo and not _is_canvas(values, mask, count):
        return None
    box = _drawing_box(mask, count, settings)
    # Each value's 8-bit level in the glyph's frame is computed once, on the 256 values, with the
    # very operations :func:`_glyph` applies to each pixel of a float crop.
    return _glyph_of_levels(np.take(_work_levels(table, peak, settings), values[box]), settings)


def _work_levels(ink: np.ndarray, peak: float, settings: GlyphSettings) -> np.ndarray:
    """Ink (float32) as the 8-bit levels the glyph is made from: cleaned (:func:`_clean_ink`)
    and rounded."""
    return np.uint8(_clean_ink(ink, peak, settings) * 255.0 + 0.5)


def _glyph(crop: np.ndarray, peak: float, settings: GlyphSettings) -> np.ndarray:
    """The glyph from the ink cropped to its bounding box (``peak``: the strongest ink)."""
    # Only the crop is cleaned: on a large canvas most pixels are background.
    return _glyph_of_levels(_work_levels(crop, peak, settings), settings)


def _glyph_of_levels(crop: np.ndarray, settings: GlyphSettings) -> np.ndarray:
    """The glyph from the cleaned ink of its bounding box as 8-bit levels (:func:`_work_levels`)."""
    # Square frame around the crop, so scaling keeps the aspect ratio.
    height, width = crop.shape
    side = max(height, width)
    square = np.zeros((side, side), dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = crop

    # Strokes are measured and evened at a working resolution, then scaled to the box.
    work_side = settings.box * settings.work_scale
    work = np.asarray(Image.fromarray(square).resize((work_side, work_side), Image.BILINEAR))
    if settings.stroke_width > 0:
        work = _even_strokes(work, settings)
    glyph = Image.fromarray(work).resize((settings.box, settings.box), Image.BILINEAR)
    if settings.blur_radius > 0:
        glyph = glyph.filter(ImageFilter.GaussianBlur(settings.blur_radius))
    glyph = np.asarray(glyph)

    out = np.zeros((settings.size, settings.size), dtype=np.float32)
    offset = (settings.size - settings.box) // 2
    out[offset : offset + settings.box, offset : offset + settings.box] = np.take(
        _output_levels(int(glyph.max())), glyph
    )
    return out


@functools.lru_cache(maxsize=256)
def _output_levels(strongest: int) -> np.ndarray:
    """What each 8-bit level of a glyph whose strongest level is ``strongest`` becomes in the
    output (float32, read-only): scaled so the strongest is 1 and rounded to 8-bit levels k / 255.
    Training stores its normalized images as uint8, so the handler must hand the model the same
    levels, not values a rounding away from them. The float32 operations (level / strongest, then
    floor(x * 255 + 0.5) / 255) are those of each pixel, done once on the 256 levels."""
    levels = LEVELS / LEVELS[strongest] if strongest > 0 else LEVELS
    levels = np.floor(levels * 255.0 + 0.5) / 255.0
    levels.flags.writeable = False
    return levels


def canvas_ink(
    data: bytes,
    settings: GlyphSettings = GlyphSettings(),
    limits: ImageLimits = ImageLimits(),
) -> np.ndarray:
    """The ink map (float32 [H, W] in [0, 1], 1 = the strongest ink) of a drawing on a canvas, as
    :func:`ink_map` of the decoded image gives it, after the blank rules of :func:`canvas_to_glyph`
    for canvases. For reading several characters on one canvas (:mod:`handler.text`), each of
    which then goes through :func:`normalize_glyph` as a single character does.

    Raises :class:`InputError` for undecodable images and for images whose ink covers half of
    them or an edge with a photo's grain (photos of paper: text is read on canvases only),
    :class:`BlankImageError` when there is no drawing.
    """
    image = decode_image(data, limits)
    levels = _ink_levels(image)
    maybe_photo = min(image.height, image.width) >= MIN_PHOTO_SIDE
    ink = _ink_of(image, levels)
    peak = float(ink.max())
    _check_contrast(peak, settings)
    mask = ink > settings.noise_floor * peak
    count = int(np.count_nonzero(mask))
    # What canvas_to_glyph reads as a photo (no one level around the border: sensor noise, uneven
    # light; or ink over half the image, or grainy ink along an edge) has no ink map to segment.
    if maybe_photo and ((levels is not None and not levels[2]) or not _is_canvas(ink, mask, count)):
        raise InputError(
            "text is read on drawings on a canvas (one background colour), not on photos of "
            "paper: draw the characters on a canvas, or send them one at a time"
        )
    _drawing_box(mask, count, settings)
    return ink


MIN_PHOTO_SIDE = 64  # a smaller image is a canvas whatever its background (an icon, a thumbnail)
PHOTO_SIDE = 512  # photos are analysed with their longer side reduced to this many pixels
PAPER_SHARE = 0.5  # paper: lighter than this share of the paper's level (the desk is darker)
SEED_NOISE = 8.0  # ink: a stroke has pixels this many noise deviations darker than the paper ...
GROW_NOISE = 4.0  # ... and extends over its pixels this many deviations darker
MIN_FAINT_INK = 0.04  # ... and at least this much darker (share of the paper's light)


def _paper(grey: np.ndarray) -> np.ndarray:
    """Where the sheet is in a photo (``grey`` float, light paper): the largest connected region
    lighter than :data:`PAPER_SHARE` of the paper's level (its 90th percentile), with what it
    encloses (the ink). A desk or a dark shadow along the edges is outside it."""
    light = grey > PAPER_SHARE * float(np.percentile(grey, 90))
    labels, count = ndimage.label(light)
    if count == 0:
        return light
    largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    return ndimage.binary_fill_holes(labels == largest)


INK_TAIL = 0.1  # percent of a photo's pixels at either end of its levels that tell where the ink is


def _light_ink(grey: np.ndarray) -> bool:
    """Whether a photo (``grey`` float levels) shows light ink on a darker background (chalk on a
    board): its lightest pixels (the top :data:`INK_TAIL` percent) lie farther above its median
    level, the background's, than its darkest lie below it. How light the background is says
    nothing: a dim photo of paper is darker than a brightly lit board."""
    low, middle, high = np.percentile(grey, [INK_TAIL, 50.0, 100.0 - INK_TAIL])
    return bool(high - middle > middle - low)


def _photo_glyph(values: np.ndarray, settings: GlyphSettings) -> np.ndarray:
    """The glyph of a photo or scan of a drawing on paper (``values``: its 8-bit grey levels),
    whose background is not one flat colour: the paper's light is estimated everywhere from the
    image (a grey closing wider than any stroke follows uneven light), the ink is what is clearly
    darker than it (hysteresis thresholds in units of the paper's own noise, a robust median
    absolute deviation) inside the sheet (:func:`_paper`), and strokes touching the sheet's edge
    or too short to be strokes (:func:`_strokes`) are dropped. Light ink on a darker board
    (:func:`_light_ink`) is inverted first.

    Raises :class:`BlankImageError` when no stroke is found: a blank sheet, noise, uneven light.
    """
    image = Image.fromarray(values)
    scale = PHOTO_SIDE / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BOX)
    grey = ndimage.gaussian_filter(np.asarray(image, dtype=np.float32) / 255.0, 1.0)  # sensor noise
    if _light_ink(grey):  # chalk on a board
        grey = 1.0 - grey
    paper = _paper(grey)
    window = max(3, max(grey.shape) // 10)
    light = ndimage.grey_closing(grey, size=(window, window))  # the paper's light, strokes closed
    darkness = np.where(paper, (light - grey) / np.maximum(light, 1.0 / 255), 0.0)
    on_paper = darkness[paper]
    if on_paper.size == 0:
        raise BlankImageError("no sheet of paper or drawing found in the photo: " + BLANK_PHOTO)
    level = float(np.median(on_paper))
    noise = 1.4826 * float(np.median(np.abs(on_paper - level)))
    weak = darkness > level + max(GROW_NOISE * noise, MIN_FAINT_INK)
    strong = darkness > level + max(SEED_NOISE * noise, settings.min_contrast)
    labels, strokes = _strokes(weak, grey.shape)
    seeded = set(np.unique(labels[strong]).tolist())
    rim = paper & ~ndimage.binary_erosion(paper)  # the sheet's edge, and the frame's
    cut = set(np.unique(labels[rim]).tolist())
    kept = [label for label in strokes if label in seeded and label not in cut]
    if not kept:
        raise BlankImageError("no drawing found on the paper: " + BLANK_PHOTO)
    mask = np.isin(labels, kept)
    box = bounding_box(mask)
    ink = np.where(mask[box], darkness[box], 0.0).astype(np.float32)
    return _glyph(ink, float(ink.max()), settings)


def canvas_to_glyph(
    data: bytes,
    settings: GlyphSettings = GlyphSettings(),
    limits: ImageLimits = ImageLimits(),
) -> np.ndarray:
    """Encoded image bytes -> normalized glyph: what the handler does to each request.

    A canvas (a flat background, :func:`_ink_levels` and :func:`_is_canvas`, or any image under
    :data:`MIN_PHOTO_SIDE` pixels a side) gives
    ``normalize_glyph(ink_map(decode_image(data, limits)), settings)``, bit for bit, whenever
    that has ink enough; an 8-bit image stays 8-bit (its ink's float operations are done on its
    256 values), and a drawing with few ink pixels on a large canvas is read when one stroke
    is long enough. Anything else is read as a photo of paper (:func:`_photo_glyph`).

    Raises :class:`InputError` for undecodable images, :class:`BlankImageError` when there is no
    drawing.
    """
    image = decode_image(data, limits)
    levels = _ink_levels(image)
    if levels is None:
        return normalize_glyph(ink_map(image), settings)
    values, table, flat = levels
    maybe_photo = min(values.shape) >= MIN_PHOTO_SIDE
    glyph = None if maybe_photo and not flat else _canvas_glyph(values, table, settings, maybe_photo)
    return _photo_glyph(values, settings) if glyph is None else glyph
