"""Train a recognizer, keep its best epoch, export it and evaluate it.

    python -m training.train --model letters --data-dir DIR [--epochs N --batch-size B --lr LR
                             --seed S --out models/ --limit N]

Defaults per recognizer come from ``config/recognizers.yaml``; flags override them. The result
is ``<out>/<model>/``: the TorchScript model and its metadata (training/export.py) and the
evaluation (training/evaluate.py). The best state by validation accuracy is also kept in
``.cache/checkpoints/`` so that export and evaluation can be re-run without training.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from handler.confidence import reject_probability
from handler.glyph import GlyphSettings
from training import evaluate, export
from training.augment import AugmentSettings, augment
from training.calibrate import fit_temperature, reject_threshold
from training.datasets import DatasetNotFound, Split
from training.feedback import FEEDBACK_SHARE, Feedback, load_feedback
from training.labels import CASED_LETTERS, CLASS_NAMES
from training.model import CaseMerged, GlyphNet, count_parameters, training_logits
from training.pen import recognizer_split
from training.prepare import DEFAULT_CACHE, PreparedData, prepare

CONFIG = Path(__file__).resolve().parent.parent / "config" / "recognizers.yaml"
THREADS = 2  # this machine's cores; more threads than cores only adds contention


def load_config(recognizer: str, path: str | Path = CONFIG) -> dict[str, Any]:
    """The recognizer's training settings: ``defaults`` updated by its own block (one level of
    nesting, so a recognizer may override a single augmentation strength)."""
    with open(path) as f:
        config = yaml.safe_load(f)
    if recognizer not in config:
        raise SystemExit(f"error: {path} has no block for {recognizer!r}")
    merged = copy.deepcopy(config["defaults"])
    for key, value in (config[recognizer] or {}).items():
        if isinstance(value, dict):
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    return merged


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of at least 1")
    return value


def share(text: str) -> float:
    """An argparse type: a share of a batch, at least 0 and below 1 (some of it stays scans and pen)."""
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share of a batch: give a number from 0 to below 1")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train, export and evaluate a recognizer.")
    parser.add_argument("--model", required=True, choices=sorted(CLASS_NAMES), help="which recognizer")
    parser.add_argument("--data-dir", default="data", help="data root (torchvision's layout)")
    parser.add_argument("--out", default="models", help="folder that receives <model>/")
    parser.add_argument("--config", default=str(CONFIG), help="per-recognizer defaults (YAML)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="normalized data and checkpoints")
    parser.add_argument("--epochs", type=positive, help="override the configured number of epochs")
    parser.add_argument("--batch-size", type=positive, help="override the configured batch size")
    parser.add_argument("--lr", type=float, help="override the configured peak learning rate")
    parser.add_argument("--seed", type=int, help="override the configured seed")
    parser.add_argument("--limit", type=positive, help="use only the first N images of each split (smoke tests)")
    parser.add_argument("--canvas-limit", type=positive, help="evaluate canvas robustness on the first N test images")
    parser.add_argument(
        "--from-checkpoint", action="store_true",
        help="skip training: export and evaluate the best state saved in the cache (e.g. of an interrupted run)",
    )
    parser.add_argument(
        "--feedback-dir", help="corrections saved by the drawing app (<dir>/<label>/<id>.png) to train on too",
    )
    parser.add_argument(
        "--feedback-share", type=share, default=FEEDBACK_SHARE,
        help=f"share of each batch drawn from the corrections (default {FEEDBACK_SHARE})",
    )
    parser.add_argument(
        "--threads", type=positive, default=THREADS,
        help="torch threads (1 when several trainings share the machine's cores)",
    )
    return parser.parse_args(argv)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; returns the generator that drives shuffling and augmentation."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class Mixture:
    """What each training batch is drawn from (uint8 glyphs [N, 28, 28], int64 labels [N]).

    ``scan``: the recognizer's dataset, whose images each epoch visits once, and, with
    ``scan_canvas``, the same images drawn on canvases (taken for a ``canvas_copies`` share of
    them). ``pen``: pen-stroke characters of the training writers; ``reject``: drawings of the
    "not a character" class; ``feedback``: a user's corrections (:mod:`training.feedback`). A
    batch holds ``pen``, ``reject`` and ``feedback`` shares of randomly picked pen, reject and
    corrected drawings (config), the rest from the scans."""

    scan: torch.Tensor
    scan_labels: torch.Tensor
    scan_canvas: torch.Tensor | None
    pen: torch.Tensor
    pen_labels: torch.Tensor
    reject: torch.Tensor
    reject_label: int
    feedback: torch.Tensor | None = None
    feedback_labels: torch.Tensor | None = None

    @classmethod
    def from_data(
        cls, data: PreparedData, reject_label: int, name: str, cased: bool = False, feedback: Feedback | None = None
    ) -> "Mixture":
        tensor = lambda array: torch.from_numpy(np.ascontiguousarray(array))
        pen = recognizer_split(name, data.pen.parts["train"], cased) if data.pen else None
        empty = torch.zeros((0,) + data.train.images.shape[1:], dtype=torch.uint8)
        is_reject = (pen.labels == reject_label) if pen else None
        return cls(
            scan=tensor(data.train.images), scan_labels=tensor(data.train.labels),
            scan_canvas=None if data.train_canvas is None else tensor(data.train_canvas),
            pen=tensor(pen.images[~is_reject]) if pen else empty,
            pen_labels=tensor(pen.labels[~is_reject]) if pen else torch.zeros(0, dtype=torch.int64),
            reject=tensor(pen.images[is_reject]) if pen else empty,
            reject_label=reject_label,
            feedback=tensor(feedback.glyphs) if feedback else None,
            feedback_labels=tensor(feedback.labels) if feedback else None,
        )


def batch_shares(config: dict[str, Any], mixture: Mixture) -> tuple[int, int, int, int]:
    """How many scan, pen, reject and corrected drawings make up one batch (none of a source
    that is empty; ``feedback`` is the share of corrections, 0 without)."""
    size = config["batch_size"]
    pen = round(size * config["pen"]) if len(mixture.pen) else 0
    reject = round(size * config["reject"]) if len(mixture.reject) else 0
    corrected = round(size * config.get("feedback", 0.0)) if mixture.feedback is not None and len(mixture.feedback) else 0
    return size - pen - reject - corrected, pen, reject, corrected


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches for one epoch. An incomplete last batch is dropped (a batch of one
    breaks BatchNorm, a tiny one makes its statistics noisy) unless it is the only batch."""
    order = torch.randperm(n, generator=generator)
    full = steps_per_epoch(n, batch_size) * batch_size
    return list(order[:full].split(batch_size))


