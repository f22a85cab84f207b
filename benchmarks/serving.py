"""TorchServe end to end: the recognizers against a no-op baseline in the same server.

:class:`BenchServer` runs a TorchServe with the project's own lifecycle
(:class:`handler.server.TorchServe`, as ``make serve``) and archives (:mod:`handler.archive`, with
``config/serving.yaml``), in a temporary folder on free ports. Beside the shipped models it
serves ``noop``: :mod:`benchmarks.noop_handler` packaged with the *same* workers and batching, so
its figures are TorchServe's own floor on this machine, measured in the same run.

- :meth:`BenchServer.cold_start`: seconds from starting TorchServe until every model is READY;
- :func:`measure_series`: rounds of load runs that alternate the models and the baseline (and
  the plain Flask baseline of :mod:`benchmarks.flask_baseline`, another server); each figure is
  the median round, with the min-max spread and the ratio to the baseline (and to Flask);
- :func:`memory`: the RSS of the JVM and of every worker;
- :func:`sweep`: workers x batch size, a recognizer and the baseline registered side by side with
  the same settings (the defaults in ``config/serving.yaml`` come from it).
"""

from __future__ import annotations

import copy
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import psutil

from benchmarks.loadgen import PERCENTILES, LoadResult, Target, run_load
from benchmarks.profile import LoadProfile, SweepProfile
from client.api import TorchServeClient, read_properties
from handler.archive import build_archive, model_config, run_archiver
from handler.server import PORT_NAMES, TorchServe, free_ports

PROJECT = Path(__file__).resolve().parent.parent
SERVING_CONFIG = PROJECT / "config" / "serving.yaml"
BASELINE = "noop"
NOOP_HANDLER = Path(__file__).resolve().parent / "noop_handler.py"
NOOP_MODULES = ("__init__.py", "worker.py")  # what the no-op handler imports from the handler package
FIGURES = ("rps", *(f"p{q}_ms" for q in PERCENTILES), "client_cpu_share")
RATIOS = ("rps", *(f"p{q}_ms" for q in PERCENTILES))  # figures also given as a ratio to the baseline



def build_noop_archive(name: str, model_store: Path, settings: dict[str, Any], build_dir: Path) -> Path:
    """``model_store/<name>.mar``: the no-op handler with ``settings`` as its model-config.yaml,
    and the modules of the ``handler`` package it imports."""
    build_dir.mkdir(parents=True, exist_ok=True)
    model_store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{name}-", dir=build_dir) as stage:
        extra = Path(stage) / "extra" / "handler"
        extra.mkdir(parents=True)
        for module in NOOP_MODULES:
            shutil.copy2(PROJECT / "handler" / module, extra / module)
        run_archiver(name, "1.0", NOOP_HANDLER, settings, model_store, Path(stage), "--extra-files", str(extra.parent))
    return model_store / f"{name}.mar"


def with_batching(config: dict[str, Any], workers: int, batch_size: int, delay_ms: int) -> dict[str, Any]:
    """``config`` (serving.yaml's layout) with every model on ``workers`` workers and batching."""
    changed = copy.deepcopy(config)
    changed["defaults"].update(
        minWorkers=workers, maxWorkers=workers, batchSize=batch_size, maxBatchDelay=delay_ms
    )
    return changed


