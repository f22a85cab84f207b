"""The Gradio app end to end: ``gradio_client`` calls the running app (``gradio_app``), which calls
a real TorchServe (``torchserve``) serving the shipped models: recognition, explanations,
corrections, text, the Models tab. Error cases call the app's callbacks directly
(:class:`client.app.Recognizer`), against the same server or a dead port."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # gradio_client must not look for Hugging Face

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from client.app import NOT_ASKED, AppSettings, Recognizer
from client.catalog import TABLE_HEADERS
from tests.canvases import drawing, encode, text_drawing, transparent_sketch
from tests.conftest import free_ports


@pytest.fixture(scope="module")
def app(gradio_app: str) -> Client:
    return Client(gradio_app, verbose=False)


def sketch_value(tmp_path: Path, png: bytes) -> dict:
    """What the browser's Sketchpad sends: the composite as a file (here black ink on a
    transparent background; in the browser the pad's background layer is white)."""
    path = tmp_path / "sketch.png"
    path.write_bytes(png)
    return {"background": None, "layers": [], "composite": handle_file(str(path))}


def rows(table_update: dict) -> dict[str, dict]:
    """The Models table (a Dataframe update) as {"model/version": {header: cell}}."""
    table = table_update["value"]
    assert table["headers"] == TABLE_HEADERS
    return {f"{row[0]}/{row[1]}": dict(zip(TABLE_HEADERS, row)) for row in table["data"]}


@pytest.mark.parametrize("char", ["1", "7"])
def test_a_drawing_gets_the_right_label(app, tmp_path, char):
    answer, ranking, confidence, seen, status, picker = app.predict(
        sketch_value(tmp_path, transparent_sketch(char)), "digits/1.0", 3, api_name="/recognize_drawing"
    )
    assert ranking["label"] == "Ranking"  # an answer, not only the closest labels
    ranking = ranking["value"]
    assert ranking["label"] == char, ranking
    assert len(ranking["confidences"]) == 3
    best = ranking["confidences"][0]["confidence"]
    assert confidence == f"{best:.1%}"
    assert answer.startswith(f"### {char}\n{confidence} sure")
    assert Image.open(seen).size == (28, 28)  # the glyph the model saw
    assert re.fullmatch(rf"digits 1\.0 reads \*\*{char}\*\* \({re.escape(confidence)}\); TorchServe answered in \d+ ms", status)


def test_an_uploaded_jpeg_gets_the_right_label(app, tmp_path):
    path = tmp_path / "seven.jpg"
    path.write_bytes(encode(drawing("7").convert("RGB"), "JPEG", quality=90))
    _, ranking, *_, status, _ = app.predict(handle_file(str(path)), "digits/1.0", 5, api_name="/recognize_upload")
    assert ranking["value"]["label"] == "7" and len(ranking["value"]["confidences"]) == 5, status


def test_an_uploaded_file_that_is_not_an_image_gets_a_sentence(app, tmp_path):
    path = tmp_path / "notes.png"  # a text file with an image's name
    path.write_text("shopping list: eggs, milk\n")
    answer, ranking, confidence, seen, status, _ = app.predict(
        handle_file(str(path)), "digits/1.0", 3, api_name="/recognize_upload"
    )
    assert status.startswith("**Error:** ") and "image" in status and "HTTP" not in status, status
    assert answer == "" and not ranking["value"] and confidence == "" and seen is None


def test_a_drawing_that_is_no_digit_is_not_presented_as_an_answer(app, tmp_path):
    answer, ranking, confidence, _, status, _ = app.predict(
        sketch_value(tmp_path, transparent_sketch("-")), "digits/1.0", 3, api_name="/recognize_drawing"
    )
    closest = ranking["value"]["label"]
    share = f"{ranking['value']['confidences'][0]['confidence']:.1%}"
    assert answer.startswith(f"### This does not look like a digit\n(the closest is {closest}, {share}")
    assert ranking["label"].startswith("Closest labels (not an answer")
    assert status.startswith(f"digits 1.0 does not take it for a digit (closest: {closest}, {share}); ")
    assert confidence == f"none: not an answer (closest {closest}, {share})"  # no number that reads as a confidence


def test_a_blank_pad_or_an_unknown_model_is_a_message_not_a_traceback(app, tmp_path):
    white = encode(Image.new("RGBA", (400, 400), "white"))
    answer, ranking, confidence, seen, status, _ = app.predict(
        sketch_value(tmp_path, white), "digits/1.0", 3, api_name="/recognize_drawing"
    )
    assert status == "**Error:** the image is blank: draw or upload a character first"
    assert not ranking["value"] and confidence == "" and seen is None and answer == ""

    *_, status, _ = app.predict(
        sketch_value(tmp_path, transparent_sketch("7")), "nosuch/1.0", 3, api_name="/recognize_drawing"
    )
    assert status.startswith("**Error:** unknown model or version: Model not found: nosuch")


