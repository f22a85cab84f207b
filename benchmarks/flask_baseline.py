"""The plain Flask + PyTorch baseline: a model served the way the projects this service replaces
serve one, measured in the same ``make bench`` rounds as TorchServe.

One process, Flask's own server (werkzeug, ``threaded=True``: a thread per connection, keep-alive
HTTP/1.1), and for each model the *same* TorchScript file the service serves
(``torch.jit.load`` of ``<models-dir>/<name>/model.pt``, ``eval()``, ``torch.no_grad()``, torch's
default thread settings unless ``--torch-threads`` says otherwise, no freezing; two warm-up
passes at load, as the handler makes) behind the *same* decoding and normalization
(:func:`handler.glyph.canvas_to_glyph` with the model's ``preprocessing.json`` glyph settings,
mean and std: PIL, and zlib-ng and libspng for a plain PNG, :mod:`handler.png`). So it differs from the service only in how it serves: what the comparison is about.

``POST /predictions/<model>`` with the raw image as the body (``curl --data-binary @drawing.png
-H 'Content-Type: image/png'``, as the load generator sends it; no token; ``curl -T`` would PUT) answers ``{"label", "confidence", "top_k", "probabilities"}``:
a softmax over the label map's classes (the "not a character" output, when the model has one, is
left out, and no temperature is applied: the labels are the handler's, the confidences need not
be). An unreadable or blank image gets the service's error body with its 4xx; ``GET /ping`` says
which models are loaded and how many threads torch uses.

    python -m benchmarks.flask_baseline --models-dir models --models digits --port 8090

:func:`serving` runs it as a subprocess on a free port for the benchmark and the tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import psutil
import torch
from flask import Flask, request

from benchmarks.loadgen import Target
from handler.glyph import GlyphSettings, InputError, canvas_to_glyph
from handler.recognizer import DEFAULT_TOP_K, error_body
from handler.server import free_ports

PROJECT = Path(__file__).resolve().parent.parent
FLASK = "flask"  # its name among the benchmark's load targets


@dataclass(frozen=True)
class Recognizer:
    """One exported model as a plain script would load it."""

    model: torch.jit.ScriptModule
    classes: list[str]
    settings: GlyphSettings
    mean: float
    std: float

    @classmethod
    def load(cls, folder: Path) -> "Recognizer":
        """``folder/model.pt`` (TorchScript, on the CPU, in eval mode), its label map
        (``index_to_name.json``) and normalization (``preprocessing.json``)."""
        preprocessing = json.loads((folder / "preprocessing.json").read_text())
        mapping = json.loads((folder / "index_to_name.json").read_text())
        settings = GlyphSettings.from_dict(preprocessing["glyph"])
        model = torch.jit.load(str(folder / "model.pt"), map_location="cpu")
        model.eval()
        with torch.no_grad():  # TorchScript optimizes on its second run: not on a measured request
            for _ in range(2):
                model(torch.zeros(1, 1, settings.size, settings.size))
        return cls(
            model=model,
            classes=[mapping[str(index)] for index in range(len(mapping))],
            settings=settings,
            mean=float(preprocessing["mean"]),
            std=float(preprocessing["std"]),
        )

    def predict(self, image: bytes, top_k: int = DEFAULT_TOP_K) -> dict[str, Any]:
        """Encoded image bytes -> ``{"label", "confidence", "top_k": [{"label", "probability"}],
        "probabilities": {label: probability}}``; raises :class:`InputError` as the handler does."""
        glyph = canvas_to_glyph(image, self.settings)  # float32 [28, 28]
        inputs = torch.from_numpy((glyph - self.mean) / self.std)[None, None]  # [1, 1, 28, 28]
        with torch.no_grad():
            logits = self.model(inputs)[0, : len(self.classes)]
        probabilities = torch.softmax(logits, dim=0)
        values, indices = probabilities.topk(min(top_k, len(self.classes)))
        top = [{"label": self.classes[i], "probability": p} for p, i in zip(values.tolist(), indices.tolist())]
        return {
            "label": top[0]["label"],
            "confidence": top[0]["probability"],
            "top_k": top,
            "probabilities": dict(zip(self.classes, probabilities.tolist())),
        }


def create_app(recognizers: dict[str, Recognizer]) -> Flask:
    """The Flask app serving ``recognizers`` by name."""
    app = Flask(__name__)

    @app.get("/ping")
    def ping() -> dict[str, Any]:
        return {"status": "Healthy", "models": sorted(recognizers), "torch_threads": torch.get_num_threads()}

    @app.post("/predictions/<name>")
    def predict(name: str) -> Any:
        if name not in recognizers:
            return {"code": 404, "type": "ModelNotFound", "message": f"no model {name!r}"}, 404
        try:
            return recognizers[name].predict(request.get_data())
        except InputError as error:
            return error_body(error), error.status

    return app


@dataclass(frozen=True)
class FlaskBaseline:
    """A running baseline: its URL, process id and what ``/ping`` said once it answered."""

    url: str
    pid: int
    ping: dict[str, Any]

    def target(self, model: str) -> Target:
        return Target(self.url, f"/predictions/{model}")

    def roles(self) -> dict[str, list[psutil.Process]]:
        """Its one process, as the role ``server`` (:func:`benchmarks.loadgen.run_load`)."""
        return {"server": [psutil.Process(self.pid)]}

    def rss_mb(self) -> float:
        return round(psutil.Process(self.pid).memory_info().rss / 2**20, 1)


def _wait_until_up(process: subprocess.Popen, url: str, timeout: float, log: Path) -> dict[str, Any]:
    """``GET /ping``'s answer once the baseline answers; ``RuntimeError`` (with the end of its
    log) when it exits or does not answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Flask baseline exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                return json.loads(answer.read())
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise RuntimeError(f"the Flask baseline did not answer within {timeout} s: {log.read_text()[-2000:]}")


@contextmanager
def serving(models_dir: Path, models: Sequence[str], log: Path, timeout: float = 120.0) -> Iterator[FlaskBaseline]:
    """The baseline serving ``models`` of ``models_dir`` in a subprocess on a free loopback port
    (its output in ``log``), from when it answers ``/ping`` until the block ends; then stopped."""
    [port] = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "benchmarks.flask_baseline", "--models-dir", str(models_dir),
               "--models", *models, "--port", str(port)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=PROJECT, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield FlaskBaseline(url, process.pid, _wait_until_up(process, url, timeout, log))
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=PROJECT / "models")
    parser.add_argument("--models", nargs="+", default=["digits"], help="model folders to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--torch-threads", type=int, help="torch's intra-op threads (default: torch's own)")
    args = parser.parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    app = create_app({name: Recognizer.load(args.models_dir / name) for name in args.models})
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
