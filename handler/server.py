"""Start, stop and inspect the recognizers' TorchServe: ``python -m handler.server start|stop|status``
(and ``check-java``, which ``make serve`` runs before it archives anything).

``make serve``, ``make stop`` and ``make status`` call this module, and so does the tests'
TorchServe fixture, so there is one lifecycle. Everything TorchServe writes at runtime stays in
one run folder (``.run/`` by default, git-ignored):

- ``config.properties``: ``config/config.properties`` plus the model store, ``allowed_urls``
  limited to that store, the archives to load and any port given on the command line;
- ``key_file.json``: the API keys (TorchServe writes it into its working directory: this folder);
- ``logs/``: ``ts_log.log``, ``model_log.log``, ``access_log.log`` and ``torchserve.out``;
- ``tmp/``: TorchServe's ``TEMP``: the pid file, the workers' Unix sockets, unpacked archives.

Nothing goes to the repository root or ``/tmp``; ``stop`` waits until the JVM and every worker
have exited and empties ``tmp/``.

``start --envelope kserve|kservev2`` serves KServe's protocol v1 or v2 instead of TorchServe's own
(``handler/envelope.py``), set as KServe's runtime sets it: ``TS_SERVICE_ENVELOPE`` in the
environment and ``enable_envvars_config=true``, without which TorchServe ignores the variable.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import psutil

from client.api import (
    ADDRESS_PROPERTIES,
    KEY_FILE,
    RUN_CONFIG,
    Endpoints,
    ServingError,
    TorchServeClient,
    read_properties,
)
from handler import START_FAILURE

PROJECT = Path(__file__).resolve().parent.parent
CONFIG = PROJECT / "config" / "config.properties"
LOG_CONFIG = PROJECT / "config" / "log4j2.xml"
MODELS = ("digits", "letters", "balanced")
JAVA_MIN = 17
JAVA_INSTALL = "sudo apt-get install -y openjdk-17-jre-headless"
PID_FILE = ".model_server.pid"  # TorchServe's name, in its temp folder
PORT_NAMES = ("inference", "management", "metrics", "grpc_inference", "grpc_management")
ENVELOPE_VARIABLE = "TS_SERVICE_ENVELOPE"  # read by TorchServe (with enable_envvars_config) and the handler
ENVELOPES = ("kserve", "kservev2")


class ServerError(RuntimeError):
    """TorchServe could not be started, stopped or reached; the message says why."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that nothing listens on (all held open until all are chosen),
    for servers started by the tests and the benchmarks."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def java_version(java: str) -> int | None:
    """The major version of ``java`` (8 for "1.8.0_x"), or ``None`` when it does not run."""
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_java() -> None:
    """TorchServe 0.12 needs Java 17+; say how to install it before anything starts."""
    java = str(Path(os.environ["JAVA_HOME"], "bin", "java")) if os.environ.get("JAVA_HOME") else "java"
    found = java_version(java)
    if found is None or found < JAVA_MIN:
        have = "no working Java" if found is None else f"Java {found}"
        raise ServerError(
            f"TorchServe needs Java {JAVA_MIN} or newer, and {have} was found ({java}). "
            f"Install it with:\n  {JAVA_INSTALL}"
        )


def render_properties(base: str, overrides: dict[str, str]) -> str:
    """``base`` (a properties file's text) with ``overrides`` replacing or appending keys."""
    pending = dict(overrides)
    lines = []
    for line in base.splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith("#") and key in pending:
            line = f"{key}={pending.pop(key)}"
        lines.append(line)
    lines += [f"{key}={value}" for key, value in pending.items()]
    return "\n".join(lines) + "\n"


def store_only_urls(store: str) -> str:
    """``allowed_urls`` that accept only archives in the model store ``store`` (never http(s) or
    other folders), escaped for a properties file."""
    return ("file://" + re.escape(store) + r"/[^/]+\.mar").replace("\\", "\\\\")


def with_port(address: str, port: int) -> str:
    """``http://127.0.0.1:8080`` with another port."""
    return re.sub(r":\d+$", f":{port}", address)