def test_an_explanation_is_a_heat_map_over_the_drawing(app, tmp_path):
    heat, status = app.predict(sketch_value(tmp_path, transparent_sketch("7")), "digits/1.0", api_name="/explain")
    assert re.fullmatch(r"Red: ink that made digits 1\.0 answer \*\*7\*\*; blue: .* \(occlusion sensitivity, \d+ ms in the handler\)\.", status)
    shown = np.asarray(Image.open(heat).convert("RGB"), dtype=np.int32)
    assert shown.shape == (280, 280, 3)  # the drawing's size: the map lies over it
    assert np.count_nonzero(shown[..., 0] > shown[..., 2] + 60) > 100  # the ink that drove the answer is red


def test_a_correction_is_saved_as_the_drawing_in_an_image_folder(app, tmp_path):
    png = transparent_sketch("7")
    status = app.predict(sketch_value(tmp_path, png), "1", api_name="/save_correction")
    match = re.fullmatch(r"Saved as an example of \*\*1\*\*: (\S+) \((\d+) corrections? so far; .*", status)
    assert match, status
    assert (match[2] == "1") == ("(1 correction so far" in status)  # singular for one
    saved = Path(match[1])
    assert saved.parent.name == "1" and saved.suffix == ".png"
    assert saved.parent.parent.name == "corrections" and saved.parent.parent.parent.name == "run"  # the run folder
    assert saved.read_bytes() == png  # the drawing as it was sent to the recognizer
    for wrong in ("", "12", "../x", "?"):
        status = app.predict(sketch_value(tmp_path, png), wrong, api_name="/save_correction")
        assert status.startswith("**Error:** type the right answer as one digit or letter"), status


def test_the_models_tab_lists_every_version_with_its_workers(app):
    table, picker, managed, archives, text_picker, status, recognize_status = app.predict(
        "", "", "", api_name="/refresh_models"
    )
    listed = rows(table)
    assert set(listed) == {"balanced/1.0", "digits/1.0", "letters/1.0"}
    assert all(row["default"] == "yes" and row["worker status"] == "2 READY" for row in listed.values())
    assert ["digits 1.0 (default)", "digits/1.0"] in picker["choices"]
    assert picker["value"] == text_picker["value"] == "digits/1.0"  # the preselected model's default version
    assert {"digits.mar", "letters.mar", "balanced.mar"} <= {value for _, value in archives["choices"]}
    assert status == "3 model versions registered." and recognize_status == ""


def test_the_models_tab_scales_a_model_and_every_picker_keeps_its_value(app, torchserve):
    try:
        table, picker, managed, _, text_picker, status = app.predict(
            "letters/1.0", 1, "balanced/1.0", "letters/1.0", api_name="/scale"
        )
        assert status == "letters 1.0 now runs 1 worker."
        assert (picker["value"], managed["value"], text_picker["value"]) == ("balanced/1.0", "letters/1.0", "letters/1.0")
        assert rows(table)["letters/1.0"]["worker status"] == "1 READY"
        assert len(torchserve.client().describe("letters", "1.0")[0]["workers"]) == 1
    finally:
        table, *_, status = app.predict("letters/1.0", 2, "digits/1.0", "digits/1.0", api_name="/scale")
    assert rows(table)["letters/1.0"]["worker status"] == "2 READY" and status == "letters 1.0 now runs 2 workers."


def test_a_negative_number_of_workers_is_a_sentence_and_the_table_stays(app):
    table, picker, *_, status = app.predict("letters/1.0", -1, "letters/1.0", "digits/1.0", api_name="/scale")
    assert status == "**Error:** enter how many workers the version should run (0 or more)"
    assert rows(table)["letters/1.0"]["worker status"] == "2 READY" and picker["value"] == "letters/1.0"


def test_the_models_tab_unregisters_registers_and_sets_the_default(app, torchserve):
    try:
        table, picker, *_, status = app.predict("balanced/1.0", "balanced/1.0", "letters/1.0", api_name="/unregister")
        assert "balanced/1.0" not in rows(table)
        # The picked version is gone: back to the default, and the page says so.
        assert picker["value"] == "digits/1.0"
        assert status == ("balanced 1.0 is unregistered. balanced 1.0 is not registered: "
                          "a picker now shows digits 1.0.")
    finally:
        table, *_, status = app.predict("balanced.mar", "digits/1.0", "digits/1.0", "digits/1.0", api_name="/register")
    assert status == "balanced.mar is registered."
    assert rows(table)["balanced/1.0"]["worker status"] == "2 READY"

    *_, status = app.predict("balanced/1.0", "digits/1.0", "digits/1.0", api_name="/set_default")
    assert status == "balanced 1.0 is now the default version."
    *_, status = app.predict("digits.mar", "digits/1.0", "digits/1.0", "digits/1.0", api_name="/register")
    assert status.startswith("**Error:**") and "already registered" in status and "HTTP" not in status
    assert "unregister that version first" in status
    # Only archives of the model store: the app checks, as the CLI does, before asking the server.
    *_, status = app.predict("https://example.com/evil.mar", "digits/1.0", "digits/1.0", "digits/1.0", api_name="/register")
    assert status.startswith("**Error:**") and "is not in the model store" in status and "models list" not in status
    *_, status = app.predict("nosuch.mar", "digits/1.0", "digits/1.0", "digits/1.0", api_name="/register")
    assert "does not exist (make archive builds the archives)" in status


