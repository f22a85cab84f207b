"""PNG decoding by libspng (through pyspng) for the PNGs it decodes exactly as Pillow does.

Pillow inflates PNG data with the system's zlib, and on a canvas that is most of its decoding:
the pixels of a 280x280 canvas are 78,400 bytes (greyscale) or 313,600 bytes (RGBA) packed into
3-4 KB, which zlib 1.2.13 inflates in 0.09 and 0.55 ms of Pillow's 0.20 and 0.78. libspng
(libspng.org) decodes the same canvases in 0.17 and 0.57 ms (``make bench-levers``; README,
"Benchmarks", "Levers").

Only a *plain* PNG (:func:`plain_mode`) goes this way: 8-bit greyscale, RGB or RGBA, not
interlaced, laid out as canvases and Pillow write it (IHDR first, then chunks that do not change
the pixels Pillow decodes, then the image data and IEND), every chunk's CRC intact. Pillow decodes
everything else (a palette, tRNS transparency, APNG frames, EXIF or XMP orientation, text, chunks
after the image data, which Pillow reads and validates) and anything libspng refuses, so it
decodes or refuses those files as before. libspng is more lenient on one thing: it does not check
the zlib stream's own checksum (adler32), so a PNG whose chunks are intact but whose compressed
data is not (which a transmission error does not produce, only a broken encoder or a crafted file)
is decoded where Pillow refused it.
"""

from __future__ import annotations

import struct
import zlib
from typing import Iterator

import pyspng
from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODES = {0: "L", 2: "RGB", 6: "RGBA"}  # PNG colour type -> Pillow's mode, at 8 bits a sample
# Chunks before the image data that do not change the pixels Pillow decodes (it validates them
# when it opens the file, before libspng is asked, and records them in Image.info).
PLAIN_CHUNKS = frozenset({b"sRGB", b"gAMA", b"cHRM", b"iCCP", b"sBIT", b"pHYs", b"tIME"})


def chunks(data: bytes) -> Iterator[tuple[bytes, bytes, bool]]:
    """The (type, data, whether its CRC is intact) of each chunk of a PNG file, in order, up to
    the first one that runs past the end of ``data``."""
    position = len(SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        start = position + 8
        if start + length + 4 > len(data):
            return
        body = data[start : start + length]
        (crc,) = struct.unpack_from(">I", data, start + length)
        yield kind, body, zlib.crc32(body, zlib.crc32(kind)) == crc
        position = start + length + 4


def plain_mode(data: bytes) -> str | None:
    """Pillow's mode of the image in ``data`` (``L``, ``RGB`` or ``RGBA``) when it is a plain PNG:
    one IHDR, first, for 8 bits a sample and no interlacing; then only :data:`PLAIN_CHUNKS`; then
    IDAT chunks, one after another, and IEND; every CRC intact. Else None."""
    if not data.startswith(SIGNATURE):
        return None
    mode, in_data = None, False
    for index, (kind, body, intact) in enumerate(chunks(data)):
        if not intact or (kind == b"IHDR") != (index == 0):
            return None
        if kind == b"IHDR":
            if len(body) != 13:
                return None
            depth, colour, _, _, interlace = body[8:13]
            mode = MODES.get(colour) if depth == 8 and interlace == 0 else None
        elif kind == b"IDAT":
            in_data = True
        elif kind == b"IEND":
            return mode if in_data else None
        elif in_data or kind not in PLAIN_CHUNKS:
            return None
    return None


def decode_png(data: bytes) -> Image.Image | None:
    """The image in ``data`` decoded by libspng, as a Pillow image of mode ``L``, ``RGB`` or
    ``RGBA`` whose pixels are the ones Pillow decodes, when ``data`` is a plain PNG
    (:func:`plain_mode`) that libspng can decode; else None, for Pillow to decode it or to
    report what is wrong with it. The caller checks the image's size before."""
    if plain_mode(data) is None:
        return None
    try:
        pixels = pyspng.load(data)
    except RuntimeError:  # how pyspng reports every libspng error (a corrupt or truncated stream)
        return None
    return Image.fromarray(pixels)
