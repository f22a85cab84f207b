"""client/api.py: where the server is, which key to send, and keys that expire."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from client.api import Endpoints, Keys, ServingError, TorchServeClient
from handler.archive import build_archive
from tests.canvases import drawing_png
from tests.conftest import running_torchserve, serving_config


def write_run_dir(run_dir: Path, inference_port: int) -> Path:
    run_dir.mkdir()
    (run_dir / "config.properties").write_text(
        "# rendered\n"
        f"inference_address=http://127.0.0.1:{inference_port}\n"
        "model_store=/srv/store\n"
        "allowed_urls=file:///srv/store/[^/]+\\\\.mar\n"
    )
    return run_dir


def test_endpoints_come_from_arguments_then_environment_then_run_folder(tmp_path, monkeypatch):
    run_dir = write_run_dir(tmp_path / "run", 9080)
    for name in ("INFERENCE_URL", "MANAGEMENT_URL", "METRICS_URL", "KEY_FILE", "RUN_DIR"):
        monkeypatch.delenv(f"RECOGNIZER_{name}", raising=False)

    found = Endpoints.discover(run_dir=run_dir)
    assert found.inference == "http://127.0.0.1:9080"
    assert found.management == "http://127.0.0.1:8081"  # not in the file: TorchServe's default
    assert found.key_file == run_dir / "key_file.json" and found.model_store == Path("/srv/store")

    monkeypatch.setenv("RECOGNIZER_RUN_DIR", str(run_dir))
    monkeypatch.setenv("RECOGNIZER_INFERENCE_URL", "http://10.0.0.1:1")
    assert Endpoints.discover().inference == "http://10.0.0.1:1"
    assert Endpoints.discover(inference="http://10.0.0.2:2").inference == "http://10.0.0.2:2"


def key_file(path: Path, expires: datetime) -> Path:
    stamp = expires.isoformat().replace("+00:00", "Z")
    path.write_text(json.dumps({
        "management": {"key": "m", "expiration time": stamp},
        "inference": {"key": "i", "expiration time": stamp},
        "API": {"key": "a"},
    }))
    return path


def test_keys_know_when_they_expire(tmp_path):
    now = datetime.now(timezone.utc)
    assert not Keys.read(key_file(tmp_path / "k.json", now + timedelta(minutes=5))).expired("inference")
    keys = Keys.read(key_file(tmp_path / "k.json", now - timedelta(seconds=1)))
    assert keys.expired("inference") and (keys.inference, keys.management, keys.api) == ("i", "m", "a")


def test_a_missing_key_file_says_to_start_the_server(tmp_path):
    with pytest.raises(FileNotFoundError, match="make serve"):
        Keys.read(tmp_path / "key_file.json")


@pytest.mark.parametrize("content", [
    '{"inference": {"key": "i"}, "management": {"key": "m"}, "API": {"key": "a"}}',  # no expiry
    '{"inference": "i"}',
    "[]",
    "key=i",  # not JSON
])
def test_a_key_file_of_another_shape_is_named_not_a_traceback(tmp_path, content):
    path = tmp_path / "k.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"{path} is not a TorchServe key file"):
        Keys.read(path)


def response(status: int, body: str, reason: str = "Bad Request") -> requests.Response:
    answer = requests.Response()
    answer.status_code, answer.reason, answer._content = status, reason, body.encode()
    return answer


def test_an_error_answer_keeps_its_message_whatever_its_shape():
    error = ServingError.from_response(response(400, '{"code": 400, "type": "InputError", "message": "blank"}'))
    assert (error.status, error.type, error.message) == (400, "InputError", "blank")
    # A KServe v1 envelope's error, as a server started with ENVELOPE=kserve answers /predictions.
    enveloped = '{"predictions": [{"code": 400, "type": "InputError", "message": "send {\\"instances\\": ...}"}]}'
    error = ServingError.from_response(response(400, enveloped))
    assert "instances" in error.message and error.type == "Bad Request"
    assert ServingError.from_response(response(502, "<html>bad gateway</html>", "Bad Gateway")).message == "<html>bad gateway</html>"


@pytest.mark.slow
def test_an_expired_key_is_renewed_by_the_client(shipped_models, tmp_path):
    """Keys expire after token_expiration_min and TorchServe does not renew them by itself: a
    client that finds its key expired rotates it with the API key and carries on (~70 s)."""
    config = tmp_path / "config.properties"
    text = (Path(__file__).parent.parent / "config" / "config.properties").read_text()
    config.write_text(text.replace("token_expiration_min=60", "token_expiration_min=1"))
    build_archive("digits", shipped_models, tmp_path / "store", serving_config(), tmp_path / "build")
    with running_torchserve(tmp_path / "run", tmp_path / "store", ["digits"], config) as server:
        client = TorchServeClient(server.endpoints)
        first = client.keys.inference
        time.sleep(max(0.0, (client.keys.expires["inference"] - datetime.now(timezone.utc)).total_seconds()) + 1)
        assert client.predict("digits", drawing_png("7"))["model"] == "digits"
        assert client.keys.inference != first and not client.keys.expired("inference")
