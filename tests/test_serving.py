"""The service over real HTTP: one TorchServe (the ``torchserve`` fixture, tests/conftest.py)
serving the shipped models, as ``make serve`` runs it."""

from __future__ import annotations

import base64
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest
import requests

from client.__main__ import main as cli
from client.api import TorchServeClient
from handler.server import MODELS, TorchServe
from tests.canvases import (
    animated_gif,
    cmyk_jpeg,
    decompression_bomb,
    drawing,
    drawing_png,
    encode,
    exif_oriented,
    layered,
    paper_photo,
    png_with_declared_size,
    sixteen_bit_png,
    transparent_sketch,
    uniform_png,
)
from tests.conftest import archive_variant, serving_config
from tests.hostile import noise_png
from tests.load import SHAPES, bearer, body_kwargs, post, wait_until

SEVEN = drawing_png("7")


def check_prediction(body: dict, model: str, classes: int) -> None:
    assert body["model"] == model and body["version"] == "1.0"
    assert len(body["probabilities"]) == classes
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    ranked = [entry["probability"] for entry in body["top_k"]]
    assert ranked == sorted(ranked, reverse=True)
    assert body["top_k"][0] == {"label": body["label"], "probability": body["confidence"]}


CLASSES = {"digits": 10, "letters": 26, "balanced": 47}
B64 = base64.b64encode(SEVEN).decode()
BODIES = {shape: partial(body_kwargs, SEVEN, shape, top_k=3) for shape in SHAPES}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("shape", BODIES)
def test_every_body_shape_gets_the_output_contract(torchserve, model, shape):
    response = post(torchserve, f"/predictions/{model}", **BODIES[shape]())
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    check_prediction(body, model, CLASSES[model])
    assert len(body["top_k"]) == (3 if shape.startswith("json") else 5)


def test_an_answer_carries_its_requests_id_and_only_when_one_was_sent(torchserve):
    """What client.api checks to tell its own answer from another request's (docs/reliability.md)."""
    png = drawing_png("7")
    sent = post(torchserve, "/predictions/digits", data=png, headers={"X-Correlation-Id": "3f2a-seven"})
    refused = post(torchserve, "/predictions/digits", data=b"not an image", headers={"x-correlation-id": "9c1e-bad"})
    plain = post(torchserve, "/predictions/digits", data=png)
    assert (sent.status_code, sent.headers["X-Correlation-Id"]) == (200, "3f2a-seven")
    assert (refused.status_code, refused.headers["X-Correlation-Id"]) == (400, "9c1e-bad")
    assert plain.status_code == 200 and "X-Correlation-Id" not in plain.headers


def test_the_same_drawing_gets_the_same_answer_whatever_the_body(torchserve):
    answers = [post(torchserve, "/predictions/balanced", **body()).json()["probabilities"] for body in BODIES.values()]
    assert all(answer == answers[0] for answer in answers)


@pytest.mark.parametrize("model, char", [("digits", "0"), ("digits", "1"), ("digits", "7"),
                                         ("letters", "L"), ("letters", "T"), ("letters", "O")])
def test_a_drawn_character_is_recognized(torchserve, model, char):
    body = torchserve.client().predict(model, drawing_png(char), return_input=True)
    assert body["label"] == char, body["top_k"]
    assert body["confidence"] > 0.5
    assert base64.b64decode(body["input"]).startswith(b"\x89PNG")


def test_a_gradio_sketch_on_a_transparent_background_is_recognized(torchserve):
    assert torchserve.client().predict("digits", transparent_sketch("7"))["label"] == "7"


# -- batching -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batched_digits(torchserve):
    """digits registered again as ``digits_batched``: one worker that takes up to 8 requests
    per forward pass, waiting up to 200 ms to fill a batch."""
    client = torchserve.client()
    client.register("digits.mar", model_name="digits_batched", batch_size=8, max_batch_delay=200)
    client.scale("digits_batched", 1)
    yield "digits_batched"
    client.unregister("digits_batched")


def test_concurrent_requests_are_batched_and_get_the_single_answers(torchserve, batched_digits):
    images = [drawing_png(char, width=width) for char in "017" for width in (8, 14, 20, 26)][:8]
    single = [post(torchserve, "/predictions/digits", data=image).json() for image in images]
    with ThreadPoolExecutor(len(images)) as pool:
        responses = list(pool.map(lambda image: post(torchserve, f"/predictions/{batched_digits}", data=image), images))
    assert max(int(r.headers["X-Batch-Size"]) for r in responses) > 1  # batches did form
    for alone, response in zip(single, responses):
        together = response.json()
        assert together["label"] == alone["label"]
        for label, probability in together["probabilities"].items():
            assert probability == pytest.approx(alone["probabilities"][label], abs=1e-5)


