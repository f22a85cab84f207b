"""handler/forward.py: every backend answers what the TorchScript model answers.

``model.pt`` is the model that training exported and the model cards measured; a backend (the
TorchScript model frozen and optimized, or its ONNX export on ONNX Runtime) only changes how fast
it runs. These tests hold each backend to ``model.pt``'s logits and labels on real canvases, and
check the errors a misconfigured backend gives."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.heldout import canvas_pngs, typeset_heldout
from handler.archive import build_archive
from handler.forward import BACKENDS, MAX_ABS_DIFF, ONNX_FILE, BackendError, check_same, load_backend
from handler.inprocess import start_batch, unpack_archive, worker_context
from handler.recognizer import BACKEND_ENV, RecognizerHandler
from tests.conftest import serving_config, typeset_inputs

MODELS = ("digits", "letters", "balanced")


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory, shipped_models: Path) -> dict[str, Path]:
    """Each shipped model's folder as a worker unpacks it from the archive `make archive` builds."""
    root = tmp_path_factory.mktemp("forward")
    return {
        name: unpack_archive(build_archive(name, shipped_models, root / "store", serving_config(), root / "build"), root / name)
        for name in MODELS
    }


def test_every_archive_holds_the_onnx_export(unpacked):
    for name, folder in unpacked.items():
        assert (folder / ONNX_FILE).stat().st_size > 100_000, name
        assert (folder / "model.pt").is_file()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", MODELS)
def test_each_backend_gives_the_torchscript_models_logits_and_labels(unpacked, name, backend):
    folder = unpacked[name]
    model = torch.jit.load(str(folder / "model.pt")).eval()
    forward = load_backend(backend, torch.jit.load(str(folder / "model.pt")), folder, threads=1)
    inputs = typeset_inputs(name, folder, 48)
    with torch.no_grad():
        expected, got = model(inputs), forward(inputs)
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) <= MAX_ABS_DIFF
    assert torch.equal(got.argmax(dim=1), expected.argmax(dim=1))


def test_the_handler_answers_the_same_with_either_backend(unpacked, monkeypatch):
    folder = unpacked["letters"]
    pngs = [png for png in canvas_pngs(typeset_heldout("letters", [chr(65 + i) for i in range(26)]).images, range(26)) if png]
    answers = {}
    for backend in BACKENDS:
        monkeypatch.setenv(BACKEND_ENV, backend)
        context = worker_context(folder, "letters", {"handler": {"torch_threads": 1, "backend": "no such backend"}})
        handler = RecognizerHandler()
        handler.initialize(context)  # the variable wins over the (here unusable) setting
        assert handler.backend == backend
        start_batch(context, len(pngs))
        answers[backend] = [json.loads(body) for body in handler.handle([{"body": png} for png in pngs], context)]
    for torchscript, onnx in zip(answers["torchscript"], answers["onnxruntime"]):
        assert onnx["label"] == torchscript["label"] and onnx["accepted"] == torchscript["accepted"]
        assert onnx["confidence"] == pytest.approx(torchscript["confidence"], abs=1e-5)


def test_an_unknown_backend_is_refused_with_the_choices(unpacked):
    folder = unpacked["digits"]
    with pytest.raises(BackendError, match="unknown handler.backend 'tensorrt': choose one of torchscript, onnxruntime"):
        load_backend("tensorrt", torch.jit.load(str(folder / "model.pt")), folder, threads=1)


def test_a_missing_onnx_file_says_to_package_again(shipped_models):
    # models/<name> holds what training exported; model.onnx only exists in the archive
    with pytest.raises(BackendError, match=r"model.onnx is missing: package the model with handler.backend: onnxruntime \(make archive\)"):
        load_backend("onnxruntime", torch.jit.load(str(shipped_models / "digits" / "model.pt")), shipped_models / "digits", 1)


def test_a_backend_that_answers_differently_is_refused(unpacked):
    folder = unpacked["digits"]
    model = torch.jit.load(str(folder / "model.pt")).eval()
    inputs = torch.zeros(2, 1, 28, 28)
    check_same(lambda x: model(x) + MAX_ABS_DIFF / 2, model, inputs, "close enough")
    with pytest.raises(BackendError, match=r"off by one answers differently from model.pt \(logits differ by 1.00e\+00\)"):
        check_same(lambda x: model(x) + 1.0, model, inputs, "off by one")


def test_the_archive_is_refused_when_its_onnx_export_differs(tmp_path, shipped_models, monkeypatch):
    import handler.archive as archive

    monkeypatch.setattr(archive, "export_onnx", lambda model, size: onnx_of_another_model(shipped_models, size))
    with pytest.raises(BackendError, match=r"the ONNX export of .*digits/model.pt answers \(16, 27\) logits where model.pt answers \(16, 11\)"):
        build_archive("digits", shipped_models, tmp_path / "store", serving_config(), tmp_path / "build")
    assert not (tmp_path / "store" / "digits.mar").exists()


def onnx_of_another_model(shipped_models: Path, size: int) -> bytes:
    from handler.forward import export_onnx

    return export_onnx(torch.jit.load(str(shipped_models / "letters" / "model.pt")), size)


def test_an_archive_for_the_torchscript_backend_needs_no_onnx(shipped_models, tmp_path):
    config = serving_config()
    config["defaults"]["handler"]["backend"] = "torchscript"
    archive = build_archive("digits", shipped_models, tmp_path / "store", config, tmp_path / "build")
    folder = unpack_archive(archive, tmp_path / "digits")
    assert not (folder / ONNX_FILE).exists()
    load_backend("torchscript", torch.jit.load(str(folder / "model.pt")), folder, threads=1)


def test_make_archive_refuses_an_unknown_backend_before_packaging(shipped_models, tmp_path):
    config = serving_config()
    config["models"]["digits"] = {"handler": {"backend": "onnxrt"}}
    with pytest.raises(BackendError, match="digits: unknown handler.backend 'onnxrt' in the serving configuration: "
                                           "choose one of torchscript, onnxruntime"):
        build_archive("digits", shipped_models, tmp_path / "store", config, tmp_path / "build")


def test_exporting_without_the_onnx_package_says_what_to_install(shipped_models, monkeypatch):
    from handler.forward import export_onnx

    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    with pytest.raises(BackendError, match="needs the onnx package: pip install -r requirements.txt, "
                                           "or set handler.backend: torchscript"):
        export_onnx(torch.jit.load(str(shipped_models / "digits" / "model.pt")), 28)


def test_a_model_file_that_is_not_torchscript_is_named_in_the_error(shipped_models, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(shipped_models / "digits", models / "digits")
    (models / "digits" / "model.pt").write_bytes(b"not a TorchScript archive")
    with pytest.raises(BackendError, match=r"models/digits/model.pt is not a TorchScript model \(.*\): export it again"):
        build_archive("digits", models, tmp_path / "store", serving_config(), tmp_path / "build")
