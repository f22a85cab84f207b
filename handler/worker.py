"""What a handler sets in the TorchServe worker process it runs in, beside the model: shared by
the recognizers' handler and the benchmarks' no-op baseline, so that both run in workers set up
alike.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

LOG_LEVEL_ENV = "RECOGNIZER_WORKER_LOG_LEVEL"  # overrides handler.worker_log_level without re-archiving
# The logger of TorchServe's worker metrics (HandlerTime, PredictionTime): they reach the server,
# and its /metrics, as lines on the worker's standard output, so they keep the worker's level.
METRICS_LOGGER = "ts.metrics"


def worker_log_level(settings: Mapping[str, Any]) -> None:
    """Let this worker's root logger pass only records at ``settings["worker_log_level"]`` (the
    ``handler:`` section of model-config.yaml; a :mod:`logging` level name such as ``"warning"``,
    any case) and above, TorchServe's metrics lines excepted, which keep the level the root had
    (INFO in a worker; in another process, such as a test's, whatever it was, so that nothing
    starts printing them). The :data:`LOG_LEVEL_ENV` variable overrides the setting; with neither,
    nothing changes.

    A worker writes each record as a line on its standard output, which the server reads line by
    line. TorchServe 0.12 writes one INFO line for every request ("Backend received inference at:
    ...") before computing it, and the shipped log configuration (``config/log4j2.xml``) drops the
    workers' INFO lines: at ``warning`` that line is never written. Raises ``ValueError`` for an
    unknown level name."""
    level = os.environ.get(LOG_LEVEL_ENV) or settings.get("worker_log_level")
    if not level:
        return
    number = logging.getLevelName(str(level).upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown worker_log_level {level!r}: use debug, info, warning or error")
    root, metrics = logging.getLogger(), logging.getLogger(METRICS_LOGGER)
    if metrics.level == logging.NOTSET:  # the first call in this process: the root's level is TorchServe's
        metrics.setLevel(root.getEffectiveLevel())
    root.setLevel(number)
