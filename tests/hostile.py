"""Hypothesis strategies for what a hostile or careless client can send the recognizers.

Three families, each usable in process (as the rows TorchServe hands the handler) and over HTTP
(as request bodies):

- :func:`junk`: random bytes, bare or behind the magic number of an accepted image format, so the
  decoders get past their first check;
- :func:`json_documents`: random JSON, most of it shaped like the real ``{"image": ..., "top_k":
  ...}`` with random values, plus pathological nesting and numbers;
- :func:`images`: real images of random size (1-160 pixels a side), mode, format and content
  (noise, a flat colour or a few strokes), sometimes with a transparency key, sometimes
  truncated or with bytes flipped.

:func:`rows` wraps them in every shape TorchServe produces (see :mod:`handler.payload`);
:func:`http_requests` in every way a client sends them (raw body, multipart, JSON, options).
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from tests.canvases import encode

# What each accepted format can hold; PIL converts nothing silently for these pairs.
MODES = {
    "PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"),
    "JPEG": ("L", "RGB", "CMYK"),
    "WEBP": ("RGB", "RGBA"),
    "GIF": ("L", "P"),
    "BMP": ("1", "L", "P", "RGB"),
}
MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"GIF87a", b"BM", b"RIFF\0\0\0\0WEBPVP8 ")
MAX_SIDE = 160  # big enough for every code path, small enough for hundreds of examples a second


# -- images ---------------------------------------------------------------------------------------


def _pixels(kind: str, size: tuple[int, int], seed: int) -> Image.Image:
    """An RGBA image of ``size``: noise, one flat colour, or a few random strokes on a flat
    background (the one kind a recognizer would answer)."""
    rng = np.random.default_rng(seed)
    width, height = size
    if kind == "noise":
        return Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA")
    background = tuple(int(v) for v in rng.integers(0, 256, 4))
    image = Image.new("RGBA", size, background)
    if kind == "strokes":
        pen = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 4))):
            points = [tuple(float(v) for v in rng.uniform(0, 1, 2) * size) for _ in range(3)]
            ink = tuple(int(v) for v in rng.integers(0, 256, 4))
            pen.line(points, fill=ink, width=int(rng.integers(1, max(2, min(size) // 4 + 1))))
    return image


def _convert(image: Image.Image, mode: str) -> Image.Image:
    if mode == "I;16":
        return image.convert("L").point(lambda value: value * 257, mode="I").convert("I;16")
    if mode == "P":
        return image.convert("RGB").quantize(colors=16)
    return image.convert(mode)


@st.composite
def images(draw: st.DrawFn, max_side: int = MAX_SIDE) -> bytes:
    """Encoded image bytes: random format, mode, size, content and transparency key."""
    fmt = draw(st.sampled_from(sorted(MODES)))
    mode = draw(st.sampled_from(MODES[fmt]))
    size = (draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))
    kind = draw(st.sampled_from(("noise", "flat", "strokes")))
    image = _convert(_pixels(kind, size, draw(st.integers(0, 2**32 - 1))), mode)
    options: dict[str, Any] = {}
    if fmt in ("PNG", "GIF") and mode in ("L", "P") and draw(st.booleans()):
        options["transparency"] = draw(st.integers(0, 15))  # a palette index or grey level
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = draw(st.integers(1, 100))
    return encode(image, fmt, **options)


@st.composite
def damaged(draw: st.DrawFn, encoded: st.SearchStrategy[bytes]) -> bytes:
    """An image cut short or with a few bytes overwritten: what a flaky upload delivers."""
    data = bytearray(draw(encoded))
    if draw(st.booleans()):
        return bytes(data[: draw(st.integers(0, max(0, len(data) - 1)))])
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def noise_png(side: int, seed: int = 0) -> bytes:
    """Random RGB pixels: incompressible, so about ``3 * side**2`` bytes of PNG."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels))


def junk(max_size: int = 2048) -> st.SearchStrategy[bytes]:
    """Random bytes, half of them behind an image format's magic number."""
    noise = st.binary(max_size=max_size)
    return st.one_of(noise, st.tuples(st.sampled_from(MAGIC), noise).map(b"".join))


def image_bytes() -> st.SearchStrategy[bytes]:
    """Anything a client may send as the image: a good image, a damaged one, or junk."""
    good = images()
    return st.one_of(good, damaged(good), junk())


# -- JSON -----------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def image_text(data: bytes, style: str) -> str:
    """``data`` as the text of a JSON ``"image"``: plain base64, a data URL, or base64 wrapped
    at 76 characters (what ``base64`` the command prints)."""
    text = base64.b64encode(data).decode("ascii")
    return {"base64": text, "data-url": f"data:image/png;base64,{text}", "wrapped": "\n".join(
        text[i : i + 76] for i in range(0, len(text), 76))}[style]


@st.composite
def image_fields(draw: st.DrawFn) -> Any:
    """The value of ``"image"``: usually an encoded image (good or bad), else any JSON or text."""
    if draw(st.integers(0, 3)):
        return image_text(draw(image_bytes()), draw(st.sampled_from(("base64", "data-url", "wrapped"))))
    return draw(st.one_of(json_values, st.text(max_size=40), st.just("data:image/png,abc")))