@dataclass
class TorchServe:
    """A TorchServe serving the archives of ``model_store``, with its state in ``run_dir``."""

    run_dir: Path = PROJECT / ".run"
    model_store: Path = PROJECT / "model_store"
    config: Path = CONFIG
    log_config: Path = LOG_CONFIG
    ports: dict[str, int] = field(default_factory=dict)  # PORT_NAMES -> port; others from config
    envelope: str | None = None  # one of ENVELOPES: KServe's protocol instead of TorchServe's own

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir).resolve()
        self.model_store = Path(self.model_store).resolve()

    @property
    def properties_file(self) -> Path:
        return self.run_dir / RUN_CONFIG

    @property
    def key_file(self) -> Path:
        return self.run_dir / KEY_FILE

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    @property
    def temp(self) -> Path:
        return self.run_dir / "tmp"

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints.from_run_dir(self.run_dir)

    def client(self, timeout: float = 30.0) -> TorchServeClient:
        return TorchServeClient(self.endpoints, timeout=timeout)

    def environment(self) -> dict[str, str]:
        """TorchServe's environment: its temp files and logs under ``run_dir``. The launcher
        finds its pid file through Python's temp folder (TMPDIR first), the JVM and the workers
        through TEMP, so all three names point to the same folder."""
        # TS_SERVICE_ENVELOPE only from `envelope`: the handler reads it too, and a stray one would
        # make it answer in a shape TorchServe does not wrap.
        env = {key: value for key, value in os.environ.items()
               if key not in ("TS_CONFIG_FILE", ENVELOPE_VARIABLE)}
        if self.envelope:
            env[ENVELOPE_VARIABLE] = self.envelope
        temp = str(self.temp)
        env.update(TMPDIR=temp, TEMP=temp, TMP=temp, LOG_LOCATION=str(self.logs),
                   METRICS_LOCATION=str(self.logs))
        return env

    # -- state -----------------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The JVM's pid while it runs (from TorchServe's pid file), else ``None``."""
        try:
            pid = int((self.temp / PID_FILE).read_text().split()[0])
            process = psutil.Process(pid)
            return pid if "org.pytorch.serve.ModelServer" in process.cmdline() else None
        except (FileNotFoundError, ValueError, IndexError, psutil.Error):
            return None

    def processes(self) -> list[psutil.Process]:
        """The JVM and its workers (every process it started)."""
        pid = self.pid()
        if pid is None:
            return []
        try:
            parent = psutil.Process(pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.Error:
            return []

    def worker_pids(self, model: str, version: str | None = None) -> list[int]:
        """The pids of a model's workers, as TorchServe reports them (a restarted worker keeps
        its id and start time but gets a new pid)."""
        description = self.client().describe(model, version)[0]
        return sorted(worker["pid"] for worker in description["workers"])

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of each log that has any, for error messages; the JVM's own output
        (where a failed start says why) comes last, nearest the prompt."""
        parts = []
        for name in ("ts_log.log", "model_log.log", "torchserve.out"):
            path = self.logs / name
            if path.is_file() and path.stat().st_size:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(parts) or f"(no logs in {self.logs})"

    @property
    def model_log(self) -> Path:
        """The workers' log: their warnings and errors, appended to across runs."""
        return self.logs / "model_log.log"

    def model_log_size(self) -> int:
        """Bytes in :attr:`model_log` so far."""
        return self.model_log.stat().st_size if self.model_log.is_file() else 0

    def start_failures(self, since: int = 0) -> list[str]:
        """The lines of :attr:`model_log` after its first ``since`` bytes where a worker's
        handler said why it cannot start (:data:`handler.START_FAILURE`), each once."""
        if not self.model_log.is_file():
            return []
        with open(self.model_log, "rb") as log:
            log.seek(since)
            lines = log.read().decode(errors="replace").splitlines()
        found = [line[line.index(START_FAILURE):] for line in lines if START_FAILURE in line]
        return list(dict.fromkeys(found))

    # -- lifecycle -------------------------------------------------------------------------------

    def write_properties(self, models: Sequence[str]) -> None:
        """``run_dir/config.properties``: the project's configuration for this run."""
        base = read_properties(self.config)
        store = self.model_store.as_posix()
        overrides = {
            "model_store": store,
            "workflow_store": store,
            "allowed_urls": store_only_urls(store),
            "load_models": ",".join(f"{name}.mar" for name in models),
        }
        if self.envelope:
            overrides["enable_envvars_config"] = "true"
        for name, port in self.ports.items():
            if name.startswith("grpc_"):
                overrides[f"{name}_port"] = str(port)
            else:
                key = ADDRESS_PROPERTIES[name]
                overrides[key] = with_port(base[key], port)
        self.properties_file.write_text(render_properties(self.config.read_text(), overrides))

    def start(self, models: Sequence[str] = MODELS, timeout: float = 180.0) -> None:
        """Start TorchServe in the background with ``models`` (``<name>.mar`` in the model store)
        and return once every model has all its workers READY. Raises :class:`ServerError`
        (with the log tail) when it cannot start or a model does not come up in ``timeout``."""
        if self.pid() is not None:
            raise ServerError(f"TorchServe is already running from {self.run_dir} (make stop first)")
        check_java()
        missing = [name for name in models if not (self.model_store / f"{name}.mar").is_file()]
        if missing:
            raise ServerError(
                f"no archive for {', '.join(missing)} in {self.model_store}: run make archive"
            )
        shutil.rmtree(self.temp, ignore_errors=True)  # leftovers of a crashed run
        self.temp.mkdir(parents=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.key_file.unlink(missing_ok=True)
        self.write_properties(models)
        log_size = self.model_log_size()

        with open(self.logs / "torchserve.out", "wb") as out:  # this run's JVM output only
            subprocess.run(
                [
                    sys.executable, "-m", "ts.model_server", "--start", "--ncs",
                    "--ts-config", str(self.properties_file),
                    "--model-store", str(self.model_store),
                    "--log-config", str(self.log_config),
                ],
                cwd=self.run_dir,  # where TorchServe writes key_file.json
                env=self.environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the JVM outlives this process and ignores its Ctrl-C
                umask=0o077,  # owner-only files: the key file is never readable by others, even briefly
                check=True,
            )
        try:
            self.wait_ready(models, timeout, log_size)
        except ServerError:
            self.stop()  # no half-started server, worker or runtime file left behind
            raise
        self.key_file.chmod(0o600)

    def wait_ready(self, models: Sequence[str], timeout: float, log_size: int = 0) -> None:
        """Poll the management API until every model has its workers READY. ``/ping`` says
        Healthy seconds before the workers can answer, so it is not enough. Raises
        :class:`ServerError` at once when a worker's handler says it cannot start (in
        ``model_log.log`` after its first ``log_size`` bytes), else after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        client = None
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise ServerError(f"TorchServe exited while starting.\n{self.log_tail()}")
            failures = self.start_failures(log_size)
            if failures:  # TorchServe would retry the worker until the timeout: say why now
                raise ServerError("a worker could not start:\n" + "\n".join(failures))
            if client is None and self.key_file.is_file():
                client = self.client(timeout=5.0)
            if client is not None and all(self._model_ready(client, name) for name in models):
                return
            time.sleep(0.5)
        raise ServerError(
            f"the models were not READY after {timeout:.0f} s.\n{self.log_tail()}"
        )

    @staticmethod
    def _model_ready(client: TorchServeClient, name: str) -> bool:
        try:
            description = client.describe(name)[0]
        except (ServingError, OSError, ValueError):  # not registered yet, or not listening yet
            return False
        workers = description["workers"]
        return len(workers) >= description["minWorkers"] and all(
            worker["status"] == "READY" for worker in workers
        )

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop TorchServe and wait until the JVM and all its workers are gone; returns whether
        it was running. Workers that outlive the JVM by ``timeout`` are killed (by pid)."""
        processes = self.processes()
        if processes:
            subprocess.run(
                [sys.executable, "-m", "ts.model_server", "--stop", "--foreground"],
                cwd=self.run_dir,  # TorchServe deletes key_file.json from its working directory
                env=self.environment(),
                stdout=subprocess.DEVNULL,
                check=False,
            )
            _, alive = psutil.wait_procs(processes, timeout=timeout)
            for process in alive:
                process.kill()
            psutil.wait_procs(alive, timeout=10)
        shutil.rmtree(self.temp, ignore_errors=True)
        self.key_file.unlink(missing_ok=True)
        return bool(processes)

    def status(self) -> str:
        """A table of models, versions and workers, or why there is none."""
        pid = self.pid()
        if pid is None:
            return f"TorchServe is not running (run folder {self.run_dir})."
        endpoints = self.endpoints
        lines = [
            f"TorchServe is running (pid {pid}), run folder {self.run_dir}",
            f"  inference  {endpoints.inference}",
            f"  management {endpoints.management}",
            f"  metrics    {endpoints.metrics}/metrics",
            "",
            f"{'model':<12} {'version':<8} {'default':<8} {'batch':<6} workers",
        ]
        client = self.client(timeout=10.0)
        for model in client.models():
            name = model["modelName"]
            default = client.describe(name)[0]["modelVersion"]
            for version in client.describe(name, "all"):
                workers = ", ".join(f"{w['pid']} {w['status']}" for w in version["workers"])
                lines.append(
                    f"{name:<12} {version['modelVersion']:<8} "
                    f"{'yes' if version['modelVersion'] == default else '':<8} "
                    f"{version['batchSize']:<6} {len(version['workers'])}: {workers or '-'}"
                )
        return "\n".join(lines)

    def usage(self, models: Sequence[str] = MODELS) -> str:
        """What to do with a server running ``models``: URLs in the protocol it serves, the key
        file and a curl to paste."""
        endpoints = self.endpoints
        key = self.client().keys.inference
        return "\n".join([
            f"TorchServe is ready (logs in {self.logs}).",
            f"  inference   {endpoints.inference}{self.prediction_path('<' + '|'.join(models) + '>')}",
            f"  management  {endpoints.management}/models",
            f"  metrics     {endpoints.metrics}/metrics",
            f"  keys        {self.key_file} (they expire after an hour; python -m client keys renews them)",
            "Try it:",
            f"  curl -H 'Authorization: Bearer {key}' {self.try_it(endpoints.inference, models[0])}",
        ])

    def prediction_path(self, model: str) -> str:
        """Where ``model``'s predictions go in the protocol being served."""
        if self.envelope is None:
            return f"/predictions/{model}"
        return f"/v1/models/{model}:predict" if self.envelope == "kserve" else f"/v2/models/{model}/infer"

    def try_it(self, inference: str, model: str = "digits") -> str:
        """The end of a curl command that sends drawing.png to ``model`` in the protocol being served."""
        if self.envelope is None:
            return f"-T drawing.png {inference}{self.prediction_path(model)}"
        body = ('{"instances": [{"data": "\'$(base64 -w0 drawing.png)\'"}]}' if self.envelope == "kserve"
                else '{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", '
                     '"data": ["\'$(base64 -w0 drawing.png)\'"]}]}')
        return f"-H 'Content-Type: application/json' -d '{body}' {inference}{self.prediction_path(model)}"


NOT_RUNNING = 3  # exit status of `status` when the server is down, as LSB init scripts' status


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("start", "stop", "status", "check-java"))
    parser.add_argument("--run-dir", type=Path, default=PROJECT / ".run")
    parser.add_argument("--model-store", type=Path, default=PROJECT / "model_store")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait (start)")
    parser.add_argument("--envelope", choices=ENVELOPES,
                        help="serve KServe's protocol v1 (kserve) or v2 (kservev2) (start)")
    for name in PORT_NAMES:
        parser.add_argument(f"--{name.replace('_', '-')}-port", type=int, dest=name)
    args = parser.parse_args(argv)
    ports = {name: getattr(args, name) for name in PORT_NAMES if getattr(args, name)}
    server = TorchServe(run_dir=args.run_dir, model_store=args.model_store, ports=ports,
                        envelope=args.envelope)
    try:
        if args.command == "start":
            server.start(args.models, timeout=args.timeout)
            print(server.usage(args.models))
        elif args.command == "check-java":
            check_java()
        elif args.command == "stop":
            print("TorchServe stopped." if server.stop() else "TorchServe was not running.")
        else:
            print(server.status())
            if server.pid() is None:
                sys.exit(NOT_RUNNING)
    except ServerError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
