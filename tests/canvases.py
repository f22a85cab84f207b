"""Drawings and hostile files for the tests: what users send, good and bad.

Characters are drawn with PIL the way a person draws on a canvas (a few thick strokes), so a
trained recognizer must read them. The hostile files are built byte by byte where PIL refuses to
make them (a header that lies about the size, a real decompression bomb). Photos of paper, EXIF
orientation and layered exports are what people send from phones and image editors.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from training.strokes import strokes_png

# Strokes in canvas fractions (x, y from the top left); "ellipse" is a bounding box.
STROKES: dict[str, list[tuple[str, list[tuple[float, float]]]]] = {
    "0": [("ellipse", [(0.3, 0.15), (0.7, 0.85)])],
    "1": [("line", [(0.5, 0.15), (0.5, 0.85)])],
    "7": [("line", [(0.25, 0.18), (0.75, 0.18), (0.42, 0.85)])],
    "L": [("line", [(0.35, 0.15), (0.35, 0.85), (0.72, 0.85)])],
    "T": [("line", [(0.2, 0.18), (0.8, 0.18)]), ("line", [(0.5, 0.18), (0.5, 0.85)])],
    "O": [("ellipse", [(0.25, 0.15), (0.75, 0.85)])],
    "-": [("line", [(0.25, 0.5), (0.75, 0.52)])],  # a dash: no character of any recognizer
    "4": [("line", [(0.6, 0.15), (0.25, 0.62), (0.75, 0.62)]), ("line", [(0.6, 0.4), (0.6, 0.85)])],
    # A 5 in two strokes, its bar drawn apart from its body; an i with its dot.
    "5": [("line", [(0.36, 0.08), (0.72, 0.08)]),
          ("line", [(0.36, 0.2), (0.34, 0.48), (0.55, 0.44), (0.68, 0.56), (0.67, 0.74), (0.5, 0.85), (0.32, 0.8)])],
    "i": [("dot", [(0.5, 0.2)]), ("line", [(0.5, 0.4), (0.5, 0.85)])],
    # Block capitals whose strokes run along the canvas's edges when they fill it (filling()).
    "E": [("line", [(0.72, 0.15), (0.3, 0.15), (0.3, 0.85), (0.72, 0.85)]), ("line", [(0.3, 0.5), (0.62, 0.5)])],
    "F": [("line", [(0.72, 0.15), (0.3, 0.15), (0.3, 0.85)]), ("line", [(0.3, 0.48), (0.62, 0.48)])],
    "H": [("line", [(0.28, 0.15), (0.28, 0.85)]), ("line", [(0.72, 0.15), (0.72, 0.85)]),
          ("line", [(0.28, 0.5), (0.72, 0.5)])],
    "Z": [("line", [(0.28, 0.15), (0.72, 0.15), (0.28, 0.85), (0.72, 0.85)])],
}


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def drawing(char: str = "7", side: int = 280, width: int = 20) -> Image.Image:
    """``char`` in black ink on a white ``side`` x ``side`` canvas (greyscale)."""
    image = Image.new("L", (side, side), 255)
    pen = ImageDraw.Draw(image)
    for kind, points in STROKES[char]:
        xy = [(x * side, y * side) for x, y in points]
        if kind == "ellipse":
            pen.ellipse(xy, outline=0, width=width)
        elif kind == "dot":
            (x, y), radius = xy[0], width * 0.6
            pen.ellipse([(x - radius, y - radius), (x + radius, y + radius)], fill=0)
        else:
            pen.line(xy, fill=0, width=width, joint="curve")
    return image


def drawing_png(char: str = "7", **kwargs) -> bytes:
    return encode(drawing(char, **kwargs))


def filling(char: str, style: str, margin: int = 0, side: int = 280, width: int = 20) -> bytes:
    """``char`` (of :data:`STROKES`, lines only) stretched to fill a ``side`` x ``side`` canvas, the
    outside of its strokes ``margin`` pixels from the canvas's edges, drawn anti-aliased with a
    round pen ``width`` pixels wide in ``style`` (:data:`training.canvas.CANVAS_STYLES`), as the
    pen data is drawn: a big letter drawn to the very edges of the pad."""
    points = np.concatenate([np.array(line) for _, line in STROKES[char]])
    low, high = points.min(axis=0), points.max(axis=0)
    start, span = margin + width / 2, side - 2 * margin - width
    strokes = [start + (np.array(line) - low) / (high - low) * span for _, line in STROKES[char]]
    return strokes_png(strokes, width, (side, side), style)


def text_drawing(
    chars: str, gaps: Sequence[int] | int = 30, heights: Sequence[float] | None = None,
    height: int = 120, width: int = 10, margin: int = 40,
) -> Image.Image:
    """``chars`` (of :data:`STROKES`, " " for a wide gap) side by side in black on a white
    canvas, each drawn as :func:`drawing` draws it and cropped to its ink: ``gaps[i]`` pixels of
    paper after character ``i`` (negative: touching), character ``i`` ``heights[i]`` times
    ``height`` pixels tall (all bottoms on one line), strokes ``width`` pixels wide; ``gaps``
    (one fewer than the characters) or one gap for all."""
    drawn = [c for c in chars if c != " "]
    gaps = [gaps] * len(drawn) if isinstance(gaps, int) else [*gaps, 0]  # nothing after the last
    for index in [i - chars[:i].count(" ") - 1 for i, c in enumerate(chars) if c == " "]:
        gaps[index] += 3 * height // 2
    heights = heights or [1.0] * len(drawn)
    crops = []
    for char, scale in zip(drawn, heights):
        ink = Image.eval(drawing(char, side=int(height * scale * 1.4), width=int(width * 1.4)), lambda v: 255 - v)
        crops.append(ink.crop(ink.getbbox()))
    total = sum(crop.width for crop in crops) + sum(gaps[: len(crops) - 1]) + 2 * margin
    canvas = Image.new("L", (total, height + 2 * margin), 0)
    x = margin
    for crop, gap in zip(crops, gaps):
        canvas.paste(Image.new("L", crop.size, 255), (x, margin + height - crop.height), mask=crop)
        x += crop.width + gap
    return Image.eval(canvas, lambda v: 255 - v)


def png_with_declared_size(width: int, height: int) -> bytes:
    """A small valid PNG whose header is rewritten to claim ``width`` x ``height``: decoding it
    would allocate the claimed size, so it must be refused from the header alone."""
    png = bytearray(encode(Image.new("L", (8, 8), 255)))
    # Signature (8 bytes), then the IHDR chunk: length (4), type (4), width (4), height (4), ...
    png[16:24] = struct.pack(">II", width, height)
    ihdr_end = 8 + 8 + 13
    png[ihdr_end : ihdr_end + 4] = struct.pack(">I", zlib.crc32(bytes(png[12:ihdr_end])))
    return bytes(png)


def decompression_bomb(side: int = 8000) -> bytes:
    """A real PNG of ``side`` x ``side`` white pixels: ~64 MB once decoded, ~60 kB on the wire."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\xff" * side  # filter byte, then one row of white
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def sixteen_bit_png(char: str = "7") -> bytes:
    grey = drawing(char)
    return encode(grey.point(lambda value: value * 257, mode="I").convert("I;16"))


