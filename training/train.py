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
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from handler.glyph import GlyphSettings
from training import evaluate, export
from training.augment import AugmentSettings, augment
from training.labels import CLASS_NAMES
from training.model import GlyphNet, count_parameters
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train, export and evaluate a recognizer.")
    parser.add_argument("--model", required=True, choices=sorted(CLASS_NAMES), help="which recognizer")
    parser.add_argument("--data-dir", default="data", help="data root (torchvision's layout)")
    parser.add_argument("--out", default="models", help="folder that receives <model>/")
    parser.add_argument("--config", default=str(CONFIG), help="per-recognizer defaults (YAML)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="normalized data and checkpoints")
    parser.add_argument("--epochs", type=int, help="override the configured number of epochs")
    parser.add_argument("--batch-size", type=int, help="override the configured batch size")
    parser.add_argument("--lr", type=float, help="override the configured peak learning rate")
    parser.add_argument("--seed", type=int, help="override the configured seed")
    parser.add_argument("--limit", type=int, help="use only the first N images of each split (smoke tests)")
    parser.add_argument("--canvas-limit", type=int, help="evaluate canvas robustness on the first N test images")
    parser.add_argument(
        "--from-checkpoint", action="store_true",
        help="skip training: export and evaluate the best state saved in the cache (e.g. of an interrupted run)",
    )
    parser.add_argument(
        "--threads", type=int, default=THREADS,
        help="torch threads (1 when several trainings share the machine's cores)",
    )
    return parser.parse_args(argv)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; returns the generator that drives shuffling and augmentation."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches for one epoch. An incomplete last batch is dropped (a batch of one
    breaks BatchNorm, a tiny one makes its statistics noisy) unless it is the only batch."""
    order = torch.randperm(n, generator=generator)
    full = steps_per_epoch(n, batch_size) * batch_size
    return list(order[:full].split(batch_size))


def train_epoch(
    model: torch.nn.Module,
    glyphs: torch.Tensor,
    canvas: torch.Tensor | None,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: dict[str, Any],
    stats: tuple[float, float],
    generator: torch.Generator,
    desc: str,
) -> float:
    """One pass over the shuffled training glyphs (uint8 [N, 28, 28]); returns the mean loss.

    With ``canvas`` (the same images drawn on canvases and decoded as the handler does), a
    ``canvas_copies`` fraction of each batch is taken from it: drawings are crisper, thinner or
    bolder than scanned forms, and the model should have seen such glyphs before serving them.
    """
    model.train()
    augmentation = AugmentSettings(**config["augment"])
    mean, std = stats
    batches = epoch_batches(len(labels), config["batch_size"], generator)
    total, seen = 0.0, 0
    bar = tqdm(batches, desc=desc, unit="batch", leave=False, mininterval=2.0)
    for index in bar:
        x = glyphs[index]
        if canvas is not None:
            drawn = torch.rand(len(index), generator=generator) < config["canvas_copies"]
            x = torch.where(drawn.view(-1, 1, 1), canvas[index], x)
        x = x.unsqueeze(1).float() / 255.0
        x = (augment(x, augmentation, generator) - mean) / std
        loss = F.cross_entropy(model(x), labels[index], label_smoothing=config["label_smoothing"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(index)
        seen += len(index)
        bar.set_postfix(loss=f"{total / seen:.4f}")
    return total / seen


def fit(
    model: torch.nn.Module,
    data: PreparedData,
    config: dict[str, Any],
    stats: tuple[float, float],
    generator: torch.Generator,
    checkpoint: Path,
    command: str,
) -> dict[str, Any]:
    """Train for the configured epochs with a one-cycle AdamW schedule, validating after each.

    After every epoch the best state so far (by validation accuracy) and the training record are
    written to ``checkpoint``, so an interrupted run can still be exported with
    ``--from-checkpoint``. Leaves ``model`` at its best state; returns the training record of
    ``metrics.json``.
    """
    mean, std = stats
    train_x, train_y = torch.from_numpy(data.train.images), torch.from_numpy(data.train.labels)
    canvas = None if data.train_canvas is None else torch.from_numpy(data.train_canvas)
    steps = config["epochs"] * steps_per_epoch(len(train_y), config["batch_size"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config["lr"], total_steps=steps)
    history: dict[str, list[float]] = {"train_loss": [], "val_accuracy": []}
    best_accuracy, best_state, best_epoch = -1.0, None, 0
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for epoch in range(1, config["epochs"] + 1):
        loss = train_epoch(
            model, train_x, canvas, train_y, optimizer, scheduler, config, stats, generator,
            desc=f"epoch {epoch}/{config['epochs']}",
        )
        predicted = evaluate.predict(model, data.val.images, mean, std)
        accuracy = float((predicted == data.val.labels).mean())
        history["train_loss"].append(loss)
        history["val_accuracy"].append(accuracy)
        if accuracy > best_accuracy:
            best_accuracy, best_state, best_epoch = accuracy, copy.deepcopy(model.state_dict()), epoch
        seconds = time.perf_counter() - started
        print(f"epoch {epoch:2d}  train loss {loss:.4f}  val accuracy {accuracy:.4%}  ({seconds:.0f} s)", flush=True)
        training = {
            "config": config,
            "epochs": epoch,  # completed: less than configured only for an interrupted run
            "best_epoch": best_epoch,
            "best_val_accuracy": best_accuracy,
            "train_seconds": round(seconds, 1),
            "threads": torch.get_num_threads(),
            "history": history,
            "command": f"python -m training.train {command}",
        }
        torch.save({"state_dict": best_state, "training": training, "mean": mean, "std": std}, checkpoint)
    print(f"best epoch {best_epoch}: val accuracy {best_accuracy:.4%}; trained in {seconds:.0f} s")
    model.load_state_dict(best_state)
    return training


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
    data = prepare(args.model, args.data_dir, settings, args.limit, args.cache_dir, canvas_seed)
    # Standardize with the training set's statistics; exported so the handler does the same.
    mean = float(data.train.images.mean() / 255.0)
    std = float(data.train.images.std() / 255.0)

    num_classes = len(CLASS_NAMES[args.model])
    model = GlyphNet(num_classes, width=config["width"], dropout=config["dropout"])
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
        training = fit(model, data, config, (mean, std), generator, checkpoint, command=" ".join(sys.argv[1:] if argv is None else argv))

    folder = Path(args.out) / args.model
    export.export_model(
        model, folder, args.model, settings, mean, std, source=data.source, training=training
    )
    metrics = evaluate.evaluate_folder(folder, data, training, canvas_limit=args.canvas_limit)
    print(evaluate.summary(metrics))


if __name__ == "__main__":
    main()
