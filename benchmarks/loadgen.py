"""A small closed-loop HTTP load generator: asyncio, keep-alive connections, raw HTTP/1.1.

Each of ``concurrency`` connections sends a request, reads the whole answer and sends the next
one, until the run's time is up or its request budget is spent. Requests are pre-encoded bytes,
so the generator's own cost per request stays a few tens of microseconds: it shares the 2 cores
with the server, and it must cost the same whatever model it drives, so that ratios to the
no-op baseline measured the same way are fair. Given the server's processes by role, a run also
measures the CPU each role spent during it (user + system, :mod:`psutil`), so that a figure says
not only how fast but where the cores went.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence
from urllib.parse import urlsplit

import numpy as np
import psutil

PERCENTILES = (50, 90, 99)
BATCH_HEADER = "x-batch-size"  # how many requests shared the forward pass (the handler says)


@dataclass(frozen=True)
class Target:
    """Where requests go: ``POST {path}`` on an inference URL, with the inference key (``None``:
    no ``Authorization`` header, for a server without token auth such as the Flask baseline)."""

    url: str  # e.g. http://127.0.0.1:8080
    path: str  # e.g. /predictions/digits
    key: str | None = None

    def encode(self, body: bytes) -> bytes:
        """One complete raw-body request, as ``curl -T drawing.png`` sends it."""
        netloc = urlsplit(self.url).netloc
        auth = f"Authorization: Bearer {self.key}\r\n" if self.key is not None else ""
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {netloc}\r\n{auth}"
            f"Content-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode("ascii") + body


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


class Connection:
    """One keep-alive connection that sends pre-encoded requests one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> "Connection":
        parts = urlsplit(url)
        return cls(*await asyncio.open_connection(parts.hostname, parts.port))

    async def send(self, request: bytes) -> Response:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunks()
        else:
            raise ConnectionError(f"an answer without Content-Length or chunks: {lines[0]}")
        return Response(status, headers, body)

    async def reopened_if_closed(self, response: Response, url: str) -> "Connection":
        """This connection, or a new one when the server closed it after ``response``
        (TorchServe answers every error with ``Connection: close``)."""
        if response.headers.get("connection", "").lower() != "close":
            return self
        await self.close()
        return await Connection.open(url)

    async def _chunks(self) -> bytes:
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readuntil(b"\r\n")
            if size == 0:
                return b"".join(parts)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


@dataclass(frozen=True)
class LoadResult:
    """One run: answers per second, latencies of the successful answers, errors."""

    concurrency: int
    requests: int  # answered, successful or not
    errors: int  # non-200 answers and broken connections
    seconds: float  # from the first request to the last answer
    latencies_ms: np.ndarray  # of the 200 answers
    mean_batch_size: float | None  # mean X-Batch-Size of the 200 answers (None: no such header)
    client_cpu_seconds: float  # CPU the generator itself used: it shares the cores with the server
    server_cpu_seconds: dict[str, float] = field(default_factory=dict)  # by role, e.g. frontend, workers

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else float("nan")

    def summary(self) -> dict[str, float | int]:
        figures: dict[str, float | int] = {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "client_cpu_share": round(self.client_cpu_seconds / self.seconds, 3) if self.seconds > 0 else 0.0,
        }
        figures.update({f"p{q}_ms": round(self.percentile(q), 3) for q in PERCENTILES})
        if self.requests:
            spent = {"client": self.client_cpu_seconds, **self.server_cpu_seconds}
            figures.update({f"cpu_ms_{role}": round(1000.0 * cpu / self.requests, 4) for role, cpu in spent.items()})
            figures["cpu_ms_total"] = round(1000.0 * sum(spent.values()) / self.requests, 4)
        return figures


