"""A small load generator for the reliability tests: N client threads, each with its own HTTP
connection, send a mix of prediction calls to one TorchServe until told to stop, and every
outcome is kept (when it started and ended, its status and body) so a test can say which
requests failed, when, and whether each answer equals the one the same call got alone.

    calls = mixed_calls()
    reference = answers_one_by_one(server, calls)
    with Load(server, calls, clients=8) as load:
        time.sleep(30)
    assert load.report().failed == 0
"""

from __future__ import annotations

import base64
import itertools
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import psutil
import requests

from client.api import TorchServeClient
from handler.server import MODELS, TorchServe
from tests.canvases import drawing_png

SHAPES = ("raw", "multipart", "json-base64", "json-data-url")
DRAWINGS = {f"{char}-w{width}": drawing_png(char, side=side, width=width)
            for char, side, width in [("0", 280, 20), ("1", 200, 12), ("7", 280, 28),
                                      ("L", 320, 16), ("T", 160, 10), ("O", 280, 24)]}


@dataclass(frozen=True)
class Call:
    """One prediction request: which model (and version), how the image is sent, which image."""

    model: str
    shape: str
    drawing: str
    version: str | None = None

    @property
    def path(self) -> str:
        return f"/predictions/{self.model}" + (f"/{self.version}" if self.version else "")

    def kwargs(self) -> dict[str, Any]:
        """``requests`` keyword arguments that send this call's body."""
        return body_kwargs(DRAWINGS[self.drawing], self.shape)


def body_kwargs(image: bytes, shape: str, **options: Any) -> dict[str, Any]:
    """``requests`` keyword arguments that send ``image`` in one of the four ``SHAPES``;
    ``options`` (e.g. ``top_k``) go into the JSON shapes' documents."""
    if shape == "raw":
        return {"data": image, "headers": {"Content-Type": "image/png"}}
    if shape == "multipart":
        return {"files": {"data": ("drawing.png", image, "image/png")}}
    text = base64.b64encode(image).decode("ascii")
    value = {"json-base64": text, "json-data-url": f"data:image/png;base64,{text}"}[shape]
    return {"json": {"image": value, **options}}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post(server: TorchServe, path: str, timeout: float = 30, **kwargs: Any) -> requests.Response:
    """A raw call to the inference API with the current inference key (read at call time,
    since another test may have rotated it)."""
    client = server.client()
    headers = {**bearer(client.keys.inference), **kwargs.pop("headers", {})}
    return requests.post(client.endpoints.inference + path, headers=headers, timeout=timeout, **kwargs)


def mixed_calls(models: Iterable[str] = MODELS, shapes: Iterable[str] = SHAPES) -> list[Call]:
    """Every model with every body shape and every drawing, interleaved so that consecutive
    calls differ in model and shape."""
    calls = [Call(m, s, d) for d in DRAWINGS for s in shapes for m in models]
    return sorted(calls, key=lambda call: (call.drawing, SHAPES.index(call.shape)))


def send(client: TorchServeClient, call: Call, timeout: float = 60.0) -> requests.Response:
    """One call through the project's client (token handled, re-read after a rotation)."""
    return client.request("inference", "POST", call.path, timeout=timeout, **call.kwargs())


def answers_one_by_one(server: TorchServe, calls: Iterable[Call]) -> dict[Call, dict[str, Any]]:
    """The answer of each call sent alone, the reference for answers under load."""
    client = server.client()
    answers = {}
    for call in calls:
        response = send(client, call)
        assert response.status_code == 200, (call, response.text)
        answers[call] = response.json()
    return answers


@dataclass(frozen=True)
class Outcome:
    """What happened to one request. ``status`` is ``None`` when no HTTP answer came back."""

    client: int
    call: Call
    started: float  # time.monotonic()
    ended: float
    status: int | None
    body: Any

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class Report:
    """The figures of one load run."""

    sent: int
    failed: int
    seconds: float
    statuses: dict[str, int]
    latency_ms: dict[str, float] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)  # the first few, described
    retried: int = 0  # requests the client sent again because their worker went away
    resent: int = 0  # requests the client sent again because it read another request's answer

    def figures(self) -> dict[str, Any]:
        return {"requests": self.sent, "failed": self.failed, "seconds": round(self.seconds, 1),
                "requests_per_second": round(self.sent / self.seconds, 1) if self.seconds else 0.0,
                "statuses": self.statuses, "latency_ms": self.latency_ms, "failures": self.failures,
                "retried_after_worker_gone": self.retried, "resent_after_another_answer": self.resent}


