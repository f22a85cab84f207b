"""PNG decoding by zlib-ng and libspng for the PNGs they decode exactly as Pillow does.

Every PNG decoder available as a wheel here inflates with zlib 1.2: Pillow's and OpenCV's wheels
load the system's ``libz.so.1`` (1.2.13 on Debian 12, although ``PIL.features`` reports the zlib-ng
Pillow was built with), and pyspng carries zlib 1.2.11. On a canvas, inflating is most of the
decoding: a 280x280 canvas's rows are 78,400 bytes (greyscale) or 313,600 bytes (RGBA) packed into
3-4 KB, which zlib 1.2.13 inflates in 0.09 and 0.54 ms and zlib-ng (python-zlib-ng) in 0.02 and
0.04 ms (``make bench-levers``). So a plain PNG (:func:`plain_png`) is inflated by zlib-ng, which
checks the stream's adler32 as every zlib does, and its rows, stored again without compression
(deflate's stored blocks, RFC 1951 section 3.2.4, which inflate as a copy), are unfiltered by
libspng (libspng.org). A transparent canvas then decodes in 0.24 ms instead of 0.57 (libspng
alone) or 0.78 (Pillow), a greyscale one in 0.15 instead of 0.17 or 0.20.

Only a *plain* PNG of at most :data:`MAX_PIXELS` goes this way: 8-bit greyscale, RGB or RGBA, not
interlaced, laid out as canvases and Pillow write it (IHDR first, then chunks that do not change
the pixels Pillow decodes, then the image data and IEND), every chunk's CRC intact, its image data
exactly the rows its header declares. Pillow decodes everything else (a palette, tRNS transparency,
APNG frames, EXIF or XMP orientation, text, chunks after the image data, which Pillow reads and
validates) and anything zlib-ng or libspng refuses, so it decodes or refuses those files as before.
"""

from __future__ import annotations

import struct
from typing import Iterator, NamedTuple

import pyspng
from PIL import Image
from zlib_ng import zlib_ng

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODES = {0: "L", 2: "RGB", 6: "RGBA"}  # PNG colour type -> Pillow's mode, at 8 bits a sample
BANDS = {"L": 1, "RGB": 3, "RGBA": 4}
# Larger images go to Pillow, which decodes into the image as it inflates. This path holds the
# rows three times over (inflated, stored, the stored PNG) beside the pixels libspng writes: a
# 1024x1024 RGBA canvas raises a process's peak memory by about 17 MB against Pillow's 5 MB, and
# it would be over 250 MB at the 4096x4096 limit.
MAX_PIXELS = 1 << 20
# Chunks before the image data that do not change the pixels Pillow decodes (when it opens the
# file, Pillow checks their CRC and parses those it knows; the PNG handed to libspng holds none).
PLAIN_CHUNKS = frozenset({b"sRGB", b"gAMA", b"cHRM", b"iCCP", b"sBIT", b"pHYs", b"tIME"})


class PlainPng(NamedTuple):
    """What decoding a plain PNG needs: Pillow's ``mode``, the IHDR chunk's 13 bytes
    (``header``) and the zlib stream of its IDAT chunks, joined (``stream``)."""

    mode: str
    header: bytes
    stream: bytes

    @property
    def size(self) -> tuple[int, int]:
        """Width and height, in pixels."""
        return struct.unpack_from(">II", self.header)

    @property
    def rows_bytes(self) -> int:
        """The size of the image's filtered rows (each one filter byte and its pixels' bytes)."""
        width, height = self.size
        return height * (1 + width * BANDS[self.mode])


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
        yield kind, body, zlib_ng.crc32(body, zlib_ng.crc32(kind)) == crc
        position = start + length + 4


def plain_png(data: bytes) -> PlainPng | None:
    """``data`` as a :class:`PlainPng` when it is one: one IHDR, first, for 8-bit greyscale, RGB
    or RGBA without interlacing; then only :data:`PLAIN_CHUNKS`; then IDAT chunks, one after
    another, and IEND; every CRC intact. Else None."""
    if not data.startswith(SIGNATURE):
        return None
    mode, header, stream, in_data = None, b"", bytearray(), False
    for index, (kind, body, intact) in enumerate(chunks(data)):
        if not intact or (kind == b"IHDR") != (index == 0):
            return None
        if kind == b"IHDR":
            if len(body) != 13:
                return None
            depth, colour, _, _, interlace = body[8:13]
            mode, header = (MODES.get(colour) if depth == 8 and interlace == 0 else None), body
        elif kind == b"IDAT":
            in_data = True
            stream += body  # one buffer: a file cut into many tiny IDAT chunks costs no object each
        elif kind == b"IEND":
            return PlainPng(mode, header, bytes(stream)) if mode and in_data else None
        elif in_data or kind not in PLAIN_CHUNKS:
            return None
    return None


def inflate_rows(png: PlainPng) -> bytes | None:
    """The filtered rows of ``png``, inflated by zlib-ng; None unless its stream is one whole
    zlib stream (adler32 checked) holding exactly :attr:`PlainPng.rows_bytes`. Never inflates
    more than that plus one byte, whatever the stream claims."""
    expected = png.rows_bytes
    inflater = zlib_ng.decompressobj()
    try:
        rows = inflater.decompress(png.stream, expected + 1)
    except zlib_ng.error:  # a corrupt stream, or a wrong adler32
        return None
    complete = inflater.eof and not inflater.unused_data
    return rows if complete and len(rows) == expected else None


def _chunk(kind: bytes, *body: bytes) -> list[bytes]:
    """A PNG chunk whose data is the ``body`` parts, as the parts to join (none is copied here)."""
    crc = zlib_ng.crc32(kind)
    for part in body:
        crc = zlib_ng.crc32(part, crc)
    return [struct.pack(">I4s", sum(map(len, body)), kind), *body, struct.pack(">I", crc)]


def stored_png(header: bytes, rows: bytes) -> bytes:
    """A PNG of IHDR ``header`` whose IDAT holds the filtered ``rows`` uncompressed: a zlib
    stream of deflate's stored blocks, written by zlib-ng at level 0 (memLevel 1, its fastest
    way to store: about 0.03 ms for 313,600 bytes, against 0.08 at the default memLevel)."""
    storer = zlib_ng.compressobj(0, zlib_ng.DEFLATED, zlib_ng.MAX_WBITS, 1)
    stream = (storer.compress(rows), storer.flush())
    return b"".join([SIGNATURE, *_chunk(b"IHDR", header), *_chunk(b"IDAT", *stream), *_chunk(b"IEND")])


def decode_png(data: bytes) -> Image.Image | None:
    """The image in ``data`` as a Pillow image of mode ``L``, ``RGB`` or ``RGBA`` whose pixels are
    the ones Pillow decodes, when ``data`` is a plain PNG (:func:`plain_png`) of 1 to
    :data:`MAX_PIXELS` pixels that zlib-ng inflates to exactly its rows (:func:`inflate_rows`)
    and libspng unfilters; else None, for Pillow to decode it or to report what is wrong with it.
    The caller checks the image's size against its limits before."""
    png = plain_png(data)
    small = png is not None and 0 < png.size[0] * png.size[1] <= MAX_PIXELS  # rows_bytes <= 5 MAX_PIXELS
    rows = inflate_rows(png) if small else None
    if rows is None:
        return None
    try:
        pixels = pyspng.load(stored_png(png.header, rows))
    except RuntimeError:  # how pyspng reports every libspng error (a filter type out of range)
        return None
    return Image.fromarray(pixels)
