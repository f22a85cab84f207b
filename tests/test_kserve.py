"""KServe's side, as far as it runs here: the storage bundle (``make kserve-bundle``,
handler/bundle.py), TorchServe started from the bundle's own ``config.properties`` as KServe's
runtime starts it, and KServe's model server (``deploy/kserve_front.py``, the ``kserve`` package
in its own virtualenv) in front of it, over real HTTP in protocol v1 and v2."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from client.api import read_properties
from handler.server import LOG_CONFIG, TorchServe, free_ports, render_properties
from tests.canvases import drawing_png, uniform_png
from tests.conftest import PROJECT, make

KSERVE_PYTHON = Path(os.environ.get("KSERVE_VENV") or PROJECT / "build" / "kserve-venv") / "bin" / "python"
FRONT = PROJECT / "deploy" / "kserve_front.py"
SEVEN = base64.b64encode(drawing_png("7")).decode()
BLANK = base64.b64encode(uniform_png(255)).decode()
ENVELOPES = {"v1": "kserve", "v2": "kservev2"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, shipped_models: Path) -> Path:
    """``make kserve-bundle`` of digits and letters, as a user runs it."""
    root = tmp_path_factory.mktemp("bundle")
    make("kserve-bundle", "MODEL=digits letters", f"MODELS_DIR={shipped_models}",
         f"MODEL_STORE={root / 'store'}", f"KSERVE_BUNDLE={root / 'bundle'}")
    return root / "bundle"


def test_the_bundle_has_kserves_layout_and_names_its_models(bundle):
    files = sorted(str(path.relative_to(bundle)) for path in bundle.rglob("*") if path.is_file())
    assert files == ["config/config.properties", "model-store/digits.mar", "model-store/letters.mar"]
    properties = read_properties(bundle / "config" / "config.properties")
    snapshot = json.loads(properties["model_snapshot"])
    assert snapshot["modelCount"] == 2
    for name in ("digits", "letters"):
        assert snapshot["models"][name]["1.0"] == {
            "defaultVersion": True, "marName": f"{name}.mar", "minWorkers": 2, "maxWorkers": 2,
            "batchSize": 1, "maxBatchDelay": 2, "responseTimeout": 30,
        }
    assert properties["model_store"] == "/mnt/models/model-store"
    assert properties["enable_envvars_config"] == "true"
    assert properties["inference_address"].startswith("http://127.0.0.1:")
    assert properties["enable_model_api"] == "false"


def bundle_torchserve(bundle: Path, run_dir: Path, envelope: str) -> tuple[TorchServe, str]:
    """TorchServe started as KServe's runtime starts it: ``--ts-config`` the bundle's
    config.properties (only its ports moved to free ones and its model store to the bundle's
    folder, as KServe mounts it), ``TS_SERVICE_ENVELOPE`` in the environment. Returns the server
    and its address (inference and management on one port, as in the bundle)."""
    run_dir.mkdir(parents=True)
    api, metrics, grpc_inference, grpc_management = free_ports(4)
    address = f"http://127.0.0.1:{api}"
    config = run_dir / "config.properties"
    config.write_text(render_properties((bundle / "config" / "config.properties").read_text(), {
        "inference_address": address, "management_address": address,
        "metrics_address": f"http://127.0.0.1:{metrics}",
        "grpc_inference_port": str(grpc_inference), "grpc_management_port": str(grpc_management),
    }))
    server = TorchServe(run_dir=run_dir, model_store=bundle / "model-store", envelope=envelope)
    server.temp.mkdir()
    server.logs.mkdir()
    subprocess.run(
        [sys.executable, "-m", "ts.model_server", "--start", "--ncs", "--ts-config", str(config),
         "--model-store", str(server.model_store), "--log-config", str(LOG_CONFIG)],
        cwd=run_dir, env=server.environment(), check=True, stdout=subprocess.DEVNULL,
    )
    return server, address


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    pytest.fail(f"{what} after {timeout:.0f} s")


def all_ready(address: str) -> bool:
    models = requests.get(f"{address}/models", timeout=5).json()["models"]
    return {m["modelName"] for m in models} == {"digits", "letters"} and all(
        requests.get(f"{address}/models/{name}", timeout=5).json()[0]["workers"][0]["status"] == "READY"
        for name in ("digits", "letters")
    )


@pytest.fixture(scope="module", params=["v1", "v2"])
def served(request, bundle, tmp_path_factory) -> Iterator[tuple[str, str, str]]:
    """TorchServe from the bundle in the protocol's envelope, and KServe's model server in front
    of it when the kserve virtualenv exists; yields (protocol, TorchServe's address, the front's
    address or "")."""
    protocol = request.param
    root = tmp_path_factory.mktemp(f"kserve-{protocol}")
    server, address = bundle_torchserve(bundle, root / "run", ENVELOPES[protocol])
    front = None
    try:
        wait_until(lambda: all_ready(address), 120, "the bundle's models were not READY")
        front_address = ""
        if KSERVE_PYTHON.is_file():
            http_port, grpc_port = free_ports(2)
            front = subprocess.Popen(
                [str(KSERVE_PYTHON), str(FRONT), "--ts-config", str(root / "run" / "config.properties"),
                 "--ts-model-store", str(server.model_store), "--predictor_protocol", protocol,
                 "--http_port", str(http_port), "--grpc_port", str(grpc_port)],
                stdout=open(root / "front.log", "wb"), stderr=subprocess.STDOUT,
            )
            front_address = f"http://127.0.0.1:{http_port}"
            wait_until(lambda: requests.get(f"{front_address}/v2/health/ready", timeout=5).ok, 60,
                       f"KServe's model server was not ready (log: {root / 'front.log'})")
        yield protocol, address, front_address
    finally:
        if front is not None:
            front.terminate()
            front.wait(timeout=30)
        server.stop()


def request_body(protocol: str, image: str) -> dict:
    if protocol == "v1":
        return {"instances": [{"data": image, "top_k": 3}]}
    return {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [image],
                        "parameters": {"top_k": 3}}]}


def predict_path(protocol: str, model: str) -> str:
    return f"/v1/models/{model}:predict" if protocol == "v1" else f"/v2/models/{model}/infer"


def label(protocol: str, body: dict) -> str:
    if protocol == "v1":
        return body["predictions"][0]["label"]
    return next(output["data"][0] for output in body["outputs"] if output["name"] == "label")


def test_torchserve_starts_from_the_bundle_and_answers_without_a_key(served):
    protocol, address, _ = served
    response = requests.post(address + predict_path(protocol, "digits"), json=request_body(protocol, SEVEN), timeout=30)
    assert response.status_code == 200, response.text
    assert label(protocol, response.json()) == "7"


def test_the_bundles_torchserve_registers_nothing_at_run_time(served):
    _, address, _ = served
    assert requests.post(f"{address}/models?url=digits.mar", timeout=10).status_code == 405


def kserve_front(served) -> tuple[str, str]:
    protocol, _, front = served
    if not front:
        pytest.skip(f"no kserve virtualenv at {KSERVE_PYTHON.parent.parent}: run make kserve-venv")
    return protocol, front


def test_kserves_model_server_forwards_to_torchserve(served):
    protocol, front = kserve_front(served)
    response = requests.post(front + predict_path(protocol, "letters"),
                             json=request_body(protocol, base64.b64encode(drawing_png("L")).decode()), timeout=30)
    assert response.status_code == 200, response.text
    assert label(protocol, response.json()) == "L"
    if protocol == "v2":
        names = [output["name"] for output in response.json()["outputs"]]
        assert {"label", "confidence", "probabilities", "probabilities.keys"} <= set(names)


def test_kserves_model_server_answers_bad_input_with_its_error_shape(served):
    protocol, front = kserve_front(served)
    response = requests.post(front + predict_path(protocol, "digits"), json=request_body(protocol, BLANK), timeout=30)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"} and "blank" in response.json()["error"].lower()


def test_kserves_model_server_says_ready_and_describes_the_models(served):
    protocol, front = kserve_front(served)
    assert requests.get(f"{front}/v2/health/ready", timeout=10).json() == {"ready": True}
    assert requests.get(f"{front}/v2/health/live", timeout=10).json() == {"live": True}
    assert requests.get(f"{front}/v1/models", timeout=10).json() == {"models": ["digits", "letters"]}
    metadata = requests.get(f"{front}/v2/models/letters", timeout=10).json()
    assert metadata["name"] == "letters"
    outputs = {output["name"]: output for output in metadata["outputs"]}
    assert outputs["probabilities"]["shape"] == [26] and outputs["label"]["datatype"] == "BYTES"
    if protocol == "v2":  # the metadata describes every tensor of an answer, in its order and types
        answer = requests.post(front + predict_path(protocol, "letters"), timeout=30,
                               json=request_body(protocol, base64.b64encode(drawing_png("L")).decode())).json()
        assert [(o["name"], o["datatype"]) for o in answer["outputs"]] == [
            (o["name"], o["datatype"]) for o in metadata["outputs"]]
    assert requests.get(f"{front}/v2/models/digits/ready", timeout=10).json()["ready"] is True
