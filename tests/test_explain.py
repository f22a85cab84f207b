"""Explanations (handler/explain.py): occlusion sensitivity of the shipped digits model, run by
the handler in-process as TorchServe's Explanations API runs it (an ``explain: True`` request
header), and the glyph's frame on the canvas; the heat map a client draws from them
(client/sketch.py)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from ts.context import RequestProcessor

from client.sketch import heat_layer, heat_map
from handler.explain import STRIDE, WINDOW, glyph_frame
from handler.glyph import GlyphSettings
from handler.inprocess import worker_context
from handler.recognizer import RecognizerHandler
from tests.canvases import drawing, drawing_png, uniform_png


@pytest.fixture(scope="module")
def digits(shipped_models: Path):
    context = worker_context(shipped_models / "digits", "digits", {"handler": {"torch_threads": 1}})
    handler = RecognizerHandler()
    handler.initialize(context)
    return handler, context


def explained(handler, context, rows: list[dict]) -> list[tuple[int, dict]]:
    """One batch through BaseHandler.handle with the header TorchServe's /explanations sets."""
    context.request_processor = [RequestProcessor({"explain": "True"}) for _ in rows]
    context.request_ids = {index: f"explain-{index}" for index in range(len(rows))}
    context.metrics.request_ids = context.request_ids
    bodies = handler.handle(rows, context)
    return [(context.get_response_status(i)[0], json.loads(body)) for i, body in enumerate(bodies)]


def test_the_frame_is_the_square_the_glyph_covers_on_the_canvas():
    ink = np.zeros((300, 400), np.float32)
    ink[100:200, 150:170] = 1.0  # a bar 100 high, 20 wide: a square of 100 from x=110, 20 of 28
    # glyph pixels, so 5 canvas pixels each and a margin of 4 glyph pixels (20 canvas pixels).
    assert glyph_frame(ink, GlyphSettings()) == [90.0, 80.0, 230.0, 220.0]
    with pytest.raises(ValueError, match="no ink"):
        glyph_frame(np.zeros((10, 10), np.float32), GlyphSettings())


def test_an_explanation_says_which_ink_drove_the_answer(digits):
    handler, context = digits
    body = {"image": base64.b64encode(drawing_png("7")).decode(), "return_input": True}
    (status, answer), = explained(handler, context, [{"body": body}])
    assert status == 200 and answer["label"] == "7"
    explanation = answer["explanation"]
    assert (explanation["method"], explanation["window"], explanation["stride"]) == ("occlusion", WINDOW, STRIDE)
    heat = np.array(explanation["attributions"])
    glyph = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["input"]))), np.float32) / 255
    assert heat.shape == (28, 28)
    # Hiding ink changes the answer; hiding the empty margin far from any ink does not.
    assert heat[glyph > 0.5].max() > 0.01
    assert np.abs(heat[:2, :2]).max() == 0 and np.abs(heat[-2:, -2:]).max() == 0
    # drawing("7") is 280 pixels a side; its 7 spans most of it, so the frame is around it.
    x0, y0, x1, y1 = explanation["frame"]
    assert x0 < 70 < 210 < x1 and y0 < 50 < 240 < y1 and x1 - x0 == pytest.approx(y1 - y0)
    assert explanation["milliseconds"] > 0


def test_a_text_request_or_a_blank_one_gets_its_error_and_the_others_their_explanation(digits):
    handler, context = digits

    answers = explained(handler, context, [
        {"body": {"image": base64.b64encode(drawing_png("1")).decode(), "mode": "text"}},
        {"body": uniform_png(255)},
        {"body": drawing_png("1")},
    ])
    assert answers[0][0] == 400 and "mode=text" in answers[0][1]["message"]
    assert answers[1][0] == 400 and answers[1][1]["type"] == "BlankImageError"
    assert answers[2][0] == 200 and answers[2][1]["label"] == "1" and "explanation" in answers[2][1]


def test_the_heat_map_lies_over_the_drawing_red_where_the_ink_supports_the_answer():
    heat = np.zeros((28, 28), np.float32)
    heat[4:14, 4:24] = 1.0  # the top half of the glyph supports the answer
    heat[14:24, 4:24] = -0.5  # the bottom half speaks against it
    frame = [0.0, 0.0, 280.0, 280.0]
    layer = heat_layer(heat.tolist(), frame, (280, 280))
    assert layer.shape == (280, 280) and layer.max() == pytest.approx(1.0)
    shown = np.asarray(heat_map(drawing("7").convert("RGBA"), heat.tolist(), frame), np.int32)
    red, blue = shown[80, 140], shown[200, 140]
    assert red[0] > red[2] + 100 and blue[2] > blue[0] + 50
    assert tuple(shown[5, 5]) == (255, 255, 255)  # no heat outside the glyph's box