class BenchServer:
    """A TorchServe in ``workdir`` serving archives of ``models_dir`` and the no-op baseline."""

    def __init__(self, models_dir: Path, workdir: Path, config: dict[str, Any]):
        self.models_dir = Path(models_dir)
        self.workdir = Path(workdir)
        self.config = config
        self.store = self.workdir / "model_store"
        self.build = self.workdir / "build"
        ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
        self.server = TorchServe(run_dir=self.workdir / "run", model_store=self.store, ports=ports)

    def archive(self, models: Sequence[str]) -> None:
        """Package ``models`` and the baseline with the configuration under test."""
        for name in models:
            build_archive(name, self.models_dir, self.store, self.config, self.build)
        build_noop_archive(BASELINE, self.store, model_config(self.config, BASELINE), self.build)

    def cold_start(self, models: Sequence[str]) -> float:
        """Start TorchServe with ``models`` as ``make serve`` does; seconds until all are READY
        (polled every 0.5 s by :meth:`TorchServe.wait_ready`)."""
        start = time.perf_counter()
        self.server.start(models)
        return time.perf_counter() - start

    def register_baseline(self) -> None:
        self.server.client(timeout=120).register(f"{BASELINE}.mar")

    def target(self, model: str) -> Target:
        return Target(
            self.server.endpoints.inference, f"/predictions/{model}", self.server.client().keys.inference
        )

    def roles(self, model: str) -> dict[str, list[psutil.Process]]:
        """The processes that answer ``model``'s requests, by role: ``frontend`` (TorchServe's
        JVM, which every model shares) and ``workers`` (that model's), for
        :func:`benchmarks.loadgen.run_load` to measure their CPU."""
        workers = [psutil.Process(pid) for pid in worker_pids(self.server.client(), model)]
        return {"frontend": [psutil.Process(self.server.pid())], "workers": workers}

    def register_variant(self, model: str, name: str, config: dict[str, Any]) -> None:
        """Register ``model`` (or the baseline) packaged with ``config`` as the model ``name``."""
        stage = self.workdir / "variants" / name
        if model == BASELINE:
            build_noop_archive(model, stage, model_config(config, model), self.build)
        else:
            build_archive(model, self.models_dir, stage, config, self.build)
        shutil.move(stage / f"{model}.mar", self.store / f"{name}.mar")
        self.server.client(timeout=120).register(f"{name}.mar", model_name=name)

    def stop(self) -> None:
        self.server.stop()


def _median_spread(values: list[float]) -> tuple[float, list[float]]:
    return round(statistics.median(values), 3), [round(min(values), 3), round(max(values), 3)]


