"""The container image (deploy/Dockerfile) as far as this machine allows: no image can be built
here (no registry is reachable), so the Dockerfile is linted with hadolint, and what it copies
is laid out as its COPY instructions say, with the same files, and run as its CMD and
HEALTHCHECK run, outside a container (without tini, whose ``-g`` is played by signalling the
process group)."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from dockerfile_parse import DockerfileParser

from client.api import Endpoints, TorchServeClient
from handler.bundle import CONTAINER_HOME
from handler.server import free_ports
from tests.canvases import drawing_png
from tests.conftest import PROJECT, make

DOCKERFILE = PROJECT / "deploy" / "Dockerfile"
BIN = Path(sys.executable).parent


def instructions(name: str) -> list[str]:
    return [item["value"] for item in DockerfileParser(str(DOCKERFILE)).structure if item["instruction"] == name]


def test_the_dockerfile_passes_hadolint():
    result = subprocess.run([str(BIN / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_the_image_runs_as_a_user_without_privileges():
    (user,) = instructions("USER")
    assert user.isdigit() and int(user) >= 1000  # numeric: Kubernetes' runAsNonRoot can check it
    assert instructions("WORKDIR") == [CONTAINER_HOME]


def test_the_build_context_holds_what_the_dockerfile_copies():
    allowed = [line[1:].rstrip("/") for line in (PROJECT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")]
    for copy in instructions("COPY"):
        *sources, _ = copy.split()
        for source in sources:
            path = source.rstrip("/")
            assert any(path == pattern or path.startswith(pattern + "/") or fnmatch.fnmatch(path, pattern)
                       or fnmatch.fnmatch(path + "/x.py", pattern) for pattern in allowed), source


def json_args(value: str) -> list[str]:
    """The exec form (a JSON array) of CMD or a HEALTHCHECK's CMD."""
    return json.loads(value[value.index("["):])


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory, shipped_models: Path) -> Path:
    """The image's WORKDIR, laid out by its COPY instructions from the build context, with
    ``make container-bundle`` (digits only) where the context has build/container."""
    root = tmp_path_factory.mktemp("image")
    bundle = root / "context-bundle"
    make("container-bundle", "MODEL=digits", f"MODELS_DIR={shipped_models}",
         f"MODEL_STORE={root / 'store'}", f"CONTAINER_BUNDLE={bundle}")
    workdir = root / CONTAINER_HOME.lstrip("/")
    workdir.mkdir(parents=True)
    for copy in instructions("COPY"):
        *sources, target = copy.split()
        if not target.startswith("./"):  # build-time files (requirements for pip)
            continue
        for source in sources:
            origin = bundle / source.removeprefix("build/container/") if source.startswith("build/container/") \
                else PROJECT / source
            destination = workdir / target
            if origin.is_dir():
                shutil.copytree(origin, destination, dirs_exist_ok=True)
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, destination if not target.endswith("/") else destination / origin.name)
    (workdir / "logs").mkdir()
    (workdir / "tmp").mkdir()
    return workdir


def test_the_image_holds_a_run_folder(image_root):
    assert sorted(path.name for path in (image_root / "model-store").iterdir()) == ["digits.mar"]
    assert (image_root / "config.properties").is_file() and (image_root / "client" / "health.py").is_file()


def environment(workdir: Path, ports: list[int]) -> dict[str, str]:
    """The Dockerfile's ENV with its folder moved to ``workdir``, TorchServe's addresses moved to
    free loopback ports through its TS_* variables (as a pod may set them) and the health
    check told where they are."""
    api, management, metrics, grpc_inference, grpc_management = ports
    parser = DockerfileParser(str(DOCKERFILE))
    env = {key: value.replace(CONTAINER_HOME, str(workdir)) for key, value in parser.envs.items()}
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith("TS_")},
        **env,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "TS_INFERENCE_ADDRESS": f"http://127.0.0.1:{api}",
        "TS_MANAGEMENT_ADDRESS": f"http://127.0.0.1:{management}",
        "TS_METRICS_ADDRESS": f"http://127.0.0.1:{metrics}",
        "TS_GRPC_INFERENCE_PORT": str(grpc_inference),
        "TS_GRPC_MANAGEMENT_PORT": str(grpc_management),
        "RECOGNIZER_INFERENCE_URL": f"http://127.0.0.1:{api}",
        "RECOGNIZER_MANAGEMENT_URL": f"http://127.0.0.1:{management}",
    }


def test_the_cmd_serves_and_the_healthcheck_says_when_it_is_ready(image_root):
    env = environment(image_root, free_ports(5))
    (health,) = instructions("HEALTHCHECK")
    health_command = [arg.replace(CONTAINER_HOME, str(image_root)) for arg in json_args(health)]
    health_command[0] = sys.executable  # "python" in the image

    def healthy() -> subprocess.CompletedProcess:
        return subprocess.run(health_command, cwd=image_root, env=env, capture_output=True, text=True, timeout=30)

    before = healthy()
    assert before.returncode == 1 and "not ready" in before.stderr

    (cmd,) = instructions("CMD")
    server = subprocess.Popen(json_args(cmd), cwd=image_root, env=env, start_new_session=True,
                              stdout=open(image_root / "logs" / "stdout.log", "wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while (result := healthy()).returncode != 0:
            assert server.poll() is None, (image_root / "logs" / "stdout.log").read_text()[-3000:]
            assert time.monotonic() < deadline, result.stderr
            time.sleep(1)
        endpoints = Endpoints.discover(run_dir=image_root, inference=env["RECOGNIZER_INFERENCE_URL"],
                                       management=env["RECOGNIZER_MANAGEMENT_URL"])
        assert TorchServeClient(endpoints).predict("digits", drawing_png("7"))["label"] == "7"
        # docs/deploy.md's `kubectl exec <pod> -- python -m client models ...`: the image's
        # environment tells the client where the keys are.
        listed = subprocess.run([sys.executable, "-m", "client", "models", "list"], cwd=image_root, env=env,
                                capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0 and "digits" in listed.stdout, listed.stderr
        log = (image_root / "logs" / "stdout.log").read_text()
        assert " access " in log and " server " in log  # the logs go to stdout, not to files
        assert not list((image_root / "logs").glob("*.log.gz")) and not (image_root / "logs" / "ts_log.log").exists()
    finally:
        processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        os.killpg(server.pid, signal.SIGTERM)  # what `tini -g` does with the container's SIGTERM
        _, alive = psutil.wait_procs(processes, timeout=30)
        for process in alive:
            process.kill()
    assert not alive, f"still running 30 s after SIGTERM: {alive}"
