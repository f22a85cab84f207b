"""Specification of training/strokes.py: pen data in the documented schema, read with clear
errors, drawn upright with its aspect ratio kept, in every canvas style."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from handler.glyph import canvas_to_glyph
from training.canvas import CANVAS_STYLES
from training.strokes import (
    PenDataError, PenStyle, StrokeAugment, augment_strokes, draw_strokes, find_pen_data,
    read_pen_samples, upright,
)

# An "L" in tablet coordinates (y up): a long vertical stroke, then a short foot at the bottom.
L_SHAPE = [[[0, 100], [0, 0]], [[0, 0], [50, 0]]]


def record(**overrides) -> dict:
    base = {"id": "1b/x/w1/0", "kind": "uppercase", "label": "L", "contributor": "x", "writer_id": "w1",
            "quality": "OK", "strokes": L_SHAPE}
    return {**base, **overrides}


def write_jsonl(path: Path, records: list, gz: bool = False) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def ink(png: bytes) -> np.ndarray:
    """Ink coverage in [0, 1] of a canvas in any of the three styles."""
    image = Image.open(io.BytesIO(png))
    if image.mode == "RGBA":
        return np.asarray(image.getchannel("A"), dtype=np.float64) / 255
    grey = np.asarray(image.convert("L"), dtype=np.float64) / 255
    return grey if grey[0, 0] < 0.5 else 1 - grey


def test_a_gzipped_file_is_read_with_writers_unique_across_sites(tmp_path):
    path = write_jsonl(tmp_path / "pen.jsonl.gz", [record(), record(contributor="y", id="1b/y/w1/0")], gz=True)
    samples = read_pen_samples(path)
    assert [s.writer for s in samples] == ["x/w1", "y/w1"]
    assert samples[0].strokes[0].shape == (2, 2) and samples[0].label == "L"


@pytest.mark.parametrize("bad, message", [
    ("{not json", "not valid JSON"),
    (record(kind="symbol"), "kind"),
    (record(label="LL"), "label"),
    (record(label="l"), "is not of kind 'uppercase'"),
    ({k: v for k, v in record().items() if k != "writer_id"}, "writer_id"),
    (record(strokes=[]), "strokes"),
    (record(strokes=[[[0, 1, 2]]]), "strokes/0: each point must be [x, y]"),
    (record(strokes=[[["a", 1]]]), "strokes/0"),
])
def test_a_record_that_breaks_the_schema_is_refused_naming_the_line_and_field(tmp_path, bad, message):
    path = write_jsonl(tmp_path / "pen.jsonl", [record(), bad])
    with pytest.raises(PenDataError, match="line 2") as error:
        read_pen_samples(path)
    assert message in str(error.value)


def test_pen_files_are_found_under_the_data_root(tmp_path):
    (tmp_path / "UNIPEN-dev").mkdir()
    (tmp_path / "pen").mkdir()
    write_jsonl(tmp_path / "UNIPEN-dev" / "a.jsonl.gz", [record()], gz=True)
    write_jsonl(tmp_path / "pen" / "mine.jsonl", [record()])
    (tmp_path / "pen" / "notes.txt").write_text("not pen data")
    assert [p.name for p in find_pen_data(tmp_path)] == ["a.jsonl.gz", "mine.jsonl"]
    assert find_pen_data(tmp_path / "nowhere") == []


@pytest.mark.parametrize("style", CANVAS_STYLES)
def test_a_drawing_is_upright_and_keeps_its_aspect_ratio_in_every_style(style):
    png = draw_strokes(upright([np.array(s, float) for s in L_SHAPE]), style, np.random.default_rng(0))
    coverage = ink(png)
    rows = np.flatnonzero(coverage.max(axis=1) > 0.5)
    cols = np.flatnonzero(coverage.max(axis=0) > 0.5)
    height, width = rows[-1] - rows[0], cols[-1] - cols[0]
    assert 1.6 < height / width < 2.4  # 100 x 50, plus the pen's width on each axis
    # y up in the data, up on the canvas: the foot of the L is at the bottom of the drawing.
    bottom = coverage[rows[-1] - 3 : rows[-1] + 1, cols[0] : cols[-1] + 1]
    top = coverage[rows[0] : rows[0] + 4, cols[0] : cols[-1] + 1]
    assert (bottom > 0.5).sum() > 3 * (top > 0.5).sum()


def test_the_pen_width_and_size_follow_the_pen_style():
    strokes = upright([np.array(s, float) for s in L_SHAPE])
    thin = ink(draw_strokes(strokes, "white_on_black", np.random.default_rng(0), PenStyle((0.5, 0.5), (4, 4))))
    thick = ink(draw_strokes(strokes, "white_on_black", np.random.default_rng(0), PenStyle((0.5, 0.5), (16, 16))))
    assert thick.sum() > 2.5 * thin.sum()
    assert np.ptp(np.flatnonzero(thin.max(axis=1) > 0.5)) == pytest.approx(0.5 * 280, abs=6)


def _ink_height_and_stem(png: bytes) -> tuple[int, int]:
    """The ink's height and the width of the L's stem halfway down, in canvas pixels."""
    coverage = ink(png) > 0.5
    rows = np.flatnonzero(coverage.any(axis=1))
    return int(np.ptp(rows)) + 1, int(coverage[(rows[0] + rows[-1]) // 2].sum())


def test_a_fat_pen_is_wide_for_the_drawings_size_and_drawn_for_the_share_asked():
    strokes = upright([np.array(s, float) for s in L_SHAPE])
    usual = dict(size=(0.5, 0.5), pen_width=(5, 5))  # 140 pixels tall, 5 wide
    fat = PenStyle(**usual, fat=1.0, fat_size=(0.3, 0.3), fat_ratio=(0.25, 0.25))  # 84 tall, 21 wide
    height, stem = _ink_height_and_stem(draw_strokes(strokes, "transparent", np.random.default_rng(0), fat))
    assert height == pytest.approx(84 + 21, abs=3) and stem == pytest.approx(21, abs=2)
    half = PenStyle(**usual, fat=0.5, fat_size=(0.3, 0.3), fat_ratio=(0.25, 0.25))
    fat_drawn = [_ink_height_and_stem(draw_strokes(strokes, "transparent", np.random.default_rng(seed), half))[1] > 15
                 for seed in range(60)]
    assert 18 <= sum(fat_drawn) <= 42  # about half of 60


def test_without_fat_pens_the_random_draws_and_canvases_are_those_of_the_usual_pens():
    strokes = upright([np.array(s, float) for s in L_SHAPE])
    other_fat_settings = PenStyle(fat=0.0, fat_size=(0.1, 0.1), fat_ratio=(0.5, 0.5))
    assert draw_strokes(strokes, "black_on_white", np.random.default_rng(4), other_fat_settings) == \
        draw_strokes(strokes, "black_on_white", np.random.default_rng(4), PenStyle())


def test_a_dot_is_drawn_as_one_dab_of_the_pen():
    png = draw_strokes([np.zeros((1, 2))], "black_on_white", np.random.default_rng(0), PenStyle(pen_width=(10, 10)))
    covered = (ink(png) > 0.5).sum()
    assert 50 < covered < 110  # a disk of diameter 10: ~79 pixels


def test_drawings_are_anti_aliased():
    strokes = upright([np.array([[0, 0], [100, 37]], float)])
    coverage = ink(draw_strokes(strokes, "white_on_black", np.random.default_rng(0)))
    partial = ((coverage > 0.05) & (coverage < 0.95)).sum()
    assert partial > 50


def test_stroke_variation_is_small_seeded_and_keeps_the_character():
    strokes = upright([np.array(s, float) for s in L_SHAPE])
    first = augment_strokes(strokes, StrokeAugment(), np.random.default_rng(5))
    again = augment_strokes(strokes, StrokeAugment(), np.random.default_rng(5))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    moved = max(np.abs(a - b).max() for a, b in zip(first, strokes))
    assert 0 < moved < 0.5 * 100
    identity = augment_strokes(strokes, StrokeAugment(0, 0, 0, 0, 0, 0, 0), np.random.default_rng(5))
    assert all(np.allclose(a, b) for a, b in zip(identity, strokes))


def test_every_style_decodes_to_the_same_glyph_through_the_handlers_code():
    strokes = upright([np.array(s, float) for s in L_SHAPE])
    glyphs = [canvas_to_glyph(draw_strokes(strokes, style, np.random.default_rng(3))) for style in CANVAS_STYLES]
    assert all(np.abs(g - glyphs[0]).mean() < 0.01 for g in glyphs)
