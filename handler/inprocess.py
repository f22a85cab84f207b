"""The handler outside TorchServe, given what a worker gives it: for the tests and benchmarks that
check or time :class:`handler.recognizer.RecognizerHandler` in this process, without a server.

A worker builds one :class:`ts.context.Context` per model (with TorchServe's metrics cache) and,
before each batch, one response slot and one request id per request; the handler answers through
them (``set_response_status`` and friends). Not packaged into the archives.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import ts
from ts.context import Context, RequestProcessor
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

TS_METRICS = Path(ts.__file__).parent / "configs" / "metrics.yaml"


def worker_context(
    model_dir: Path, name: str, model_yaml_config: dict[str, Any], batch_size: int = 8
) -> Context:
    """The Context a TorchServe worker builds for a model from its unpacked archive."""
    metrics = MetricsCacheYamlImpl(str(TS_METRICS))
    metrics.initialize_cache()
    metrics.model_name = name
    manifest = {"model": {"modelName": name, "serializedFile": "model.pt", "handler": "recognizer.py"}}
    return Context(
        name, str(model_dir), manifest, batch_size=batch_size, gpu=None,
        mms_version=ts.__version__, metrics=metrics, model_yaml_config=model_yaml_config,
    )


def unpack_archive(mar: Path, into: Path) -> Path:
    """``into``, holding what a worker unpacks from the archive ``mar`` (the model's folder:
    ``model.pt``, ``model.onnx``, the handler, the metadata files)."""
    with zipfile.ZipFile(mar) as archive:
        archive.extractall(into)
    return into


def start_batch(context: Context, requests: int, prefix: str = "request") -> None:
    """What the worker sets on the context before a batch: a response slot and an id per request."""
    context.request_processor = [RequestProcessor({}) for _ in range(requests)]
    context.request_ids = {index: f"{prefix}-{index}" for index in range(requests)}
    context.metrics.request_ids = context.request_ids