# -- the callbacks themselves, for the errors a live server rarely shows ------------------------


def recognizer(endpoints) -> Recognizer:
    return Recognizer(AppSettings(endpoints=endpoints))


def sketch_dict(char: str = "7") -> dict:
    """A Sketchpad value as the callback receives it (``type="numpy"``, Gradio's default)."""
    return {"background": None, "layers": [], "composite": Image.open(io.BytesIO(transparent_sketch(char)))}


def test_a_server_that_is_down_is_named_and_nothing_on_the_page_is_wiped(torchserve):
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    callbacks = recognizer(dataclasses.replace(torchserve.endpoints, inference=dead, management=dead))
    down = f"**Error:** cannot reach TorchServe at {dead}: is it running? (make serve)"
    *_, status, picker = callbacks.recognize_drawing(sketch_dict(), "digits/1.0", 3)
    assert status == down and picker == gr.update()
    *_, status, _ = callbacks.recognize_drawing(sketch_dict(), "", 3)  # page opened while it was down
    assert status == down
    table, picker, managed, _, text_picker, status = callbacks.refresh("digits/1.0", "letters/1.0", "digits/1.0")
    assert status == down
    assert table == picker == managed == text_picker == gr.update()  # left as they are
    *_, recognize_status = callbacks.load("", "", "")
    assert recognize_status == down + " Draw when it runs: the app asks the server again."
    *_, status = callbacks.scale("digits/1.0", 2, "digits/1.0", "digits/1.0")
    assert status == down  # the scaling's error and the refresh's are one: said once
    *_, status = callbacks.scale("", 2, "", "")  # the page opened while it was down: pickers empty
    assert status == down  # not "choose a model version" as well


def test_an_empty_picker_is_filled_from_the_server_when_a_drawing_comes(torchserve):
    answer, ranking, *_, status, picker = recognizer(torchserve.endpoints).recognize_drawing(sketch_dict(), "", 3)
    assert ranking.value["label"] == "7", status
    assert picker.value == "digits/1.0" and ("digits 1.0 (default)", "digits/1.0") in picker.choices


def test_an_answer_asked_before_a_clear_or_a_stroke_that_reached_the_server_first_is_dropped(torchserve):
    """The page sends each answer's drawing generation (client.generations); another top k redoes
    the answer for the drawing on the pad, and a script's calls (generation 0) are all answered."""
    callbacks, page = recognizer(torchserve.endpoints), gr.Request(session_hash="a page")
    _, ranking, *_ = callbacks.recognize_live(sketch_dict("7"), "digits/1.0", 3, 1, page)
    assert ranking.value["label"] == "7"
    answer, *_ = callbacks.clear(2, page)
    assert answer == ""
    for asked in (callbacks.recognize_live, callbacks.recognize_drawing):  # sent before the Clear, arriving after
        assert asked(sketch_dict("7"), "digits/1.0", 3, 1, page) == gr.skip()
    assert callbacks.explain_drawing(sketch_dict("7"), "digits/1.0", 1, page) == gr.skip()
    _, ranking, *_ = callbacks.recognize_live(sketch_dict("1"), "digits/1.0", 3, 3, page)  # a stroke after it
    assert ranking.value["label"] == "1"
    _, ranking, *_ = callbacks.recognize_again(sketch_dict("1"), None, "digits/1.0", 4, 3, page)
    assert len(ranking.value["confidences"]) == 4
    # The tab Gradio selects as the page loads: no click, nothing redone (the status stays).
    assert callbacks.recognize_again(None, None, "digits/1.0", 4, NOT_ASKED, page) == gr.skip()
    predict = callbacks.client.predict

    def stroke_meanwhile(*args, **kwargs):
        callbacks.stroke(4, page)  # the user draws while the answer is on its way
        return predict(*args, **kwargs)

    callbacks.client.predict = stroke_meanwhile
    assert callbacks.recognize_drawing(sketch_dict("1"), "digits/1.0", 3, 3, page) == gr.skip()
    callbacks.client.predict = predict
    with ThreadPoolExecutor(4) as pool:  # a script's calls share one session, at generation 0
        answers = list(pool.map(lambda char: callbacks.recognize_drawing(sketch_dict(char), "digits/1.0", 3), "17171717"))
    assert [ranking.value["label"] for _, ranking, *_ in answers] == list("17171717")


