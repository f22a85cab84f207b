"""Inputs from the field (issue 11), read by the shipped digits model in process: phone photos
with an EXIF orientation, small drawings on large canvases, partly transparent backgrounds,
photos of paper on a desk and blank sheets. Each gets the drawn label or the documented 400."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image, ImageDraw

from handler.glyph import canvas_to_glyph
from handler.recognizer import RecognizerHandler
from training.canvas import CANVAS_STYLES
from tests.canvases import drawing, encode, exif_oriented, filling, layered, paper_photo
from tests.test_handler import handle, make_context

EDGES = ("top", "bottom", "left", "right")


def recognizer(models: Path, name: str) -> tuple[RecognizerHandler, object]:
    context = make_context(models / name, name)
    handler = RecognizerHandler()
    handler.initialize(context)
    return handler, context


@pytest.fixture(scope="module")
def digits(shipped_models: Path):
    return recognizer(shipped_models, "digits")


@pytest.fixture(scope="module")
def letters(shipped_models: Path):
    return recognizer(shipped_models, "letters")


def answer(digits, data: bytes) -> tuple[int, dict]:
    handler, context = digits
    [result] = handle(handler, context, [{"body": data}])
    return result


def label(digits, data: bytes) -> str:
    status, body = answer(digits, data)
    assert status == 200, body
    return body["label"]


# -- 1. EXIF orientation --------------------------------------------------------------------


@pytest.mark.parametrize("orientation", [3, 6, 8])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_photo_stored_sideways_or_upside_down_is_read_upright(digits, orientation, fmt):
    assert label(digits, exif_oriented(drawing("7"), orientation, fmt)) == "7"


# -- 2. small drawings on large canvases ----------------------------------------------------


def small_two(side: int = 4096, width: int = 2) -> bytes:
    """A "2" of 160x230 pixels drawn with a thin pen in the middle of a large canvas."""
    image = Image.new("L", (side, side), 255)
    x, y = side // 2 - 80, side // 2 - 115
    stroke = [(x, y + 50), (x + 40, y), (x + 120, y), (x + 160, y + 50), (x, y + 230), (x + 160, y + 230)]
    ImageDraw.Draw(image).line(stroke, fill=0, width=width, joint="curve")
    return encode(image)


def test_a_small_drawing_on_a_4096_canvas_is_read(digits):
    assert label(digits, small_two()) == "2"


def test_a_small_seven_on_a_screen_sized_canvas_is_read(digits):
    image = Image.new("L", (1920, 1080), 255)
    ImageDraw.Draw(image).line([(900, 500), (960, 500), (925, 590)], fill=0, width=1)
    assert label(digits, encode(image)) == "7"


def test_a_speck_on_a_large_canvas_is_blank(digits):
    image = Image.new("L", (4096, 4096), 255)
    ImageDraw.Draw(image).ellipse([2000, 2000, 2005, 2005], fill=0)
    status, body = answer(digits, encode(image))
    assert (status, body["type"]) == (400, "BlankImageError")


# -- 2b. big drawings up to the canvas's edges ---------------------------------------------------


@pytest.mark.parametrize("style", CANVAS_STYLES)
@pytest.mark.parametrize("char", ["E", "F", "H", "L", "T", "Z"])
def test_a_letter_drawn_up_to_the_edges_of_the_canvas_is_read(letters, char, style):
    # Its strokes run along whole edges: a pen's one level there, not a photo's desk.
    assert label(letters, filling(char, style, margin=2)) == char


@pytest.mark.parametrize("style", CANVAS_STYLES)
@pytest.mark.parametrize("char", ["F", "L", "T", "E", "H", "Z"])
def test_a_letter_whose_strokes_cover_edges_of_the_canvas_is_read(letters, char, style):
    # F L T cover one edge; E three, H and Z two: the border's median level is the pen's or
    # between the pen's and the paper's, and the background is the level filling the canvas.
    assert label(letters, filling(char, style, margin=0)) == char


def clipped_scan(char: str | None = "7", side: int = 400, lid: int = 40, seed: int = 0) -> bytes:
    """A scan whose paper is clipped to pure white (a flat border, as a canvas has) with the
    scanner's dark lid, grainy, along the left edge and ``char`` drawn on the paper."""
    page = np.asarray(drawing(char, side=side), dtype=np.float64) if char else np.full((side, side), 255.0)
    page[:, :lid] = 40.0 + 12.0 * np.random.default_rng(seed).standard_normal((side, lid))
    return encode(Image.fromarray(np.uint8(np.clip(page, 0, 255))))