def cmyk_jpeg(char: str = "7") -> bytes:
    return encode(drawing(char).convert("CMYK"), "JPEG", quality=95)


def animated_gif(char: str = "7") -> bytes:
    """The drawing as the first frame, then a blank frame: only the first one counts."""
    first = drawing(char).convert("P")
    blank = Image.new("P", first.size, color=first.getpixel((0, 0)))
    return encode(first, "GIF", save_all=True, append_images=[blank], duration=100, loop=0)


def transparent_sketch(char: str = "7") -> bytes:
    """Black ink on a transparent background, like Gradio's Sketchpad."""
    alpha = Image.eval(drawing(char), lambda value: 255 - value)
    sketch = Image.new("RGBA", alpha.size, (0, 0, 0, 0))
    sketch.putalpha(alpha)
    return encode(sketch)


def uniform_png(value: int, side: int = 280) -> bytes:
    """A canvas of one grey level: blank (255) or fully inked (0)."""
    return encode(Image.new("L", (side, side), value))


# -- what people send from the field: photos, phones' EXIF orientation, layered exports --------

ORIENTATION = 0x0112  # the EXIF tag
# EXIF orientation -> the transpose that turns what is shown into what is stored (the inverse of
# the one a viewer applies).
STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def exif_oriented(shown: Image.Image, orientation: int, fmt: str = "JPEG") -> bytes:
    """``shown`` stored as a phone stores it: pixels turned, and an EXIF Orientation tag that
    tells viewers how to turn them back (``orientation`` 1-8)."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    stored = shown.transpose(STORED_AS[orientation]) if orientation in STORED_AS else shown
    return encode(stored.convert("RGB"), fmt, exif=exif)


def layered(char: str = "7", background: int = 255, alpha: int = 64, ink: int = 0, side: int = 280) -> bytes:
    """Opaque ink (grey ``ink``) over a background layer of grey ``background`` at opacity
    ``alpha``: what a layered editor or a canvas with a translucent fill exports (RGBA PNG)."""
    coverage = Image.eval(drawing(char, side=side), lambda value: 255 - value)
    image = Image.new("RGBA", coverage.size, (background,) * 3 + (alpha,))
    image.paste(Image.new("RGBA", coverage.size, (ink,) * 3 + (255,)), mask=coverage)
    return encode(image)


def paper_photo(
    char: str | None = "7",
    desk: tuple[str, ...] = (),
    size: tuple[int, int] = (640, 480),
    noise: float = 4.0,
    seed: int = 0,
    exposure: float = 1.0,
) -> bytes:
    """A phone photo of a sheet (JPEG): light falling off by 35% across it, sensor noise of
    ``noise`` grey levels, a slight blur, ``char`` in dark ink filling 3/4 of the frame's height
    (``None``: a blank sheet) and a dark desk along the ``desk`` edges ("top", "bottom", "left",
    "right"), 12% of the frame wide; ``exposure`` scales the light (0.45: a dim room, the paper
    at grey 100 or darker)."""
    rng = np.random.default_rng(seed)
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width] / max(width, height)
    page = 230.0 * exposure * (1.0 - 0.35 * (0.7 * xs + 0.3 * ys))
    if char is not None:
        paper = np.asarray(drawing(char, side=min(size) * 3 // 4, width=14), dtype=np.float32) / 255.0
        top, left = (height - paper.shape[0]) // 2, (width - paper.shape[1]) // 2
        window = np.s_[top : top + paper.shape[0], left : left + paper.shape[1]]
        page[window] *= 0.25 + 0.75 * paper  # ink takes 75% of the light
    band = int(0.12 * min(size))
    edges = {"top": np.s_[:band, :], "bottom": np.s_[-band:, :], "left": np.s_[:, :band], "right": np.s_[:, -band:]}
    for edge in desk:
        page[edges[edge]] = 45.0 + 10.0 * rng.standard_normal(page[edges[edge]].shape)
    page += noise * rng.standard_normal(page.shape)
    photo = Image.fromarray(np.uint8(np.clip(page, 0, 255))).filter(ImageFilter.GaussianBlur(1))
    return encode(photo.convert("RGB"), "JPEG", quality=90)