def cpu_seconds(processes: Sequence[psutil.Process]) -> float:
    """User + system CPU seconds spent so far by ``processes`` (0 for one that has exited)."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


async def _load(
    target: Target, requests: list[bytes], concurrency: int, seconds: float, max_requests: int
) -> LoadResult:
    connections = [await Connection.open(target.url) for _ in range(concurrency)]
    latencies: list[float] = []
    batch_sizes: list[int] = []
    counts = {"sent": 0, "answered": 0, "errors": 0}
    start = time.perf_counter()
    cpu_start = time.process_time()
    deadline = start + seconds
    last = start

    async def client(index: int, connection: Connection) -> None:
        nonlocal last
        position = index * len(requests) // concurrency  # connections start on different drawings
        while time.perf_counter() < deadline and counts["sent"] < max_requests:
            counts["sent"] += 1
            request = requests[position % len(requests)]
            position += 1
            sent = time.perf_counter()
            try:
                response = await connection.send(request)
            except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
                counts["errors"] += 1
                counts["answered"] += 1
                await connection.close()
                connection = await Connection.open(target.url)
                continue
            last = time.perf_counter()
            connection = await connection.reopened_if_closed(response, target.url)
            counts["answered"] += 1
            if response.status == 200:
                latencies.append(last - sent)
                if BATCH_HEADER in response.headers:
                    batch_sizes.append(int(response.headers[BATCH_HEADER]))
            else:
                counts["errors"] += 1
        await connection.close()

    await asyncio.gather(*(client(i, c) for i, c in enumerate(connections)))
    return LoadResult(
        concurrency=concurrency,
        requests=counts["answered"],
        errors=counts["errors"],
        seconds=last - start,
        latencies_ms=np.asarray(latencies) * 1000.0,
        mean_batch_size=float(np.mean(batch_sizes)) if batch_sizes else None,
        client_cpu_seconds=time.process_time() - cpu_start,
    )


def run_load(
    target: Target,
    bodies: list[bytes],
    concurrency: int,
    seconds: float,
    max_requests: int,
    warmup_seconds: float = 0.0,
    processes: Mapping[str, Sequence[psutil.Process]] | None = None,
) -> LoadResult:
    """Send ``bodies`` in turn over ``concurrency`` connections for ``seconds`` (at most
    ``max_requests`` requests), after an unmeasured warm-up of ``warmup_seconds``. With
    ``processes`` (the server's, by role), the result's ``server_cpu_seconds`` holds the CPU each
    role spent during the measured run (:func:`cpu_seconds`; it also counts what the processes
    did for other clients, none in the benchmark)."""
    requests = [target.encode(body) for body in bodies]
    if warmup_seconds > 0:
        asyncio.run(_load(target, requests, concurrency, warmup_seconds, max_requests))
    roles = dict(processes or {})
    before = {role: cpu_seconds(members) for role, members in roles.items()}
    result = asyncio.run(_load(target, requests, concurrency, seconds, max_requests))
    return replace(result, server_cpu_seconds={role: cpu_seconds(members) - before[role] for role, members in roles.items()})


async def _each(target: Target, requests: list[bytes], concurrency: int) -> list[Response]:
    responses: list[Response | None] = [None] * len(requests)
    queue = iter(range(len(requests)))

    async def client() -> None:
        connection = await Connection.open(target.url)
        for index in queue:  # the shared iterator hands each request to one connection
            responses[index] = await connection.send(requests[index])
            connection = await connection.reopened_if_closed(responses[index], target.url)
        await connection.close()

    await asyncio.gather(*(client() for _ in range(min(concurrency, len(requests)))))
    missing = [index for index, response in enumerate(responses) if response is None]
    if missing:
        raise ConnectionError(f"{len(missing)} requests got no answer")
    return responses  # type: ignore[return-value]  # every entry is set


def send_each(target: Target, bodies: list[bytes], concurrency: int) -> list[Response]:
    """Send every body once over ``concurrency`` connections; the answers in the bodies' order."""
    return asyncio.run(_each(target, [target.encode(body) for body in bodies], concurrency))
