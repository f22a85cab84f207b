"""What one prediction request holds: the image bytes and the caller's options.

TorchServe hands the handler one dict per request, shaped by how the client sent it:

- a raw body (``curl -T drawing.png``): ``{"body": b"<png bytes>"}``;
- multipart (``curl -F data=@drawing.png``): ``{"data": b"<png bytes>"}``;
- JSON with ``Content-Type: application/json``: ``{"body": {"image": ..., "top_k": 3}}``, already
  decoded, or ``{"body": b"..."}`` when the JSON was malformed; with a text content type the body
  arrives as ``str``;
- further multipart fields arrive as further keys (``-F top_k=3``: ``{"top_k": b"3"}``);
- a field sent twice (``-F data=@a.png -F data=@b.png``) would arrive as its last value only
  (TorchServe's worker folds the request's parameters into a dict); the handler has the worker
  keep every value instead (:func:`handler.recognizer.keep_repeated_fields`), as a list.

TorchServe 0.12 does not hand over the URL's query string at all (not as fields, not as a header;
tests/test_serving.py checks it), so options in it can be neither read nor refused here.

:func:`parse_request` turns any of these into a :class:`Request` or raises
:class:`handler.glyph.InputError` with a message that says what to fix. It only unwraps the
transport (JSON, base64, data URLs); the image itself is decoded by :mod:`handler.glyph`.
:class:`Batch` is what the handler's stages hand each other.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from handler.glyph import InputError

IMAGE_FIELDS = ("data", "body")  # multipart field, raw body: where TorchServe puts the payload
JSON_IMAGE_KEY = "image"
OPTION_NAMES = ("top_k", "return_input", "mode")
CHARACTER, TEXT = "character", "text"
MODES = (CHARACTER, TEXT)  # one character per canvas (the default), or a whole string
ONE_IMAGE = "send one image per request"
USAGE = (
    'send the image as the raw body (curl -T drawing.png), as a multipart field named "data" '
    '(curl -F data=@drawing.png) or as JSON {"image": "<base64 or data: URL>", "top_k": 3}'
)


@dataclass(frozen=True)
class Request:
    """One request, unwrapped: encoded image bytes plus options (``None`` = the model's default)."""

    image: bytes
    top_k: int | None = None
    return_input: bool = False
    mode: str = CHARACTER  # :data:`MODES`


@dataclass(frozen=True)
class Batch:
    """One batch on its way through the handler's stages. ``outcomes`` has one entry per request,
    in order: the parsed :class:`Request`, or the :class:`InputError` that will answer it. The
    requests that parsed have their glyph in ``glyphs`` and their model input in ``inputs``
    (``[n, 1, size, size]``), in the same order, so one forward pass serves them all. A text
    request (``mode=text``) has every candidate character of its segmentation there, in the
    order of its ``segmentations`` entry's candidates (``None`` for the other requests)."""

    outcomes: list[Request | InputError]
    glyphs: list[np.ndarray]
    inputs: torch.Tensor
    probabilities: torch.Tensor | None = None  # ``[n, classes]`` calibrated, set by the inference stage
    accepted: torch.Tensor | None = None  # ``[n]`` bool: is a character (handler/confidence.py)
    segmentations: list[Any] | None = None  # per request: its handler.text.Segmentation or None
    logits: torch.Tensor | None = None  # ``[n, outputs]`` the model's outputs, set by the inference stage


def parse_request(row: Mapping[str, Any]) -> Request:
    """Unwrap one TorchServe request row (see the module docstring for the shapes it takes)."""
    fields = dict(row)
    payload_key = next((key for key in IMAGE_FIELDS if key in fields), None)
    if payload_key is None:
        raise InputError(f"the request has no image: {USAGE}")
    payload = fields.pop(payload_key)
    if isinstance(payload, list) and payload_key == "data":  # repeated multipart parts
        raise InputError(f'the request has {len(payload)} "data" parts: {ONE_IMAGE}')
    repeated = sorted(name for name, value in fields.items() if isinstance(value, list))
    if repeated:
        raise InputError(f"option(s) {repeated} given more than once: give each option once")
    options: dict[str, Any] = {name: _text(value) for name, value in fields.items()}

    if isinstance(payload, (bytes, bytearray)) and payload.lstrip()[:1] == b"{":
        payload = _load_json(bytes(payload))  # JSON sent without a JSON content type, or broken
    elif isinstance(payload, str):
        payload = _load_json(payload.encode()) if payload.lstrip()[:1] == "{" else payload

    if isinstance(payload, dict):
        body = dict(payload)
        if JSON_IMAGE_KEY not in body:
            raise InputError(f'the JSON body has no "{JSON_IMAGE_KEY}" field: {USAGE}')
        encoded = body.pop(JSON_IMAGE_KEY)
        if isinstance(encoded, list):
            raise InputError(f'"{JSON_IMAGE_KEY}" holds a list: {ONE_IMAGE}')
        if not isinstance(encoded, str):
            raise InputError(f'"{JSON_IMAGE_KEY}" must be a base64 string or a data: URL')
        options.update(body)
        image = decode_base64(encoded)
    elif isinstance(payload, str):  # a text body: base64 or a data URL
        try:
            image = decode_base64(payload)
        except InputError as error:
            raise InputError(f"the body is text but no image: {error}; or send the image's own bytes (curl -T drawing.png)") from error
    elif isinstance(payload, (bytes, bytearray)):
        image = bytes(payload)
    elif isinstance(payload, list):  # several images in one JSON body
        raise InputError(f"the JSON body must be an object, not a list: {ONE_IMAGE}; {USAGE}")
    else:  # JSON that is a number, ...
        raise InputError(f"the JSON body must be an object: {USAGE}")
    return Request(image=image, **_parse_options(options))


def decode_base64(text: str) -> bytes:
    """Bytes from plain base64 or a ``data:image/png;base64,...`` URL (what ``toDataURL`` gives)."""
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise InputError(
                "the data URL is not base64-encoded: send data:image/png;base64,<data>"
            )
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"the image is not valid base64 ({exc}): encode the file's bytes") from exc


def _load_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    # ValueError: bad JSON, bad UTF-8, and numbers with more digits than int() accepts;
    # RecursionError: nesting deeper than the interpreter's stack (left alone, both were a 503).
    except (ValueError, RecursionError) as exc:
        raise InputError(f"the body is not valid JSON ({exc}): {USAGE}") from exc


def _text(value: Any) -> Any:
    """Form values arrive as bytes; JSON values keep their JSON type."""
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else value


def _parse_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``top_k``, ``return_input`` and ``mode``; an unknown name is an error, not silently ignored
    (a typo such as ``topk`` would otherwise quietly return the default)."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise InputError(
            f"unknown option(s) {unknown}: the options are {list(OPTION_NAMES)}"
        )
    parsed: dict[str, Any] = {}
    if "top_k" in options:
        parsed["top_k"] = _positive_int("top_k", options["top_k"])
    if "return_input" in options:
        parsed["return_input"] = _boolean("return_input", options["return_input"])
    if "mode" in options:
        if options["mode"] not in MODES:
            raise InputError(f"mode must be one of {list(MODES)}, e.g. mode=text to read several characters")
        parsed["mode"] = options["mode"]
    return parsed


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a whole number of at least 1, e.g. {name}=3")
    return value


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "false", "0"):
        return value.strip().lower() in ("true", "1")
    raise InputError(f"{name} must be true or false")
