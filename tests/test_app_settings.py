"""Where the app listens and which server it calls: flags, then variables, then the run folder;
who may use it when it listens beyond loopback; where it keeps files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from client.api import Endpoints
from client.app import AUTH_ENV, AppSettings, ExposureError, build_app, check_exposure, parse_settings
from handler.server import free_ports
from tests.conftest import PROJECT

VARIABLES = ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "RECOGNIZER_RUN_DIR",
             "RECOGNIZER_INFERENCE_URL", "RECOGNIZER_MANAGEMENT_URL", "RECOGNIZER_KEY_FILE")


def run_folder(path: Path) -> Path:
    """A run folder as ``make serve`` writes it (only the keys the app reads)."""
    path.mkdir()
    (path / "config.properties").write_text(
        "inference_address=http://127.0.0.1:9080\n"
        "management_address=http://127.0.0.1:9081\n"
        "model_store=/srv/store\n"
    )
    return path


def test_without_flags_or_variables_the_run_folder_decides(tmp_path, monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECOGNIZER_RUN_DIR", str(run_folder(tmp_path / "run")))
    settings = parse_settings([])
    assert (settings.host, settings.port, settings.model) == ("127.0.0.1", 7860, "digits")
    assert settings.endpoints.inference == "http://127.0.0.1:9080"
    assert settings.endpoints.management == "http://127.0.0.1:9081"
    assert settings.endpoints.key_file == tmp_path / "run" / "key_file.json"
    assert settings.endpoints.model_store == Path("/srv/store")


def test_variables_override_the_run_folder_and_flags_override_both(tmp_path, monkeypatch):
    run = run_folder(tmp_path / "run")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7000")
    monkeypatch.setenv("RECOGNIZER_INFERENCE_URL", "http://10.0.0.1:8080")
    monkeypatch.setenv("RECOGNIZER_KEY_FILE", "/etc/keys.json")
    from_env = parse_settings(["--run-dir", str(run)])
    assert (from_env.host, from_env.port) == ("0.0.0.0", 7000)
    assert from_env.endpoints.inference == "http://10.0.0.1:8080"
    assert from_env.endpoints.management == "http://127.0.0.1:9081"
    assert from_env.endpoints.key_file == Path("/etc/keys.json")

    flags = parse_settings([
        "--run-dir", str(run), "--host", "127.0.0.2", "--port", "7001",
        "--inference-url", "http://10.0.0.2:8080", "--management-url", "http://10.0.0.2:8081",
        "--key-file", "k.json", "--model-store", "store", "--model", "letters",
    ])
    assert (flags.host, flags.port, flags.model) == ("127.0.0.2", 7001, "letters")
    assert flags.endpoints.inference == "http://10.0.0.2:8080"
    assert flags.endpoints.management == "http://10.0.0.2:8081"
    assert flags.endpoints.key_file == Path("k.json")
    assert flags.endpoints.model_store == Path("store")


# -- exposure: beyond loopback only with a login, or read-only ----------------------------------


def test_the_app_refuses_to_listen_beyond_loopback_without_a_login(tmp_path):
    """The real command, as a user runs it: it exits with a sentence that says how, and never
    listens."""
    port = free_ports(1)[0]
    env = {key: value for key, value in os.environ.items() if key != AUTH_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "client.app", "--host", "0.0.0.0", "--port", str(port), "--run-dir", str(tmp_path)],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: --host 0.0.0.0 makes the app reachable from other machines")
    assert "--auth-file FILE" in result.stderr and AUTH_ENV in result.stderr and "--read-only" in result.stderr
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing listens


def test_beyond_loopback_a_login_or_read_only_is_enough(tmp_path, monkeypatch):
    monkeypatch.delenv(AUTH_ENV, raising=False)
    logins = tmp_path / "logins"
    logins.write_text("# who may use the app\nada:correct horse\n\nbob:battery:staple\n")
    with_file = parse_settings(["--host", "0.0.0.0", "--auth-file", str(logins)])
    assert with_file.auth == (("ada", "correct horse"), ("bob", "battery:staple"))
    check_exposure(with_file)
    monkeypatch.setenv(AUTH_ENV, "carol:secret")
    assert parse_settings(["--host", "0.0.0.0"]).auth == (("carol", "secret"),)
    monkeypatch.delenv(AUTH_ENV)
    check_exposure(parse_settings(["--host", "0.0.0.0", "--read-only"]))
    check_exposure(parse_settings(["--host", "127.0.0.1"]))
    check_exposure(parse_settings(["--host", "::1"]))
    with pytest.raises(ExposureError, match="--read-only"):
        check_exposure(parse_settings(["--host", "192.168.1.20"]))
    logins.write_text("ada\n")
    with pytest.raises(SystemExit):
        parse_settings(["--auth-file", str(logins)])


def test_read_only_offers_no_way_to_change_the_server_or_the_disk(tmp_path):
    endpoints = Endpoints.discover(run_dir=tmp_path)
    names = lambda app: {fn.api_name for fn in app.fns.values() if fn.api_name}  # noqa: E731
    full = names(build_app(AppSettings(endpoints=endpoints, run_dir=tmp_path)))
    read_only = names(build_app(AppSettings(endpoints=endpoints, run_dir=tmp_path, read_only=True)))
    changes = {"scale", "set_default", "unregister", "register", "save_correction"}
    assert changes <= full
    assert not changes & read_only
    assert {"recognize_drawing", "recognize_upload", "explain", "read_text", "refresh_models"} <= read_only


def test_uploads_and_corrections_live_under_the_run_folder(tmp_path):
    settings = parse_settings(["--run-dir", str(tmp_path / "run")])
    assert settings.uploads == tmp_path / "run" / "app-uploads"
    assert settings.corrections == tmp_path / "run" / "corrections"
    assert parse_settings(["--corrections-dir", str(tmp_path / "mine")]).corrections == tmp_path / "mine"
