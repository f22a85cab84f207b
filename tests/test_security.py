"""Access control of the served recognizers, on the session's TorchServe (tests/conftest.py).

Already specified in tests/test_serving.py and not repeated here: calls without a token or with
a wrong one (GET /ping, POST /predictions, GET and DELETE /models), a rotated key replacing the
old one on GET /ping and GET /models, and registration from http(s) URLs, file:// URLs and paths
outside the model store. This file adds the rest: keys of the wrong kind, rotated-out keys on
every call that changes something, secrets kept out of the metrics port and the logs, a
registration URL that the server never fetches, the same tokens on the gRPC ports, the
listening sockets, and the key file.
"""

from __future__ import annotations

import http.server
import ipaddress
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import psutil
import pytest
import requests

from client.api import read_properties
from handler.server import MODELS, TorchServe
from tests.canvases import drawing_png
from tests.conftest import PROJECT
from tests.figures import record
from tests.load import bearer, serving_state

SEVEN = drawing_png("7")


def refused(response: requests.Response) -> bool:
    """TorchServe's answer to a missing, wrong, expired or rotated-out key: 400, not 401."""
    return response.status_code == 400 and response.json()["type"] == "InvalidKeyException"


def changing_calls(server: TorchServe) -> list[tuple[str, str, dict]]:
    """Management calls that would change the server, each with its ``requests`` arguments."""
    management = server.endpoints.management
    return [
        ("DELETE", f"{management}/models/digits", {}),
        ("PUT", f"{management}/models/digits", {"params": {"min_worker": 0, "max_worker": 0}}),
        ("PUT", f"{management}/models/digits/1.0/set-default", {}),
        ("POST", f"{management}/models", {"params": {"url": "digits.mar", "model_name": "again"}}),
        ("POST", f"{management}/token", {"params": {"type": "inference"}}),
    ]


def test_a_key_of_another_kind_is_refused(torchserve):
    keys = torchserve.client().keys
    inference = torchserve.endpoints.inference + "/predictions/digits"
    management = torchserve.endpoints.management + "/models"
    for url, wrong in [(inference, keys.management), (inference, keys.api),
                       (management, keys.inference), (management, keys.api)]:
        method = "POST" if url == inference else "GET"
        assert refused(requests.request(method, url, headers=bearer(wrong), data=SEVEN, timeout=30)), url
    # Only the API key rotates keys.
    for wrong in (keys.inference, keys.management):
        response = requests.post(management.replace("/models", "/token"), params={"type": "inference"},
                                 headers=bearer(wrong), timeout=30)
        assert refused(response)


def test_rotated_out_keys_can_neither_predict_nor_change_anything(torchserve):
    client = torchserve.client()
    state = serving_state(torchserve)
    old_inference, old_management = client.keys.inference, client.keys.management
    client.rotate_key("inference")
    client.rotate_key("management")

    prediction = requests.post(torchserve.endpoints.inference + "/predictions/digits",
                               headers=bearer(old_inference), data=SEVEN, timeout=30)
    assert refused(prediction)
    for method, url, kwargs in changing_calls(torchserve):
        assert refused(requests.request(method, url, headers=bearer(old_management), timeout=30, **kwargs)), url
    assert serving_state(torchserve) == state  # nothing changed
    assert client.predict("digits", SEVEN)["model"] == "digits"  # the new keys work


def all_keys(server: TorchServe) -> list[str]:
    keys = server.client().keys
    return [keys.inference, keys.management, keys.api]


def test_no_key_shows_on_the_metrics_port_in_the_api_descriptions_or_in_the_logs(torchserve):
    keys = all_keys(torchserve)
    requests.post(torchserve.endpoints.inference + "/predictions/digits", headers=bearer(keys[0]), data=SEVEN, timeout=30)
    requests.get(torchserve.endpoints.inference + "/ping", headers=bearer("wrong"), timeout=30)
    exposed = {
        "metrics": requests.get(torchserve.endpoints.metrics + "/metrics", timeout=30).text,
        # The OpenAPI descriptions are public (no key needed): they must hold no secret either.
        **{f"OPTIONS {api}": requests.options(getattr(torchserve.endpoints, api), timeout=30).text
           for api in ("inference", "management", "metrics")},
        **{f"log {path.name}": path.read_text(errors="replace") for path in torchserve.logs.glob("*.log*")},
        "torchserve.out": (torchserve.logs / "torchserve.out").read_text(errors="replace"),
    }
    assert "ts_inference_requests_total" in exposed["metrics"]
    leaks = {where: [k for k in keys if k in text] for where, text in exposed.items()}
    assert all(found == [] for found in leaks.values()), leaks


GRPC_CALLS = {  # a call that needs no request fields on each gRPC service (no stubs needed)
    "grpc_inference": "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Ping",
    "grpc_management": "/org.pytorch.serve.grpc.management.ManagementAPIsService/ListModels",
}