def test_a_bad_request_in_a_batch_does_not_fail_the_others(torchserve, batched_digits):
    bodies = [SEVEN, uniform_png(255), SEVEN, b"not an image", SEVEN, SEVEN]
    with ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(lambda data: post(torchserve, f"/predictions/{batched_digits}", data=data), bodies))
    assert [r.status_code for r in responses] == [200, 400, 200, 400, 200, 200]
    assert max(int(r.headers["X-Batch-Size"]) for r in responses) > 1


# -- bad input --------------------------------------------------------------------------------


BAD_INPUTS = {
    # name: (request kwargs, status, type, words of the message)
    "empty-body": ({"data": b"", "headers": {"Content-Type": "image/png"}}, 400, "InputError", "the request has no image"),
    "random-bytes": ({"data": bytes(range(256)) * 8}, 400, "InputError", "not a readable image"),
    "truncated-png": ({"data": SEVEN[: len(SEVEN) // 2]}, 400, "InputError", "truncated or corrupt"),
    "1x1": ({"data": encode(drawing().resize((1, 1)))}, 400, "InputError", "draw on a canvas of at least 8x8"),
    "20000x20000-header": ({"data": png_with_declared_size(20000, 20000)}, 400, "InputError", "scale the drawing down"),
    "decompression-bomb": ({"data": decompression_bomb()}, 400, "InputError", "is 8000x8000 pixels"),
    "over-4-MiB": ({"data": noise_png(1300)}, 413, "InputError", "the limit is 4194304 bytes"),
    "blank-canvas": ({"data": uniform_png(255)}, 400, "BlankImageError", "the drawing is blank"),
    "fully-inked-canvas": ({"data": uniform_png(0)}, 400, "BlankImageError", "the drawing is blank"),
    "malformed-json": ({"data": b'{"image": "iVBOR', "headers": {"Content-Type": "application/json"}}, 400, "InputError", "not valid JSON"),
    "bad-base64": ({"json": {"image": "iVBOR*not*base64"}}, 400, "InputError", "not valid base64"),
    "unknown-option": ({"json": {"image": B64, "topk": 3}}, 400, "InputError", "unknown option(s) ['topk']"),
    # several images in one request: refused, never one of them answered and the other dropped
    "two-data-parts": ({"files": [("data", ("a.png", SEVEN, "image/png")), ("data", ("b.png", drawing_png("1"), "image/png"))]},
                       400, "InputError", 'the request has 2 "data" parts: send one image per request'),
    "json-list-of-images": ({"json": [{"image": B64}, {"image": B64}]}, 400, "InputError", "send one image per request"),
    "repeated-option": ({"files": [("data", ("a.png", SEVEN, "image/png")), ("top_k", (None, "3")), ("top_k", (None, "4"))]},
                        400, "InputError", "given more than once"),
    "blank-sheet-photo": ({"data": paper_photo(None, ("left",))}, 400, "BlankImageError", "no drawing found on the paper"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_a_4xx_that_says_what_to_fix_and_no_worker_restarts(torchserve, case):
    kwargs, status, kind, message = BAD_INPUTS[case]
    before = torchserve.worker_pids("digits")
    response = post(torchserve, "/predictions/digits", **kwargs)
    assert response.status_code == status, response.text
    assert response.json() == {"code": status, "type": kind, "message": response.json()["message"]}
    assert message in response.json()["message"]
    assert torchserve.worker_pids("digits") == before
    assert post(torchserve, "/predictions/digits", data=SEVEN).status_code == 200


@pytest.mark.parametrize(
    "data",
    [sixteen_bit_png(), cmyk_jpeg(), animated_gif(), transparent_sketch()],
    ids=["16-bit-png", "cmyk-jpeg", "animated-gif", "transparent-png"],
)
def test_unusual_but_valid_images_get_the_answer_of_the_plain_png(torchserve, data):
    before = torchserve.worker_pids("digits")
    plain = post(torchserve, "/predictions/digits", data=SEVEN).json()
    response = post(torchserve, "/predictions/digits", data=data)
    assert response.status_code == 200, response.text
    assert response.json()["label"] == plain["label"]
    assert torchserve.worker_pids("digits") == before


@pytest.mark.parametrize(
    "data, char",
    [(exif_oriented(drawing("7"), 3), "7"), (layered("7", alpha=64), "7"), (paper_photo("7", ("top", "left")), "7")],
    ids=["exif-upside-down-jpeg", "white-layer-at-alpha-64", "photo-with-desk-on-2-edges"],
)
def test_photos_and_layered_images_are_read_over_http(torchserve, data, char):
    response = post(torchserve, "/predictions/digits", data=data)
    assert response.status_code == 200, response.text
    assert response.json()["label"] == char


@pytest.mark.parametrize("query", ["top_k=3", "return_input=true", "top_k=0", "bogus=1"])
def test_torchserve_does_not_hand_the_query_string_to_the_handler(torchserve, query):
    """TorchServe 0.12 drops the URL's query string before the handler (README, Errors): the
    handler can neither apply nor refuse options there, so they are ignored. Should a TorchServe
    ever pass them on, they would reach payload.parse_request as fields (``?bogus=1`` a 400) and
    this test fails, to bring the README up to date."""
    plain = post(torchserve, "/predictions/digits", data=SEVEN).json()
    response = post(torchserve, f"/predictions/digits?{query}", data=SEVEN)
    assert response.status_code == 200, response.text
    assert response.json() == plain  # 5 entries of top_k, no "input": the query had no effect


def test_an_unknown_model_is_404(torchserve):
    response = post(torchserve, "/predictions/hieroglyphs", data=SEVEN)
    assert response.status_code == 404
    assert response.json()["type"] == "ModelNotFoundException"


def test_a_body_over_the_request_limit_is_refused_by_torchserve(torchserve):
    response = post(torchserve, "/predictions/digits", data=b"\0" * (6 * 1024 * 1024 + 1))
    assert response.status_code == 413


# -- token authorization ------------------------------------------------------------------------


@pytest.mark.parametrize("api, method, path", [
    ("inference", "GET", "/ping"),
    ("inference", "POST", "/predictions/digits"),
    ("management", "GET", "/models"),
    ("management", "DELETE", "/models/digits"),
])
@pytest.mark.parametrize("headers", [{}, bearer("wrong-key")], ids=["no-token", "wrong-token"])
def test_calls_without_the_right_token_are_refused(torchserve, api, method, path, headers):
    url = getattr(torchserve.endpoints, api) + path
    response = requests.request(method, url, headers=headers, data=SEVEN, timeout=30)
    assert response.status_code == 400
    assert response.json()["type"] == "InvalidKeyException"
    assert "digits" in [m["modelName"] for m in torchserve.client().models()]


def test_a_rotated_key_works_and_the_old_one_does_not(torchserve):
    client = torchserve.client()
    for kind, url in [("inference", torchserve.endpoints.inference + "/ping"),
                      ("management", torchserve.endpoints.management + "/models")]:
        old = getattr(client.keys, kind)
        stale = TorchServeClient(torchserve.endpoints)
        assert getattr(stale.keys, kind) == old  # read before the rotation
        new = client.rotate_key(kind)
        assert new != old
        assert requests.get(url, headers=bearer(old), timeout=30).status_code == 400
        assert requests.get(url, headers=bearer(new), timeout=30).status_code == 200
        # A client holding the old key re-reads the key file once and carries on.
        assert stale.ping() if kind == "inference" else stale.models()
    assert torchserve.key_file.stat().st_mode & 0o777 == 0o600


def test_the_metrics_port_needs_no_token_and_counts_requests(torchserve):
    post(torchserve, "/predictions/letters", data=SEVEN)
    metrics = requests.get(torchserve.endpoints.metrics + "/metrics", timeout=30).text
    counters = [line for line in metrics.splitlines() if line.startswith("ts_inference_requests_total")]
    assert any('model_name="letters"' in line and float(line.split()[-1]) >= 1 for line in counters)
    assert "ts_inference_latency_microseconds" in metrics
    assert any(line.startswith("HandlerTime{") for line in metrics.splitlines())  # the workers' metrics too


def test_a_request_writes_one_access_line_and_nothing_in_the_server_log(torchserve):
    logs = torchserve.logs
    server_log, access_log = (logs / "ts_log.log").read_text(), (logs / "access_log.log").read_text()
    for _ in range(3):
        assert post(torchserve, "/predictions/digits", data=SEVEN).status_code == 200

    def new_access() -> list[str]:
        return (logs / "access_log.log").read_text()[len(access_log):].splitlines()

    wait_until(lambda: len(new_access()) >= 3, timeout=10)  # the server may log just after it answers
    assert len(new_access()) == 3 and all("/predictions/digits" in line for line in new_access())
    # What TorchServe logs for every request (another test's scaling may still be logging its own
    # events: only these are checked).
    new_server = (logs / "ts_log.log").read_text()[len(server_log):]
    assert not [line for line in new_server.splitlines() if any(
        said in line for said in ("Backend response time", "Sending response for jobId", "[METRICS]"))]


# -- model management ---------------------------------------------------------------------------


@pytest.fixture
def outside_archive(torchserve, tmp_path) -> Path:
    """A perfectly good archive, but outside the model store."""
    return Path(shutil.copy(torchserve.model_store / "digits.mar", tmp_path / "evil.mar"))


def test_registering_from_a_url_or_outside_the_model_store_is_refused(torchserve, outside_archive):
    client = torchserve.client()
    for url in [
        "http://example.com/evil.mar",
        "https://example.com/evil.mar",
        f"file://{outside_archive}",
        str(outside_archive),
        f"../{outside_archive.parent.name}/evil.mar",
    ]:
        response = client.request("management", "POST", "/models", params={"url": url, "model_name": "evil"})
        assert 400 <= response.status_code < 500, (url, response.text)
    assert "evil" not in [m["modelName"] for m in client.models()]


def test_the_cli_refuses_an_archive_outside_the_model_store(torchserve, outside_archive):
    with pytest.raises(SystemExit, match="not in the model store"):
        cli(["--run-dir", str(torchserve.run_dir), "models", "register", str(outside_archive)])


@pytest.fixture
def letters_v2(torchserve, shipped_models, tmp_path) -> str:
    """letters exported again as version 2.0 and archived into the model store."""
    archive = archive_variant(shipped_models, "letters", torchserve.model_store, "letters-2.0.mar", tmp_path, version="2.0")
    yield archive.name
    archive.unlink()


def run_cli(torchserve: TorchServe, capsys, *args: str):
    cli(["--run-dir", str(torchserve.run_dir), *args])
    return json.loads(capsys.readouterr().out)


def test_version_lifecycle_through_the_cli(torchserve, letters_v2, capsys):
    client = torchserve.client()
    try:
        run_cli(torchserve, capsys, "models", "register", letters_v2, "--workers", "1")
        assert post(torchserve, "/predictions/letters/2.0", data=SEVEN).json()["version"] == "2.0"
        assert post(torchserve, "/predictions/letters", data=SEVEN).json()["version"] == "1.0"

        run_cli(torchserve, capsys, "models", "set-default", "letters", "2.0")
        assert post(torchserve, "/predictions/letters", data=SEVEN).json()["version"] == "2.0"

        for workers in (3, 1):
            run_cli(torchserve, capsys, "models", "scale", "letters", "--workers", str(workers), "--version", "2.0")
            [described] = client.describe("letters", "2.0")
            assert len(described["workers"]) == workers
            assert all(worker["status"] == "READY" for worker in described["workers"])

        versions = run_cli(torchserve, capsys, "models", "describe", "letters")
        assert sorted(v["modelVersion"] for v in versions) == ["1.0", "2.0"]
        listed = run_cli(torchserve, capsys, "models", "list")
        assert "letters" in [m["modelName"] for m in listed]

        run_cli(torchserve, capsys, "models", "set-default", "letters", "1.0")
        run_cli(torchserve, capsys, "models", "unregister", "letters", "2.0")
        assert [v["modelVersion"] for v in client.describe("letters", "all")] == ["1.0"]
        assert post(torchserve, "/predictions/letters/2.0", data=SEVEN).status_code == 404
    finally:  # leave the shared server as it was
        if "2.0" in [v["modelVersion"] for v in client.describe("letters", "all")]:
            client.set_default("letters", "1.0")
            client.unregister("letters", "2.0")
    assert post(torchserve, "/predictions/letters", data=SEVEN).json()["version"] == "1.0"


@pytest.fixture
def unloadable_archive(torchserve, shipped_models, tmp_path) -> str:
    """digits archived with a model file that is not TorchScript: its workers never get READY."""
    archive = archive_variant(shipped_models, "digits", torchserve.model_store, "unloadable.mar", tmp_path,
                              model_file=b"not a TorchScript archive")
    yield archive.name
    archive.unlink()


def test_registering_a_model_whose_workers_never_start_ends_with_a_clear_timeout(torchserve, unloadable_archive):
    client, workers = torchserve.client(), serving_config()["defaults"]["minWorkers"]
    try:
        with pytest.raises(TimeoutError, match=rf"digits_unloadable 1\.0: {workers} READY workers wanted, after 5 s"):
            client.register(unloadable_archive, model_name="digits_unloadable", timeout=5)
    finally:
        client.unregister("digits_unloadable", quiet=0)
    assert "digits_unloadable" not in [m["modelName"] for m in client.models()]
    assert post(torchserve, "/predictions/digits", data=SEVEN).json()["label"] == "7"
