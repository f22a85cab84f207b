"""Specification of handler/png.py: zlib-ng and libspng decode the PNGs canvases make, to
Pillow's very pixels; every other PNG, and every PNG zlib-ng or libspng refuses, is left to Pillow,
so decode_image accepts and refuses the same files as Pillow alone."""

import io
import struct
import tracemalloc
import zlib
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from client.sketch import png_bytes
from handler.glyph import InputError, decode_image
from handler.png import MAX_PIXELS, PLAIN_CHUNKS, chunks, decode_png, inflate_rows, plain_png, stored_png
from tests.canvases import drawing, encode

RNG = np.random.default_rng(13)


def noise(mode: str, size=(53, 37)) -> Image.Image:
    """Random pixels: every filter type and byte value shows up in the PNG stream."""
    bands = len(Image.new(mode, (1, 1)).getbands())
    return Image.fromarray(RNG.integers(0, 256, (size[1], size[0], bands), dtype=np.uint8).squeeze(axis=-1 if bands == 1 else None))


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def with_chunk(png: bytes, kind: bytes, body: bytes) -> bytes:
    """``png`` with one more chunk right after its IHDR (8 + 25 bytes)."""
    return png[:33] + chunk(kind, body) + png[33:]


def pillow_pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize(
    "extra", [None, (b"gAMA", struct.pack(">I", 45455)), (b"sRGB", b"\x00"), (b"sBIT", b"\x05\x05\x05\x05"), (b"pHYs", bytes(9))]
)
def test_a_plain_png_is_decoded_to_pillows_pixels(mode, extra):
    png = encode(noise(mode))
    if extra:
        png = with_chunk(png, *extra)
    image = decode_png(png)
    assert plain_png(png).mode == mode and image is not None and image.mode == mode
    assert np.array_equal(np.asarray(image), pillow_pixels(png))


@pytest.mark.parametrize("style", ["L", "RGBA", "RGB"])
def test_the_canvases_of_the_client_and_of_pillow_are_plain(style):
    """What the Gradio app sends (a Sketchpad's RGBA composite) and what Pillow saves are plain,
    so the service decodes them by zlib-ng and libspng."""
    ink = drawing("7")
    image = {"L": ink, "RGB": ink.convert("RGB"), "RGBA": Image.merge("RGBA", [ink] * 3 + [ink.point(lambda v: 255 - v)])}[style]
    png = png_bytes(image)
    assert plain_png(png).mode == style
    assert np.array_equal(np.asarray(decode_image(png)), np.asarray(image))


def exif_png() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: turned
    return encode(noise("L"), exif=exif)


def text_png() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta><rdf:Description tiff:Orientation="3"/></x:xmpmeta>')
    return encode(noise("L"), pnginfo=info)


@pytest.mark.parametrize(
    "why, png",
    [
        ("palette", lambda: encode(noise("L").convert("P"))),
        ("grey with alpha", lambda: encode(noise("LA"))),
        ("1 bit", lambda: encode(noise("L").convert("1"))),
        ("16 bits", lambda: encode(Image.fromarray(RNG.integers(0, 65535, (9, 9), dtype=np.uint16)))),
        ("tRNS transparency", lambda: encode(noise("RGB"), transparency=(0, 0, 0))),
        ("EXIF orientation", exif_png),
        ("XMP orientation in a text chunk", text_png),
        ("APNG frames", lambda: encode(noise("RGB"), save_all=True, append_images=[noise("RGB")])),
        ("interlaced", lambda: encode(noise("L"))[:28] + b"\x01" + encode(noise("L"))[29:]),
        ("no IEND", lambda: encode(noise("L"))[:-12]),
        ("a chunk running past the end", lambda: encode(noise("L"))[:-6]),
        ("not a PNG", lambda: encode(noise("RGB"), "BMP")),
    ],
)
def test_other_pngs_are_left_to_pillow(why, png):
    assert plain_png(png()) is None and decode_png(png()) is None


