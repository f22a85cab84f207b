"""Packaging and the server's lifecycle: what ``make archive``, ``make serve``, ``make status``
and ``make stop`` do, run as a user runs them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import psutil
import pytest
import yaml

from handler.archive import build_archive, model_config
from handler.server import JAVA_INSTALL, MODELS, PORT_NAMES, ServerError, TorchServe
from tests.conftest import PROJECT, free_ports, make, serving_config



def test_an_archive_holds_the_model_the_handler_package_and_its_config(shipped_models, tmp_path):
    archive = build_archive("letters", shipped_models, tmp_path / "store", serving_config(), tmp_path / "build")
    assert archive == tmp_path / "store" / "letters.mar"
    with zipfile.ZipFile(archive) as mar:
        names = set(mar.namelist())
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))["model"]
        config = yaml.safe_load(mar.read("model-config.yaml"))
        # TorchServe imports the top-level copy as module `recognizer`; it imports the package.
        assert mar.read("recognizer.py") == mar.read("handler/recognizer.py")
    assert {
        "model.pt", "index_to_name.json", "preprocessing.json", "model.json", "model-config.yaml",
        "recognizer.py", "handler/__init__.py", "handler/glyph.py", "handler/payload.py",
        "handler/recognizer.py",
    } <= names
    version = json.loads((shipped_models / "letters" / "model.json").read_text())["version"]
    assert manifest["modelVersion"] == version and manifest["handler"] == "recognizer.py"
    assert config == model_config(serving_config(), "letters")
    assert config["handler"]["torch_threads"] == 1
    assert list((tmp_path / "build").iterdir()) == []  # staging cleaned up


def test_per_model_settings_override_the_defaults():
    config = {"defaults": {"minWorkers": 2, "handler": {"torch_threads": 1, "top_k": 5}},
              "models": {"digits": {"minWorkers": 1, "handler": {"top_k": 3}}}}
    assert model_config(config, "digits") == {"minWorkers": 1, "handler": {"torch_threads": 1, "top_k": 3}}
    assert model_config(config, "letters") == {"minWorkers": 2, "handler": {"torch_threads": 1, "top_k": 5}}


def test_make_archive_rebuilds_only_what_changed(shipped_models, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(shipped_models, models)
    where = [f"MODELS_DIR={models}", f"MODEL_STORE={tmp_path / 'store'}"]
    make("archive", *where)
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == sorted(f"{m}.mar" for m in MODELS)
    assert make("-q", "archive", *where, check=False).returncode == 0  # up to date
    (models / "letters" / "model.json").touch()
    planned = make("-n", "archive", *where).stdout
    assert "handler.archive letters" in planned
    assert "handler.archive digits" not in planned and "handler.archive balanced" not in planned


@pytest.mark.parametrize("java", ['openjdk version "11.0.2" 2019-01-15', 'java version "1.8.0_381"', None],
                         ids=["java-11", "java-8", "no-java"])
def test_missing_or_old_java_is_reported_before_anything_starts(tmp_path, monkeypatch, java):
    home = tmp_path / "jdk"
    if java is not None:
        (home / "bin").mkdir(parents=True)
        fake = home / "bin" / "java"
        fake.write_text(f"#!/bin/sh\necho '{java}' >&2\n")
        fake.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(home))
    server = TorchServe(run_dir=tmp_path / "run", model_store=tmp_path / "store")
    with pytest.raises(ServerError) as error:
        server.start()
    assert "needs Java 17 or newer" in str(error.value) and JAVA_INSTALL in str(error.value)
    assert not (tmp_path / "run").exists()


def project_copy(destination: Path) -> Path:
    """The project's files as a fresh checkout would have them (tracked and new, not ignored)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, files):
        source = PROJECT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)  # keeps mtimes: make sees the venv as current
    return destination


