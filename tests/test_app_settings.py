"""Where the app listens and which server it calls: flags, then variables, then the run folder."""

from __future__ import annotations

from pathlib import Path

from client.app import parse_settings

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