def test_a_strokes_late_event_spares_the_heat_map_and_correction_asked_after_it(torchserve):
    """A stroke takes away the heat map and the correction's status, which were about the drawing
    before it; but its event can reach the server after a Why? or a Save clicked after the stroke."""
    callbacks, page = recognizer(torchserve.endpoints), gr.Request(session_hash="a page")
    heat, _ = callbacks.explain_drawing(sketch_dict("7"), "digits/1.0", 2, page)  # clicked on drawing 2
    saved = callbacks.save_correction(sketch_dict("7"), "hello", 2, 2, page)
    assert heat is not None and "one digit or letter" in saved
    assert callbacks.stroke(2, page) == (gr.skip(), gr.skip())  # the stroke that started drawing 2, late
    assert callbacks.stroke(3, page) == (None, "")  # the next stroke
    viewer = Recognizer(AppSettings(endpoints=torchserve.endpoints, read_only=True))  # the heat map alone
    assert viewer.stroke(1, page) is None


def test_a_correction_whose_drawing_changed_after_the_click_is_not_saved(torchserve, tmp_path):
    """Save correction reads the pad when the page sends its image, after uploading it: a stroke
    drawn in between (the page's generation moved from 2 to 3) would be saved under the label."""
    callbacks = Recognizer(AppSettings(endpoints=torchserve.endpoints, run_dir=tmp_path))
    status = callbacks.save_correction(sketch_dict("7"), "7", 2, 3, gr.Request(session_hash="a page"))
    assert "nothing was saved" in status and not list(tmp_path.rglob("*.png"))
    assert callbacks.save_correction(sketch_dict("7"), "7", 3, 3).startswith("Saved as an example of **7**")
    assert len(list(tmp_path.rglob("*.png"))) == 1


def test_a_rotated_key_is_re_read_from_the_key_file(torchserve):
    callbacks = recognizer(torchserve.endpoints)
    assert callbacks.recognize_drawing(sketch_dict(), "digits/1.0", 3)[0]  # keys now cached
    torchserve.client().rotate_key("inference")  # the cached key is refused from now on
    _, ranking, *_, status, _ = callbacks.recognize_drawing(sketch_dict(), "digits/1.0", 3)
    assert ranking.value["label"] == "7", status


def test_a_key_file_with_wrong_keys_is_a_message(torchserve, tmp_path):
    keys = json.loads(torchserve.endpoints.key_file.read_text())
    for kind in ("inference", "management"):
        keys[kind]["key"] = "wrong"
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps(keys))
    callbacks = recognizer(dataclasses.replace(torchserve.endpoints, key_file=key_file))
    *_, status, _ = callbacks.recognize_drawing(sketch_dict(), "digits/1.0", 3)
    assert status.startswith(f"**Error:** TorchServe refused the key from {key_file}")


def test_the_text_mode_reads_a_number_and_draws_each_characters_box(app, tmp_path):
    """The Read text tab: a number written on the wide pad (black ink on a transparent
    background, as the browser's pad sends it), read with mode=text."""
    drawn = text_drawing("1705", gaps=[40, 40, 40])
    alpha = Image.eval(drawn, lambda value: 255 - value)
    sketch = Image.new("RGBA", drawn.size, (0, 0, 0, 0))
    sketch.putalpha(alpha)
    text, boxes, round_trip, status, _ = app.predict(
        sketch_value(tmp_path, encode(sketch)), "digits/1.0", api_name="/read_text"
    )
    assert text == "1705"
    assert status.startswith("digits 1.0 reads **1705** (4 characters, confidence ")
    shown = Image.open(boxes)
    assert shown.size == drawn.size
    # The boxes are drawn in red over the drawing: red pixels where the canvas was white.
    red = [p for p in shown.convert("RGB").getdata() if p[0] > 180 and p[1] < 90 and p[2] < 90]
    assert len(red) > 4 * 2 * (drawn.height // 2)
    assert re.fullmatch(r"\d+ ms", round_trip)


def test_the_text_mode_says_when_the_pad_is_blank(app, tmp_path):
    blank = Image.new("RGBA", (1000, 300), (0, 0, 0, 0))
    text, boxes, _, status, _ = app.predict(sketch_value(tmp_path, encode(blank)), "digits/1.0", api_name="/read_text")
    assert text == "" and boxes is None
    assert status.startswith("**Error:**") and "blank" in status