def grpc_status(server: TorchServe, api: str, key: str | None) -> grpc.StatusCode:
    """The status of an empty request to ``api``'s gRPC port, with ``key`` as bearer token."""
    identity = lambda data: data  # noqa: E731 - raw protobuf bytes: an empty message is b""
    with grpc.insecure_channel(f"127.0.0.1:{server.ports[api]}") as channel:
        call = channel.unary_unary(GRPC_CALLS[api], request_serializer=identity, response_deserializer=identity)
        try:
            call(b"", metadata=[("authorization", f"Bearer {key}")] if key else None, timeout=30)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_the_grpc_ports_require_the_same_keys(torchserve):
    keys = torchserve.client().keys
    for api, right, other in [("grpc_inference", keys.inference, keys.management),
                              ("grpc_management", keys.management, keys.inference)]:
        assert grpc_status(torchserve, api, right) == grpc.StatusCode.OK
        for wrong in (None, "wrong-key", other, keys.api):
            assert grpc_status(torchserve, api, wrong) == grpc.StatusCode.PERMISSION_DENIED, (api, wrong)


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    """Counts every request a server makes to it: a registration URL must never be fetched."""

    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def bait_url() -> Iterator[str]:
    """A URL on 127.0.0.1 that records whether anything fetched it."""
    RecordingHandler.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RecordingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_registration_urls_outside_the_model_store_are_refused_without_being_fetched(torchserve, bait_url, tmp_path):
    client = torchserve.client()
    store = torchserve.model_store
    (tmp_path / "evil.mar").write_bytes((store / "digits.mar").read_bytes())
    outside = tmp_path.relative_to(store.parent.parent)  # reached from the store by ../..
    attempts = [
        ("/models", f"{bait_url}/evil.mar"),
        ("/models", f"{bait_url.replace('http:', 'https:')}/evil.mar"),
        ("/workflows", f"{bait_url}/evil.war"),
        ("/models", f"file://{store}/../../{outside}/evil.mar"),
        ("/models", f"file://{store}/%2e%2e/%2e%2e/{outside}/evil.mar"),
        ("/models", f"{store}/../../{outside}/evil.mar"),
    ]
    statuses, messages = [], set()
    for path, url in attempts:
        response = client.request("management", "POST", path, params={"url": url, "model_name": "evil"})
        statuses.append(response.status_code)
        messages.add(re.sub(r"\S*evil\S*", "<url>", response.json()["message"]))
        assert 400 <= response.status_code < 500, (url, response.text)
    assert RecordingHandler.hits == []  # refused before any download
    assert "evil" not in [m["modelName"] for m in client.models()]
    record("registration_refused", {"attempts": len(attempts), "statuses": statuses, "messages": sorted(messages),
                                    "fetches_of_the_bait_url": len(RecordingHandler.hits)})


def configured_ports(server: TorchServe) -> set[int]:
    """The five ports of the run's config.properties (HTTP APIs and gRPC)."""
    properties = read_properties(server.properties_file)
    addresses = [urlsplit(properties[f"{api}_address"]).port for api in ("inference", "management", "metrics")]
    grpc = [int(properties[f"grpc_{api}_port"]) for api in ("inference", "management")]
    return {*addresses, *grpc}


def ipv4(address: str) -> str:
    """``::ffff:127.0.0.1`` -> ``127.0.0.1``; any other address unchanged."""
    parsed = ipaddress.ip_address(address)
    mapped = getattr(parsed, "ipv4_mapped", None)
    return str(mapped or parsed)


def test_every_torchserve_port_listens_on_127_0_0_1_only(torchserve):
    jvm, *workers = torchserve.processes()
    listening = [c for c in jvm.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    addresses = sorted((c.laddr.ip, c.laddr.port) for c in listening)
    record("listening_sockets", {"jvm": [f"{ip}:{port}" for ip, port in addresses],
                                 "workers": sum(len(w.net_connections(kind="inet")) for w in workers)})
    # The JVM opens IPv6 sockets: 127.0.0.1 shows as the IPv4-mapped ::ffff:127.0.0.1.
    assert {ipv4(ip) for ip, _ in addresses} == {"127.0.0.1"}
    assert {port for _, port in addresses} == configured_ports(torchserve)  # HTTP and gRPC
    # The workers talk to the JVM over Unix sockets in the run folder: no TCP port at all.
    assert [w.net_connections(kind="inet") for w in workers] == [[] for _ in workers]
    assert len(workers) >= 2 * len(MODELS)  # every model's workers were checked


def test_the_key_file_is_owner_only_in_the_git_ignored_run_folder(torchserve):
    jvm = torchserve.processes()[0]
    assert torchserve.key_file == torchserve.run_dir / "key_file.json"
    assert torchserve.key_file.stat().st_mode & 0o777 == 0o600
    assert Path(jvm.cwd()) == torchserve.run_dir  # TorchServe writes key_file.json into its cwd
    # make serve's run folder is .run/, which git ignores; no key file lands in the checkout.
    assert TorchServe().key_file == PROJECT / ".run" / "key_file.json"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".run/key_file.json"], cwd=PROJECT)
    assert ignored.returncode == 0


def umask(process: psutil.Process) -> int:
    return int(re.search(r"^Umask:\s+(\d+)$", Path(f"/proc/{process.pid}/status").read_text(), re.M).group(1), 8)


def test_torchserve_creates_every_file_owner_only(torchserve):
    """The key file is written by the JVM at start; run with umask 077, it is never readable by
    others, not even in the seconds before ``make serve`` tightens its mode."""
    assert {umask(process) for process in torchserve.processes()} == {0o077}
    prepared_by_make_serve = {torchserve.properties_file, torchserve.logs, torchserve.temp,
                              torchserve.logs / "torchserve.out"}
    created_by_torchserve = set(torchserve.run_dir.rglob("*")) - prepared_by_make_serve
    assert created_by_torchserve
    readable = [str(p) for p in created_by_torchserve if p.stat().st_mode & 0o077 and not p.is_symlink()]
    assert readable == []