@st.composite
def request_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON object shaped like a real request, with random option names and values."""
    document = {"image": draw(image_fields())} if draw(st.integers(0, 7)) else {}
    option_values = st.one_of(json_values, st.sampled_from(["3", " 2 ", "true", "0", "-1", "1e3"]))
    for name in draw(st.lists(st.sampled_from(["top_k", "return_input", "topk", "image", ""]), max_size=3)):
        document[name] = draw(option_values)
    return document


def deep(depth: int, opener: str = '{"a":') -> bytes:
    """JSON nested ``depth`` levels deep (never closed: the parser gives up before the end)."""
    return (opener * depth).encode()


PATHOLOGICAL_JSON = (
    deep(100_000),  # deeper than Python's recursion limit
    deep(100_000, "["),
    b'{"image": "", "top_k": ' + b"9" * 5000 + b"}",  # more digits than int() accepts
    b'{"image": "\\ud800"}',  # a lone surrogate
    b'{"image": null, "top_k": NaN}',
)


def json_documents() -> st.SearchStrategy[bytes]:
    """Serialized JSON: request-shaped objects, any JSON value, or a pathological document."""
    as_bytes = lambda value: json.dumps(value).encode()  # noqa: E731
    return st.one_of(
        request_documents().map(as_bytes),
        json_values.map(as_bytes),
        st.sampled_from(PATHOLOGICAL_JSON),
    )


# -- TorchServe rows and HTTP requests ------------------------------------------------------------


def decoded_like_torchserve(body: bytes, content_type: str) -> Any:
    """What TorchServe's worker hands the handler for a body of ``content_type``
    (ts/protocol/otf_message_handler.py): JSON decoded when it can be, text as str, else bytes."""
    if content_type == "application/json":
        try:
            return json.loads(body.decode("utf-8"))
        except Exception:  # noqa: BLE001 - TorchServe forwards the bytes on any failure
            return body
    if content_type.startswith("text"):
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return body
    return body


CONTENT_TYPES = ("image/png", "application/octet-stream", "application/json", "text/plain")
options = st.dictionaries(
    st.sampled_from(["top_k", "return_input", "topk"]),
    st.sampled_from(["1", "3", "0", "-2", "x", "true", "no", "", "9" * 30]),
    max_size=2,
)


@dataclass(frozen=True)
class HttpRequest:
    """One request as a client sends it: how (``raw``/``multipart``), the body, its content type
    and options (form fields of a multipart request, the query string of a raw one)."""

    how: str
    body: bytes
    content_type: str
    options: dict[str, str] = field(default_factory=dict)

    def requests_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``requests.post`` that send this request."""
        if self.how == "multipart":
            return {"files": {"data": ("drawing", self.body, self.content_type)}, "data": self.options}
        return {"data": self.body, "headers": {"Content-Type": self.content_type}, "params": self.options}

    def row(self) -> dict[str, Any]:
        """The row TorchServe hands the handler for this request: multipart parts arrive as
        bytes under their field names; TorchServe 0.12 drops a raw request's query string."""
        if self.how == "multipart":
            return {"data": self.body, **{name: value.encode() for name, value in self.options.items()}}
        return {"body": decoded_like_torchserve(self.body, self.content_type)}


@st.composite
def http_requests(draw: st.DrawFn) -> HttpRequest:
    """Any body (image, damaged image, junk or JSON), sent any way, with any content type."""
    body = draw(st.one_of(image_bytes(), json_documents()))
    return HttpRequest(
        how=draw(st.sampled_from(("raw", "multipart"))),
        body=body,
        content_type=draw(st.sampled_from(CONTENT_TYPES)),
        options=draw(options),
    )


def rows() -> st.SearchStrategy[dict[str, Any]]:
    """Rows as TorchServe builds them from random requests, plus decoded JSON values TorchServe
    can produce directly (any JSON value as ``body``) and rows without an image field."""
    return st.one_of(
        http_requests().map(HttpRequest.row),
        st.builds(lambda value: {"body": value}, json_values),
        st.builds(lambda value: {"body": value}, request_documents()),
        st.dictionaries(st.sampled_from(["top_k", "return_input", "other"]), st.binary(max_size=8)),
    )


# -- images whose header declares a huge size -----------------------------------------------------


def _encode(image: Image.Image, fmt: str) -> bytearray:
    return bytearray(encode(image, fmt))


def declared_size(fmt: str, width: int, height: int) -> bytes:
    """A small valid ``fmt`` file whose header claims ``width`` x ``height`` pixels (only PNG
    checks its header with a CRC: tests.canvases.png_with_declared_size)."""
    small = Image.new("L", (16, 16), 255)
    if fmt == "BMP":  # BITMAPINFOHEADER: width and height are little-endian int32 at 18 and 22
        data = _encode(small, "BMP")
        data[18:26] = struct.pack("<ii", width, height)
    elif fmt == "GIF":  # logical screen (6) and the first image descriptor (after the palette)
        data = _encode(small.convert("P"), "GIF")
        data[6:10] = struct.pack("<HH", width, height)
        descriptor = data.index(b",", 13)
        data[descriptor + 5 : descriptor + 9] = struct.pack("<HH", width, height)
    elif fmt == "JPEG":  # the SOF0 segment: marker, length, precision, then height and width
        data = _encode(small, "JPEG")
        sof = data.index(b"\xff\xc0")
        data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    elif fmt == "WEBP":  # lossy VP8 frame header: 14-bit width and height after the start code
        data = _encode(small.convert("RGB"), "WEBP")
        start = data.index(b"\x9d\x01\x2a")
        data[start + 3 : start + 7] = struct.pack("<HH", width & 0x3FFF, height & 0x3FFF)
    else:
        raise ValueError(f"no declared-size builder for {fmt}")
    return bytes(data)
