"""Drawings and hostile files for the serving tests: what users send, good and bad.

Characters are drawn with PIL the way a person draws on a canvas (a few thick strokes), so a
trained recognizer must read them. The hostile files are built byte by byte where PIL refuses to
make them (a header that lies about the size, a real decompression bomb).
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, ImageDraw

# Strokes in canvas fractions (x, y from the top left); "ellipse" is a bounding box.
STROKES: dict[str, list[tuple[str, list[tuple[float, float]]]]] = {
    "0": [("ellipse", [(0.3, 0.15), (0.7, 0.85)])],
    "1": [("line", [(0.5, 0.15), (0.5, 0.85)])],
    "7": [("line", [(0.25, 0.18), (0.75, 0.18), (0.42, 0.85)])],
    "L": [("line", [(0.35, 0.15), (0.35, 0.85), (0.72, 0.85)])],
    "T": [("line", [(0.2, 0.18), (0.8, 0.18)]), ("line", [(0.5, 0.18), (0.5, 0.85)])],
    "O": [("ellipse", [(0.25, 0.15), (0.75, 0.85)])],
    "-": [("line", [(0.25, 0.5), (0.75, 0.52)])],  # a dash: no character of any recognizer
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
        else:
            pen.line(xy, fill=0, width=width, joint="curve")
    return image


def drawing_png(char: str = "7", **kwargs) -> bytes:
    return encode(drawing(char, **kwargs))


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
