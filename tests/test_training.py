"""Training, export and evaluation, specified on data the tests write themselves.

- A one-epoch training on a tiny synthetic MNIST exports a TorchScript model that reloads and
  matches the eager model, with the folder layout the handler relies on.
- Augmentation keeps shapes, is the identity at zero strength and is reproducible by seed.
- The canvas renderer draws a glyph the way people draw, and every canvas style decodes through
  the handler's ``canvas_to_glyph`` to nearly the glyph the model was trained on.
- Re-evaluating an exported model prepares its data as its training did.
- ``curves.png`` shows the score that picked the exported epoch, not the scans' accuracy alone.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageDraw

from handler.glyph import GlyphSettings, canvas_to_glyph, normalize_glyph
from training import train
from training.augment import AugmentSettings, augment
from training.evaluate import CANVAS_SIZE, CANVAS_STYLES, classification_metrics, plot_curves, render_canvas, validation_curves
from training.evaluate import main as evaluate_main
from training.model import GlyphNet

EXPORTED_FILES = {
    "model.pt", "index_to_name.json", "preprocessing.json", "model.json",
    "metrics.json", "confusion_matrix.png", "confusion_matrix.json", "curves.png", "reliability.png",
}


def stroke_glyph(label: int, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 uint8 glyph (ink 255 on 0, upright) whose class is the angle of a thick bar
    (18 degrees a class) with a small random wobble: distinct classes a CNN learns at once."""
    image = Image.new("L", (28, 28))
    angle = np.deg2rad(18 * label + rng.uniform(-3, 3))
    dx, dy = 9 * np.cos(angle), 9 * np.sin(angle)
    cx, cy = 14 + rng.uniform(-2, 2), 14 + rng.uniform(-2, 2)
    ImageDraw.Draw(image).line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=3)
    return np.asarray(image)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Gzipped IDX of unsigned bytes, as MNIST ships."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    """A data root holding a synthetic MNIST (300 training and 60 test images)."""
    rng = np.random.default_rng(0)
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", 300), ("t10k", 60)):
        labels = np.arange(count) % 10
        images = np.stack([stroke_glyph(int(c), rng) for c in labels])
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels)
    # Pen strokes of 20 writers in the documented schema: the same bars, drawn as pen strokes,
    # and capital letters that look like no digit (the digits model's "not a character" class).
    records = []
    for writer in range(20):
        for label in "0123456789AKMW":
            angle = np.deg2rad(18 * int(label) if label.isdigit() else 18 * writer)
            end = [round(50 + 40 * np.cos(angle)), round(50 + 40 * np.sin(angle))]
            start = [round(50 - 40 * np.cos(angle)), round(50 - 40 * np.sin(angle))]
            strokes = [[start, end]] if label.isdigit() else [[start, end], [[0, 0], [90, 90]], [[0, 90], [90, 0]]]
            kind = "digit" if label.isdigit() else "uppercase"
            records.append({"id": f"{writer}/{label}", "kind": kind, "label": label, "contributor": "t",
                            "writer_id": f"w{writer}", "strokes": strokes})
    (tmp_path / "data" / "pen").mkdir()
    (tmp_path / "data" / "pen" / "strokes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return tmp_path / "data"


@pytest.mark.slow
def test_one_epoch_training_exports_a_torchscript_model_that_matches_the_eager_model(tiny_mnist, tmp_path, monkeypatch):
    out, cache, config = tmp_path / "models", tmp_path / "cache", tmp_path / "recognizers.yaml"
    # Half of the scans drawn on canvases first, and batches mixing scans, pen strokes and
    # non-characters (the shipped mix), so the smoke run takes every data path.
    config.write_text(yaml.safe_dump({"defaults": train.load_config("digits"), "digits": {"canvas_copies": 0.5}}))
    train.main([
        "--model", "digits", "--data-dir", str(tiny_mnist), "--out", str(out), "--cache-dir", str(cache),
        "--config", str(config), "--epochs", "1", "--batch-size", "32", "--canvas-limit", "12", "--limit", "300",
    ])
    seed = train.load_config("digits")["seed"]  # the canvas copies are drawn with the training's seed
    assert len(list((cache / "normalized").glob(f"digits-*-canvas{seed}.npz"))) == 1
    assert len(list((cache / "pen").glob("pen-*.npz"))) == 1

    folder = out / "digits"
    assert EXPORTED_FILES <= {p.name for p in folder.iterdir()}
    assert sum(p.stat().st_size for p in folder.iterdir()) < 5 * 1024 * 1024

    info = json.loads((folder / "model.json").read_text())
    assert info["name"] == "digits" and info["num_classes"] == 10 and info["epochs"] == 1
    assert info["reject_output"] is True and "pen-stroke characters" in info["trained_on"]
    assert "only the first 300 images of each split used (--limit)" in info["trained_on"]  # not the card of a full run
    assert info["classes"] == [str(d) for d in range(10)]
    assert {"version", "trained_on", "parameters", "train_seconds"} <= set(info)
    assert json.loads((folder / "index_to_name.json").read_text())["7"] == "7"
    preprocessing = json.loads((folder / "preprocessing.json").read_text())
    assert GlyphSettings.from_dict(preprocessing["glyph"]) == GlyphSettings()
    assert 0 < preprocessing["mean"] < 1 and 0 < preprocessing["std"] < 1
    calibration = preprocessing["calibration"]
    assert calibration["temperature"] > 0 and 0 < calibration["reject_threshold"] <= 1

    checkpoint = torch.load(cache / "checkpoints" / "digits.pt")
    eager = GlyphNet(11)  # ten digits and "not a character"
    eager.load_state_dict(checkpoint["state_dict"])
    eager.eval()
    scripted = torch.jit.load(str(folder / "model.pt"))
    batch = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert scripted(batch).shape == (8, 11)
        assert torch.allclose(scripted(batch), eager(batch), atol=1e-4)

    metrics = json.loads((folder / "metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1 and 0 <= metrics["macro_f1"] <= 1
    assert "(--limit)" in metrics["data"]
    assert set(metrics["canvas"]["per_style"]) == set(CANVAS_STYLES)
    assert metrics["canvas"]["images"] == 12
    assert len(metrics["training"]["history"]["val_accuracy"]) == 1
    assert len(metrics["training"]["history"]["val_pen_accuracy"]) == 1
    pen = metrics["pen"]
    assert pen["canvases"] > 0 and set(pen["per_style"]) == set(CANVAS_STYLES) and set(pen["per_kind"]) == {"digit"}
    assert 0 <= pen["accuracy"] <= 1 and "letters_AKMW" in pen["rejection"]["nonchars_rejected"]
    assert {"scan test", "pen test"} <= set(metrics["calibration"])
    fat = pen["fat_pens"]  # the test writers' digits again, drawn with fat pens
    assert fat["canvases"] == pen["canvases"] // len(CANVAS_STYLES)
    assert 0 <= fat["wrong_accepted"] <= 1 - fat["accuracy"] and 0 <= fat["rejected"] <= 1
    assert (folder / "reliability.png").stat().st_size > 1000
    # A card written before the fat-pen figure gets it alone, the rest of the card untouched.
    del metrics["pen"]["fat_pens"]
    (folder / "metrics.json").write_text(json.dumps(metrics))
    evaluate_main(["--model", "digits", "--data-dir", str(tiny_mnist), "--models", str(out), "--only", "fat_pens"])
    assert json.loads((folder / "metrics.json").read_text()) == {**metrics, "pen": {**pen, "fat_pens": fat}}

    # An interrupted run is exported from its checkpoint: the very same model, without training.
    (folder / "model.pt").unlink()
    train.main(["--model", "digits", "--data-dir", str(tiny_mnist), "--out", str(out), "--cache-dir", str(cache),
                "--config", str(config), "--from-checkpoint", "--canvas-limit", "3"])
    with torch.no_grad():
        assert torch.equal(torch.jit.load(str(folder / "model.pt"))(batch), scripted(batch))

    # A run that fails after training (here its evaluation) leaves the exported model and its card
    # as they were, and no partial folder.
    def files() -> dict[str, tuple[bytes, int]]:
        return {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in folder.iterdir()}

    before = files()

    def fails(*args, **kwargs):
        raise RuntimeError("the evaluation failed")

    monkeypatch.setattr("training.evaluate.evaluate_folder", fails)
    with pytest.raises(RuntimeError):
        train.main(["--model", "digits", "--data-dir", str(tiny_mnist), "--out", str(out), "--cache-dir", str(cache),
                    "--config", str(config), "--from-checkpoint", "--canvas-limit", "3", "--seed", "7"])
    assert files() == before  # not even written again
    assert sorted(path.name for path in out.iterdir()) == ["digits"]


@pytest.mark.parametrize("option", [["--epochs", "0"], ["--limit", "0"], ["--batch-size", "-1"],
                                    ["--feedback-share", "1.5"], ["--feedback-share", "-0.2"], ["--threads", "0"]])
def test_training_refuses_options_out_of_range_before_loading_anything(option, capsys):
    with pytest.raises(SystemExit) as stopped:
        train.parse_args(["--model", "digits", *option])
    assert stopped.value.code == 2 and option[1] in capsys.readouterr().err


def test_evaluating_a_folder_without_a_model_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no exported model in .*make train"):
        evaluate_main(["--model", "digits", "--models", str(tmp_path)])


def test_the_curves_show_the_score_that_picked_the_exported_epoch(tmp_path):
    history = {"train_loss": [0.9, 0.6, 0.5], "val_accuracy": [0.90, 0.95, 0.96],
               "val_pen_accuracy": [0.80, 0.93, 0.90], "val_score": [0.85, 0.94, 0.93]}
    curves = validation_curves(history)
    assert list(curves) == ["scans", "pen characters", "score (mean, picks the epoch)"]
    assert np.allclose(curves["score (mean, picks the epoch)"], [85.0, 94.0, 93.0])  # in %: epoch 2 is exported
    plot_curves(history, 2, tmp_path / "curves.png")
    assert Image.open(tmp_path / "curves.png").size == (720, 280)  # 9 x 3.5 inches at 80 dpi


def test_without_pen_data_the_curves_are_the_scans_alone():
    history = {"train_loss": [0.9, 0.6], "val_accuracy": [0.9, 0.95], "val_pen_accuracy": [None, None], "val_score": [0.9, 0.95]}
    assert validation_curves(history) == {"scans": [90.0, 95.0]}


def test_augment_keeps_the_batch_shape_and_range():
    images = torch.rand(16, 1, 28, 28)
    settings = AugmentSettings(rotation=15, scale=0.15, shear=0.3, translate=0.1, stroke=0.5, elastic=2.0)
    out = augment(images, settings, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1 + 1e-6


def test_augment_at_zero_strength_is_the_identity():
    images = torch.rand(8, 1, 28, 28)
    assert torch.allclose(augment(images, AugmentSettings()), images, atol=1e-5)


def test_augment_is_reproducible_with_a_seeded_generator():
    images = torch.rand(8, 1, 28, 28)
    settings = AugmentSettings(rotation=10, translate=0.1, stroke=0.5, elastic=1.0)
    first = augment(images, settings, torch.Generator().manual_seed(3))
    again = augment(images, settings, torch.Generator().manual_seed(3))
    other = augment(images, settings, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_narrow_squeezes_the_chosen_glyphs_horizontally_about_their_centre():
    square = torch.zeros(64, 1, 28, 28)
    square[:, :, 4:24, 4:24] = 1.0  # a 20 x 20 box, as normalization frames a glyph
    out = augment(square, AugmentSettings(narrow=0.5, narrow_min=0.4), torch.Generator().manual_seed(0))
    columns = (out > 0.5).any(dim=2).squeeze(1).sum(dim=1)  # ink columns of each image
    rows = (out > 0.5).any(dim=3).squeeze(1).sum(dim=1)
    squeezed = columns < 19
    assert 16 <= int(squeezed.sum()) <= 48  # about half of them
    assert int(columns.min()) >= 7 and bool((rows == 20).all())  # at least 0.4 of the width; the height kept
    centres = [(np.flatnonzero(image[0].any(dim=0).numpy()).mean()) for image in (out > 0.5)]
    assert np.allclose(centres, 13.5, atol=0.6)


def test_narrow_at_zero_leaves_the_other_warps_as_they_were():
    images = torch.rand(8, 1, 28, 28)
    settings = AugmentSettings(rotation=10, scale=0.1, translate=0.1)
    again = AugmentSettings(rotation=10, scale=0.1, translate=0.1, narrow=0.0, narrow_min=0.2)
    assert torch.equal(augment(images, settings, torch.Generator().manual_seed(5)),
                       augment(images, again, torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("style", CANVAS_STYLES)
def test_each_canvas_style_decodes_to_nearly_the_training_glyph(style):
    glyph = stroke_glyph(3, np.random.default_rng(0))
    png = render_canvas(glyph, style, np.random.default_rng(1))

    canvas = Image.open(io.BytesIO(png))
    assert canvas.format == "PNG" and canvas.size == (CANVAS_SIZE, CANVAS_SIZE)
    assert canvas.mode == ("RGBA" if style == "transparent" else "L")
    decoded = canvas_to_glyph(png)
    expected = normalize_glyph(glyph / 255.0)
    assert np.abs(decoded - expected).mean() < 0.05
    assert np.corrcoef(decoded.ravel(), expected.ravel())[0, 1] > 0.9


def test_canvas_glyph_is_large_and_anywhere_on_the_canvas():
    glyph = stroke_glyph(5, np.random.default_rng(0))
    boxes = []
    for seed in range(12):
        canvas = np.asarray(Image.open(io.BytesIO(render_canvas(glyph, "white_on_black", np.random.default_rng(seed)))))
        rows, cols = np.flatnonzero(canvas.max(axis=1) > 127), np.flatnonzero(canvas.max(axis=0) > 127)
        boxes.append((rows[0], rows[-1], cols[0], cols[-1]))
    sides = [max(r1 - r0, c1 - c0) + 1 for r0, r1, c0, c1 in boxes]
    # 35-80% of the canvas, give or take the pen: a marker widens, a fine pen narrows the glyph.
    assert 0.3 * CANVAS_SIZE <= min(sides) and max(sides) <= 0.9 * CANVAS_SIZE
    centres = {((r0 + r1) // 40, (c0 + c1) // 40) for r0, r1, c0, c1 in boxes}
    assert len(centres) > 3  # off-centre, not always in the same place


def test_canvas_rendering_is_reproducible_with_a_seed():
    glyph = stroke_glyph(2, np.random.default_rng(0))
    first = render_canvas(glyph, "transparent", np.random.default_rng(7))
    assert render_canvas(glyph, "transparent", np.random.default_rng(7)) == first


def test_classification_metrics_from_a_confusion_matrix():
    matrix = np.array([[3, 1], [0, 4]])  # rows true, columns predicted
    metrics = classification_metrics(matrix, ["a", "b"])
    assert metrics["accuracy"] == pytest.approx(7 / 8)
    assert metrics["per_class"]["a"] == pytest.approx(
        {"precision": 1.0, "recall": 0.75, "f1": 6 / 7, "accuracy": 0.75, "support": 4}
    )
    assert metrics["per_class"]["b"]["precision"] == pytest.approx(0.8)
    assert metrics["macro_f1"] == pytest.approx((6 / 7 + 2 * 0.8 / 1.8) / 2)


def test_a_case_aware_letters_model_answers_each_letter_with_the_sum_of_its_two_cases():
    from training.model import CaseMerged

    net = GlyphNet(53)  # 26 capitals, 26 lower case, "not a character"
    merged = CaseMerged(net).eval()
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cased = torch.softmax(net.eval()(x), dim=1)
        answered = torch.softmax(merged(x), dim=1)
        scripted = torch.jit.script(merged)(x)
    assert answered.shape == (4, 27)
    assert torch.allclose(answered[:, :26], cased[:, :26] + cased[:, 26:52], atol=1e-6)
    assert torch.allclose(answered[:, 26], cased[:, 52], atol=1e-6)
    assert torch.allclose(scripted, merged(x), atol=1e-5)


def test_evaluating_a_model_again_prepares_its_data_as_training_did(shipped_models, tmp_path, monkeypatch):
    """``python -m training.evaluate`` re-measures an exported model on the data its training
    prepared: letters trained case-aware (config/recognizers.yaml) get their labels cased again,
    so the model card's data line stays what training wrote. What the CLI asks of
    ``training.prepare.prepare`` is recorded, and the evaluation stops there."""

    class Prepared(Exception):
        pass

    asked: dict[str, bool] = {}

    def prepare(recognizer, data_dir, settings, *args, cased_letters=False, **kwargs):
        asked[recognizer] = cased_letters
        raise Prepared

    monkeypatch.setattr("training.prepare.prepare", prepare)
    for name in ("letters", "digits"):
        with pytest.raises(Prepared):
            evaluate_main(["--model", name, "--models", str(shipped_models), "--data-dir", str(tmp_path)])
    assert train.load_config("letters")["case_aware"] is True
    assert asked == {"letters": True, "digits": False}
