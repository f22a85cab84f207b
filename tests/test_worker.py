"""handler/worker.py: the worker's log writes what the server keeps, and its metrics always.

A TorchServe 0.12 worker logs to its standard output at INFO (``logging.basicConfig`` in
``ts/model_service_worker.py``), one line for every request, and its metrics (HandlerTime,
PredictionTime) go to the server as log lines too. These tests run that setup in a fresh Python
process, with TorchServe's own metrics cache, and read what the worker would write."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from handler.worker import LOG_LEVEL_ENV

# A worker's logging as TorchServe sets it up, the handler's setting applied, then one request's
# lines: TorchServe's own INFO line, a warning, and a metric through TorchServe's metrics cache.
WORKER = textwrap.dedent(
    """
    import logging, sys
    from ts.context import Context
    from handler.inprocess import TS_METRICS
    from handler.worker import worker_log_level
    from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

    logging.basicConfig(stream=sys.stdout, format="%(message)s", level=logging.{root})
    for _ in range({calls}):  # each model a process serves sets it up
        worker_log_level({settings!r})
    metrics = MetricsCacheYamlImpl(str(TS_METRICS))
    metrics.initialize_cache()
    metrics.model_name = "digits"
    metrics.request_ids = {{0: "request-0"}}
    logging.info("Backend received inference at: %d", 0)
    logging.warning("a warning")
    metrics.add_time("HandlerTime", 1.5, idx=0)
    """
)


def worker_lines(settings: dict, environment: dict[str, str] | None = None, root: str = "INFO", calls: int = 1) -> str:
    """What a worker set up with ``settings`` (its model-config.yaml ``handler:`` section) writes
    to its standard output for one request; ``root``: the root logger's level before (TorchServe's
    INFO), ``calls``: how many handlers set the worker up."""
    env = {name: value for name, value in os.environ.items() if name != LOG_LEVEL_ENV}
    done = subprocess.run(
        [sys.executable, "-c", WORKER.format(settings=settings, root=root, calls=calls)], capture_output=True, text=True,
        env={**env, **(environment or {})}, check=True, timeout=120,
    )
    return done.stdout


def test_at_warning_the_per_request_info_line_is_not_written_and_the_metrics_are():
    written = worker_lines({"worker_log_level": "warning"})
    assert "Backend received inference" not in written
    assert "a warning" in written
    assert "[METRICS]HandlerTime.Milliseconds:1.5" in written


def test_a_second_handler_in_the_same_process_keeps_the_metrics_lines():
    written = worker_lines({"worker_log_level": "warning"}, calls=2)
    assert "Backend received inference" not in written
    assert "[METRICS]HandlerTime" in written


def test_a_process_that_was_not_printing_info_lines_does_not_start_printing_metrics():
    # a test or a benchmark building handlers in process, its root logger at WARNING
    written = worker_lines({"worker_log_level": "warning"}, root="WARNING")
    assert "[METRICS]" not in written
    assert "a warning" in written


def test_without_the_setting_the_worker_writes_everything_as_torchserve_does():
    written = worker_lines({})
    assert "Backend received inference at: 0" in written
    assert "[METRICS]HandlerTime" in written


def test_the_variable_overrides_the_setting():
    written = worker_lines({"worker_log_level": "warning"}, {LOG_LEVEL_ENV: "INFO"})
    assert "Backend received inference" in written
    assert "[METRICS]HandlerTime" in written


def test_an_unknown_level_is_refused_with_the_choices():
    with pytest.raises(subprocess.CalledProcessError) as error:
        worker_lines({"worker_log_level": "quiet"})
    assert "unknown worker_log_level 'quiet': use debug, info, warning or error" in error.value.stderr
