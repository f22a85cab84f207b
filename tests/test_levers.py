"""benchmarks/levers.py: the levers measured and not kept can be measured again.

The figures themselves are not asserted (the machine is noisy; README, "Levers"): these tests
check that the pieces behind them do what the report says they do, on the shipped models."""

from __future__ import annotations

import onnx
import pytest
import torch

from benchmarks.heldout import canvas_pngs, typeset_heldout
from benchmarks.levers import (
    HANDLER_DECODER, balanced_answer, channels_last_lever, decoder_lever, eager_network, inflate_lever, json_lever, label_changes,
    quantize_int8, quantize_onnx_int8, width_lever,
)
from handler.archive import write_onnx
from tests.conftest import typeset_inputs
from training.model import CaseMerged


@pytest.mark.parametrize("name", ["digits", "letters"])
def test_the_eager_network_is_the_shipped_model(shipped_models, name):
    scripted = torch.jit.load(str(shipped_models / name / "model.pt")).eval()
    eager = eager_network(scripted)
    assert isinstance(eager, CaseMerged) == (name == "letters")  # letters learned the cases apart
    inputs = typeset_inputs(name, shipped_models / name, 12)
    with torch.no_grad():
        assert float((eager(inputs) - scripted(inputs)).abs().max()) <= 1e-5


def test_the_int8_copy_is_torchscript_with_the_same_outputs_and_mostly_the_same_labels(shipped_models):
    folder = shipped_models / "letters"
    scripted = torch.jit.load(str(folder / "model.pt")).eval()
    inputs = typeset_inputs("letters", folder)
    int8 = quantize_int8(scripted, inputs)
    assert isinstance(int8, torch.jit.ScriptModule)
    with torch.no_grad():
        expected, got = scripted(inputs), int8(inputs)
    assert got.shape == expected.shape
    assert float((got.argmax(1) == expected.argmax(1)).float().mean()) >= 0.9


def test_onnx_runtimes_int8_copy_runs_int8_kernels_and_its_label_changes_are_counted(shipped_models, tmp_path):
    folder = shipped_models / "letters"
    scripted = torch.jit.load(str(folder / "model.pt")).eval()
    inputs = typeset_inputs("letters", folder)
    write_onnx(folder, tmp_path / "model.onnx")
    int8 = quantize_onnx_int8(tmp_path / "model.onnx", inputs.repeat(2, 1, 1, 1), tmp_path / "int8.onnx")
    operators = {node.op_type for node in onnx.load(str(tmp_path / "int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= operators  # QDQ: ONNX Runtime fuses them into int8 convolutions
    with torch.no_grad():
        expected = scripted(inputs)
    labels = expected[:, :26].argmax(1).numpy()
    figures = label_changes(scripted, {"onnxruntime": int8, "float": scripted}, inputs, labels, 26)
    assert figures["images"] == len(inputs) and figures["accuracy_float"] == 1.0  # the float model's own labels
    assert figures["int8 (float)"] == {"accuracy": 1.0, "labels_changed": 0, "labels_changed_share": 0.0}
    changed = figures["int8 (onnxruntime)"]
    assert changed["labels_changed"] == round((1.0 - changed["accuracy"]) * len(inputs))
    assert changed["labels_changed_share"] <= 0.1


def test_channels_last_and_the_decoders_are_timed(shipped_models):
    timings = channels_last_lever(shipped_models / "digits", [torch.randn(1, 1, 28, 28) for _ in range(3)])
    assert set(timings) == {"contiguous", "channels_last"} and all(ms > 0 for ms in timings.values())
    pngs = [png for png in canvas_pngs(typeset_heldout("digits", [str(d) for d in range(10)]).images, range(6)) if png]
    by_mode = decoder_lever(pngs)
    assert set(by_mode) == {"L", "RGBA"}  # the three canvas styles: two greyscale, one transparent
    assert all(figures["pillow"] > 0 and figures[HANDLER_DECODER] > 0 for figures in by_mode.values())
    inflated = inflate_lever(pngs)
    assert set(inflated) == {"L", "RGBA"} and all(any(name.startswith("zlib ") for name in f) for f in inflated.values())


def test_both_encoders_are_timed_on_a_whole_balanced_answer(shipped_models):
    png = canvas_pngs(typeset_heldout("balanced", ["A"]).images, range(1))[0]
    answer = balanced_answer(shipped_models, png)
    assert len(answer["probabilities"]) == 47
    timings = json_lever(answer)
    assert set(timings) == {"json.dumps", "orjson (handler.recognizer.to_json)"} and all(us > 0 for us in timings.values())


def test_narrower_networks_are_timed_with_fewer_parameters():
    figures = width_lever(outputs=10, widths=(32, 16))
    assert list(figures) == ["32", "16"] and all(f["ms_per_image"] > 0 for f in figures.values())
    assert figures["16"]["parameters"] < figures["32"]["parameters"] / 3  # most weights grow with width squared
