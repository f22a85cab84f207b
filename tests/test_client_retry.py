"""The client sends a prediction again when TorchServe says its worker went away (killed,
scaled down, unregistered), and only then; against a scripted stand-in for TorchServe."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.api import Endpoints, ServingError, TorchServeClient

WORKER_DIED = (500, {"code": 500, "type": "InternalServerException", "message": "Worker died."})
KILLED = (507, {"code": 507, "type": "InternalServerException", "message": "Worker died."})
SCALED_DOWN = (500, {"code": 500, "type": "InternalServerException", "message": "Worker scaled down."})
HANDLER_FAILED = (503, {"code": 503, "type": "InternalServerException", "message": "Prediction failed"})
ANSWER = (200, {"label": "7"})


class Scripted(http.server.BaseHTTPRequestHandler):
    """Answers each POST with the next (status, body) of ``script`` and counts the calls."""

    script: list[tuple[int, dict]] = []
    calls = 0

    echo: list[str | None] = []  # X-Correlation-Id to answer with, per call: "sent" echoes the request's
    connections: set[int] = set()  # client ports seen

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, body = Scripted.script[min(Scripted.calls, len(Scripted.script) - 1)]
        echo = Scripted.echo[min(Scripted.calls, len(Scripted.echo) - 1)] if Scripted.echo else None
        Scripted.calls += 1
        Scripted.connections.add(self.client_address[1])
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if echo is not None:
            self.send_header("X-Correlation-Id", self.headers["X-Correlation-Id"] if echo == "sent" else echo)
        self.end_headers()
        self.wfile.write(data)

    do_PUT = do_GET = do_POST  # noqa: N815 - a management call answers from the script as well

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TorchServeClient]:
    Scripted.echo, Scripted.connections = [], set()
    Scripted.protocol_version = "HTTP/1.1"  # keep-alive, as TorchServe
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    expiry = {"key": "k", "expiration time": "2999-01-01T00:00:00Z"}
    (tmp_path / "key_file.json").write_text(json.dumps({"inference": expiry, "management": expiry, "API": {"key": "a"}}))
    yield TorchServeClient(Endpoints(url, url, url, tmp_path / "key_file.json"), timeout=10)
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("gone", [WORKER_DIED, KILLED, SCALED_DOWN], ids=["died", "killed", "scaled-down"])
def test_a_prediction_whose_worker_went_away_is_sent_again_once(client, gone):
    Scripted.script, Scripted.calls = [gone, ANSWER], 0
    assert client.predict("digits", b"png") == {"label": "7"}
    assert (Scripted.calls, client.retried) == (2, 1)


def test_it_is_not_sent_a_third_time(client):
    Scripted.script, Scripted.calls = [WORKER_DIED, WORKER_DIED, ANSWER], 0
    assert client.request("inference", "POST", "/predictions/digits", data=b"png").status_code == 500
    assert Scripted.calls == 2


def test_other_server_errors_are_not_retried(client):
    Scripted.script, Scripted.calls = [HANDLER_FAILED, ANSWER], 0
    assert client.request("inference", "POST", "/predictions/digits", data=b"png").status_code == 503
    assert (Scripted.calls, client.retried) == (1, 0)


SCALE_RACE = (500, {"code": 500, "type": "NullPointerException",
                    "message": 'Cannot invoke "org.pytorch.serve.job.Job.isControlCmd()" because "job" is null'})
SCALED = (200, {"status": "Processing worker updates..."})
ONE_READY = (200, [{"modelVersion": "1.0", "minWorkers": 1, "workers": [{"status": "READY"}]}])


def test_a_scale_that_torchserve_fails_with_a_5xx_is_asked_again_once(client):
    """TorchServe 0.12 can answer a scale-down with a NullPointerException (seen under load in
    tests/test_reliability.py's scaling test); setting the worker count again is harmless."""
    Scripted.script, Scripted.calls = [SCALE_RACE, SCALED, ONE_READY], 0
    assert client.scale("digits", 1)["status"] == "digits 1.0 runs 1 worker, all READY"
    assert Scripted.calls == 3


@pytest.mark.parametrize("answers", [[SCALE_RACE, SCALE_RACE], [(400, {"code": 400, "type": "BadRequestException", "message": "min > max"})]],
                         ids=["5xx twice", "4xx"])
def test_a_scale_is_asked_again_only_once_and_only_after_a_5xx(client, answers):
    Scripted.script, Scripted.calls = answers, 0
    with pytest.raises(ServingError):
        client.scale("digits", 1)
    assert Scripted.calls == len(answers)


def test_a_negative_worker_count_is_refused_before_torchserve_is_asked(client):
    Scripted.script, Scripted.calls = [], 0
    with pytest.raises(ValueError, match="0 workers .* or more"):
        client.scale("digits", -1)
    assert Scripted.calls == 0


def test_scaling_to_zero_workers_says_the_version_answers_503_until_scaled_up(client):
    Scripted.script, Scripted.calls = [SCALED, (200, [{"modelVersion": "1.0", "minWorkers": 0, "workers": []}])], 0
    assert client.scale("digits", 0)["status"] == (
        "digits 1.0 runs no workers: its predictions get a 503 until it is scaled up again"
    )


def test_an_answer_to_another_request_is_asked_again_on_a_new_connection(client):
    """TorchServe 0.12 once answered a request twice during a scale-down under load, and every
    answer read from that keep-alive connection after it was the answer to the request before
    (tests/test_reliability.py); the handler echoes X-Correlation-Id, the client checks it."""
    Scripted.script, Scripted.calls = [(200, {"label": "0"}), ANSWER], 0
    Scripted.echo = ["an earlier request's id", "sent"]
    assert client.predict("digits", b"png") == {"label": "7"}
    assert (Scripted.calls, client.desynchronized, len(Scripted.connections)) == (2, 1, 2)


def test_an_answer_with_its_own_id_or_without_one_is_taken(client):
    Scripted.script, Scripted.calls, Scripted.echo = [ANSWER], 0, ["sent", None]
    assert client.predict("digits", b"png") == {"label": "7"}  # the handler's answer, echoed
    assert client.predict("digits", b"png") == {"label": "7"}  # TorchServe's own, none to echo
    assert (Scripted.calls, client.desynchronized, len(Scripted.connections)) == (2, 0, 1)
