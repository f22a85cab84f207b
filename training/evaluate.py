"""Evaluate an exported recognizer: test metrics, confusion matrix, training curves and canvas
robustness, written beside the model as ``metrics.json``, ``confusion_matrix.{json,png}`` and
``curves.png``.

    python -m training.evaluate --model letters --data-dir DIR [--models models/]

Everything is measured on the exported TorchScript ``model.pt`` with its own
``preprocessing.json``, i.e. on what the handler serves, never on the eager training model.

Canvas robustness: a model that scores 99% on scanned test images can still fail on drawings,
which are larger, off-centre, drawn with thin or thick pens, on white, black or transparent
backgrounds. :func:`render_canvas` draws each held-out test image that way, PNG-encoded, and
:func:`handler.glyph.canvas_to_glyph` (what the handler's preprocess calls) decodes it again.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from handler import text as text_reader
from handler.glyph import BlankImageError, GlyphSettings, InputError, canvas_ink, canvas_to_glyph, measure_stroke_width
from handler.confidence import NO_CALIBRATION, accepted, answered_probabilities, character_probability
from training.calibrate import ECE_BINS, expected_calibration_error, plot_reliability
from training.canvas import CANVAS_SIZE, CANVAS_STYLES, encode_canvas
from training.nonchars import NOT_DIGIT_LETTERS
from training.pen import fat_pen_glyphs, sample_classes as pen_sample_classes
from training.export import write_json
from training.labels import CLASS_NAMES
from training.strings import STRING_LENGTHS, WrittenString, writer_strings

PEN_STYLES = ("thin", "medium", "thick")
CANVAS_SEED = 280  # fixed: every evaluation draws the very same canvases
TEXT_SEED = 2812  # the strings of the text evaluation
TEXT_STRINGS = 600  # strings per evaluation (200 per canvas style)
TEXT_MODELS = ("digits", "letters")  # what the text evaluation measures (the targets)


# ------------------------------------------------------------------------------- predictions


def logits(model: torch.nn.Module, glyphs: np.ndarray, mean: float, std: float, batch_size: int = 1000) -> torch.Tensor:
    """The model's outputs (float32 [N, outputs]) for uint8 glyphs [N, 28, 28], standardized
    with ``mean`` and ``std``."""
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(glyphs)).unsqueeze(1).float() / 255.0
    with torch.no_grad():
        return torch.cat([model((b - mean) / std) for b in x.split(batch_size)])


def predict(
    model: torch.nn.Module, glyphs: np.ndarray, mean: float, std: float, num_classes: int | None = None
) -> np.ndarray:
    """The answered class indices for uint8 glyphs [N, 28, 28]: the best of the first
    ``num_classes`` outputs (all outputs when ``None``; a reject output is never an answer)."""
    return logits(model, glyphs, mean, std)[:, :num_classes].argmax(1).numpy()


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class]."""
    return np.bincount(labels * num_classes + predicted, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def classification_metrics(matrix: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1 and per-class figures from a confusion matrix.

    A class's accuracy is the fraction of its test images recognized (its recall); a class never
    predicted has precision 0, as in scikit-learn's ``zero_division=0``.
    """
    true_positive = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, support, out=np.zeros_like(true_positive), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    present = support > 0  # macro averages over the classes that occur in the test set
    return {
        "accuracy": float(true_positive.sum() / max(matrix.sum(), 1)),
        "macro_precision": float(precision[present].mean()),
        "macro_recall": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "accuracy": float(recall[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
    }


# ---------------------------------------------------------------------------- canvas drawing


def _max_filter(image: np.ndarray, radius: int) -> np.ndarray:
    """Grey dilation with a (2 radius + 1) square, separable."""
    for axis in (0, 1):
        padded = np.pad(image, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)])
        image = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1, axis=axis).max(axis=-1)
    return image


def _change_strokes(ink: np.ndarray, pen: str, glyph_side: int, rng: np.random.Generator) -> np.ndarray:
    """Thin (erode) or thicken (dilate) canvas-resolution strokes, like a fine pen or a marker.

    A thin pen takes 10-25% of the mean stroke width off each side: strokes keep 50-80% of their
    width, enough that the thinnest parts of a pressure-varying stroke survive. A marker adds
    1-4% of the glyph's size on each side, so small loops stay open as they do on paper.
    """
    if pen == "thick":
        return _max_filter(ink, max(1, int(rng.uniform(0.01, 0.04) * glyph_side)))
    if pen == "thin":
        radius = int(measure_stroke_width(ink >= 0.5) * rng.uniform(0.10, 0.25))  # the normalization's estimate
        return 1.0 - _max_filter(1.0 - ink, radius) if radius > 0 else ink
    return ink


def render_canvas(
    glyph28: np.ndarray, style: str, rng: np.random.Generator, size: int = CANVAS_SIZE
) -> bytes:
    """Draw a 28x28 glyph (uint8, ink 255 on 0, upright) the way a person draws on a ``size`` x
    ``size`` canvas and return the PNG bytes.

    The glyph's ink is cropped, scaled so its longer side covers 35-80% of the canvas, made into
    crisp anti-aliased strokes, thinned or thickened with a random
    pen, and placed anywhere on the canvas (off-centre). ``style`` is the canvas: dark ink on white
    (``black_on_white``), light ink on black (``white_on_black``) or black ink on a transparent
    background (``transparent``, RGBA, like Gradio's Sketchpad).
    """
    if style not in CANVAS_STYLES:
        raise ValueError(f"unknown canvas style {style!r}: choose one of {CANVAS_STYLES}")
    ink = glyph28.astype(np.float32) / max(float(glyph28.max()), 1.0)
    rows = np.flatnonzero((ink > 0.2).any(axis=1))
    cols = np.flatnonzero((ink > 0.2).any(axis=0))
    if not len(rows):
        raise BlankImageError("the glyph has no ink to draw")
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = rng.uniform(0.35, 0.80) * size / max(crop.shape)
    height, width = (max(1, round(side * scale)) for side in crop.shape)
    big = np.asarray(Image.fromarray(crop).resize((width, height), Image.BICUBIC))
    # Crisp strokes with anti-aliased edges: a steep ramp, low enough that faint pencil strokes of
    # scanned forms become whole pen strokes instead of broken ones.
    strokes = np.clip((big - 0.35) * 4.0 + 0.5, 0.0, 1.0)
    margin = int(0.04 * size) + 1  # room for a marker's dilation beyond the crop
    work = np.pad(strokes, margin)
    work = _change_strokes(work, str(rng.choice(PEN_STYLES)), max(height, width), rng)
    canvas = np.zeros((size + 2 * margin, size + 2 * margin), dtype=np.float32)
    top = int(rng.integers(0, size - height + 1))
    left = int(rng.integers(0, size - width + 1))
    canvas[top : top + work.shape[0], left : left + work.shape[1]] = work
    level = np.uint8(np.clip(canvas[margin:-margin, margin:-margin], 0, 1) * 255 + 0.5)
    return encode_canvas(level, style)


def canvas_png(image: np.ndarray, index: int, seed: int = CANVAS_SEED) -> bytes:
    """Canvas number ``index`` of an evaluation: ``image`` drawn in style
    ``CANVAS_STYLES[index % 3]`` with its own generator seeded by ``(seed, index)``, so a canvas
    depends neither on the worker count nor on how many images are drawn."""
    style = CANVAS_STYLES[index % len(CANVAS_STYLES)]
    return render_canvas(image, style, np.random.default_rng([seed, index]))


def _canvas_glyph(job: tuple[np.ndarray, int, int, GlyphSettings]) -> np.ndarray:
    """Render one test image on a canvas and decode it as the handler does (uint8 glyph)."""
    image, index, seed, settings = job
    try:
        glyph = canvas_to_glyph(canvas_png(image, index, seed), settings)
    except BlankImageError:  # a blank test image: the model sees zeros, as in training
        glyph = np.zeros((settings.size, settings.size), dtype=np.float32)
    return np.uint8(np.clip(glyph * 255.0 + 0.5, 0, 255))


def canvas_glyphs(images: np.ndarray, settings: GlyphSettings, seed: int = CANVAS_SEED) -> np.ndarray:
    """Every image drawn on a canvas and decoded by ``canvas_to_glyph``; image ``i`` is drawn on
    canvas ``i`` (:func:`canvas_png`)."""
    jobs = ((image, i, seed, settings) for i, image in enumerate(images))
    with Pool(processes=min(2, os.cpu_count() or 1)) as pool:
        glyphs = list(tqdm(pool.imap(_canvas_glyph, jobs, chunksize=256), total=len(images), desc="canvases", unit="img"))
    return np.stack(glyphs)


# --------------------------------------------------------------------------------------- plots


def plot_confusion(matrix: np.ndarray, names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = max(5.0, 0.22 * len(names) + 2.0)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (row-normalized, test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def validation_curves(history: dict[str, list[float | None]]) -> dict[str, list[float]]:
    """The validation accuracies of each epoch to plot, in %, from ``history`` as
    :func:`training.train.fit` keeps it: the scans'; with pen data also the pen characters' and
    the score (their mean), which picks the epoch that is exported."""
    curves = {"scans": history["val_accuracy"]}
    if any(value is not None for value in history.get("val_pen_accuracy") or []):
        curves |= {"pen characters": history["val_pen_accuracy"], "score (mean, picks the epoch)": history["val_score"]}
    return {label: [100.0 * value for value in values] for label, values in curves.items()}


def plot_curves(history: dict[str, list[float | None]], best_epoch: int | None, path: Path) -> None:
    """``curves.png``: the training loss and :func:`validation_curves` of each epoch, the
    exported ``best_epoch`` marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = range(1, len(history["train_loss"]) + 1)
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    loss_ax.plot(epochs, history["train_loss"], marker="o")
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="training loss")
    for (label, values), colour in zip(validation_curves(history).items(), ("tab:green", "tab:purple", "black")):
        acc_ax.plot(epochs, values, marker="o", markersize=4, color=colour, label=label,
                    linestyle="--" if label.startswith("score") else "-")
    if best_epoch:
        acc_ax.axvline(best_epoch, color="grey", linewidth=1, linestyle=":", label=f"exported (epoch {best_epoch})")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="validation accuracy")
    acc_ax.legend(fontsize="small")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ----------------------------------------------------------------------------------- evaluate


@dataclass
class Answers:
    """What the service answers for a set of real characters: ``logits`` float [N, outputs],
    the true ``labels`` [N] among ``num_classes``; ``correct`` bool [N] of the answered label."""

    logits: torch.Tensor
    labels: np.ndarray
    num_classes: int
    calibration: dict[str, Any]

    @property
    def correct(self) -> np.ndarray:
        return self.logits[:, : self.num_classes].argmax(1).numpy() == self.labels

    def confidence(self, temperature: float) -> np.ndarray:
        """The answered label's probability at ``temperature`` (the service's ``confidence``)."""
        return answered_probabilities(self.logits, self.num_classes, temperature).max(1).values.numpy()

    def rejected(self) -> np.ndarray:
        """Whether the service answers ``"accepted": false`` (:func:`handler.confidence.accepted`)."""
        return ~accepted(self.logits, self.num_classes, self.calibration).numpy()


def evaluate_pen(
    name: str, part: Any, outputs: torch.Tensor, calibration: dict[str, Any]
) -> tuple[dict[str, Any], Answers]:
    """Accuracy on the pen test writers' characters (a :class:`training.pen.PenGlyphs`, one
    canvas per style), per canvas style, kind and site, with the most frequent confusions;
    ``balanced`` also case-insensitively. Plus the rejection figures: real characters refused
    and non-characters refused (digits: also letters that look like no digit)."""
    names = CLASS_NAMES[name]
    classes = pen_sample_classes(name, part.samples)
    row_class = np.where(part.sample >= 0, classes[np.maximum(part.sample, 0)], -1)
    real = row_class >= 0
    real &= row_class < len(names)
    answers = Answers(outputs[real], row_class[real], len(names), calibration)
    answered = outputs[real][:, : len(names)].argmax(1).numpy()
    samples = [part.samples[i] for i in part.sample[real]]
    kinds = np.array([s.kind for s in samples])
    sites = np.array([s.site for s in samples])
    styles = np.array([CANVAS_STYLES[i] for i in part.style[real]])
    correct = answers.correct
    correct_ci = _pen_correct(name, answered, samples, correct)
    group = lambda keys: {k: {"canvases": int((keys == k).sum()), "accuracy": float(correct_ci[keys == k].mean())}
                          for k in sorted(set(keys.tolist()))}
    pairs = Counter((samples[i].label, names[answered[i]]) for i in np.flatnonzero(~correct_ci))
    rejected = answers.rejected()
    pen = {
        "data": "writer-held-out pen test part, one canvas per style (training/pen.py)",
        "writers": len({s.writer for s in part.samples}),
        "canvases": int(real.sum()),
        "accuracy": float(correct_ci.mean()),
        "accuracy_strict": float(correct.mean()),
        "per_style": group(styles),
        "per_kind": group(kinds),
        "per_site": group(sites),
        "confusions": [{"true": t, "answered": a, "count": n} for (t, a), n in pairs.most_common(20)],
        "rejection": {
            "threshold": calibration.get("reject_threshold"),
            "characters_rejected": float(rejected.mean()),
            "characters_rejected_per_kind": {k: float(rejected[kinds == k].mean()) for k in sorted(set(kinds.tolist()))},
            "nonchars_rejected": _rejected_share(outputs, part, len(names), calibration),
        },
    }
    return pen, answers


def _pen_correct(name: str, answered: np.ndarray, samples: list[Any], correct: np.ndarray) -> np.ndarray:
    """Which answers count as right: ``correct``, or for ``balanced`` the answer's letter in either
    case (EMNIST merges most cases, so a case slip counts as right there)."""
    if name != "balanced":
        return correct
    names = CLASS_NAMES[name]
    return np.array([names[a].upper() == s.label.upper() for a, s in zip(answered, samples)], dtype=bool)


def evaluate_fat_pens(
    model: torch.nn.Module, name: str, samples: list[Any], preprocessing: dict[str, Any]
) -> dict[str, Any]:
    """The characters of one part of the pen data (the test writers' for the card) drawn once each
    with a pen that is fat for their size (:func:`training.pen.fat_pen_glyphs`: small drawings,
    markers): accuracy (``balanced`` case-insensitively), the share refused (``accepted: false``)
    and the share answered wrong yet accepted, the silent wrong answers."""
    names = CLASS_NAMES[name]
    classes = pen_sample_classes(name, samples)
    keep = np.flatnonzero((classes >= 0) & (classes < len(names)))
    kept = [samples[i] for i in keep]
    glyphs = fat_pen_glyphs(kept, GlyphSettings.from_dict(preprocessing["glyph"]))
    outputs = logits(model, glyphs, preprocessing["mean"], preprocessing["std"])
    answered = outputs[:, : len(names)].argmax(1).numpy()
    correct = _pen_correct(name, answered, kept, answered == classes[keep])
    refused = ~accepted(outputs, len(names), preprocessing.get("calibration") or NO_CALIBRATION).numpy()
    return {
        "data": "the pen test part's characters, each drawn once with a fat pen (training/pen.py fat_pen_glyphs)",
        "canvases": len(kept),
        "accuracy": float(correct.mean()),
        "rejected": float(refused.mean()),
        "wrong_accepted": float((~correct & ~refused).mean()),
    }


def _rejected_share(outputs: torch.Tensor, part: Any, num_classes: int, calibration: dict[str, Any]) -> dict[str, Any]:
    """Share refused of each kind of non-character in the part (and, for ``digits``, of the
    letters it should not read: every one of NOT_DIGIT_LETTERS, and A, K, M, W alone)."""
    refused = ~accepted(outputs, num_classes, calibration).numpy()
    shares = {}
    for kind in sorted(set(part.nonchar.tolist()) - {""}):
        rows = part.nonchar == kind
        shares[kind] = {"drawings": int(rows.sum()), "rejected": float(refused[rows].mean())}
    if num_classes == len(CLASS_NAMES["digits"]):
        # The capital letter each canvas shows ("" for a digit, a lower-case letter or a non-character).
        capital = np.array([part.samples[i].label if i >= 0 and part.samples[i].kind == "uppercase" else ""
                            for i in part.sample])
        for key, letters in (("letters_AKMW", "AKMW"), ("letters_not_digit_like", NOT_DIGIT_LETTERS)):
            rows = np.isin(capital, list(letters))
            shares[key] = {"drawings": int(rows.sum()), "rejected": float(refused[rows].mean())}
    nonchar_rows = part.nonchar != ""
    shares["all_generated"] = {"drawings": int(nonchar_rows.sum()), "rejected": float(refused[nonchar_rows].mean())}
    return shares


# ------------------------------------------------------------------------------------- text


def read_string(
    model: torch.nn.Module, png: bytes, names: list[str], preprocessing: dict[str, Any],
    segment_settings: text_reader.SegmentSettings = text_reader.SegmentSettings(),
) -> str:
    """The text the handler reads on a canvas with ``mode=text`` (:mod:`handler.text`, the
    same functions and calibration; all candidates in one forward pass); "" for a canvas it
    refuses (blank, too many characters)."""
    settings = GlyphSettings.from_dict(preprocessing["glyph"])
    temperature = (preprocessing.get("calibration") or NO_CALIBRATION)["temperature"]
    try:
        segmentation = text_reader.segment(canvas_ink(png, settings), settings, segment_settings)
    except InputError:
        return ""
    glyphs = np.stack([np.uint8(c.glyph * 255.0 + 0.5) for c in segmentation.candidates])
    outputs = logits(model, glyphs, preprocessing["mean"], preprocessing["std"])
    labels = [names[i] for i in outputs[:, : len(names)].argmax(1).tolist()]
    probabilities = character_probability(outputs, len(names), temperature).numpy()
    try:
        return text_reader.read(segmentation, probabilities, labels, segment_settings).text
    except InputError:
        return ""


def evaluate_text(
    model: torch.nn.Module, name: str, preprocessing: dict[str, Any], samples: list[Any], part: str,
    count: int = TEXT_STRINGS, segment_settings: text_reader.SegmentSettings = text_reader.SegmentSettings(),
) -> dict[str, Any]:
    """Exact-match rate and character accuracy (1 - edit distance / length, summed over the
    strings) of ``mode=text`` on ``count`` strings written by single writers of ``samples`` (one
    part of the pen data's writer split, :func:`training.strings.writer_strings`); by canvas
    style and string length, with the most frequent misreadings. ``balanced`` is compared
    case-insensitively, as its classes merge most cases."""
    from rapidfuzz.distance import Levenshtein

    names = CLASS_NAMES[name]
    strings: list[WrittenString] = writer_strings(name, samples, count, TEXT_SEED)
    fold = str.upper if name == "balanced" else str
    read = [fold(read_string(model, s.png, names, preprocessing, segment_settings)) for s in strings]
    truth = [fold(s.text) for s in strings]
    edits = np.array([Levenshtein.distance(t, r) for t, r in zip(truth, read)])
    lengths = np.array([len(t) for t in truth])
    exact = edits == 0

    def figures(rows: np.ndarray) -> dict[str, Any]:
        return {"strings": int(rows.sum()), "exact_match": float(exact[rows].mean()),
                "character_accuracy": float(1.0 - edits[rows].sum() / lengths[rows].sum())}

    styles = np.array([s.style for s in strings])
    misread = Counter((t, r) for t, r, e in zip(truth, read, exact) if not e)
    return {
        "data": f"pen data, writer-held-out {part} part: strings of one writer's own characters (training/strings.py)",
        "part": part,
        "writers": len({s.writer for s in strings}),
        "lengths": list(STRING_LENGTHS[name]),
        "seed": TEXT_SEED,
        **figures(np.ones(len(strings), dtype=bool)),
        "per_style": {style: figures(styles == style) for style in CANVAS_STYLES},
        "per_length": {str(n): figures(lengths == n) for n in sorted(set(lengths.tolist()))},
        "misread": [{"text": t, "read": r} for (t, r), _ in misread.most_common(15)],
    }


def calibration_metrics(answers: dict[str, Answers], calibration: dict[str, Any]) -> dict[str, Any]:
    """ECE (15 bins) of the answered confidence before (T = 1) and after temperature scaling."""
    temperature = calibration["temperature"]
    return {
        "temperature": temperature,
        "fitted_on": calibration.get("fitted_on"),
        "bins": ECE_BINS,
        **{part: {"ece_before": expected_calibration_error(a.confidence(1.0), a.correct),
                  "ece_after": expected_calibration_error(a.confidence(temperature), a.correct),
                  "mean_confidence_after": float(a.confidence(temperature).mean()),
                  "accuracy": float(a.correct.mean())}
           for part, a in answers.items()},
    }


def evaluate_folder(
    folder: str | os.PathLike, data: Any, training: dict[str, Any], canvas_limit: int | None = None
) -> dict[str, Any]:
    """Evaluate ``folder``'s exported model on ``data`` (a :class:`training.prepare.PreparedData`
    made with the same glyph settings) and write the metrics and plots into ``folder``."""
    folder = Path(folder)
    name = json.loads((folder / "model.json").read_text())["name"]
    names = CLASS_NAMES[name]
    preprocessing = json.loads((folder / "preprocessing.json").read_text())
    settings = GlyphSettings.from_dict(preprocessing["glyph"])
    mean, std = preprocessing["mean"], preprocessing["std"]
    model = torch.jit.load(str(folder / "model.pt"))

    labels = data.test.labels
    test_logits = logits(model, data.test.images, mean, std)
    predicted = test_logits[:, : len(names)].argmax(1).numpy()
    matrix = confusion_matrix(labels, predicted, len(names))
    test = classification_metrics(matrix, names)

    # Canvas robustness: every test image drawn on one canvas, the styles taking turns, so the
    # canvas accuracy compares directly with the plain accuracy on the same images.
    count = len(labels) if canvas_limit is None else min(canvas_limit, len(labels))
    canvas_correct = predict(model, canvas_glyphs(data.raw_test[:count], settings), mean, std, len(names)) == labels[:count]
    plain_correct = predicted[:count] == labels[:count]
    styles = np.arange(count) % len(CANVAS_STYLES)
    canvas_accuracy = float(canvas_correct.mean())
    canvas = {
        "images": count,
        "canvas_size": CANVAS_SIZE,
        "seed": CANVAS_SEED,
        "accuracy": canvas_accuracy,
        "plain_accuracy_same_images": float(plain_correct.mean()),
        "gap_points": round(100 * float(plain_correct.mean() - canvas_accuracy), 3),
        "per_style": {
            style: {
                "images": int((styles == k).sum()),
                "accuracy": float(canvas_correct[styles == k].mean()),
                "plain_accuracy_same_images": float(plain_correct[styles == k].mean()),
            }
            for k, style in enumerate(CANVAS_STYLES)
        },
    }

    calibration = preprocessing.get("calibration") or NO_CALIBRATION
    answers = {"scan test": Answers(test_logits, labels, len(names), calibration)}
    pen = None
    if data.pen is not None:
        pen_test = data.pen.parts["test"]
        pen_logits = logits(model, pen_test.glyphs, mean, std)
        pen, answers["pen test"] = evaluate_pen(name, pen_test, pen_logits, calibration)
        pen["fat_pens"] = evaluate_fat_pens(model, name, pen_test.samples, preprocessing)
    text = None
    if data.pen is not None and name in TEXT_MODELS:
        text = evaluate_text(model, name, preprocessing, data.pen.parts["test"].samples, "test")
    metrics = {
        "name": name,
        "test_images": int(len(labels)),
        "test_accuracy": test["accuracy"],
        "canvas_accuracy": canvas_accuracy,
        "pen_accuracy": None if pen is None else pen["accuracy"],
        "pen": pen,
        "calibration": calibration_metrics(answers, calibration),
        "text": text,
        "macro_precision": test["macro_precision"],
        "macro_recall": test["macro_recall"],
        "macro_f1": test["macro_f1"],
        "canvas": canvas,
        "per_class": test["per_class"],
        "data": data.source,
        "training": training,
    }
    write_json(folder / "metrics.json", metrics)
    (folder / "confusion_matrix.json").write_text(
        json.dumps({"classes": names, "rows_true_columns_predicted": matrix.tolist()}) + "\n"
    )
    plot_confusion(matrix, names, folder / "confusion_matrix.png")
    plot_curves(training["history"], training.get("best_epoch"), folder / "curves.png")
    plot_reliability(
        {f"{part}, {when}": (a.confidence(t), a.correct) for part, a in answers.items()
         for when, t in (("T=1", 1.0), (f"T={calibration['temperature']:.2f}", calibration["temperature"]))},
        f"{name}: reliability (15 bins)", folder / "reliability.png",
    )
    return metrics


def summary(metrics: dict[str, Any]) -> str:
    """A few lines for the console."""
    canvas = metrics["canvas"]
    styles = ", ".join(f"{s} {100 * v['accuracy']:.2f}%" for s, v in canvas["per_style"].items())
    return (
        f"{metrics['name']}: test accuracy {100 * metrics['test_accuracy']:.2f}% "
        f"({metrics['test_images']} images), macro F1 {100 * metrics['macro_f1']:.2f}%\n"
        f"canvas accuracy {100 * canvas['accuracy']:.2f}% on {canvas['images']} canvases "
        f"({styles}); gap {canvas['gap_points']:.2f} points"
    ) + _pen_summary(metrics) + _text_summary(metrics.get("text"))


def _text_summary(text: dict[str, Any] | None) -> str:
    if not text:
        return ""
    return (
        f"\ntext ({text['part']} writers, {text['strings']} strings of {text['lengths'][0]}-{text['lengths'][1]} "
        f"characters): exact match {100 * text['exact_match']:.2f}%, character accuracy "
        f"{100 * text['character_accuracy']:.2f}%"
    )


def _pen_summary(metrics: dict[str, Any]) -> str:
    pen = metrics.get("pen")
    if not pen:
        return ""
    pct = lambda value: f"{100 * value:.2f}%"
    kinds = ", ".join(f"{k} {pct(v['accuracy'])}" for k, v in pen["per_kind"].items())
    styles = ", ".join(f"{k} {pct(v['accuracy'])}" for k, v in pen["per_style"].items())
    rejection = pen["rejection"]
    refused = ", ".join(f"{k} {pct(v['rejected'])}" for k, v in rejection["nonchars_rejected"].items())
    calibration = metrics["calibration"]["pen test"]
    return (
        f"\npen accuracy {pct(pen['accuracy'])} on {pen['canvases']} canvases of {pen['writers']} held-out "
        f"writers ({kinds}; {styles})\n"
        f"ECE on pen canvases {pct(calibration['ece_before'])} -> {pct(calibration['ece_after'])} "
        f"(T = {metrics['calibration']['temperature']:.3f})\n"
        f"rejected: real characters {pct(rejection['characters_rejected'])}; non-characters: {refused}"
        + _fat_summary(pen.get("fat_pens"))
    )


def _fat_summary(fat: dict[str, Any] | None) -> str:
    if not fat:  # metrics written before the fat-pen figure
        return ""
    return (f"\nfat pens (small drawings, markers): accuracy {100 * fat['accuracy']:.2f}% on {fat['canvases']} canvases, "
            f"refused {100 * fat['rejected']:.2f}%, wrong and accepted {100 * fat['wrong_accepted']:.2f}%")


def _pen_writers(folder: Path, data_dir: str, part: str) -> tuple[list[Any], str, dict[str, Any], torch.nn.Module]:
    """One part of the pen data's writer split, with the exported model's name, preprocessing
    and TorchScript module; exits with a sentence when the data root has no pen data."""
    from training.pen import writer_parts
    from training.strokes import find_pen_data

    files = find_pen_data(data_dir)
    if not files:
        raise SystemExit(f"no pen data under {data_dir} (UNIPEN-dev/*.jsonl.gz): this evaluation needs it")
    preprocessing = json.loads((folder / "preprocessing.json").read_text())
    name = json.loads((folder / "model.json").read_text())["name"]
    return writer_parts(files)[part], name, preprocessing, torch.jit.load(str(folder / "model.pt"))


def _update_card(folder: Path, update: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``update`` (in place) to the model card ``folder/metrics.json`` and write it back."""
    metrics = json.loads((folder / "metrics.json").read_text())
    update(metrics)
    write_json(folder / "metrics.json", metrics)


def text_only(folder: Path, data_dir: str, part: str, count: int) -> dict[str, Any]:
    """The text evaluation of an exported model on one part of the pen data's writer split; on
    the test part it replaces ``text`` in ``metrics.json``."""
    samples, name, preprocessing, model = _pen_writers(folder, data_dir, part)
    text = evaluate_text(model, name, preprocessing, samples, part, count)
    if part == "test":
        _update_card(folder, lambda metrics: metrics.update(text=text))
    return text


def fat_pens_only(folder: Path, data_dir: str, part: str) -> dict[str, Any]:
    """:func:`evaluate_fat_pens` of an exported model on one part of the pen data's writer split;
    on the test part it replaces ``pen.fat_pens`` in ``metrics.json`` (a card written before
    the figure existed gets it without re-measuring the rest)."""
    samples, name, preprocessing, model = _pen_writers(folder, data_dir, part)
    fat = evaluate_fat_pens(model, name, samples, preprocessing)
    if part == "test":
        _update_card(folder, lambda metrics: metrics["pen"].update(fat_pens=fat))
    return fat


def main(argv: list[str] | None = None) -> None:
    """Re-evaluate an exported model (e.g. after changing the evaluation) without training."""
    from training.prepare import DEFAULT_CACHE, prepare
    from training.strokes import find_pen_data
    from training.train import case_aware, load_config

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--model", required=True, choices=sorted(CLASS_NAMES))
    parser.add_argument("--data-dir", default="data", help="data root (torchvision's layout)")
    parser.add_argument("--models", default="models", help="folder holding <model>/")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    parser.add_argument("--canvas-limit", type=int, help="canvas robustness on the first N test images")
    parser.add_argument("--only", choices=["text", "fat_pens"],
                        help="re-measure only this part and update it in metrics.json (on the pen test writers)")
    parser.add_argument("--part", choices=["val", "test"], default="test",
                        help="with --only: the writers to read (val: print only, to choose settings)")
    parser.add_argument("--strings", type=int, default=TEXT_STRINGS, help="with --only text: how many strings")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    folder = Path(args.models) / args.model
    if not (folder / "model.pt").is_file():
        raise SystemExit(f"error: no exported model in {folder}: train it (make train) or point --models "
                         f"(MODELS_DIR) at the folder that holds {args.model}/")
    if args.only == "text":
        print(_text_summary(text_only(folder, args.data_dir, args.part, args.strings)).strip())
        return
    if args.only == "fat_pens":
        print(_fat_summary(fat_pens_only(folder, args.data_dir, args.part)).strip())
        return
    settings = GlyphSettings.from_dict(json.loads((folder / "preprocessing.json").read_text())["glyph"])
    training = json.loads((folder / "metrics.json").read_text())["training"]  # kept from training
    # The data prepared as the model's training prepared it (its configuration, kept in the card;
    # today's config/recognizers.yaml for a card without one): the pen data, when the data root
    # has some, drawn as training drew it (training/pen.py), and letters' labels cased when
    # training kept the case (the model card's data line says so).
    config = training.get("config") or load_config(args.model)
    pen_variants = config["pen_variants"] if find_pen_data(args.data_dir) else None
    data = prepare(args.model, args.data_dir, settings, cache_dir=args.cache_dir, pen_variants=pen_variants,
                   cased_letters=case_aware(args.model, config))
    print(summary(evaluate_folder(folder, data, training, canvas_limit=args.canvas_limit)))


if __name__ == "__main__":
    main()