def test_an_image_over_a_million_pixels_is_left_to_pillow():
    """Pillow decodes it holding the pixels once; the fast path would hold the rows three times."""
    big = Image.new("L", (MAX_PIXELS // 512 + 1, 512), 255)
    png = encode(big)
    assert plain_png(png).mode == "L" and decode_png(png) is None
    assert np.array_equal(np.asarray(decode_image(png)), np.asarray(big))
    assert decode_png(encode(Image.new("L", (MAX_PIXELS // 512, 512), 255))) is not None


def test_an_exif_orientation_is_still_applied():
    assert decode_image(exif_png()).size == (37, 53)  # stored 53 wide, shown turned


@pytest.mark.parametrize("damage", ["truncated stream", "corrupt stream"])
def test_what_zlib_ng_refuses_is_left_to_pillow_which_says_what_is_wrong(damage):
    png = encode(noise("L", (200, 200)))
    start = png.index(b"IDAT") + 4
    length = struct.unpack(">I", png[start - 8 : start - 4])[0]
    body = png[start : start + length]
    body = body[: len(body) // 2] if damage == "truncated stream" else body[:20] + bytes(len(body) - 20)
    broken = png[: start - 8] + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    assert plain_png(broken).mode == "L" and decode_png(broken) is None
    with pytest.raises(InputError, match="could not be decoded"):
        decode_image(broken)


def test_chunks_are_read_in_order_with_their_data_and_whether_their_crc_is_intact():
    png = with_chunk(encode(noise("L")), b"gAMA", b"\x00\x00\xb1\x8f")
    read = list(chunks(png))
    kinds = [kind for kind, _, _ in read]
    assert kinds[:2] == [b"IHDR", b"gAMA"] and kinds[-1] == b"IEND" and set(kinds[1:-2]) <= PLAIN_CHUNKS
    assert read[1][1] == b"\x00\x00\xb1\x8f" and all(intact for _, _, intact in read)
    damaged = bytearray(png)
    damaged[33 + 8] ^= 1  # the gAMA chunk's first data byte
    assert [intact for _, _, intact in chunks(bytes(damaged))][:2] == [True, False]


# Crafted files, from a review that compared libspng's outcomes with Pillow's on 80,000 inputs:
# the fast path must not take them, and decode_image answers them as Pillow does.
IMAGE_DATA = zlib.compress((b"\0" + bytes(range(8))) * 8)  # 8x8 greyscale rows, filter 0


def ihdr(depth: int = 8, colour: int = 0, filter_method: int = 0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, depth, colour, 0, filter_method, 0))


SIGNATURE = b"\x89PNG\r\n\x1a\n"
END = chunk(b"IEND", b"")


def ihdr_of(png: bytes) -> bytes:
    """The IHDR chunk of ``png``, whole (length, type, data, CRC)."""
    return png[8:33]


@pytest.mark.parametrize(
    "why, png",
    [
        ("a chunk's CRC broken", lambda: encode(noise("L"))[:-5] + b"\x00"),
        ("the image data's CRC broken", lambda: SIGNATURE + ihdr() + chunk(b"IDAT", IMAGE_DATA)[:-1] + b"\x00" + END),
        ("a second IHDR after the data (16-bit RGB first)",
         lambda: SIGNATURE + ihdr(16, 2) + chunk(b"IDAT", zlib.compress((b"\0" + bytes(48)) * 8)) + ihdr() + END),
        ("a second IHDR after the data (1-bit first)",
         lambda: SIGNATURE + ihdr(1, 0) + chunk(b"IDAT", zlib.compress(b"\0\xaa" * 8)) + ihdr() + END),
        ("a chunk after the image data", lambda: SIGNATURE + ihdr() + chunk(b"IDAT", IMAGE_DATA) + chunk(b"sRGB", b"\x00") + END),
        ("a chunk between two IDAT chunks",
         lambda: SIGNATURE + ihdr() + chunk(b"IDAT", IMAGE_DATA[:9]) + chunk(b"tIME", bytes(7)) + chunk(b"IDAT", IMAGE_DATA[9:]) + END),
    ],
)
def test_crafted_pngs_are_left_to_pillow(why, png):
    assert plain_png(png()) is None


@pytest.mark.parametrize(
    "kind, body", [(b"gAMA", b""), (b"cHRM", b"12345"), (b"iCCP", b""), (b"sRGB", b""), (b"eXIf", b"MM\0*")]
)
@pytest.mark.parametrize("where", ["before the image data", "after it"])
def test_a_chunk_too_short_for_its_kind_is_a_400_not_a_crash(kind, body, where):
    short = chunk(kind, body)
    png = SIGNATURE + ihdr() + (short if where == "before the image data" else b"") + chunk(b"IDAT", IMAGE_DATA)
    png += (short if where == "after it" else b"") + END
    try:
        decode_image(png)  # Pillow may decode it, ignoring the chunk: then nothing is wrong
    except InputError:
        pass  # anything else (struct.error, IndexError) would be a 500


def test_a_wrong_zlib_checksum_is_refused_as_pillow_refuses_it():
    """Intact chunks around compressed data whose adler32 is wrong (a broken encoder or a crafted
    file): zlib-ng checks it, so the file is left to Pillow, which refuses it."""
    png = SIGNATURE + ihdr() + chunk(b"IDAT", IMAGE_DATA[:-4] + bytes(4)) + END
    assert plain_png(png) is not None and decode_png(png) is None
    with pytest.raises(InputError, match="could not be decoded"):
        decode_image(png)


@pytest.mark.parametrize(
    "why, stream",
    [
        ("a row short", zlib.compress((b"\0" + bytes(range(8))) * 7)),
        ("a byte more than the rows", zlib.compress((b"\0" + bytes(range(8))) * 8 + b"\0")),
        ("data after the stream", IMAGE_DATA + b"\0\0"),
        ("no checksum at the end", IMAGE_DATA[:-4]),
    ],
)
def test_only_a_stream_of_exactly_the_declared_rows_is_inflated(why, stream):
    png = plain_png(SIGNATURE + ihdr() + chunk(b"IDAT", stream) + END)
    assert png.rows_bytes == 8 * 9 and inflate_rows(png) is None


def traced(work: Callable[[], Any]) -> tuple[Any, int]:
    """What ``work()`` returns, and the most memory Python held while it ran (tracemalloc, bytes)."""
    tracemalloc.start()
    try:
        return work(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_zero_width_image_is_not_inflated():
    """Its rows are one filter byte each: 10**8 rows would cost as many bytes, for no pixel."""
    png = SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 10**8, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(bytes(10**8), 9)) + END
    image, peak = traced(lambda: decode_png(png))
    assert image is None and peak < 4 * len(png)


def test_a_stream_cut_into_tiny_chunks_is_decoded_without_an_object_per_chunk():
    """Two bytes an IDAT chunk (a crafted file): the same pixels, and memory in proportion to
    the file, not to its count of chunks."""
    png = encode(noise("L", (200, 200)))
    stream = plain_png(png).stream
    tiny = SIGNATURE + ihdr_of(png) + b"".join(chunk(b"IDAT", stream[i : i + 2]) for i in range(0, len(stream), 2)) + END
    assert np.array_equal(np.asarray(decode_png(tiny)), pillow_pixels(png))
    _, peak = traced(lambda: plain_png(tiny))
    assert peak < 3 * len(tiny)  # a bytes object per chunk would be about 15 times the file


def test_a_bomb_is_not_inflated_beyond_the_declared_rows():
    """64 MB of zeros in 64 KB of stream, for an 8x8 image: inflate_rows asks zlib-ng for the
    rows plus one byte, so it never holds the 64 MB."""
    png = plain_png(SIGNATURE + ihdr() + chunk(b"IDAT", zlib.compress(bytes(64 << 20), 9)) + END)
    rows, peak = traced(lambda: inflate_rows(png))
    assert rows is None and peak < 1 << 20


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_the_rows_stored_uncompressed_make_a_valid_png_of_the_same_pixels(mode):
    png = encode(noise(mode))
    plain = plain_png(png)
    stored = stored_png(plain.header, inflate_rows(plain))
    assert all(intact for _, _, intact in chunks(stored))  # Pillow checks every CRC
    assert np.array_equal(pillow_pixels(stored), pillow_pixels(png))
    assert len(stored) > plain.rows_bytes  # stored, not compressed
