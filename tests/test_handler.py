"""The handler in-process: RecognizerHandler and handler.payload with TorchServe's own Context,
RequestProcessor and metrics cache (what a worker builds), on the shipped models; no server."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from ts.context import Context

from handler.glyph import InputError
from handler.inprocess import start_batch, worker_context
from handler.payload import Request, decode_base64, parse_request
from handler.recognizer import THREADS_ENV, RecognizerHandler
from tests.canvases import drawing_png, png_with_declared_size, uniform_png

SEVEN = drawing_png("7")


def make_context(model_dir: Path, name: str, handler_settings: dict | None = None) -> Context:
    """The Context a TorchServe worker builds for a model, with the handler's settings."""
    return worker_context(model_dir, name, {"handler": handler_settings or {"torch_threads": 1}})


def handle(handler: RecognizerHandler, context: Context, rows: list[dict]) -> list[tuple[int, dict]]:
    """Run one batch as the worker does; returns (HTTP status, JSON body) per request."""
    start_batch(context, len(rows))
    bodies = handler.handle(rows, context)
    assert len(bodies) == len(rows)
    return [(context.get_response_status(i)[0], json.loads(body)) for i, body in enumerate(bodies)]


@pytest.fixture(scope="module")
def digits(shipped_models: Path) -> tuple[RecognizerHandler, Context]:
    context = make_context(shipped_models / "digits", "digits")
    handler = RecognizerHandler()
    handler.initialize(context)
    return handler, context


def test_initialize_reads_labels_version_and_preprocessing(digits, shipped_models):
    handler, _ = digits
    model = json.loads((shipped_models / "digits" / "model.json").read_text())
    assert handler.classes == [str(d) for d in range(10)]
    assert handler.version == model["version"]
    assert handler.glyph_settings.size == 28


def test_torch_threads_come_from_the_settings_or_the_environment(shipped_models, monkeypatch):
    import torch

    previous = torch.get_num_threads()
    try:
        RecognizerHandler().initialize(make_context(shipped_models / "digits", "digits", {"torch_threads": 2}))
        assert torch.get_num_threads() == 2
        monkeypatch.setenv(THREADS_ENV, "1")
        RecognizerHandler().initialize(make_context(shipped_models / "digits", "digits", {"torch_threads": 2}))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)


def test_output_contract(digits):
    handler, context = digits
    [(status, body)] = handle(handler, context, [{"body": SEVEN}])
    assert status == 200
    assert set(body) == {"model", "version", "label", "confidence", "accepted", "top_k", "probabilities"}
    assert body["accepted"] is True
    assert body["model"] == "digits" and body["version"] == handler.version
    assert list(body["probabilities"]) == handler.classes
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    ranked = [entry["probability"] for entry in body["top_k"]]
    assert len(ranked) == 5 and ranked == sorted(ranked, reverse=True)
    assert body["top_k"][0] == {"label": body["label"], "probability": body["confidence"]}
    assert body["confidence"] == max(body["probabilities"].values())


def test_a_drawing_that_is_no_character_is_answered_with_accepted_false(digits):
    handler, context = digits
    [(status, dash), (_, seven)] = handle(handler, context, [{"body": drawing_png("-")}, {"body": SEVEN}])
    assert status == 200 and dash["accepted"] is False
    assert dash["top_k"] and dash["label"] == dash["top_k"][0]["label"]  # the ranking is still given
    assert seven["accepted"] is True and seven["label"] == "7"


def test_confidence_is_calibrated_with_the_models_temperature(digits, shipped_models):
    handler, _ = digits
    calibration = json.loads((shipped_models / "digits" / "preprocessing.json").read_text())["calibration"]
    assert handler.calibration["temperature"] == calibration["temperature"] != 1.0


def test_top_k_is_capped_at_the_number_of_classes_and_input_is_returned(digits):
    handler, context = digits
    [(status, body)] = handle(
        handler, context, [{"body": {"image": base64.b64encode(SEVEN).decode(), "top_k": 50, "return_input": True}}]
    )
    assert status == 200 and len(body["top_k"]) == 10
    glyph = Image.open(io.BytesIO(base64.b64decode(body["input"])))
    assert glyph.format == "PNG" and glyph.size == (28, 28)
    # White ink on black, as the model saw it: the border is background, the centre has ink.
    pixels = np.asarray(glyph)
    assert pixels[0].max() == 0 and pixels.max() == 255


def test_a_bad_request_gets_its_own_status_and_the_others_are_answered(digits):
    handler, context = digits
    rows = [{"body": SEVEN}, {"body": uniform_png(255)}, {"data": SEVEN}, {"body": png_with_declared_size(1, 1)}]
    results = handle(handler, context, rows)
    assert [status for status, _ in results] == [200, 400, 200, 400]
    assert results[1][1] == {
        "code": 400,
        "type": "BlankImageError",
        "message": "the drawing is blank (or uniformly filled): draw a character with a visible stroke",
    }
    assert "8x8" in results[3][1]["message"]
    # The same drawing, answered the same; oneDNN may round the rows of one batch differently in
    # the last bits (7e-11 here), so the probabilities agree to float precision, not bit for bit.
    assert results[0][1]["label"] == results[2][1]["label"]
    assert results[0][1]["probabilities"] == pytest.approx(results[2][1]["probabilities"], rel=1e-6, abs=1e-9)


