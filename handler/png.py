"""PNG decoding by libspng (through pyspng) for the PNGs it decodes exactly as Pillow does.

Pillow inflates PNG data with the system's zlib, and on a canvas that is most of its decoding:
the pixels of a 280x280 canvas are 78,400 bytes (greyscale) or 313,600 bytes (RGBA) packed into
3-4 KB, which zlib 1.2.13 inflates in 0.09 and 0.55 ms of Pillow's 0.20 and 0.78. libspng
(libspng.org) decodes the same canvases in 0.17 and 0.57 ms (``make bench-levers``; README,
"Benchmarks", "Levers").

Only a *plain* PNG (:func:`plain_mode`) goes this way: 8-bit greyscale, RGB or RGBA, not
interlaced, with no chunk that changes what Pillow makes of the image (a palette, tRNS
transparency, APNG frames, EXIF or XMP orientation, text), which is what browsers' canvases and
Pillow write. Anything else, and anything libspng refuses, is left to Pillow, which decodes it or
says what is wrong with it, so the service accepts and refuses the same files as before.
"""

from __future__ import annotations

import struct
from typing import Iterator

import pyspng
from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODES = {0: "L", 2: "RGB", 6: "RGBA"}  # PNG colour type -> Pillow's mode, at 8 bits a sample
# Chunks that do not change the pixels Pillow decodes (it only records them in Image.info).
PLAIN_CHUNKS = frozenset({b"IHDR", b"IDAT", b"IEND", b"sRGB", b"gAMA", b"cHRM", b"iCCP", b"sBIT", b"pHYs", b"tIME"})


def chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (type, data) of each chunk of a PNG file, in order, up to the first one that runs past
    the end of ``data`` (CRCs are not checked)."""
    position = len(SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        start = position + 8
        if start + length + 4 > len(data):
            return
        yield kind, data[start : start + length]
        position = start + length + 4


def plain_mode(data: bytes) -> str | None:
    """Pillow's mode of the image in ``data`` (``L``, ``RGB`` or ``RGBA``) when it is a plain PNG:
    8 bits a sample, not interlaced, only :data:`PLAIN_CHUNKS`, complete up to ``IEND``; else
    None."""
    if not data.startswith(SIGNATURE):
        return None
    mode = None
    for kind, body in chunks(data):
        if kind not in PLAIN_CHUNKS:
            return None
        if kind == b"IHDR":
            if len(body) != 13:
                return None
            depth, colour, _, _, interlace = body[8:13]
            mode = MODES.get(colour) if depth == 8 and interlace == 0 else None
        elif kind == b"IEND":
            return mode
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
