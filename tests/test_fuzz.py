"""Bad input, generated: whatever a client sends, the handler answers it with its own InputError
(a 4xx) or a prediction, never with anything else; over HTTP, never a 5xx and never a worker
restart. Strategies in tests/hostile.py; hand-picked hostile files in tests/canvases.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from handler.glyph import GlyphSettings, ImageLimits, InputError, canvas_to_glyph, decode_image
from handler.payload import parse_request
from handler.server import MODELS
from tests import hostile
from tests.canvases import png_with_declared_size
from tests.figures import record
from tests.conftest import SERVING_CONFIG
from tests.load import all_worker_pids, post

LIMITS = ImageLimits(**yaml.safe_load(SERVING_CONFIG.read_text())["defaults"]["handler"]["limits"])
IN_PROCESS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def glyph_settings(shipped_models: Path) -> GlyphSettings:
    """The normalization the shipped digits model was trained with."""
    preprocessing = json.loads((shipped_models / "digits" / "preprocessing.json").read_text())
    return GlyphSettings.from_dict(preprocessing["glyph"])


def recognize_input(row: dict, glyph_settings: GlyphSettings) -> np.ndarray:
    """What the handler's preprocess does to one row: unwrap it, then normalize its drawing."""
    return canvas_to_glyph(parse_request(row).image, glyph_settings, LIMITS)


def check_answer_or_input_error(row: dict, glyph_settings: GlyphSettings) -> None:
    """The property: a row gives a finite 28x28 glyph in [0, 1], or an InputError with a 4xx
    status and a message. Anything else escapes and fails the test."""
    try:
        glyph = recognize_input(row, glyph_settings)
    except InputError as error:
        assert error.status in (400, 413) and str(error)
        return
    assert glyph.shape == (glyph_settings.size, glyph_settings.size) and glyph.dtype == np.float32
    assert np.isfinite(glyph).all() and glyph.min() >= 0.0 and glyph.max() <= 1.0


# -- in process -----------------------------------------------------------------------------------


@IN_PROCESS
@given(data=hostile.junk())
def test_random_bytes_are_an_input_error(glyph_settings, data):
    for row in ({"body": data}, {"data": data}):
        check_answer_or_input_error(row, glyph_settings)


@IN_PROCESS
@given(document=hostile.json_documents())
@example(document=hostile.deep(100_000))
@example(document=b'{"image": "", "top_k": ' + b"9" * 5000 + b"}")
def test_random_json_is_an_input_error_or_an_answer(glyph_settings, document):
    for content_type in ("application/json", "text/plain", "application/octet-stream"):
        row = {"body": hostile.decoded_like_torchserve(document, content_type)}
        check_answer_or_input_error(row, glyph_settings)


@IN_PROCESS
@given(image=hostile.images())
def test_random_images_are_an_input_error_or_an_answer(glyph_settings, image):
    check_answer_or_input_error({"body": image}, glyph_settings)


@IN_PROCESS
@given(image=hostile.damaged(hostile.images()))
def test_damaged_images_are_an_input_error_or_an_answer(glyph_settings, image):
    check_answer_or_input_error({"body": image}, glyph_settings)


@IN_PROCESS
@given(row=hostile.rows())
def test_every_request_shape_is_an_input_error_or_an_answer(glyph_settings, row):
    check_answer_or_input_error(row, glyph_settings)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "GIF", "JPEG", "WEBP"])
@pytest.mark.parametrize("width, height", [(4097, 16), (16, 4097), (4096, 4097), (9000, 9000), (16383, 16383)])
def test_huge_dimensions_are_refused_before_a_pixel_is_decoded(monkeypatch, fmt, width, height):
    data = png_with_declared_size(width, height) if fmt == "PNG" else hostile.declared_size(fmt, width, height)
    assert len(data) < 2048  # a small file: only its header is large

    def no_decoding(image):
        raise AssertionError(f"{fmt} pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(InputError, match="scale the drawing down") as error:
        decode_image(data, LIMITS)
    # PIL refuses beyond ~179 M pixels on its own; below, the message says the declared size.
    assert f"{width}x{height}" in str(error.value) or width * height > 2 * Image.MAX_IMAGE_PIXELS


# -- over HTTP ------------------------------------------------------------------------------------


def predict(torchserve, model: str, **kwargs) -> requests.Response:
    """A prediction request with the current inference key (another test may have rotated it)."""
    return post(torchserve, f"/predictions/{model}", timeout=60, **kwargs)


HTTP_SAMPLE = 150  # requests: a bounded sample of the in-process properties


def test_a_sample_of_hostile_requests_never_gets_a_5xx_nor_restarts_a_worker(torchserve):
    before = all_worker_pids(torchserve)
    statuses: dict[int, int] = {}

    @settings(max_examples=HTTP_SAMPLE, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(request=hostile.http_requests(), model=st.sampled_from(MODELS))
    def send(request: hostile.HttpRequest, model: str) -> None:
        response = predict(torchserve, model, **request.requests_kwargs())
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (request, response.text)
        assert response.status_code in (200, 400, 413), response.text
        body = response.json()
        assert ("label" in body) if response.status_code == 200 else (body["code"] == response.status_code)

    send()
    assert all_worker_pids(torchserve) == before
    record("fuzz_http", {"requests": sum(statuses.values()), "statuses": statuses,
                         "worker_restarts": 0})


@pytest.mark.parametrize("document", hostile.PATHOLOGICAL_JSON, ids=[
    "nested-objects", "nested-arrays", "5000-digit-number", "lone-surrogate", "nan"])
def test_pathological_json_gets_400_not_503(torchserve, document):
    """Deep nesting and over-long numbers once escaped the handler as RecursionError and
    ValueError: TorchServe answered 503 for the whole batch."""
    response = predict(torchserve, "digits", data=document, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "InputError"


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "JPEG", "WEBP"])
def test_huge_dimensions_in_any_format_get_400_over_http(torchserve, fmt):
    before = torchserve.worker_pids("digits")
    response = predict(torchserve, "digits", data=hostile.declared_size(fmt, 20000 if fmt != "WEBP" else 16000, 16000))
    assert response.status_code == 400 and "scale the drawing down" in response.json()["message"]
    assert torchserve.worker_pids("digits") == before


MAX_REQUEST = 6 * 1024 * 1024  # config/config.properties max_request_size


@pytest.mark.parametrize("how", ["multipart", "json"])
def test_any_body_over_max_request_size_gets_413_from_torchserve(torchserve, how):
    before = torchserve.worker_pids("digits")
    filler = "A" * MAX_REQUEST
    kwargs = {"files": {"data": ("big.png", filler.encode(), "image/png")}} if how == "multipart" else {
        "json": {"image": filler}}
    response = predict(torchserve, "digits", **kwargs)
    assert response.status_code == 413
    assert torchserve.worker_pids("digits") == before


def test_an_image_at_the_byte_limit_sent_as_base64_json_fits_in_a_request(torchserve):
    """max_request_size leaves room for base64: the handler, not TorchServe, judges the image."""
    image = hostile.noise_png(1150)
    assert LIMITS.max_bytes * 0.9 < len(image) <= LIMITS.max_bytes
    response = predict(torchserve, "digits", json={"image": hostile.image_text(image, "base64")})
    assert response.status_code in (200, 400), response.text  # noise: an answer or "blank"