def _ratios(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure of :data:`RATIOS` over the same figure of the same round: median, min-max."""
    ratios = {}
    for figure in RATIOS:
        paired = [mine[figure] / other[figure] for mine, other in zip(ours, theirs)]
        ratios[figure], ratios[f"{figure}_spread"] = _median_spread(paired)
    return ratios


def summarize(
    runs: list[LoadResult], baseline: list[LoadResult] | None, compared: dict[str, list[LoadResult]] | None = None
) -> dict[str, Any]:
    """One target at one concurrency over the rounds: each figure's median and min-max, errors
    and requests summed, each figure's ratio to the baseline of the same round
    (``ratio_to_baseline``) and to each target of ``compared`` (``ratio_to_<name>``)."""
    summary: dict[str, Any] = {
        "requests": sum(run.requests for run in runs),
        "errors": sum(run.errors for run in runs),
        "rounds": len(runs),
    }
    batch_sizes = [run.mean_batch_size for run in runs if run.mean_batch_size is not None]
    if batch_sizes:
        summary["mean_batch_size"] = round(statistics.median(batch_sizes), 2)
    ours = [run.summary() for run in runs]
    cpu = [key for key in ours[0] if key.startswith("cpu_ms_")]  # the roles measured (loadgen.LoadResult.summary)
    for figure in (*FIGURES, *cpu):
        summary[figure], summary[f"{figure}_spread"] = _median_spread([run[figure] for run in ours])
    if baseline is not None:
        summary["ratio_to_baseline"] = _ratios(ours, [run.summary() for run in baseline])
    for name, other in (compared or {}).items():
        summary[f"ratio_to_{name}"] = _ratios(ours, [run.summary() for run in other])
    return summary


def measure_series(
    targets: dict[str, tuple[Target, list[bytes]]],
    baseline: str,
    load: LoadProfile,
    compare: dict[str, str] | None = None,
    processes: Mapping[str, Mapping[str, Sequence[psutil.Process]]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Rounds of load runs: in each round, at each concurrency, every target in turn (the
    baseline included), so that slow drifts of a shared machine hit all of them alike.
    ``compare`` maps a target to another one it is also given as a ratio to (round by round);
    ``processes`` maps a target to its server's processes by role, whose CPU a request each run
    measures (``cpu_ms_<role>``, beside the load generator's ``cpu_ms_client``).
    Returns ``{"c<concurrency>": {target: summary}}`` (:func:`summarize`)."""
    compare, processes = compare or {}, processes or {}
    runs: dict[tuple[str, int], list[LoadResult]] = {}
    for _ in range(load.rounds):
        for concurrency in load.concurrency:
            for name, (target, bodies) in targets.items():
                result = run_load(
                    target, bodies, concurrency, load.seconds, load.max_requests, load.warmup_seconds,
                    processes.get(name),
                )
                runs.setdefault((name, concurrency), []).append(result)
    return {
        f"c{concurrency}": {
            name: summarize(
                runs[name, concurrency],
                None if name == baseline else runs[baseline, concurrency],
                {compare[name]: runs[compare[name], concurrency]} if name in compare else None,
            )
            for name in targets
        }
        for concurrency in load.concurrency
    }


def worker_pids(client: TorchServeClient, model: str) -> list[int]:
    """The process ids of the workers of every version of ``model`` (management API's describe)."""
    return [worker["pid"] for version in client.describe(model, "all") for worker in version["workers"]]


def memory(server: TorchServe) -> dict[str, Any]:
    """RSS in MB of the JVM and of each worker (by model), and their total; with the JVM's heap
    cap from the run's configuration."""
    client = server.client()
    owner = {pid: model["modelName"] for model in client.models() for pid in worker_pids(client, model["modelName"])}
    jvm, workers, other = 0.0, {}, []
    jvm_pid = server.pid()
    for process in server.processes():
        try:
            rss = round(process.memory_info().rss / 2**20, 1)
        except psutil.Error:
            continue
        if process.pid == jvm_pid:
            jvm = rss
        elif process.pid in owner:
            workers.setdefault(owner[process.pid], []).append(rss)
        else:
            other.append(rss)
    total = jvm + sum(sum(values) for values in workers.values()) + sum(other)
    vmargs = read_properties(server.properties_file).get("vmargs", "")
    return {
        "jvm": jvm,
        "jvm_heap_cap": next((arg for arg in vmargs.split() if arg.startswith("-Xmx")), None),
        "workers": {name: sorted(values) for name, values in sorted(workers.items())},
        "other_processes": other,
        "total": round(total, 1),
    }


def _side_by_side(work: Callable[[Any], Any], items: Sequence[Any]) -> None:
    """``work`` on every item at once (registering or scaling waits for workers to start)."""
    with ThreadPoolExecutor(len(items)) as pool:
        list(pool.map(work, items))


def sweep(bench: BenchServer, profile: SweepProfile, bodies: list[bytes]) -> list[dict[str, Any]]:
    """For each batch size, the recognizer ``profile.model`` and the baseline are packaged with
    that batching and registered side by side, then measured at each worker count."""
    cells = []
    for batch_size in profile.batch_sizes:
        config = with_batching(bench.config, min(profile.workers), batch_size, profile.max_batch_delay_ms)
        ours, base = f"{profile.model}-b{batch_size}", f"{BASELINE}-b{batch_size}"
        _side_by_side(lambda pair: bench.register_variant(*pair, config), [(profile.model, ours), (BASELINE, base)])
        try:
            for workers in profile.workers:
                _side_by_side(lambda name: bench.server.client(timeout=120).scale(name, workers), [ours, base])
                series = measure_series(
                    {ours: (bench.target(ours), bodies), base: (bench.target(base), bodies)},
                    base,
                    profile.load,
                )
                cells.append({
                    "workers": workers,
                    "batch_size": batch_size,
                    "max_batch_delay_ms": profile.max_batch_delay_ms,
                    **{
                        concurrency: {"model": by_name[ours], "baseline": by_name[base]}
                        for concurrency, by_name in series.items()
                    },
                })
        finally:
            _side_by_side(lambda name: bench.server.client(timeout=120).unregister(name, quiet=0), [ours, base])
    return cells