class Load:
    """``clients`` threads sending ``calls`` round robin (each from its own offset) until
    :meth:`stop`, or for ``duration`` seconds when used with :meth:`run`. ``outcomes`` holds
    every request's :class:`Outcome`, in the order they ended."""

    def __init__(self, server: TorchServe, calls: list[Call], clients: int = 8, timeout: float = 60.0):
        self.server = server
        self.calls = calls
        self.clients = clients
        self.timeout = timeout
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._clients: list[TorchServeClient] = []
        self.started = self.stopped = 0.0

    def _client(self, index: int) -> None:
        client = self.server.client(timeout=self.timeout)
        self._clients.append(client)
        offset = index * len(self.calls) // self.clients
        for call in itertools.islice(itertools.cycle(self.calls), offset, None):
            if self._stop.is_set():
                return
            started = time.monotonic()
            try:
                response = send(client, call, self.timeout)
                status = response.status_code
                body = response.json() if response.content else None
            except (requests.RequestException, ValueError) as error:
                status, body = None, repr(error)
            self.outcomes.append(Outcome(index, call, started, time.monotonic(), status, body))

    def __enter__(self) -> "Load":
        self.started = time.monotonic()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        if not self.stopped:
            self.stopped = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, duration: float) -> "Load":
        with self:
            time.sleep(duration)
        return self

    def failures(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if not outcome.ok]

    def report(self) -> Report:
        latencies = sorted((o.ended - o.started) * 1000 for o in self.outcomes if o.ok)
        statuses: dict[str, int] = {}
        for outcome in self.outcomes:
            statuses[str(outcome.status)] = statuses.get(str(outcome.status), 0) + 1
        percentiles = {}
        if len(latencies) >= 2:
            cuts = statistics.quantiles(latencies, n=100)
            percentiles = {"p50": round(cuts[49], 1), "p99": round(cuts[98], 1), "max": round(latencies[-1], 1)}
        failures = self.failures()
        return Report(sent=len(self.outcomes), failed=len(failures),
                      seconds=self.stopped - self.started, statuses=statuses, latency_ms=percentiles,
                      retried=sum(client.retried for client in self._clients),
                      resent=sum(client.desynchronized for client in self._clients),
                      failures=[self.describe(o) for o in failures[:5]])

    def describe(self, outcome: Outcome) -> dict[str, Any]:
        """A failed request for the record: what, when (seconds into the run), how long."""
        return {"path": outcome.call.path, "shape": outcome.call.shape, "status": outcome.status,
                "body": outcome.body if isinstance(outcome.body, dict) else str(outcome.body)[:300],
                "started_s": round(outcome.started - self.started, 3),
                "seconds": round(outcome.ended - outcome.started, 3)}


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> float:
    """Poll ``condition`` until it holds; returns the seconds it took. Raises TimeoutError."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"not true after {timeout} s")
        time.sleep(interval)
    return time.monotonic() - start


def serving_state(server: TorchServe) -> dict[str, Any]:
    """What clients depend on: each model's versions, default version and worker settings."""
    client = server.client()
    state = {}
    for model in sorted(m["modelName"] for m in client.models()):
        versions = client.describe(model, "all")
        state[model] = {
            "default": client.describe(model)[0]["modelVersion"],
            "versions": {v["modelVersion"]: {key: v[key] for key in ("minWorkers", "maxWorkers", "batchSize")}
                         for v in versions},
        }
    return state


def all_worker_pids(server: TorchServe) -> dict[str, list[int]]:
    """Every model's worker pids (default versions)."""
    return {model: server.worker_pids(model) for model in MODELS}


def fully_served(server: TorchServe, model: str, gone: int | None = None) -> bool:
    """``model`` has its minimum of workers, all READY (and none with pid ``gone``)."""
    description = server.client(timeout=5).describe(model)[0]
    workers = description["workers"]
    return (len(workers) >= description["minWorkers"]
            and all(w["status"] == "READY" for w in workers)
            and gone not in [w["pid"] for w in workers]
            and all(psutil.pid_exists(w["pid"]) for w in workers))
