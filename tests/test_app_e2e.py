"""The Gradio app end to end: ``gradio_client`` calls the running app (``gradio_app``), which calls
a real TorchServe (``torchserve``) serving the shipped models. Error cases call the app's callbacks
directly (:class:`client.app.Recognizer`), against the same server or a dead port."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # gradio_client must not look for Hugging Face

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from client.app import AppSettings, Recognizer
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
    ranking, confidence, seen, round_trip, status = app.predict(
        sketch_value(tmp_path, transparent_sketch(char)), "digits/1.0", 3, api_name="/recognize_drawing"
    )
    assert ranking["label"] == char, ranking
    assert len(ranking["confidences"]) == 3
    best = ranking["confidences"][0]["confidence"]
    assert confidence == f"{best:.1%}"
    assert Image.open(seen).size == (28, 28)  # the glyph the model saw
    assert re.fullmatch(r"\d+ ms", round_trip)
    assert status == f"digits 1.0 reads **{char}** ({confidence})"


def test_an_uploaded_jpeg_gets_the_right_label(app, tmp_path):
    path = tmp_path / "seven.jpg"
    path.write_bytes(encode(drawing("7").convert("RGB"), "JPEG", quality=90))
    ranking, *_, status = app.predict(handle_file(str(path)), "digits/1.0", 5, api_name="/recognize_upload")
    assert ranking["label"] == "7" and len(ranking["confidences"]) == 5, status


def test_a_blank_pad_or_an_unknown_model_is_a_message_not_a_traceback(app, tmp_path):
    white = encode(Image.new("RGBA", (400, 400), "white"))
    ranking, confidence, seen, _, status = app.predict(
        sketch_value(tmp_path, white), "digits/1.0", 3, api_name="/recognize_drawing"
    )
    assert status == "**Error:** the image is blank: draw or upload a character first"
    assert not ranking and confidence == "" and seen is None

    *_, status = app.predict(
        sketch_value(tmp_path, transparent_sketch("7")), "nosuch/1.0", 3, api_name="/recognize_drawing"
    )
    assert status.startswith("**Error:** unknown model or version: Model not found: nosuch")


def test_the_models_tab_lists_every_version_with_its_workers(app):
    table, picker, managed, archives, text_picker, status = app.predict("", "", "", api_name="/refresh_models")
    listed = rows(table)
    assert set(listed) == {"balanced/1.0", "digits/1.0", "letters/1.0"}
    assert all(row["default"] == "yes" and row["worker status"] == "2 READY" for row in listed.values())
    assert ["digits 1.0 (default)", "digits/1.0"] in picker["choices"]
    assert picker["value"] == text_picker["value"] == "digits/1.0"  # the preselected model's default version
    assert {"digits.mar", "letters.mar", "balanced.mar"} <= {value for _, value in archives["choices"]}
    assert status == "3 model versions registered."


def test_the_models_tab_scales_a_model(app, torchserve):
    try:
        table, *_, status = app.predict("letters/1.0", 1, "digits/1.0", api_name="/scale")
        assert status == "letters/1.0 now runs 1 workers."
        assert rows(table)["letters/1.0"]["worker status"] == "1 READY"
        assert len(torchserve.client().describe("letters", "1.0")[0]["workers"]) == 1
    finally:
        table, *_ = app.predict("letters/1.0", 2, "digits/1.0", api_name="/scale")
    assert rows(table)["letters/1.0"]["worker status"] == "2 READY"


def test_the_models_tab_unregisters_registers_and_sets_the_default(app, torchserve):
    try:
        table, picker, *_, status = app.predict("balanced/1.0", "balanced/1.0", api_name="/unregister")
        assert status == "balanced/1.0 is unregistered."
        assert "balanced/1.0" not in rows(table)
        assert picker["value"] == "digits/1.0"  # the picked version is gone: back to the default
    finally:
        table, *_, status = app.predict("balanced.mar", "digits/1.0", "digits/1.0", api_name="/register")
    assert status == "balanced.mar is registered."
    assert rows(table)["balanced/1.0"]["worker status"] == "2 READY"

    *_, status = app.predict("balanced/1.0", "digits/1.0", api_name="/set_default")
    assert status == "balanced/1.0 is now the default version."
    *_, status = app.predict("digits.mar", "digits/1.0", "digits/1.0", api_name="/register")
    assert status.startswith("**Error:**") and "already registered" in status


# -- the callbacks themselves, for the errors a live server rarely shows ------------------------


def recognizer(endpoints) -> Recognizer:
    return Recognizer(AppSettings(endpoints=endpoints))


def sketch_dict(char: str = "7") -> dict:
    """A Sketchpad value as the callback receives it (``type="numpy"``, Gradio's default)."""
    return {"background": None, "layers": [], "composite": Image.open(io.BytesIO(transparent_sketch(char)))}


def test_a_server_that_is_down_is_named(torchserve):
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    callbacks = recognizer(dataclasses.replace(torchserve.endpoints, inference=dead, management=dead))
    *_, status = callbacks.recognize_drawing(sketch_dict(), "digits/1.0", 3)
    assert status == f"**Error:** cannot reach TorchServe at {dead}: is it running? (make serve)"
    table, picker, *_, status = callbacks.refresh(None, None)
    assert status == f"**Error:** cannot reach TorchServe at {dead}: is it running? (make serve)"
    assert table.value["data"] == [] and picker.choices == []


def test_a_rotated_key_is_re_read_from_the_key_file(torchserve):
    callbacks = recognizer(torchserve.endpoints)
    assert callbacks.recognize_drawing(sketch_dict(), "digits/1.0", 3)[0]  # keys now cached
    torchserve.client().rotate_key("inference")  # the cached key is refused from now on
    ranking, *_, status = callbacks.recognize_drawing(sketch_dict(), "digits/1.0", 3)
    assert ranking and ranking.get("7"), status


def test_a_key_file_with_wrong_keys_is_a_message(torchserve, tmp_path):
    keys = json.loads(torchserve.endpoints.key_file.read_text())
    for kind in ("inference", "management"):
        keys[kind]["key"] = "wrong"
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps(keys))
    callbacks = recognizer(dataclasses.replace(torchserve.endpoints, key_file=key_file))
    *_, status = callbacks.recognize_drawing(sketch_dict(), "digits/1.0", 3)
    assert status.startswith(f"**Error:** TorchServe refused the key from {key_file}")


def test_the_text_mode_reads_a_number_and_draws_each_characters_box(app, tmp_path):
    """The Read text tab: a number written on the wide pad (black ink on a transparent
    background, as the browser's pad sends it), read with mode=text."""
    drawn = text_drawing("1705", gaps=[40, 40, 40])
    alpha = Image.eval(drawn, lambda value: 255 - value)
    sketch = Image.new("RGBA", drawn.size, (0, 0, 0, 0))
    sketch.putalpha(alpha)
    text, boxes, round_trip, status = app.predict(
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
    text, boxes, _, status = app.predict(sketch_value(tmp_path, encode(blank)), "digits/1.0", api_name="/read_text")
    assert text == "" and boxes is None
    assert status.startswith("**Error:**") and "blank" in status