def test_a_scan_with_a_dark_lid_along_an_edge_is_read_as_a_photo(digits):
    assert label(digits, clipped_scan("7")) == "7"
    status, body = answer(digits, clipped_scan(None))
    assert (status, body["type"]) == (400, "BlankImageError") and "no drawing found on the paper" in body["message"]
    assert "photograph one character" in body["message"] and "draw a character" not in body["message"]


# -- 3. partly transparent backgrounds --------------------------------------------------------


@pytest.mark.parametrize("alpha", [40, 64, 100, 127])
def test_black_ink_over_a_partly_transparent_white_layer_is_read(digits, alpha):
    assert label(digits, layered("7", background=255, alpha=alpha)) == "7"


def test_white_ink_over_a_partly_transparent_black_layer_is_read(digits):
    assert label(digits, layered("7", background=0, alpha=100, ink=255)) == "7"


# -- 4. photos of paper --------------------------------------------------------------------


@pytest.mark.parametrize("desk", [(), ("left",), ("top", "right"), ("top", "bottom", "left"), EDGES],
                         ids=["no-desk", "1-edge", "2-edges", "3-edges", "4-edges"])
def test_a_photo_of_a_drawing_on_paper_is_read_whatever_desk_shows(digits, desk):
    assert label(digits, paper_photo("7", desk)) == "7"


@pytest.mark.parametrize("char", ["0", "1"])
def test_a_large_photo_is_read(digits, char):
    assert label(digits, paper_photo(char, ("top",), size=(4000, 3000))) == char


def test_a_photo_of_light_chalk_on_a_dark_board_is_read(digits):
    photo = Image.open(io.BytesIO(paper_photo("7"))).convert("L")
    assert label(digits, encode(Image.eval(photo, lambda level: 255 - level), "JPEG")) == "7"


@pytest.mark.parametrize("char", ["7", "4", "0"])
@pytest.mark.parametrize("exposure", [0.45, 0.3])
def test_a_dim_photo_of_dark_ink_on_paper_is_read_as_ink_on_paper(digits, char, exposure):
    # The paper at grey 100 or darker: darker than half-grey, yet lighter than the ink on it.
    assert label(digits, paper_photo(char, exposure=exposure)) == char


@pytest.mark.parametrize("char", ["7", "4", "0"])
def test_a_photo_of_chalk_on_a_board_lighter_than_half_grey_is_read(digits, char):
    photo = Image.open(io.BytesIO(paper_photo(char, exposure=0.45))).convert("L")
    assert label(digits, encode(Image.eval(photo, lambda level: 255 - level), "JPEG")) == char


@pytest.mark.parametrize("desk", [(), ("left",), EDGES], ids=["no-desk", "1-edge", "4-edges"])
@pytest.mark.parametrize("noise", [3.0, 8.0])
def test_a_photo_of_a_blank_sheet_with_uneven_light_and_noise_is_blank(digits, desk, noise):
    status, body = answer(digits, paper_photo(None, desk, noise=noise))
    assert status == 400 and body["type"] == "BlankImageError"
    assert "no drawing found on the paper" in body["message"]


# -- properties: orientation and layers never change what a clean drawing says ------------------

CHARS = st.sampled_from(["0", "1", "7"])
PENS = st.integers(min_value=8, max_value=30)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(char=CHARS, width=PENS, orientation=st.integers(min_value=1, max_value=8))
def test_exif_orientation_never_changes_the_glyph_of_a_lossless_drawing(char, width, orientation):
    shown = drawing(char, width=width)
    assert np.array_equal(
        canvas_to_glyph(exif_oriented(shown, orientation, "PNG")), canvas_to_glyph(encode(shown))
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(char=CHARS, width=PENS, orientation=st.integers(min_value=1, max_value=8))
def test_exif_orientation_never_changes_the_label_of_a_jpeg_drawing(digits, char, width, orientation):
    shown = drawing(char, width=width)
    assert label(digits, exif_oriented(shown, orientation)) == label(digits, encode(shown))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    char=CHARS,
    alpha=st.integers(min_value=0, max_value=255),
    background=st.integers(min_value=150, max_value=255),
    ink=st.integers(min_value=0, max_value=60),
    light_ink=st.booleans(),
)
def test_a_background_layer_never_changes_the_label_of_a_clean_drawing(digits, char, alpha, background, ink, light_ink):
    if light_ink:  # light ink over a dark layer
        background, ink = 255 - background, 255 - ink
    clean = label(digits, layered(char, background=255, alpha=255, ink=0))
    assert label(digits, layered(char, background=background, alpha=alpha, ink=ink)) == clean

