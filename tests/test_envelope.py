"""KServe's protocols through TorchServe's own envelopes (handler/envelope.py): a real TorchServe
started as ``make serve ENVELOPE=kserve`` / ``ENVELOPE=kservev2`` starts it, real HTTP, the
shipped ``digits`` model."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler.archive import build_archive
from handler.envelope import ENVELOPES, from_environment, tensors
from handler.server import TorchServe
from tests.canvases import drawing_png, uniform_png
from tests.conftest import running_torchserve, serving_config
from tests.load import post

SEVEN = base64.b64encode(drawing_png("7")).decode()
ONE = base64.b64encode(drawing_png("1")).decode()
BLANK = base64.b64encode(uniform_png(255)).decode()


# -- the envelope's shapes, in process ----------------------------------------------------------


def test_the_envelope_is_the_one_torchserve_is_told_about():
    assert from_environment({}) is None
    assert from_environment({"TS_SERVICE_ENVELOPE": "kservev2"}) is ENVELOPES["kservev2"]
    with pytest.raises(ValueError, match="json"):
        from_environment({"TS_SERVICE_ENVELOPE": "json"})


def test_answer_fields_become_tensors_by_their_shape_alone():
    answer = {
        "label": "7", "confidence": 0.9, "accepted": True,
        "top_k": [{"label": "7", "probability": 0.9}, {"label": "1", "probability": 0.1}],
        "probabilities": {"1": 0.1, "7": 0.9},
        "calibration": {"temperature": 1.5, "bins": [0.1, 0.2]},
    }
    produced = [tensor for name, value in answer.items() for tensor in tensors(name, value)]
    assert produced == [
        ("label", ["7"]), ("confidence", [0.9]), ("accepted", [True]),
        ("top_k.label", ["7", "1"]), ("top_k.probability", [0.9, 0.1]),
        ("probabilities", [0.1, 0.9]), ("probabilities.keys", ["1", "7"]),
        ("calibration.temperature", [1.5]), ("calibration.bins", [0.1, 0.2]),
    ]


# -- over HTTP ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_store(tmp_path_factory: pytest.TempPathFactory, shipped_models: Path) -> Path:
    root = tmp_path_factory.mktemp("envelope-store")
    build_archive("digits", shipped_models, root / "store", serving_config(), root / "build")
    return root / "store"


@pytest.fixture(scope="module")
def kserve_v1(tmp_path_factory, digits_store) -> Iterator[TorchServe]:
    with running_torchserve(tmp_path_factory.mktemp("v1"), digits_store, ["digits"], envelope="kserve") as server:
        yield server


@pytest.fixture(scope="module")
def kserve_v2(tmp_path_factory, digits_store) -> Iterator[TorchServe]:
    with running_torchserve(tmp_path_factory.mktemp("v2"), digits_store, ["digits"], envelope="kservev2") as server:
        yield server


V1 = "/v1/models/digits:predict"
V2 = "/v2/models/digits/infer"


def v2_input(data: str, name: str = "image", **parameters) -> dict:
    tensor = {"name": name, "shape": [1], "datatype": "BYTES", "data": [data]}
    return {**tensor, "parameters": parameters} if parameters else tensor


def test_v1_gives_the_usual_answer_in_predictions(kserve_v1, torchserve):
    response = post(kserve_v1, V1, json={"instances": [{"data": SEVEN, "top_k": 3}]})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    usual = torchserve.client().predict("digits", drawing_png("7"), top_k=3)
    assert response.json() == {"predictions": [usual]}


def test_v1_instances_are_answered_in_order(kserve_v1):
    response = post(kserve_v1, V1, json={"instances": [{"data": SEVEN}, ONE, {"data": SEVEN, "top_k": 1}]})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["label"] for p in predictions] == ["7", "1", "7"]
    assert [len(p["top_k"]) for p in predictions] == [5, 5, 1]


def test_v1_bad_input_is_a_4xx_and_the_other_instances_are_answered(kserve_v1):
    response = post(kserve_v1, V1, json={"instances": [{"data": SEVEN}, {"data": BLANK}, {"image": SEVEN},
                                                       {"data": SEVEN, "topk": 3}]})
    assert response.status_code == 400, response.text
    first, blank, no_data, typo = response.json()["predictions"]
    assert first["label"] == "7"
    assert blank["code"] == 400 and blank["type"] == "BlankImageError"
    assert no_data["type"] == "InputError" and '"data"' in no_data["message"]
    assert typo["type"] == "InputError" and "topk" in typo["message"]


def test_v1_without_instances_is_a_4xx_that_says_what_to_send(kserve_v1):
    response = post(kserve_v1, V1, json={"image": SEVEN})
    assert response.status_code == 400, response.text
    (error,) = response.json()["predictions"]
    assert '"instances"' in error["message"]


def test_an_empty_list_of_images_is_a_4xx_that_says_what_to_send(kserve_v1, kserve_v2):
    response = post(kserve_v1, V1, json={"instances": []})
    assert response.status_code == 400, response.text
    (error,) = response.json()["predictions"]
    assert error["type"] == "InputError" and '"instances" is empty' in error["message"]
    response = post(kserve_v2, V2, json={"inputs": []})
    assert response.status_code == 400, response.text
    outputs = {output["name"]: output["data"] for output in response.json()["outputs"]}
    assert outputs["code"] == [400] and '"inputs" is empty' in outputs["message"][0]


def test_v2_gives_label_confidence_and_probabilities_as_output_tensors(kserve_v2, torchserve):
    response = post(kserve_v2, V2, json={"id": "req-1", "inputs": [v2_input(SEVEN, top_k=2)]})
    assert response.status_code == 200, response.text
    body = response.json()
    usual = torchserve.client().predict("digits", drawing_png("7"), top_k=2)
    assert body["id"] == "req-1" and body["model_name"] == "digits" and body["model_version"] == "1.0"
    outputs = {output["name"]: output for output in body["outputs"]}
    assert outputs["label"] == {"name": "label", "datatype": "BYTES", "shape": [1], "data": [usual["label"]]}
    assert outputs["confidence"] == {"name": "confidence", "datatype": "FP64", "shape": [1],
                                     "data": [usual["confidence"]]}
    assert outputs["probabilities"]["datatype"] == "FP64" and outputs["probabilities"]["shape"] == [10]
    assert dict(zip(outputs["probabilities.keys"]["data"], outputs["probabilities"]["data"])) == usual["probabilities"]
    assert outputs["top_k.label"]["data"] == [entry["label"] for entry in usual["top_k"]]
    assert outputs["top_k.probability"]["data"] == [entry["probability"] for entry in usual["top_k"]]


def test_v2_several_inputs_are_several_images_with_prefixed_outputs(kserve_v2):
    response = post(kserve_v2, V2, json={"inputs": [v2_input(SEVEN, "a"), v2_input(ONE, "b")]})
    assert response.status_code == 200, response.text
    outputs = {output["name"]: output["data"] for output in response.json()["outputs"]}
    assert outputs["a.label"] == ["7"] and outputs["b.label"] == ["1"]


@pytest.mark.parametrize("tensor, message", [
    (v2_input(BLANK), "blank"),
    (v2_input(SEVEN, topk=3), "topk"),
    ({"name": "image", "shape": [1], "datatype": "FP32", "data": [0.5]}, "BYTES"),
    ({"name": "image", "shape": [2], "datatype": "BYTES", "data": [SEVEN, ONE]}, "several inputs"),
])
def test_v2_bad_input_is_a_4xx_with_the_error_as_tensors(kserve_v2, tensor, message):
    response = post(kserve_v2, V2, json={"inputs": [tensor]})
    assert response.status_code == 400, response.text
    outputs = {output["name"]: output["data"] for output in response.json()["outputs"]}
    assert outputs["code"] == [400]
    assert message in outputs["message"][0].lower() or message in outputs["message"][0]


def test_no_worker_restarted_after_bad_input(kserve_v1, kserve_v2):
    for server, path, body in ((kserve_v1, V1, {"instances": [{"data": BLANK}]}),
                               (kserve_v2, V2, {"inputs": [v2_input(BLANK)]}),
                               (kserve_v1, V1, {"instances": []}), (kserve_v2, V2, {"inputs": []})):
        before = server.worker_pids("digits")
        assert post(server, path, json=body).status_code == 400
        assert server.worker_pids("digits") == before
