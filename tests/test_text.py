"""Reading several characters on one canvas (``mode=text``, handler/text.py): the segmentation on
drawings built here, the handler in process on the shipped models, and the contract over HTTP
against the real TorchServe (the ``torchserve`` fixture)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from handler import text
from handler.glyph import BlankImageError, InputError, canvas_ink
from handler.inprocess import start_batch, worker_context
from handler.payload import Request, parse_request
from handler.recognizer import RecognizerHandler
from tests.canvases import drawing_png, encode, paper_photo, text_drawing, uniform_png
from tests.load import post


def segmentation(chars: str, **drawing) -> text.Segmentation:
    return text.segment(canvas_ink(encode(text_drawing(chars, **drawing))))


def singles(found: text.Segmentation) -> list[text.Candidate]:
    """The candidates of one primitive each, left to right."""
    return [c for c in found.candidates if c.last == c.first + 1]


# -- segmentation -----------------------------------------------------------------------------------


def test_separate_characters_are_one_candidate_each_left_to_right():
    found = segmentation("1704", gaps=30)
    assert found.primitives == 4 and len(found.candidates) == 4
    lefts = [c.box[0] for c in found.candidates]
    assert lefts == sorted(lefts)
    assert all(c.glyph.shape == (28, 28) and c.glyph.max() == 1.0 for c in found.candidates)


def test_the_dot_of_an_i_and_the_bar_of_a_5_drawn_apart_stay_with_their_character():
    for chars in ("1i1", "151"):
        found = segmentation(chars, gaps=30)
        assert found.primitives == 3, chars
        middle = singles(found)[1]
        tallest = max(c.box[3] - c.box[1] for c in singles(found))
        assert middle.box[3] - middle.box[1] >= tallest - 2, chars  # dot or bar included: full height


def test_two_touching_characters_get_a_cut_and_the_recognizer_splits_them(digits):
    handler, context = digits
    found = segmentation("1745", gaps=[40, 40, -12])
    assert found.primitives == 4  # the 4 and the 5 touch: one group, cut in two pieces ...
    assert [(c.first, c.last) for c in found.candidates if c.last - c.first == 2] == [(2, 4)]  # ... or one character
    answer = read(handler, context, text_drawing("1745", gaps=[40, 40, -12]))
    assert answer["text"] == "1745"


def test_characters_of_different_heights_are_each_a_character():
    found = segmentation("1704", gaps=30, heights=[1.0, 0.6, 1.0, 0.55])
    assert found.primitives == 4
    heights = [c.box[3] - c.box[1] for c in found.candidates]
    assert min(heights) < 0.7 * max(heights)


def test_a_space_goes_where_a_gap_is_clearly_wider_than_the_others():
    boxes = lambda lefts: [(x, 0, x + 60, 100) for x in lefts]
    assert text.spaces(boxes([0, 80, 160, 400, 480]), 100.0) == [False, False, True, False]
    # Wide gaps everywhere: each of them is a space.
    assert text.spaces(boxes([0, 150, 300]), 100.0) == [True, True]
    # Narrow gaps of different widths: no space.
    assert text.spaces(boxes([0, 65, 150, 220]), 100.0) == [False, False, False]


def test_wide_and_narrow_gaps_on_a_drawing(digits):
    handler, context = digits
    answer = read(handler, context, text_drawing("17 04", gaps=[12, 20, 6, 0]))
    assert answer["text"] == "17 04"


def test_a_blank_canvas_and_specks_only_are_blank():
    with pytest.raises(BlankImageError):
        canvas_ink(uniform_png(255, side=400))
    specks = np.zeros((200, 600), dtype=np.float32)
    specks[50, 50] = specks[120, 300] = 1.0
    with pytest.raises(BlankImageError):
        text.segment(specks)


def test_more_groups_than_the_limit_are_refused_before_the_model():
    with pytest.raises(InputError, match="the drawing holds 6 characters; the limit is 5 per request"):
        text.segment(canvas_ink(encode(text_drawing("111111", gaps=30))), max_characters=5)


def two_lines(first: str, second: str, apart: int = 20):
    """Two strings of :func:`text_drawing`, the second ``apart`` pixels of paper below the first."""
    margin = 40  # paper around each string
    top, bottom = text_drawing(first, gaps=30, margin=margin), text_drawing(second, gaps=30, margin=margin)
    canvas = Image.new("L", (max(top.width, bottom.width), top.height + bottom.height - 2 * margin + apart), 255)
    canvas.paste(top, (0, 0))
    canvas.paste(bottom, (0, top.height - 2 * margin + apart), mask=Image.eval(bottom, lambda v: 255 - v))
    return canvas


def test_lines_are_bands_of_rows_that_overlapping_components_chain_together():
    one = np.array([[0, 10, 50, 110], [60, 30, 100, 120], [110, 50, 150, 140]])  # a rising baseline
    assert text.lines(one, 50) == 1
    dotted = np.array([[0, 0, 10, 10], [0, 30, 10, 130]])  # the dot of an i above its stem
    assert text.lines(dotted, 50) == 1
    two = np.array([[0, 0, 50, 100], [60, 5, 110, 100], [0, 120, 50, 220]])
    assert text.lines(two, 50) == 2


@pytest.mark.parametrize("apart", [20, 60])
def test_a_second_line_of_text_is_refused_not_read_as_one_string(apart):
    with pytest.raises(InputError, match="the drawing holds 2 lines of text; text is read on one line"):
        text.segment(canvas_ink(encode(two_lines("170", "417", apart))))


@pytest.mark.parametrize("desk", [(), ("left",)])  # a sheet filling the photo; a desk along its edge
@pytest.mark.parametrize("exposure", [1.0, 0.45])
def test_a_photo_of_paper_is_not_read_as_text(desk, exposure):
    with pytest.raises(InputError, match="not on photos of paper"):
        canvas_ink(paper_photo("7", desk=desk, exposure=exposure))


def test_the_best_path_takes_the_likeliest_segmentation():
    glyph = np.zeros((28, 28), np.float32)
    candidates = [text.Candidate(0, 1, (0, 0, 10, 10), glyph), text.Candidate(1, 2, (10, 0, 20, 10), glyph),
                  text.Candidate(0, 2, (0, 0, 20, 10), glyph)]
    found = text.Segmentation(2, candidates, 10.0)
    assert text.best_path(found, np.array([0.9, 0.9, 0.5])) == [0, 1]
    assert text.best_path(found, np.array([0.5, 0.5, 0.9])) == [2]
    # Each character costs exp(bonus): 0.9 x 0.9 = 0.81 loses to 0.7 at a bonus of -0.3.
    assert text.best_path(found, np.array([0.9, 0.9, 0.7]), bonus=-0.3) == [2]


# -- the handler in process ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits(shipped_models: Path):
    context = worker_context(shipped_models / "digits", "digits", {"handler": {"torch_threads": 1, "max_characters": 6}})
    handler = RecognizerHandler()
    handler.initialize(context)
    return handler, context


def handle(handler, context, rows: list[dict]) -> list[tuple[int, dict]]:
    start_batch(context, len(rows))
    bodies = handler.handle(rows, context)
    return [(context.get_response_status(i)[0], json.loads(body)) for i, body in enumerate(bodies)]


def read(handler, context, image, **options) -> dict:
    [(status, body)] = handle(handler, context, [{"body": {"image": base64.b64encode(encode(image)).decode(), "mode": "text", **options}}])
    assert status == 200, body
    return body


def test_mode_is_an_option_like_the_others():
    png = drawing_png("7")
    assert parse_request({"data": png, "mode": b"text"}) == Request(png, mode="text")
    assert parse_request({"data": png}).mode == "character"
    with pytest.raises(InputError, match=r"mode must be one of \['character', 'text'\]"):
        parse_request({"data": png, "mode": b"words"})


def test_the_text_answer_contract(digits):
    handler, context = digits
    drawn = text_drawing("1704", gaps=30)
    body = read(handler, context, drawn, top_k=3, return_input=True)
    assert set(body) == {"model", "version", "mode", "text", "confidence", "accepted", "characters"}
    assert body["mode"] == "text" and body["text"] == "1704" and body["model"] == "digits" and body["accepted"]
    assert [c["label"] for c in body["characters"]] == list("1704")
    assert body["confidence"] == pytest.approx(np.prod([c["confidence"] for c in body["characters"]]))
    for character in body["characters"]:
        assert set(character) == {"label", "confidence", "accepted", "box", "top_k", "input"}
        assert len(character["top_k"]) == 3 and character["top_k"][0]["label"] == character["label"]
        x0, y0, x1, y1 = character["box"]
        assert 0 <= x0 < x1 <= drawn.width and 0 <= y0 < y1 <= drawn.height
        assert base64.b64decode(character["input"])[:8] == b"\x89PNG\r\n\x1a\n"
    lefts = [c["box"][0] for c in body["characters"]]
    assert lefts == sorted(lefts)


def test_a_string_holding_a_piece_that_is_no_character_is_flagged(digits):
    handler, context = digits
    assert read(handler, context, text_drawing("1704", gaps=30))["accepted"] is True
    dashed = read(handler, context, text_drawing("17-04", gaps=30))
    assert dashed["accepted"] is False
    assert [c["accepted"] for c in dashed["characters"]].count(False) == 1  # the dash, still in the text


def test_two_lines_get_a_400_and_the_rest_of_the_batch_is_answered(digits):
    handler, context = digits
    lines = {"image": base64.b64encode(encode(two_lines("17", "04"))).decode(), "mode": "text"}
    [(status, body), (ok, seven)] = handle(handler, context, [{"body": lines}, {"body": drawing_png("7")}])
    assert (status, body["type"]) == (400, "InputError") and "2 lines of text" in body["message"]
    assert ok == 200 and seven["label"] == "7"


def test_the_character_limit_comes_from_the_handler_settings(digits):
    handler, context = digits  # max_characters: 6
    image = {"image": base64.b64encode(encode(text_drawing("1111111", gaps=30))).decode(), "mode": "text"}
    [(status, body), (ok, seven)] = handle(handler, context, [{"body": image}, {"body": drawing_png("7")}])
    assert status == 400 and body["type"] == "InputError"
    assert body["message"].startswith("the drawing holds 7 characters; the limit is 6 per request")
    assert ok == 200 and seven["label"] == "7"  # the other request of the batch is answered


def test_text_and_single_characters_share_one_batch(digits):
    handler, context = digits
    text_row = {"body": {"image": base64.b64encode(encode(text_drawing("70", gaps=30))).decode(), "mode": "text"}}
    answers = handle(handler, context, [{"body": drawing_png("1")}, text_row, {"body": uniform_png(255)}, {"body": drawing_png("7")}])
    assert [status for status, _ in answers] == [200, 200, 400, 200]
    assert answers[0][1]["label"] == "1" and answers[1][1]["text"] == "70" and answers[3][1]["label"] == "7"


# -- over HTTP -------------------------------------------------------------------------------------


def test_mode_text_over_http_as_json_and_as_a_form_field(torchserve):
    png = encode(text_drawing("1704", gaps=30))
    as_json = post(torchserve, "/predictions/digits", json={"image": base64.b64encode(png).decode(), "mode": "text"})
    as_form = post(torchserve, "/predictions/digits", files={"data": png}, data={"mode": "text"})
    for response in (as_json, as_form):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["mode"] == "text" and body["text"] == "1704"
        assert [c["label"] for c in body["characters"]] == list("1704")
        assert all(len(c["box"]) == 4 and isinstance(c["accepted"], bool) for c in body["characters"])
    # Without mode=text the same canvas is one character, as before.
    single = post(torchserve, "/predictions/digits", files={"data": png}).json()
    assert set(single) >= {"label", "confidence", "probabilities"} and "mode" not in single


def test_errors_over_http(torchserve):
    blank = post(torchserve, "/predictions/digits", files={"data": uniform_png(255, side=600)}, data={"mode": "text"})
    assert blank.status_code == 400 and blank.json()["type"] == "BlankImageError"
    many = encode(text_drawing("1" * 33, gaps=30, height=60, width=6))
    refused = post(torchserve, "/predictions/digits", files={"data": many}, data={"mode": "text"})
    assert refused.status_code == 400
    assert refused.json()["message"].startswith("the drawing holds 33 characters; the limit is 32 per request")
    wrong = post(torchserve, "/predictions/digits", files={"data": many}, data={"mode": "lines"})
    assert wrong.status_code == 400 and "mode must be one of" in wrong.json()["message"]