def test_a_batch_gives_the_answers_of_single_requests(digits):
    handler, context = digits
    images = [drawing_png(char, width=w) for char in "017" for w in (10, 24)]
    batched = handle(handler, context, [{"body": image} for image in images])
    for image, (status, body) in zip(images, batched):
        [(single_status, single)] = handle(handler, context, [{"body": image}])
        assert status == single_status == 200 and body["label"] == single["label"]
        for label, probability in body["probabilities"].items():
            assert probability == pytest.approx(single["probabilities"][label], abs=1e-5)


def test_a_batch_of_only_bad_requests_runs_no_model(digits):
    handler, context = digits
    results = handle(handler, context, [{"body": b""}, {"body": b"{"}])
    assert [status for status, _ in results] == [400, 400]


def test_preprocessing_a_canvas_takes_about_a_millisecond(digits):
    handler, _ = digits
    rows = [{"body": drawing_png("7", side=280)}]
    handler.preprocess(rows)
    timings = []
    for _ in range(50):  # CPU time, so that other processes on a busy machine do not count
        start = time.process_time()
        handler.preprocess(rows)
        timings.append(time.process_time() - start)
    assert np.median(timings) < 0.004  # measured ~1.2 ms


# -- handler.payload: the request shapes TorchServe hands over -------------------------------------


PNG_B64 = base64.b64encode(SEVEN).decode()


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"body": SEVEN}, Request(SEVEN)),
        ({"data": SEVEN, "top_k": b"3"}, Request(SEVEN, top_k=3)),
        ({"data": SEVEN, "return_input": b"true"}, Request(SEVEN, return_input=True)),
        ({"body": {"image": PNG_B64, "top_k": 2}}, Request(SEVEN, top_k=2)),
        ({"body": {"image": f"data:image/png;base64,{PNG_B64}"}}, Request(SEVEN)),
        ({"body": json.dumps({"image": PNG_B64, "return_input": True}).encode()}, Request(SEVEN, return_input=True)),
        ({"body": json.dumps({"image": PNG_B64})}, Request(SEVEN)),  # JSON sent as text/plain
        ({"body": f"data:image/png;base64,{PNG_B64}"}, Request(SEVEN)),  # a bare data URL as text
    ],
    ids=["raw", "multipart-top-k", "multipart-return-input", "json", "json-data-url", "json-bytes",
         "json-text", "data-url-text"],
)
def test_every_request_shape_is_unwrapped(row, expected):
    assert parse_request(row) == expected


@pytest.mark.parametrize(
    "row, message",
    [
        ({}, "has no image"),
        ({"body": b'{"image": '}, "not valid JSON"),
        ({"body": [1, 2]}, "must be an object"),
        ({"body": {"picture": PNG_B64}}, 'no "image" field'),
        ({"body": {"image": 12}}, "base64 string or a data: URL"),
        ({"body": {"image": "not base64!"}}, "not valid base64"),
        ({"body": "hello world"}, "the body is text but no image: the image is not valid base64"),
        ({"body": {"image": "data:image/png," + PNG_B64}}, "not base64-encoded"),
        ({"body": {"image": PNG_B64, "topk": 3}}, "unknown option(s) ['topk']"),
        ({"body": {"image": PNG_B64, "top_k": 0}}, "top_k must be a whole number"),
        ({"body": {"image": PNG_B64, "top_k": True}}, "top_k must be a whole number"),
        ({"data": SEVEN, "top_k": b"three"}, "top_k must be a whole number"),
        ({"body": {"image": PNG_B64, "return_input": "yes please"}}, "return_input must be true or false"),
        ({"data": [SEVEN, SEVEN]}, 'the request has 2 "data" parts: send one image per request'),
        ({"body": [{"image": PNG_B64}, {"image": PNG_B64}]}, "not a list: send one image per request"),
        ({"body": {"image": [PNG_B64, PNG_B64]}}, '"image" holds a list: send one image per request'),
        ({"data": SEVEN, "top_k": [b"3", b"4"]}, "option(s) ['top_k'] given more than once"),
    ],
    ids=["nothing", "broken-json", "json-list", "no-image-key", "image-not-string", "bad-base64", "text-body",
         "data-url-not-base64", "unknown-option", "top-k-zero", "top-k-bool", "top-k-text", "bad-bool",
         "two-data-parts", "json-list-of-images", "json-image-list", "repeated-option"],
)
def test_bad_requests_say_what_to_fix(row, message):
    with pytest.raises(InputError) as error:
        parse_request(row)
    assert message in str(error.value) and error.value.status == 400


def wire_request(*parameters: tuple[str, bytes]) -> dict:
    """One request as TorchServe's worker reads it from the frontend (ts.protocol)."""
    return {
        "requestId": b"request-0",
        "headers": [],
        "parameters": [{"name": name, "contentType": "image/png", "value": value} for name, value in parameters],
    }


def test_the_worker_keeps_every_value_of_a_repeated_field(digits):
    """TorchServe's own Service.retrieve_data_for_inference, once the handler is initialized:
    a repeated field arrives as a list, a single one as it always did."""
    from ts.service import Service

    batch = [wire_request(("data", SEVEN), ("data", b"second")), wire_request(("data", SEVEN))]
    _, rows, _ = Service.retrieve_data_for_inference(batch)
    assert rows == [{"data": [SEVEN, b"second"]}, {"data": SEVEN}]


def test_base64_with_line_breaks_is_accepted():
    wrapped = "\n".join(PNG_B64[i : i + 76] for i in range(0, len(PNG_B64), 76))
    assert decode_base64(wrapped) == SEVEN
