"""Package an exported recognizer into a TorchServe model archive (``<name>.mar``).

``python -m handler.archive digits letters --models-dir models --model-store model_store``

An archive holds the TorchScript model, for ``handler.backend: onnxruntime`` the same network
exported to ONNX (``model.onnx``, :mod:`handler.forward`, checked against the TorchScript model
before it is packaged), the handler and the modules it imports, the model's metadata files and a
``model-config.yaml`` rendered from ``config/serving.yaml``. The version is the one training
wrote into ``model.json``.

Layout, and why: ``torch-model-archiver`` copies the *contents* of each ``--extra-files`` folder
into the archive's root, and copies ``--handler`` there too. So a staging folder holding a
``handler/`` package becomes ``<model dir>/handler/`` inside the worker, and the entry point
``recognizer.py`` (top level, imported by TorchServe as module ``recognizer``) can write
``from handler.glyph import ...`` exactly as in this repository: the normalization shared with
training is imported, never copied into a second version.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from handler.forward import (
    DEFAULT_BACKEND, ONNX_FILE, BackendError, OnnxRuntimeModel, check_same, export_onnx, known_backend,
)

PROJECT = Path(__file__).resolve().parent.parent
HANDLER_MODULES = (
    "__init__.py", "confidence.py", "explain.py", "forward.py", "glyph.py", "payload.py", "envelope.py", "png.py",
    "recognizer.py", "text.py", "worker.py",
)  # what the worker imports
METADATA_FILES = ("index_to_name.json", "preprocessing.json", "model.json")
MODEL_FILE = "model.pt"


def model_config(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The ``model-config.yaml`` of one model: the defaults, then that model's overrides
    (the ``handler:`` section is merged key by key)."""
    overrides = dict((config.get("models") or {}).get(name) or {})
    merged = {**config.get("defaults", {}), **overrides}
    merged["handler"] = {
        **config.get("defaults", {}).get("handler", {}),
        **overrides.get("handler", {}),
    }
    return merged


def model_version(model_dir: Path) -> str:
    """The version training exported with the model (``model.json``)."""
    return str(json.loads((model_dir / "model.json").read_text())["version"])


# torch-model-archiver's entry point, called as its console script calls it (``python -m
# model_archiver.model_packaging`` makes runpy warn: the package imports that module itself).
ARCHIVER = "from model_archiver.model_packaging import generate_model_archive; generate_model_archive()"


def build_archive(
    name: str, models_dir: Path, model_store: Path, config: dict[str, Any], build_dir: Path
) -> Path:
    """Stage and package one model; returns the ``.mar`` path in ``model_store``."""
    model_dir = models_dir / name
    missing = [f for f in (MODEL_FILE, *METADATA_FILES) if not (model_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{model_dir} lacks {', '.join(missing)}: train and export the model first "
            f"(make train) or point MODELS_DIR at exported models"
        )
    settings = model_config(config, name)
    try:
        backend = known_backend(settings["handler"].get("backend", DEFAULT_BACKEND), " in the serving configuration")
    except BackendError as error:
        raise BackendError(f"{name}: {error}") from None
    build_dir.mkdir(parents=True, exist_ok=True)
    model_store.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=build_dir))  # concurrent builds never meet
    try:
        package(name, model_dir, model_store, settings, backend, stage)
    finally:
        shutil.rmtree(stage)
    return model_store / f"{name}.mar"


def package(
    name: str, model_dir: Path, model_store: Path, settings: dict[str, Any], backend: str, stage: Path
) -> None:
    """Lay out the archive's files in ``stage`` (``model.onnx`` too for the ``onnxruntime``
    ``backend``) and run torch-model-archiver on them."""
    extra = stage / "extra"
    (extra / "handler").mkdir(parents=True)
    for module in HANDLER_MODULES:
        shutil.copy2(PROJECT / "handler" / module, extra / "handler" / module)
    for metadata in METADATA_FILES:
        shutil.copy2(model_dir / metadata, extra / metadata)
    if backend == "onnxruntime":
        write_onnx(model_dir, extra / ONNX_FILE)
    run_archiver(
        name, model_version(model_dir), extra / "handler" / "recognizer.py", settings, model_store, stage,
        "--serialized-file", str(model_dir / MODEL_FILE), "--extra-files", str(extra),
    )


def write_onnx(model_dir: Path, path: Path) -> None:
    """``model_dir``'s TorchScript model exported to ONNX at ``path``, after checking that ONNX
    Runtime gives the same logits on a fixed random batch. Raises ``BackendError`` if not, or
    when ``model.pt`` is not a TorchScript model."""
    size = int(json.loads((model_dir / "preprocessing.json").read_text())["glyph"].get("size", 28))
    try:
        model = torch.jit.load(str(model_dir / MODEL_FILE), map_location="cpu")
    except RuntimeError as error:  # not a TorchScript file: truncated, a state_dict, anything else
        first_line = str(error).strip().splitlines()[0]
        raise BackendError(f"{model_dir / MODEL_FILE} is not a TorchScript model ({first_line}): export it again") from error
    path.write_bytes(export_onnx(model, size))
    batch = torch.randn(16, 1, size, size, generator=torch.Generator().manual_seed(0))
    check_same(OnnxRuntimeModel(path, threads=1), model, batch, f"the ONNX export of {model_dir / MODEL_FILE}")


def run_archiver(
    name: str, version: str, handler: Path, settings: dict[str, Any], model_store: Path, stage: Path,
    *options: str,
) -> None:
    """Run torch-model-archiver: ``model_store/<name>.mar`` with ``handler``, ``settings`` as its
    model-config.yaml and the archiver's further ``options`` (``--serialized-file``, ...). The
    config file and the archiver's scratch files go into ``stage``, not /tmp."""
    config_file = stage / "model-config.yaml"
    config_file.write_text(yaml.safe_dump(settings, sort_keys=False))
    tmp = stage / "tmp"
    tmp.mkdir()
    command = [
        sys.executable, "-c", ARCHIVER,
        "--model-name", name,
        "--version", version,
        "--handler", str(handler),
        "--config-file", str(config_file),
        "--export-path", str(model_store),
        "--force",
        *options,
    ]
    env = {**os.environ, "TMPDIR": str(tmp), "TEMP": str(tmp), "TMP": str(tmp)}
    subprocess.run(command, check=True, env=env)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", help="recognizers to package, e.g. digits letters")
    parser.add_argument("--models-dir", type=Path, default=PROJECT / "models")
    parser.add_argument("--model-store", type=Path, default=PROJECT / "model_store")
    parser.add_argument("--config", type=Path, default=PROJECT / "config" / "serving.yaml")
    parser.add_argument("--build-dir", type=Path, default=PROJECT / "build" / "archive")
    args = parser.parse_args(argv)
    config = yaml.safe_load(args.config.read_text())
    for name in args.names:
        try:
            target = build_archive(name, args.models_dir, args.model_store, config, args.build_dir)
        except (FileNotFoundError, BackendError) as error:
            sys.exit(f"error: {error}")
        print(f"{target} (version {model_version(args.models_dir / name)})")


if __name__ == "__main__":
    main()
