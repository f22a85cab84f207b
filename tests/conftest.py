"""Shared fixtures: a real TorchServe serving the shipped models.

``torchserve`` (session scope) starts one TorchServe for the whole test session with the same
lifecycle code as ``make serve`` (:class:`handler.server.TorchServe`): the shipped models
(``models/``, or ``MODELS_DIR`` when set) are archived by ``handler.archive`` with
``config/serving.yaml`` into a temporary model store, the server runs on free ports with its run
folder in a temporary directory, and it is stopped (JVM and workers gone) when the session ends.
It is started on first use only, so test runs that do not need it do not pay for it (~10 s).

What the fixture gives (a :class:`handler.server.TorchServe`):

- ``torchserve.endpoints.inference`` / ``.management`` / ``.metrics``: base URLs;
  ``.endpoints.key_file``: the key file; ``.model_store``: the model store (``<name>.mar``);
- ``torchserve.client()``: a :class:`client.api.TorchServeClient` (tokens handled, re-read after
  rotation); ``torchserve.client().keys.inference`` / ``.management`` / ``.api``: current keys;
- ``torchserve.worker_pids("digits")``: the pids of a model's workers, to prove none restarted;
  ``torchserve.processes()``: the JVM and all its workers (``psutil.Process``);
- ``torchserve.run_dir`` and ``torchserve.logs``: runtime files and logs.

``running_torchserve(run_dir, model_store, models, config, envelope)`` starts a private one the
same way (for tests that break or reconfigure a server, or speak KServe's protocols), stopped
when its ``with`` block ends.
``archive_variant`` archives another version of a model (or one that cannot load), and
``make(...)`` runs a Makefile target as a user does.

Tests that change the server (register, scale, rotate keys) must leave it as they found it:
the three models at version 1.0 with their configured workers. A test may rotate keys: other
tests then still work through ``torchserve.client()``, which re-reads the key file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from handler.archive import build_archive
from handler.server import CONFIG, MODELS, PORT_NAMES, TorchServe, free_ports

PROJECT = Path(__file__).resolve().parent.parent
MODELS_DIR = Path(os.environ.get("MODELS_DIR") or PROJECT / "models").resolve()
SERVING_CONFIG = PROJECT / "config" / "serving.yaml"
VENV = Path(os.environ.get("VIRTUAL_ENV") or PROJECT / ".venv")


def make(*args: str, cwd: Path = PROJECT, check: bool = True) -> subprocess.CompletedProcess:
    """``make args`` in ``cwd`` with this virtualenv, as a user runs it; fails the test on an
    error unless ``check`` is false."""
    result = subprocess.run(
        ["make", "--no-print-directory", f"VENV={VENV}", *args],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )
    if check and result.returncode != 0:
        pytest.fail(f"make {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def serving_config() -> dict:
    return yaml.safe_load(SERVING_CONFIG.read_text())


@pytest.fixture(scope="session")
def shipped_models() -> Path:
    """The folder of exported models the tests serve (``models/`` unless ``MODELS_DIR``)."""
    missing = [name for name in MODELS if not (MODELS_DIR / name / "model.pt").is_file()]
    if missing:
        pytest.fail(f"no exported model for {missing} in {MODELS_DIR}: run make train")
    return MODELS_DIR


def archive_variant(
    models_dir: Path, name: str, store: Path, target: str, work: Path,
    version: str | None = None, model_file: bytes | None = None,
) -> Path:
    """The model ``name`` of ``models_dir`` archived again into ``store`` as ``target``, exported
    as ``version`` and/or with ``model_file`` as its model.pt; ``work`` holds the copies.
    Returns the archive's path (for another version of a model, or one that cannot load: `make
    archive` refuses a model.pt it cannot export, so ``model_file`` replaces it after packaging)."""
    model = work / "models" / name
    shutil.copytree(models_dir / name, model)
    if version is not None:
        metadata = json.loads((model / "model.json").read_text())
        (model / "model.json").write_text(json.dumps({**metadata, "version": version}))
    built = build_archive(name, model.parent, work / "store", serving_config(), work / "build")
    if model_file is None:
        return Path(shutil.copy(built, store / target))
    with zipfile.ZipFile(built) as original, zipfile.ZipFile(store / target, "w", zipfile.ZIP_DEFLATED) as variant:
        for entry in original.infolist():
            variant.writestr(entry, model_file if entry.filename == "model.pt" else original.read(entry))
    return store / target


def typeset_inputs(name: str, model_dir: Path, count: int = 60) -> "torch.Tensor":
    """Model inputs (float32 [n, 1, 28, 28]) of the model's class labels typeset and drawn on
    canvases of every style, made by the handler's preprocessing (torchscript backend)."""
    from benchmarks.heldout import canvas_pngs, typeset_heldout
    from handler.inprocess import worker_context
    from handler.recognizer import RecognizerHandler

    classes = list(json.loads((model_dir / "index_to_name.json").read_text()).values())
    handler = RecognizerHandler()
    handler.initialize(worker_context(model_dir, name, {"handler": {"torch_threads": 1, "backend": "torchscript"}}))
    pngs = [png for png in canvas_pngs(typeset_heldout(name, classes).images, range(count)) if png]
    return handler.preprocess([{"body": png} for png in pngs]).inputs


@contextmanager
def running_torchserve(
    run_dir: Path, model_store: Path, models: Sequence[str] = MODELS, config: Path = CONFIG,
    envelope: str | None = None,
) -> Iterator[TorchServe]:
    """A TorchServe on free ports serving ``models`` (``<name>.mar`` in ``model_store``), its
    runtime files in ``run_dir``, behind KServe's ``envelope`` when given; stopped, workers and
    all, when the block ends."""
    server = TorchServe(run_dir=run_dir, model_store=model_store, config=config, envelope=envelope,
                        ports=dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)))))
    try:
        server.start(models)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def torchserve(tmp_path_factory: pytest.TempPathFactory, shipped_models: Path) -> Iterator[TorchServe]:
    """One real TorchServe for the session; see the module docstring."""
    root = tmp_path_factory.mktemp("torchserve")
    for name in MODELS:
        build_archive(name, shipped_models, root / "model_store", serving_config(), root / "build")
    with running_torchserve(root / "run", root / "model_store") as server:
        yield server


@pytest.fixture(scope="session")
def gradio_app(
    torchserve: TorchServe, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The Gradio app (client/app.py) in this process on a free port, calling ``torchserve``,
    its run folder (uploads, corrections) in pytest's temporary tree; yields its URL. One app for
    the session: importing gradio alone takes ~5 s."""
    from client.app import AppSettings, launch  # imported here: only the tests that use it pay

    # gradio_client makes a folder in the system temp dir for every file it receives; keep them
    # in pytest's temporary tree instead of leaving them in /tmp (the app keeps its own in run_dir).
    scratch = tmp_path_factory.mktemp("gradio")
    saved_tempdir, tempfile.tempdir = tempfile.tempdir, str(scratch)
    settings = AppSettings(endpoints=torchserve.endpoints, port=free_ports(1)[0], run_dir=scratch / "run")
    app = launch(settings, block=False)
    try:
        yield f"http://{settings.host}:{settings.port}"
    finally:
        app.close()
        tempfile.tempdir = saved_tempdir
