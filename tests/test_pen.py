"""Specification of training/pen.py and training/nonchars.py: pen data split by writer, drawn and
decoded by the handler's code, labelled for each recognizer; non-characters that are none of the
recognizers' characters."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from handler.glyph import GlyphSettings, canvas_to_glyph
from training.labels import CLASS_NAMES
from training.nonchars import GENERATORS, KINDS, NOT_DIGIT_LETTERS, face, nonchar
from training.pen import fat_pen_glyphs, prepare_pen, recognizer_split, sample_classes, split_writers
from training.strokes import PenSample, PenStyle, draw_strokes
from tests.test_strokes import write_jsonl


def sample(label: str, writer: str, kind: str | None = None) -> PenSample:
    kind = kind or ("digit" if label.isdigit() else "uppercase" if label.isupper() else "lowercase")
    site = writer.split("/")[0]
    angle = (ord(label) % 12) * np.pi / 12
    line = np.array([[0.0, 0.0], [100 * np.cos(angle), 100 * np.sin(angle) + 30]])
    return PenSample(f"{writer}/{label}", kind, label, site, writer, (line,))


def test_no_writer_is_in_two_parts_and_every_sample_is_in_one():
    samples = [sample(d, f"s{w % 3}/w{w}") for w in range(60) for d in "0123456789"]
    parts = split_writers(samples)
    writers = {part: {s.writer for s in kept} for part, kept in parts.items()}
    assert not (writers["train"] & writers["val"]) and not (writers["train"] & writers["test"])
    assert not (writers["val"] & writers["test"])
    assert sum(len(kept) for kept in parts.values()) == len(samples)
    assert len(writers["test"]) == len(writers["val"]) == 9  # 15% of 60 writers each


def test_each_recognizer_labels_the_samples_it_can_use():
    samples = [sample("7", "a/w1"), sample("K", "a/w1"), sample("O", "a/w1"), sample("g", "a/w1"), sample("c", "a/w1")]
    digits = sample_classes("digits", samples)
    assert digits.tolist() == [7, 10, -1, -1, -1]  # K looks like no digit: the reject class; O is skipped
    letters = sample_classes("letters", samples)
    assert letters.tolist() == [-1, 10, 14, 6, 2]  # case merged
    balanced = sample_classes("balanced", samples)
    names = CLASS_NAMES["balanced"]
    assert [names[i] for i in balanced] == ["7", "K", "O", "g", "C"]  # EMNIST Balanced merges c into C


def test_non_characters_take_turns_and_are_reproducible():
    kinds = [nonchar(i, seed=1)[0] for i in range(2 * len(KINDS))]
    assert kinds == list(KINDS) * 2
    first, again = nonchar(5, seed=1)[1], nonchar(5, seed=1)[1]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not set(NOT_DIGIT_LETTERS) & set("BDGIJLOQSTZ")  # letters some way of writing a digit resembles


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_non_character_is_a_drawing_the_handler_reads(kind):
    strokes = GENERATORS[kind](np.random.default_rng(7))
    glyph = canvas_to_glyph(draw_strokes(strokes, "transparent", np.random.default_rng(7), PenStyle()))
    assert glyph.max() == 1.0  # not blank


def test_a_face_has_marks_inside_its_ring_that_touch_nothing():
    png = draw_strokes(face(np.random.default_rng(3)), "black_on_white", np.random.default_rng(3), PenStyle(pen_width=(6.0, 6.0)))
    ink = np.asarray(Image.open(io.BytesIO(png)).convert("L")) < 128
    labels, count = ndimage.label(ink, structure=np.ones((3, 3)))
    ring = max(range(1, count + 1), key=lambda k: np.count_nonzero(labels == k))
    inside = ndimage.binary_fill_holes(labels == ring) & (labels > 0) & (labels != ring)
    assert count >= 4 and len(set(labels[inside].tolist())) == count - 1  # two eyes and a mouth, all inside


def test_pen_data_is_drawn_cached_and_split_into_recognizer_classes(tmp_path):
    records = [
        {"id": f"{w}/{d}", "kind": "digit", "label": d, "contributor": "s", "writer_id": f"w{w}",
         "strokes": [[[0, 0], [int(d) * 10 + 5, 100]]]}
        for w in range(20) for d in "0123456789"
    ]
    (tmp_path / "UNIPEN-dev").mkdir()
    write_jsonl(tmp_path / "UNIPEN-dev" / "tiny.jsonl", records)
    pen = prepare_pen(tmp_path, GlyphSettings(), variants=2, cache_dir=tmp_path / "cache", limit=40)
    train = pen.parts["train"]
    assert len(train.samples) == 40 and len(train.glyphs) == 40 * 2 + 40  # 2 drawings each + 40 non-characters
    assert train.glyphs.dtype == np.uint8 and train.glyphs.shape[1:] == (28, 28)
    assert (train.glyphs.reshape(len(train.glyphs), -1).max(1) == 255).all()  # every canvas decoded to ink
    assert len(pen.parts["test"].glyphs) == 3 * len(pen.parts["test"].samples) + 40  # one canvas per style
    split = recognizer_split("digits", train)
    assert (split.labels == 10).sum() == 40 and set(split.labels[split.labels < 10]) <= set(range(10))
    cached = list((tmp_path / "cache" / "pen").glob("*.npz"))
    assert len(cached) == 1
    again = prepare_pen(tmp_path, GlyphSettings(), variants=2, cache_dir=tmp_path / "cache", limit=40)
    assert np.array_equal(again.parts["train"].glyphs, train.glyphs)


def strong_ink(glyphs: np.ndarray) -> np.ndarray:
    """Each uint8 glyph's pixels at 128 or more."""
    return (glyphs >= 128).reshape(len(glyphs), -1).sum(axis=1)


