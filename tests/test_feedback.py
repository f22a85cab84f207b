"""Corrections make the models yours: the app saves a drawing with the right answer
(client/feedback.py, in torchvision's ImageFolder layout), and ``make train FEEDBACK_DIR=...``
trains on them (training/feedback.py) so that the new model reads them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from client.api import Endpoints
from client.app import AppSettings, Recognizer
from client.feedback import count_corrections, save_correction
from handler.glyph import GlyphSettings, canvas_to_glyph
from handler.inprocess import start_batch, worker_context
from handler.recognizer import RecognizerHandler
from tests.canvases import drawing_png, transparent_sketch, uniform_png
from tests.conftest import make
from tests.test_training import tiny_mnist  # noqa: F401  (a fixture: a synthetic MNIST with pen data)
from training.feedback import class_index, load_feedback

# Three drawings and the answers their writer says are right: this writer's 3, 5 and 8 look like
# what the shipped data calls a 7, a 0 and a 4.
CORRECTIONS = {"7": "3", "0": "5", "4": "8"}


def test_a_correction_is_the_drawing_under_its_label(tmp_path):
    path = save_correction(tmp_path / "corrections", drawing_png("7"), " 3 ")
    assert path.parent == tmp_path / "corrections" / "3" and path.suffix == ".png"
    assert path.read_bytes() == drawing_png("7")
    save_correction(tmp_path / "corrections", drawing_png("0"), "3")  # a second one, another name
    assert count_corrections(tmp_path / "corrections") == 2
    for label in ("", "34", "/", "..", "é"):
        with pytest.raises(ValueError, match="one digit or letter"):
            save_correction(tmp_path / "corrections", drawing_png("7"), label)


def test_each_recognizer_takes_its_own_characters_with_its_merge_rules():
    assert class_index("7", "digits") == 7 and class_index("A", "digits") is None
    assert class_index("a", "letters") == class_index("A", "letters") == 0
    assert class_index("a", "letters", cased=True) == 26
    assert class_index("a", "balanced") == 36 and class_index("c", "balanced") == class_index("C", "balanced")


def test_corrections_are_normalized_as_the_handler_normalizes_a_request(tmp_path):
    root = tmp_path / "corrections"
    save_correction(root, transparent_sketch("7"), "7")
    save_correction(root, transparent_sketch("L"), "L")  # not a digit: a digits training skips it
    feedback = load_feedback(root, "digits", GlyphSettings())
    assert feedback.labels.tolist() == [7] and feedback.glyphs.dtype == np.uint8
    expected = np.uint8(canvas_to_glyph(transparent_sketch("7")) * 255.0 + 0.5)
    assert np.array_equal(feedback.glyphs[0], expected)
    assert feedback.source == f"1 corrections from {root} (1 of other characters skipped)"
    save_correction(root, uniform_png(255), "1")
    with pytest.raises(ValueError, match="correction .*/1/.*blank"):
        load_feedback(root, "digits", GlyphSettings())
    with pytest.raises(FileNotFoundError, match="no corrections folder"):
        load_feedback(tmp_path / "nowhere", "digits", GlyphSettings())


@pytest.mark.slow
def test_three_corrections_and_one_epoch_and_the_new_model_reads_them(tiny_mnist, tmp_path):  # noqa: F811
    corrections = tmp_path / "corrections"
    app = Recognizer(AppSettings(endpoints=Endpoints.discover(run_dir=tmp_path), corrections_dir=corrections))
    for drawn, right in CORRECTIONS.items():
        sketch = {"background": None, "layers": [], "composite": Image.open(io.BytesIO(transparent_sketch(drawn)))}
        assert app.save_correction(sketch, right).startswith(f"Saved as an example of **{right}**")

    out = tmp_path / "models"
    result = make("train", "MODEL=digits", f"DATA_DIR={tiny_mnist}", f"MODELS_DIR={out}", f"CACHE_DIR={tmp_path / 'cache'}",
                  "EPOCHS=1", "BATCH_SIZE=32", "LIMIT=300", "THREADS=1", f"FEEDBACK_DIR={corrections}", "FEEDBACK_SHARE=0.25")
    assert f"3 corrections from {corrections}" in result.stdout
    assert "8 corrections (3 drawings)" in result.stdout  # 0.25 of each batch of 32
    model = json.loads((out / "digits" / "model.json").read_text())
    assert f"3 corrections from {corrections}" in model["trained_on"]

    context = worker_context(out / "digits", "digits", {"handler": {"torch_threads": 1}})
    handler = RecognizerHandler()
    handler.initialize(context)
    for drawn, right in CORRECTIONS.items():
        start_batch(context, 1)
        answer = json.loads(handler.handle([{"body": transparent_sketch(drawn)}], context)[0])
        assert (answer["label"], answer["accepted"]) == (right, True), answer
