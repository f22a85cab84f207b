"""KServe's model server in front of the recognizers' TorchServe, as KServe's TorchServe runtime
runs it (its ``kserve_wrapper``): ``python deploy/kserve_front.py --ts-config
/mnt/models/config/config.properties --predictor_protocol v2 [--http_port 8080 --grpc_port 8081]``
(the flags with underscores are KServe's own; its parser matches abbreviations, hence ``--ts-``).

It reads the bundle's ``config.properties`` (``make kserve-bundle``): the models from
``model_snapshot`` and TorchServe's address from ``inference_address``. Each model is a
``kserve.Model`` whose predictions KServe forwards to TorchServe's KServe endpoint of the same
protocol (``/v1/models/<m>:predict`` or ``/v2/models/<m>/infer``, served through TorchServe's
envelope, ``handler/envelope.py``). On top of what KServe's wrapper does, it

- waits for a READY worker of every model before it answers ``/v2/health/ready`` (TorchServe's
  management API, on the same address in the bundle);
- answers TorchServe's 4xx with KServe's error shape ``{"error": "<message>"}`` and status 400,
  instead of the 500 KServe gives any error of its predictor;
- describes the input and output tensors in the v2 model metadata (``GET /v2/models/<m>``),
  the class count read from the archive's ``index_to_name.json``.

It runs in its own virtualenv (``make kserve-venv``: the ``kserve`` package pins pandas, psutil and
pillow apart from this project's) and imports nothing from the project.
"""

from __future__ import annotations

import argparse
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
from kserve import Model, ModelServer
from kserve.errors import InvalidInput
from kserve.predictor_config import PredictorConfig


def read_properties(path: Path) -> dict[str, str]:
    """``key=value`` lines of a Java properties file, comments skipped."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if "=" in line and not line.lstrip().startswith(("#", "!")))
    return {key.strip(): value.strip() for key, value in pairs}


def classes(archive: Path) -> int:
    """The number of classes a recognizer archive answers (its ``index_to_name.json``)."""
    with zipfile.ZipFile(archive) as mar:
        return len(json.loads(mar.read("index_to_name.json")))


def client_error(response: httpx.Response) -> str:
    """The messages of TorchServe's 4xx answer: the handler's error objects inside the v1
    ``predictions`` or the v2 ``message`` output, else TorchServe's own ``message``."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    if "predictions" in body:
        return "; ".join(item["message"] for item in body["predictions"] if "message" in item)
    if "outputs" in body:
        return "; ".join(m for out in body["outputs"] if out["name"].endswith("message") for m in out["data"])
    return str(body.get("message", body))


class TorchServeModel(Model):
    """One recognizer served by TorchServe, seen through KServe."""

    def __init__(self, name: str, management: str, archive: Path, ready_timeout: float):
        super().__init__(name)
        self.management = management
        self.archive = archive
        self.ready_timeout = ready_timeout

    def load(self) -> bool:
        """Ready once TorchServe reports a READY worker for this model (``/ping`` turns healthy
        seconds before the workers can answer). Raises ``TimeoutError`` after ``ready_timeout``."""
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            try:
                workers = httpx.get(f"{self.management}/models/{self.name}", timeout=5).json()[0]["workers"]
                if any(worker["status"] == "READY" for worker in workers):
                    self.ready = True
                    return True
            except (httpx.HTTPError, ValueError, KeyError, IndexError):
                pass  # not listening or not registered yet
            time.sleep(0.5)
        raise TimeoutError(f"{self.name}: no READY worker on {self.management} after {self.ready_timeout:.0f} s")

    async def predict(self, payload: Any, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> Any:
        try:
            return await super().predict(payload, headers, response_headers)
        except httpx.HTTPStatusError as error:
            if 400 <= error.response.status_code < 500:
                raise InvalidInput(client_error(error.response)) from error
            raise

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": "image", "datatype": "BYTES", "shape": [1],
                 "parameters": {"content": "base64 PNG, JPEG, WebP, GIF or BMP; options: top_k, return_input"}}]

    def get_output_types(self) -> list[dict[str, Any]]:
        count = classes(self.archive)
        return [
            {"name": "model", "datatype": "BYTES", "shape": [1]},
            {"name": "version", "datatype": "BYTES", "shape": [1]},
            {"name": "label", "datatype": "BYTES", "shape": [1]},
            {"name": "confidence", "datatype": "FP64", "shape": [1]},
            {"name": "accepted", "datatype": "BOOL", "shape": [1]},
            {"name": "top_k.label", "datatype": "BYTES", "shape": [-1]},
            {"name": "top_k.probability", "datatype": "FP64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [count]},
            {"name": "probabilities.keys", "datatype": "BYTES", "shape": [count]},
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ts-config", type=Path, default=Path("/mnt/models/config/config.properties"))
    parser.add_argument("--ts-model-store", type=Path, help="default: the config's model_store")
    parser.add_argument("--predictor_protocol", choices=("v1", "v2"), default="v1")
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    args, _ = parser.parse_known_args()  # the rest (--http_port, --grpc_port, ...) is KServe's
    properties = read_properties(args.ts_config)
    store = args.ts_model_store or Path(properties["model_store"])
    host = properties["inference_address"].split("//", 1)[1]
    snapshot = json.loads(properties["model_snapshot"])["models"]
    models = []
    for name, versions in snapshot.items():
        (entry,) = versions.values()
        model = TorchServeModel(name, properties["management_address"], store / entry["marName"],
                                args.ready_timeout)
        model.load()
        models.append(model)
    config = PredictorConfig(predictor_host=host, predictor_protocol=args.predictor_protocol)
    ModelServer(predictor_config=config).start(models)


if __name__ == "__main__":
    main()