def test_a_quarter_of_training_drawings_and_every_fat_pen_drawing_use_pens_fat_for_their_size(tmp_path):
    # Zeros (rings of various heights) by 20 writers. A fat pen leaves a glyph with less strong ink
    # than any usual pen does (its strokes are thinned back, its loop narrowed).
    turn = np.linspace(0, 2 * np.pi, 40)
    records = [{"id": f"{w}/{k}", "kind": "digit", "label": "0", "contributor": "s", "writer_id": f"w{w}",
                "strokes": [np.c_[50 * np.cos(turn), (60 + 5 * k) * np.sin(turn)].round(2).tolist()]}
               for w in range(20) for k in range(10)]
    (tmp_path / "UNIPEN-dev").mkdir()
    write_jsonl(tmp_path / "UNIPEN-dev" / "zeros.jsonl", records)
    pen = prepare_pen(tmp_path, GlyphSettings(), variants=4, cache_dir=tmp_path / "cache", limit=40)
    train, test = pen.parts["train"], pen.parts["test"]
    usual = strong_ink(test.glyphs[test.sample >= 0])  # validation and test: the usual pens
    unlike_usual = strong_ink(train.glyphs[train.sample >= 0]) < usual.min()
    assert 0.05 < unlike_usual.mean() < 0.3  # a quarter drawn with fat pens, not all of them that thin
    fat = strong_ink(fat_pen_glyphs(test.samples, GlyphSettings()))
    assert len(fat) == len(test.samples) and np.median(fat) < usual.min()


def test_no_pen_data_is_a_clear_error(tmp_path):
    from training.datasets import DatasetNotFound

    with pytest.raises(DatasetNotFound, match="pen: 0"):
        prepare_pen(tmp_path, GlyphSettings(), variants=1, cache_dir=tmp_path / "cache")


def test_a_case_aware_letters_model_learns_lower_case_as_classes_of_its_own():
    from training.labels import CASED_LETTERS, byclass_to_letters

    samples = [sample("K", "a/w1"), sample("g", "a/w1"), sample("7", "a/w1")]
    assert sample_classes("letters", samples, cased=True).tolist() == [10, 26 + 6, -1]
    assert [CASED_LETTERS[i] for i in byclass_to_letters(np.array([10, 36, 61]), cased=True)] == ["A", "a", "z"]
    assert byclass_to_letters(np.array([3]), cased=True).tolist() == [-1]
