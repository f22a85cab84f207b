"""Export a trained recognizer as the folder the TorchServe handler loads.

``<out>/<name>/`` holds (a contract with handler/ and the serving tooling; keep names and keys):

- ``model.pt``: TorchScript; input float32 [N, 1, 28, 28] standardized as (glyph - mean) / std,
  output logits [N, num_classes], or [N, num_classes + 1] with a last "not a character" output.
- ``index_to_name.json``: class index -> class name (``training.labels.index_to_name``).
- ``preprocessing.json``: ``{"glyph": {GlyphSettings fields}, "mean": m, "std": s,
  "calibration": {"temperature": T, "reject_threshold": t or null, ...}}`` (handler/confidence.py).
- ``model.json``: name, version, classes, data, parameters, epochs, training time.

training/evaluate.py adds ``metrics.json`` and the plots beside them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from handler.glyph import GlyphSettings
from training.labels import CLASS_NAMES, index_to_name
from training.model import CaseMerged, count_parameters

MAX_ABS_DIFF = 1e-4  # TorchScript vs eager logits; both run the same float32 kernels


def write_json(path: Path, value: Any) -> None:
    """Pretty, stable JSON (sorted keys would scramble the class order, so insertion order)."""
    path.write_text(json.dumps(value, indent=2) + "\n")


def script_model(model: torch.nn.Module, check_batch: torch.Tensor) -> torch.jit.ScriptModule:
    """TorchScript of ``model`` in eval mode, checked against the eager model on ``check_batch``."""
    model = model.eval()
    scripted = torch.jit.script(model)
    with torch.no_grad():
        diff = (scripted(check_batch) - model(check_batch)).abs().max().item()
    if diff > MAX_ABS_DIFF:
        raise AssertionError(f"TorchScript output differs from the eager model by {diff:.2e}")
    return scripted


def export_model(
    model: torch.nn.Module,
    folder: str | os.PathLike,
    name: str,
    settings: GlyphSettings,
    mean: float,
    std: float,
    source: str,
    training: dict[str, Any],
    calibration: dict[str, Any],
) -> Path:
    """Write ``model.pt``, ``index_to_name.json``, ``preprocessing.json`` and ``model.json`` into
    ``folder``; the TorchScript model is checked against the eager one on a fixed random batch."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    check_batch = torch.randn(16, 1, settings.size, settings.size, generator=torch.Generator().manual_seed(0))
    scripted = script_model(model, check_batch)
    scripted.save(str(folder / "model.pt"))
    write_json(folder / "index_to_name.json", index_to_name(name))
    write_json(
        folder / "preprocessing.json",
        {"glyph": asdict(settings), "mean": mean, "std": std, "calibration": calibration},
    )
    write_json(
        folder / "model.json",
        {
            "name": name,
            "version": str(training["config"]["version"]),
            "num_classes": len(CLASS_NAMES[name]),
            "reject_output": calibration.get("reject_threshold") is not None,
            "classes": CLASS_NAMES[name],
            "trained_on": source,
            "parameters": count_parameters(model),
            "epochs": training["epochs"],
            "best_epoch": training["best_epoch"],
            "train_seconds": training["train_seconds"],
            "architecture": f"GlyphNet(width={training['config']['width']}): {architecture(model)}"
            + ("; upper and lower case learned apart, answered merged (CaseMerged)" if isinstance(model, CaseMerged) else ""),
            "command": training["command"],
        },
    )
    return folder


def architecture(model: torch.nn.Module) -> str:
    """A one-line summary such as ``conv32-pool-conv64-conv64-pool-conv128-pool-fc256-fc47``."""
    parts = []
    for layer in model.modules():
        if isinstance(layer, torch.nn.Conv2d):
            parts.append(f"conv{layer.out_channels}")
        elif isinstance(layer, torch.nn.MaxPool2d):
            parts.append("pool")
        elif isinstance(layer, torch.nn.Linear):
            parts.append(f"fc{layer.out_features}")
        elif isinstance(layer, torch.nn.Dropout):
            parts.append(f"dropout{layer.p:g}")
    return "-".join(parts)