def files_below(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def paths_in_tmp(process: psutil.Process, allowed: Path) -> list[str]:
    """Files a process holds open (and its working directory) under /tmp, outside ``allowed``."""
    temp = Path(tempfile.gettempdir()).resolve()
    paths = [process.cwd(), *(f.path for f in process.open_files())]
    return [p for p in paths if Path(p).is_relative_to(temp) and not Path(p).is_relative_to(allowed)]


@pytest.mark.slow
def test_make_serve_then_stop_leaves_no_process_and_no_stray_file(shipped_models, tmp_path):
    project = project_copy(tmp_path / "project")
    before = files_below(project)
    ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
    options = [f"MODELS_DIR={shipped_models}"] + [f"{name.upper()}_PORT={port}" for name, port in ports.items()]

    served = make("serve", *options, cwd=project).stdout
    server = TorchServe(run_dir=project / ".run", model_store=project / "model_store")
    processes = server.processes()
    try:
        workers = sum(model_config(serving_config(), model)["minWorkers"] for model in MODELS)
        assert len(processes) == 1 + workers  # the JVM and its workers
        key = server.client().keys.inference
        assert f"Authorization: Bearer {key}" in served
        assert f"http://127.0.0.1:{ports['inference']}/predictions/digits" in served
        assert str(project / ".run" / "key_file.json") in served
        assert (project / ".run" / "key_file.json").stat().st_mode & 0o777 == 0o600
        status = make("status", cwd=project).stdout
        for model in MODELS:
            config = model_config(serving_config(), model)
            workers = ", ".join([r"\d+ READY"] * config["minWorkers"])
            row = rf"^{model}\s+1\.0\s+yes\s+{config['batchSize']}\s+{config['minWorkers']}: {workers}$"
            assert re.search(row, status, re.M), status
        for process in processes:
            assert paths_in_tmp(process, allowed=project) == []
        assert not Path(f"/tmp/hsperfdata_{psutil.Process().username()}/{processes[0].pid}").exists()
    finally:
        stopped = make("stop", cwd=project)
    assert "TorchServe stopped." in stopped.stdout
    assert not any(process.is_running() for process in processes)

    added = files_below(project) - before
    runtime = {name for name in added if name.startswith(".run")}
    assert runtime <= {".run", ".run/config.properties", ".run/logs"} | {f".run/logs/{log}" for log in (
        "access_log.log", "model_log.log", "ts_log.log", "torchserve.out")}
    assert added - runtime <= {"model_store/digits.mar", "model_store/letters.mar", "model_store/balanced.mar",
                               "build", "build/archive"}
    assert "TorchServe was not running." in make("stop", cwd=project).stdout
    down = make("status", cwd=project, check=False)
    assert down.returncode != 0 and "TorchServe is not running" in down.stdout


def test_a_misspelt_model_is_named_before_make_does_anything():
    result = make("archive", "MODEL=digits digts", check=False)
    assert result.returncode != 0 and "MODEL=digts is not a recognizer" in result.stderr


@pytest.mark.parametrize("envelope, path", [(None, "/predictions/letters"), ("kserve", "/v1/models/letters:predict"),
                                            ("kservev2", "/v2/models/letters/infer")])
def test_the_start_message_sends_to_a_served_model_in_the_served_protocol(tmp_path, envelope, path):
    server = TorchServe(run_dir=tmp_path, model_store=tmp_path, envelope=envelope)
    assert server.prediction_path("letters") == path
    assert server.try_it("http://127.0.0.1:8080", "letters").endswith(f" http://127.0.0.1:8080{path}")


def test_a_worker_that_cannot_start_fails_make_serve_at_once_and_says_why(shipped_models, tmp_path, monkeypatch):
    build_archive("digits", shipped_models, tmp_path / "store", serving_config(), tmp_path / "build")
    server = TorchServe(run_dir=tmp_path / "run", model_store=tmp_path / "store",
                        ports=dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)))))
    monkeypatch.setenv("RECOGNIZER_BACKEND", "tensorrt")  # a typo, as a user makes one
    started = time.monotonic()
    with pytest.raises(ServerError) as raised:
        server.start(["digits"], timeout=150)
    assert time.monotonic() - started < 60  # not the whole timeout: TorchServe would retry forever
    assert ("a worker could not start:\nthe recognizer handler cannot start: digits: BackendError: "
            "unknown handler.backend 'tensorrt': choose one of torchscript, onnxruntime") in str(raised.value)
    assert server.pid() is None  # stopped, nothing left behind
    # the next start, with the setting fixed, does not trip over the earlier failure in the log
    monkeypatch.delenv("RECOGNIZER_BACKEND")
    try:
        server.start(["digits"], timeout=150)
    finally:
        server.stop()
