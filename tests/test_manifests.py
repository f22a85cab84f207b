"""The cluster manifests under deploy/, validated offline: built-in kinds against the Kubernetes
schemas that ``kubernetes-validate`` ships (strict: unknown fields are errors), KServe's
InferenceServices against KServe's CRD schema in ``SCHEMAS_DIR/kserve/`` (``make test`` passes
``../shared/schemas``), and against what the rest of the project says (image, ports, memory)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from xml.etree import ElementTree

import jsonschema
import kubernetes_validate
import pytest
import yaml

from handler.bundle import CONTAINER_HOME, CONTAINER_SETTINGS
from tests.conftest import PROJECT

KUBERNETES = sorted((PROJECT / "deploy" / "kubernetes").glob("*.yaml"))
KSERVE = sorted((PROJECT / "deploy" / "kserve").glob("*.yaml"))
KUBERNETES_VERSION = "1.33"  # a release every maintained managed service offers
SCHEMAS_DIR = Path(os.environ.get("SCHEMAS_DIR") or PROJECT.parent / "shared" / "schemas")
INFERENCE_SERVICE_SCHEMA = SCHEMAS_DIR / "kserve" / "inferenceservice_v1beta1.json"


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest(kind: str) -> dict:
    (found,) = [doc for path in KUBERNETES for doc in documents(path) if doc["kind"] == kind]
    return found


@pytest.mark.parametrize("path", KUBERNETES, ids=lambda path: path.name)
def test_builtin_kinds_are_valid_kubernetes(path):
    for document in documents(path):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_deployment_service_and_autoscaler_are_all_there():
    assert {doc["kind"] for path in KUBERNETES for doc in documents(path)} == {
        "Deployment", "Service", "HorizontalPodAutoscaler"}


@pytest.mark.parametrize("path", KSERVE, ids=lambda path: path.name)
def test_inference_services_are_valid_for_kserve(path):
    if not INFERENCE_SERVICE_SCHEMA.is_file():
        pytest.skip(f"no KServe schema at {INFERENCE_SERVICE_SCHEMA} (set SCHEMAS_DIR to shared/schemas)")
    schema = json.loads(INFERENCE_SERVICE_SCHEMA.read_text())
    for document in documents(path):
        jsonschema.validate(document, schema)
        assert document["apiVersion"] == "serving.kserve.io/v1beta1" and document["kind"] == "InferenceService"


def test_the_kserve_schema_catches_a_misspelt_field():
    """The schema is strict enough to be worth checking against."""
    if not INFERENCE_SERVICE_SCHEMA.is_file():
        pytest.skip(f"no KServe schema at {INFERENCE_SERVICE_SCHEMA} (set SCHEMAS_DIR to shared/schemas)")
    schema = json.loads(INFERENCE_SERVICE_SCHEMA.read_text())
    (document,) = documents(KSERVE[0])
    model = document["spec"]["predictor"]["model"]
    model["storageURI"] = model.pop("storageUri")
    with pytest.raises(jsonschema.ValidationError, match="storageURI"):
        jsonschema.validate(document, schema)


def test_there_is_an_inference_service_per_protocol():
    protocols = sorted(doc["spec"]["predictor"]["model"]["protocolVersion"] for path in KSERVE for doc in documents(path))
    assert protocols == ["v1", "v2"]
    for path in KSERVE:
        (document,) = documents(path)
        assert document["spec"]["predictor"]["model"]["modelFormat"]["name"] == "pytorch"


def test_the_pods_ports_and_probes_are_the_images():
    container = manifest("Deployment")["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert f":{ports['inference']}" in CONTAINER_SETTINGS["inference_address"]
    assert f":{ports['metrics']}" in CONTAINER_SETTINGS["metrics_address"]
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["exec"]["command"] == ["python", "-m", "client.health", "--run-dir", CONTAINER_HOME]
    assert container["livenessProbe"]["httpGet"]["port"] == "metrics"  # no key needed there


def mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_memory_requests_cover_the_measured_rss():
    """``make bench``'s RSS after load (benchmarks/results/latest.json, MiB): the JVM plus every
    worker the three models start."""
    rss = json.loads((PROJECT / "benchmarks" / "results" / "latest.json").read_text())["rss_mb"]
    measured = rss["jvm"] + sum(sum(rss["workers"][model]) for model in ("digits", "letters", "balanced"))
    resources = manifest("Deployment")["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert measured <= mebibytes(resources["requests"]["memory"]) < 1.1 * measured
    assert mebibytes(resources["limits"]["memory"]) >= 1.3 * measured
    for path in KSERVE:
        (document,) = documents(path)
        assert mebibytes(document["spec"]["predictor"]["model"]["resources"]["requests"]["memory"]) >= measured


def test_the_containers_log_configuration_has_the_levels_of_make_serves():
    """deploy/log4j2-stdout.xml sends TorchServe's logs to stdout but filters them as
    config/log4j2.xml does: the same loggers at the same levels, with the same filters."""

    def levels(path: Path) -> dict[str, tuple]:
        loggers = ElementTree.parse(path).getroot().find("Loggers")
        return {logger.get("name", "root"): (logger.get("level"), [f.attrib for f in logger if f.tag.endswith("Filter")])
                for logger in loggers}

    assert levels(PROJECT / "deploy" / "log4j2-stdout.xml") == levels(PROJECT / "config" / "log4j2.xml")
