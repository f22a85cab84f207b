"""client/catalog.py and client/messages.py without a server: how management API answers and
errors are shown."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from client.api import Endpoints, ServingError
from client.catalog import (
    ModelVersion,
    archive_name,
    parse_choice,
    pick,
    store_archives,
    table_rows,
    version_choices,
    worker_summary,
)
from client.messages import explain


def description(version: str, *states: str) -> dict:
    """One entry of ``GET /models/letters/all``, as TorchServe 0.12 answers it."""
    return {
        "modelName": "letters", "modelVersion": version, "modelUrl": f"letters-{version}.mar",
        "runtime": "python", "minWorkers": 2, "maxWorkers": 2, "batchSize": 1,
        "workers": [{"id": str(9000 + i), "status": state, "pid": 100 + i} for i, state in enumerate(states)],
    }


VERSIONS = [
    ModelVersion.from_description(description("1.0", "READY", "READY"), default="2.0"),
    ModelVersion.from_description(description("2.0", "READY", "UNLOADING", "READY"), default="2.0"),
]


def test_a_description_becomes_a_model_version():
    first, second = VERSIONS
    assert (first.name, first.version, first.is_default, first.archive) == ("letters", "1.0", False, "letters-1.0.mar")
    assert second.is_default and second.worker_states == ("READY", "UNLOADING", "READY")


def test_pickers_show_every_version_and_mark_the_default():
    assert version_choices(VERSIONS) == [
        ("letters 1.0", "letters/1.0"),
        ("letters 2.0 (default)", "letters/2.0"),
    ]
    assert parse_choice("letters/2.0") == ("letters", "2.0")
    with pytest.raises(ValueError, match="choose a model version"):
        parse_choice("")


def test_a_refresh_keeps_the_choice_while_it_is_registered():
    assert pick(VERSIONS, "letters/1.0", preferred_model="digits") == "letters/1.0"
    assert pick(VERSIONS, "digits/1.0", preferred_model="letters") == "letters/2.0"  # its default
    assert pick(VERSIONS, None, preferred_model="digits") == "letters/1.0"  # first registered
    assert pick([], "letters/1.0", preferred_model="letters") is None


def test_a_version_gone_from_the_picker_gives_way_to_its_models_default_version():
    digits = ModelVersion.from_description({**description("1.0", "READY"), "modelName": "digits"}, default="1.0")
    versions = [digits, *VERSIONS]
    assert pick(versions, "letters/3.0", preferred_model="digits") == "letters/2.0"  # not digits/1.0
    assert pick(versions, "balanced/1.0", preferred_model="digits") == "digits/1.0"  # no balanced left


def test_the_table_counts_workers_by_status():
    assert worker_summary(("READY", "UNLOADING", "READY")) == "2 READY, 1 UNLOADING"
    assert worker_summary(()) == "none"
    assert table_rows(VERSIONS)[1] == [
        "letters", "2.0", "yes", 3, "2 READY, 1 UNLOADING", 2, 2, "letters-2.0.mar"
    ]


@pytest.mark.parametrize(
    "archive, message",
    [
        ("nosuch.mar", "does not exist (make archive builds the archives)"),
        ("https://example.com/evil.mar", "is not in the model store"),
        ("../digits.mar", "is not in the model store"),
        ("digits.zip", "is not a model archive (.mar)"),
    ],
)
def test_only_archives_that_are_in_the_model_store_can_be_registered(tmp_path, archive, message):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "digits.mar").write_bytes(b"PK")
    (tmp_path / "digits.mar").write_bytes(b"PK")
    assert archive_name("digits.mar", tmp_path / "store") == "digits.mar"
    assert archive_name(str(tmp_path / "store" / "digits.mar"), tmp_path / "store") == "digits.mar"
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        archive_name(archive, tmp_path / "store")


def test_only_archives_of_the_model_store_are_offered(tmp_path):
    for name in ("letters.mar", "digits.mar", "notes.txt"):
        (tmp_path / name).write_text("")
    assert store_archives(tmp_path) == ["digits.mar", "letters.mar"]
    assert store_archives(None) == []


ENDPOINTS = Endpoints(
    inference="http://127.0.0.1:8080", management="http://127.0.0.1:8081",
    metrics="http://127.0.0.1:8082", key_file=Path(".run/key_file.json"),
)


def connection_error(url: str) -> requests.ConnectionError:
    return requests.ConnectionError("refused", request=requests.Request("GET", url).prepare())


@pytest.mark.parametrize(
    "error, message",
    [
        (connection_error("http://127.0.0.1:8081/models?limit=1000"),
         "cannot reach TorchServe at http://127.0.0.1:8081: is it running? (make serve)"),
        (ServingError(400, "InvalidKeyException", "Token Authorization failed."),
         "TorchServe refused the key from .run/key_file.json, even after re-reading it: "
         "is that the key file of this server? (python -m client keys renews expired keys)"),
        (ServingError(404, "ModelNotFoundException", "Model not found: nosuch"),
         "unknown model or version: Model not found: nosuch "
         "(python -m client models list shows what is registered)"),
        (ServingError(400, "BlankImageError", "the drawing is blank: draw a character"),
         "the drawing is blank: draw a character"),
        (ServingError(409, "ConflictStatusException", "Model version 1.0 for model digits has already been registered."),
         "Model version 1.0 for model digits has already been registered: unregister that version "
         "first, or register an archive of another version (a model exported with another version "
         "in its model.json)"),
        (ServingError(503, "ServiceUnavailableException", "Model digits has no worker to serve inference request."),
         "TorchServe could not do it: Model digits has no worker to serve inference request. (HTTP 503)"),
        (FileNotFoundError("no key file at .run/key_file.json: is TorchServe running? (make serve)"),
         "no key file at .run/key_file.json: is TorchServe running? (make serve)"),
        (ServingError(413, "Request Entity Too Large", ""),  # TorchServe's own refusal has no body
         "the request is larger than TorchServe accepts (max_request_size, 6 MiB in config/config.properties; "
         "an image travels base64-encoded, a third larger): send an image of at most 4 MiB, or a smaller PNG or JPEG of it"),
        (ServingError(500, "Internal Server Error", ""),
         "TorchServe could not do it: Internal Server Error (HTTP 500)"),
    ],
    ids=["server-down", "refused-key", "unknown-model", "handler-4xx", "conflict", "no-worker", "no-key-file",
         "request-too-large", "empty-body"],
)
def test_errors_become_one_sentence(error, message):
    assert explain(error, ENDPOINTS) == message
