"""The no-op baseline's TorchServe handler: a constant answer, the request body never read.

Served in the same TorchServe, with the same workers and batching as the recognizers, it measures
TorchServe's own floor (HTTP, the JVM's queue, the socket to the Python worker and back); the
recognizers' figures are reported as ratios to it. TorchServe calls ``handle(None, context)`` once
when the worker loads the model: the worker is then set up as the recognizers' are
(:func:`handler.worker.worker_log_level`, packaged beside this file).
"""

from __future__ import annotations

from typing import Any

from handler.worker import worker_log_level

ANSWER = '{"label": "0"}'


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[str] | None:
    """One constant answer per request of the batch (``None`` at initialization)."""
    if data is None:
        worker_log_level((context.model_yaml_config or {}).get("handler") or {})
        return None
    return [ANSWER] * len(data)