def mixed_batch(
    mixture: Mixture, index: torch.Tensor, shares: tuple[int, int, int, int], config: dict[str, Any],
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch: the scans ``index`` (a ``canvas_copies`` share of them as their
    canvas drawings), then randomly picked pen, reject and corrected drawings; uint8 glyphs and
    labels."""
    x, y = mixture.scan[index], mixture.scan_labels[index]
    if mixture.scan_canvas is not None:
        drawn = torch.rand(len(index), generator=generator) < config["canvas_copies"]
        x = torch.where(drawn.view(-1, 1, 1), mixture.scan_canvas[index], x)
    _, pen, reject, corrected = shares
    picks_pen = torch.randint(len(mixture.pen), (pen,), generator=generator) if pen else None
    picks_reject = torch.randint(len(mixture.reject), (reject,), generator=generator) if reject else None
    if pen:
        x, y = torch.cat([x, mixture.pen[picks_pen]]), torch.cat([y, mixture.pen_labels[picks_pen]])
    if reject:
        x = torch.cat([x, mixture.reject[picks_reject]])
        y = torch.cat([y, torch.full((reject,), mixture.reject_label, dtype=torch.int64)])
    if corrected:
        picks = torch.randint(len(mixture.feedback), (corrected,), generator=generator)
        x, y = torch.cat([x, mixture.feedback[picks]]), torch.cat([y, mixture.feedback_labels[picks]])
    return x, y


def train_epoch(
    model: torch.nn.Module,
    mixture: Mixture,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: dict[str, Any],
    stats: tuple[float, float],
    generator: torch.Generator,
    desc: str,
) -> float:
    """One pass over the shuffled scans, each batch topped up with pen and reject drawings
    (:func:`mixed_batch`), augmented as a whole; returns the mean loss.

    Canvas drawings are crisper, thinner or bolder than scanned forms, and pen strokes are what
    people really draw: the model should have seen such glyphs before serving them.
    """
    model.train()
    augmentation = AugmentSettings(**config["augment"])
    mean, std = stats
    shares = batch_shares(config, mixture)
    batches = epoch_batches(len(mixture.scan_labels), shares[0], generator)
    total, seen = 0.0, 0
    bar = tqdm(batches, desc=desc, unit="batch", leave=False, mininterval=2.0)
    for index in bar:
        x, y = mixed_batch(mixture, index, shares, config, generator)
        x = (augment(x.unsqueeze(1).float() / 255.0, augmentation, generator) - mean) / std
        loss = F.cross_entropy(training_logits(model, x), y, label_smoothing=config["label_smoothing"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(y)
        seen += len(y)
        bar.set_postfix(loss=f"{total / seen:.4f}")
    return total / seen


def pen_characters(data: PreparedData, name: str, part: str) -> Split | None:
    """A part's pen canvases of the recognizer's own characters (no reject-class drawings), or
    ``None`` without pen data (or without any such character)."""
    if data.pen is None:
        return None
    pen = recognizer_split(name, data.pen.parts[part])
    real = pen.labels < len(CLASS_NAMES[name])
    return Split(pen.images[real], pen.labels[real]) if real.any() else None


def validation_accuracy(model: torch.nn.Module, data: PreparedData, name: str, stats: tuple[float, float]) -> dict[str, float]:
    """Accuracy of the answered label (the best of the recognizer's classes) on the validation
    scans and, when there is pen data, on the validation writers' pen characters; ``score`` is
    their mean (or the scans' alone), the figure that picks the best epoch."""
    num_classes = len(CLASS_NAMES[name])
    scan = float((evaluate.predict(model, data.val.images, *stats, num_classes) == data.val.labels).mean())
    result = {"scan": scan, "score": scan}
    pen = pen_characters(data, name, "val")
    if pen is not None:
        result["pen"] = float((evaluate.predict(model, pen.images, *stats, num_classes) == pen.labels).mean())
        result["score"] = (scan + result["pen"]) / 2.0
    return result


def fit(
    model: torch.nn.Module,
    data: PreparedData,
    name: str,
    config: dict[str, Any],
    stats: tuple[float, float],
    generator: torch.Generator,
    checkpoint: Path,
    command: str,
    feedback: Feedback | None = None,
) -> dict[str, Any]:
    """Train for the configured epochs with a one-cycle AdamW schedule, validating after each.

    After every epoch the best state so far (by :func:`validation_accuracy`'s score) and the
    training record are written to ``checkpoint``, so an interrupted run can still be exported
    with ``--from-checkpoint``. Leaves ``model`` at its best state; returns the training record
    of ``metrics.json``. ``feedback``: corrections mixed into every batch (:mod:`training.feedback`).
    """
    cased = isinstance(model, CaseMerged)
    classes = len(CASED_LETTERS) if cased else len(CLASS_NAMES[name])
    mixture = Mixture.from_data(data, reject_label=classes, name=name, cased=cased, feedback=feedback)
    shares = batch_shares(config, mixture)
    steps = config["epochs"] * steps_per_epoch(len(mixture.scan_labels), shares[0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config["lr"], total_steps=steps)
    history: dict[str, list[float]] = {"train_loss": [], "val_accuracy": [], "val_pen_accuracy": [], "val_score": []}
    best_score, best_state, best_epoch = -1.0, None, 0
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"batches of {config['batch_size']}: {shares[0]} scans, {shares[1]} pen characters "
          f"({len(mixture.pen)} drawings), {shares[2]} non-characters ({len(mixture.reject)} drawings)"
          + (f", {shares[3]} corrections ({len(mixture.feedback)} drawings)" if shares[3] else ""))
    for epoch in range(1, config["epochs"] + 1):
        loss = train_epoch(
            model, mixture, optimizer, scheduler, config, stats, generator,
            desc=f"epoch {epoch}/{config['epochs']}",
        )
        accuracy = validation_accuracy(model, data, name, stats)
        history["train_loss"].append(loss)
        history["val_accuracy"].append(accuracy["scan"])
        history["val_pen_accuracy"].append(accuracy.get("pen"))
        history["val_score"].append(accuracy["score"])
        if accuracy["score"] > best_score:
            best_score, best_state, best_epoch = accuracy["score"], copy.deepcopy(model.state_dict()), epoch
        seconds = time.perf_counter() - started
        pen = f"  pen {accuracy['pen']:.4%}" if "pen" in accuracy else ""
        print(f"epoch {epoch:2d}  train loss {loss:.4f}  val accuracy {accuracy['scan']:.4%}{pen}  ({seconds:.0f} s)", flush=True)
        training = {
            "config": config,
            "epochs": epoch,  # completed: less than configured only for an interrupted run
            "best_epoch": best_epoch,
            "best_val_accuracy": history["val_accuracy"][best_epoch - 1],
            "best_val_score": best_score,
            "train_seconds": round(seconds, 1),
            "threads": torch.get_num_threads(),
            "history": history,
            "command": f"python -m training.train {command}",
        }
        torch.save({"state_dict": best_state, "training": training, "mean": stats[0], "std": stats[1]}, checkpoint)
    print(f"best epoch {best_epoch}: validation score {best_score:.4%}; trained in {seconds:.0f} s")
    model.load_state_dict(best_state)
    return training


def case_aware(model: str, config: dict[str, Any]) -> bool:
    """Whether ``model``, trained with ``config`` (:func:`load_config`), learns upper and lower
    case apart: letters with ``case_aware`` set (52 classes learnt, 26 answered)."""
    return model == "letters" and bool(config.get("case_aware"))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = load_config(args.model, args.config)
    for key in ("epochs", "batch_size", "lr", "seed"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    torch.set_num_threads(args.threads)
    generator = seed_everything(config["seed"])

    settings = GlyphSettings.from_dict(config["glyph"])
    canvas_seed = config["seed"] if config["canvas_copies"] > 0 and not args.from_checkpoint else None
    pen_variants = config["pen_variants"] if config["pen"] > 0 or config["reject"] > 0 else None
    cased = case_aware(args.model, config)
    try:
        data = prepare(args.model, args.data_dir, settings, args.limit, args.cache_dir, canvas_seed, pen_variants, cased)
    except DatasetNotFound as exc:
        raise SystemExit(f"error: {exc}") from None
    try:
        feedback = load_feedback(args.feedback_dir, args.model, settings, cased) if args.feedback_dir else None
    except (FileNotFoundError, ValueError) as exc:  # no such folder, an unreadable correction
        raise SystemExit(f"error: {exc}") from None
    if feedback is not None:
        print(feedback.source)
        config["feedback"] = args.feedback_share if len(feedback) else 0.0
    # Standardize with the training set's statistics; exported so the handler does the same.
    mean = float(data.train.images.mean() / 255.0)
    std = float(data.train.images.std() / 255.0)

    rejects = config["reject"] > 0  # one more output: "not a character"
    classes = len(CASED_LETTERS) if cased else len(CLASS_NAMES[args.model])
    model = GlyphNet(classes + rejects, width=config["width"], dropout=config["dropout"])
    if cased:  # learns upper and lower case apart, answers them merged
        model = CaseMerged(model)
    print(
        f"{args.model}: {len(data.train)} training, {len(data.val)} validation, {len(data.test)} test "
        f"images; {count_parameters(model)} parameters; {config['epochs']} epochs"
    )

    checkpoint = Path(args.cache_dir) / "checkpoints" / f"{args.model}.pt"
    if args.from_checkpoint:
        saved = torch.load(checkpoint)
        model.load_state_dict(saved["state_dict"])
        training, mean, std = saved["training"], saved["mean"], saved["std"]
    else:
        command = " ".join(sys.argv[1:] if argv is None else argv)
        training = fit(model, data, args.model, config, (mean, std), generator, checkpoint, command, feedback)

    calibration = calibrate(model, data, args.model, (mean, std), config["max_false_reject"] if rejects else None)
    source = data.source if data.pen is None else f"{data.source}; {data.pen.source}"
    if feedback:
        source += f"; {feedback.source}"
    # Exported and evaluated aside, then moved into place: a run that fails on the way never
    # leaves a new model beside the previous model's card.
    folder = Path(args.out) / args.model
    staging = folder.with_name(f".{args.model}.incoming")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        export.export_model(
            model, staging, args.model, settings, mean, std, source=source, training=training,
            calibration=calibration,
        )
        metrics = evaluate.evaluate_folder(staging, data, training, canvas_limit=args.canvas_limit)
        publish(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(evaluate.summary(metrics))
    print(f"exported to {folder}")


def publish(staging: Path, folder: Path) -> None:
    """Move every file of ``staging`` into ``folder`` (created if needed), replacing files of the
    same name, and remove ``staging``."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in staging.iterdir():
        os.replace(path, folder / path.name)
    staging.rmdir()


def calibrate(
    model: torch.nn.Module, data: PreparedData, name: str, stats: tuple[float, float],
    max_false_reject: float | None,
) -> dict[str, Any]:
    """Fit the temperature and, for a model with a reject output, the rejection threshold on the
    validation split: scans and, when there is pen data, the validation writers' pen characters
    (:mod:`training.calibrate`). Returns ``preprocessing.json``'s ``calibration`` block."""
    num_classes = len(CLASS_NAMES[name])
    glyphs, labels = [data.val.images], [data.val.labels]
    pen = pen_characters(data, name, "val")
    if pen is not None:
        glyphs.append(pen.images)
        labels.append(pen.labels)
    logits = evaluate.logits(model, np.concatenate(glyphs), *stats)
    labels = torch.from_numpy(np.concatenate(labels))
    temperature = fit_temperature(logits[:, :num_classes], labels)
    result = {"temperature": temperature, "fitted_on": f"{len(labels)} validation characters", "reject_threshold": None}
    if max_false_reject is not None:
        p_reject = reject_probability(logits, num_classes, temperature).numpy()
        result["reject_threshold"] = reject_threshold(p_reject, max_false_reject)
        result["max_false_reject"] = max_false_reject
    print(f"calibration: temperature {temperature:.3f}, reject threshold {result['reject_threshold']}")
    return result


if __name__ == "__main__":
    main()
