"""The performance levers not kept, and the alternatives to those kept, measured again by one command.

    python -m benchmarks.levers --data-dir ../shared/datasets --out build/levers.json

``make bench`` measures what the service runs (and the forward pass of each ``handler.backend``);
this measures, in process on one thread, what it does not run and why (and what the handler's
decoding costs against the decoders it does not use):

- **channels-last**: the forward pass of one drawing by ``model.pt`` frozen and optimized for
  inference (the ``torchscript`` backend) with its input in the default layout and in
  ``torch.channels_last``;
- **int8**: post-training static quantization in PyTorch's FX graph mode (the ``x86`` backend's
  default qconfig: per-channel int8 weights, histogram-observed uint8 activations; PyTorch's
  "Quantization" documentation), calibrated on validation scans and the validation writers' pen
  characters, then traced and frozen as TorchScript (torch.ao's FX mode is deprecated in favour of
  torchao, which this project does not depend on): its forward pass against the float
  backends', its test accuracy against ``model.pt``'s, and the share of labels it changes on the
  test scans and the test writers' pen characters (the issue allows at most 0.1%); and the same
  for ONNX Runtime's own post-training static quantization of ``model.onnx``
  (``onnxruntime.quantization.quantize_static``: QDQ format, per-channel int8 weights, uint8
  activations calibrated by MinMax on the same images; ONNX Runtime's "Quantize ONNX models"
  documentation), whose int8 kernels use VNNI instructions where the CPU has them (this machine's does);
- **a narrower network**: the forward pass of one drawing on ONNX Runtime by :class:`GlyphNet`
  (``balanced``'s 47 outputs) at the shipped width and narrower ones, untrained: what the
  forward pass would cost before any retraining, whose accuracy this does not measure;
- **JSON**: encoding a ``balanced`` answer (47 probabilities) with the standard library's
  ``json.dumps`` against orjson (what the handler uses, :func:`handler.recognizer.to_json`);
- **decoders**: PNG decoding of held-out canvases, by image mode, by Pillow alone, by the
  handler's ``decode_image`` (zlib-ng and libspng for plain PNGs, :mod:`handler.png`) and by
  the other decoders found installed (OpenCV, imagecodecs; neither is a dependency of the
  project: ``pip install opencv-python-headless imagecodecs`` into the virtualenv to compare
  them); and the inflation of their image data alone by the system's zlib (which Pillow links)
  and by zlib-ng (which the handler uses): where a PNG decoder's time goes.

On a fresh clone it first normalizes the datasets and draws the pen data (about 5 minutes, then
cached in ``.cache/``).
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: the data preparation's progress bars

import argparse
import io
import json
import shlex
import sys
import tempfile
import warnings
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from zlib_ng import zlib_ng

from benchmarks.handler_cost import per_item_ms
from benchmarks.heldout import canvas_pngs, load_heldout
from benchmarks.run import load_conditions, machine, model_files
from handler.archive import write_onnx
from handler.forward import BACKENDS, INPUT, ONNX_FILE, OnnxRuntimeModel, export_onnx, load_backend
from handler.glyph import GlyphSettings, decode_image
from handler.png import plain_png
from handler.inprocess import start_batch, worker_context
from handler.recognizer import RecognizerHandler, to_json
from training.model import CaseMerged, GlyphNet
from training.prepare import prepare
from training.train import load_config, pen_characters

PROJECT = Path(__file__).resolve().parent.parent
MODELS = ("digits", "letters", "balanced")
HANDLER_DECODER = "handler (decode_image: zlib-ng and libspng for plain PNGs)"
CALIBRATION = 2000  # validation scans, and as many validation pen characters, to calibrate int8


def median_ms(work: Callable[[Any], Any], items: Sequence[Any], repeats: int = 7) -> float:
    """The median pass's ms per item of ``work`` over ``items`` (:func:`benchmarks.handler_cost.per_item_ms`)."""
    return per_item_ms(work, items, repeats)["ms_per_image"]


def eager_network(scripted: torch.jit.ScriptModule) -> torch.nn.Module:
    """The :class:`GlyphNet` (in a :class:`CaseMerged` for case-aware letters) holding
    ``scripted``'s weights, in eval mode: FX quantization needs the Python module."""
    state = scripted.state_dict()
    prefix = "net." if any(key.startswith("net.") for key in state) else ""
    net = GlyphNet(state[f"{prefix}classifier.5.weight"].shape[0], width=state[f"{prefix}features.0.weight"].shape[0])
    net.load_state_dict({key[len(prefix):]: value for key, value in state.items()})
    return (CaseMerged(net) if prefix else net).eval()


def quantize_int8(scripted: torch.jit.ScriptModule, calibration: torch.Tensor) -> torch.jit.ScriptModule:
    """``scripted``'s network quantized to int8 after observing ``calibration`` (model inputs
    float32 ``[N, 1, 28, 28]``), traced and frozen. Only the :class:`GlyphNet` is quantized: a
    :class:`CaseMerged` letters model merges the cases of its dequantized logits in float."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    model = eager_network(scripted)
    net = model.net if isinstance(model, CaseMerged) else model
    with warnings.catch_warnings():  # torch.ao's FX quantization warns that it moves to torchao
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        observed = prepare_fx(net, get_default_qconfig_mapping("x86"), (calibration[:1],))
        with torch.no_grad():
            for chunk in calibration.split(128):
                observed(chunk)
        quantized = convert_fx(observed)
    wrapped = CaseMerged(quantized, model.letters).eval() if isinstance(model, CaseMerged) else quantized
    with torch.no_grad():
        return torch.jit.freeze(torch.jit.trace(wrapped, calibration[:1]))


class _Batches:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over model inputs: one feed dict per call
    of ``get_next``, then ``None``. Batches of one size (its histogram calibrators stack them)."""

    def __init__(self, inputs: np.ndarray, size: int = 50):
        self.feeds = iter([{INPUT: inputs[i : i + size]} for i in range(0, len(inputs) - size + 1, size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def quantize_onnx_int8(onnx_path: Path, calibration: torch.Tensor, out: Path, threads: int = 1) -> OnnxRuntimeModel:
    """The ONNX model at ``onnx_path`` quantized by ONNX Runtime after observing ``calibration``
    (model inputs float32 ``[N, 1, 28, 28]``, N >= 50), written to ``out`` and loaded on
    ``threads`` intra-op threads: ``quantize_static`` in QDQ format with per-channel int8
    weights and uint8 activations (MinMax calibration), after ``quant_pre_process`` (shape
    inference and graph optimization, which folds the classifier's BatchNorm into its Gemm)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(onnx_path), str(prepared))
        quantize_static(
            str(prepared), str(out), _Batches(calibration.numpy()), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
        )
    return OnnxRuntimeModel(out, threads)


def _inputs(glyphs: np.ndarray, mean: float, std: float) -> torch.Tensor:
    return ((torch.from_numpy(glyphs).float() / 255.0 - mean) / std).unsqueeze(1)


def _labels(model: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, classes: int) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(chunk)[:, :classes].argmax(dim=1) for chunk in inputs.split(256)]).numpy()


def int8_lever(name: str, model_dir: Path, data_dir: Path, threads: int = 1) -> dict[str, Any]:
    """The int8 figures of one shipped model (see the module docstring)."""
    preprocessing = json.loads((model_dir / "preprocessing.json").read_text())
    mean, std = preprocessing["mean"], preprocessing["std"]
    config = load_config(name)
    data = prepare(name, data_dir, GlyphSettings.from_dict(preprocessing["glyph"]), pen_variants=config["pen_variants"],
                   cased_letters=name == "letters" and config["case_aware"])
    rng = np.random.default_rng(0)
    parts = [data.val.images[rng.choice(len(data.val), min(CALIBRATION, len(data.val)), replace=False)]]
    pen_val = pen_characters(data, name, "val")
    if pen_val is not None:
        parts.append(pen_val.images[rng.choice(len(pen_val), min(CALIBRATION, len(pen_val)), replace=False)])
    scripted = torch.jit.load(str(model_dir / "model.pt")).eval()
    calibration = _inputs(np.concatenate(parts), mean, std)
    classes = len(json.loads((model_dir / "index_to_name.json").read_text()))
    result: dict[str, Any] = {"calibration_images": len(calibration)}
    scans = _inputs(data.test.images[:200], mean, std)
    one = [scans[i : i + 1] for i in range(len(scans))]
    with tempfile.TemporaryDirectory() as archive:  # model.onnx, as make archive exports it
        write_onnx(model_dir, Path(archive) / ONNX_FILE)
        int8 = {
            "torchscript": quantize_int8(scripted, calibration),
            "onnxruntime": quantize_onnx_int8(Path(archive) / ONNX_FILE, calibration, Path(archive) / "int8.onnx", threads),
        }
        for part, split in (("test_scans", data.test), ("pen_test", pen_characters(data, name, "test"))):
            if split is not None:
                result[part] = label_changes(scripted, int8, _inputs(split.images, mean, std), split.labels, classes)
        runs = {
            **{f"int8 ({way})": model for way, model in int8.items()},
            **{backend: load_backend(backend, torch.jit.load(str(model_dir / "model.pt")), Path(archive), threads)
               for backend in BACKENDS},
        }
        with torch.inference_mode():
            result["forward_ms"] = {way: median_ms(run, one) for way, run in runs.items()}
    return result


def label_changes(
    scripted: torch.jit.ScriptModule, int8: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    inputs: torch.Tensor, labels: np.ndarray, classes: int,
) -> dict[str, Any]:
    """The float model's accuracy on ``inputs`` (true ``labels``) and, per int8 copy, its
    accuracy and how many of the float model's labels it changes."""
    float_labels = _labels(scripted, inputs, classes)
    figures: dict[str, Any] = {"images": len(labels), "accuracy_float": round(float((float_labels == labels).mean()), 5)}
    for way, model in int8.items():
        int8_labels = _labels(model, inputs, classes)
        figures[f"int8 ({way})"] = {
            "accuracy": round(float((int8_labels == labels).mean()), 5),
            "labels_changed": int((float_labels != int8_labels).sum()),
            "labels_changed_share": round(float((float_labels != int8_labels).mean()), 5),
        }
    return figures


def channels_last_lever(model_dir: Path, inputs: list[torch.Tensor]) -> dict[str, float]:
    """The ``torchscript`` backend's forward pass with default and channels-last inputs (ms)."""
    optimized = load_backend("torchscript", torch.jit.load(str(model_dir / "model.pt")), model_dir, threads=1)
    last = [glyph.contiguous(memory_format=torch.channels_last) for glyph in inputs]
    with torch.inference_mode():
        return {"contiguous": median_ms(optimized, inputs), "channels_last": median_ms(optimized, last)}


WIDTHS = (32, 24, 16)  # GlyphNet's first-layer channels: the shipped width (config/recognizers.yaml) and narrower


def width_lever(outputs: int = 47, widths: Sequence[int] = WIDTHS, threads: int = 1) -> dict[str, Any]:
    """Per :class:`GlyphNet` width: its parameters and the median ms of one drawing's forward
    pass on ONNX Runtime (``threads`` intra-op threads), with untrained weights: speed only."""
    drawings = [torch.randn(1, 1, 28, 28) for _ in range(100)]
    figures = {}
    with tempfile.TemporaryDirectory() as scratch:
        for width in widths:
            network = torch.jit.script(GlyphNet(outputs, width=width).eval())
            path = Path(scratch) / f"width{width}.onnx"
            path.write_bytes(export_onnx(network, 28))
            figures[str(width)] = {"parameters": sum(p.numel() for p in network.parameters()),
                                   "ms_per_image": median_ms(OnnxRuntimeModel(path, threads), drawings)}
    return figures


def json_lever(answer: dict[str, Any]) -> dict[str, float]:
    """Microseconds to encode ``answer`` by the standard library and by the handler's encoder."""
    encoders = {"json.dumps": json.dumps, "orjson (handler.recognizer.to_json)": to_json}
    return {name: round(median_ms(encode, [answer] * 1000) * 1000.0, 2) for name, encode in encoders.items()}


def balanced_answer(models_dir: Path, png: bytes) -> dict[str, Any]:
    """The handler's answer to ``png`` by the shipped ``balanced`` model (the longest answer)."""
    handler = RecognizerHandler()
    context = worker_context(models_dir / "balanced", "balanced", {"handler": {"torch_threads": 1, "backend": "torchscript"}})
    handler.initialize(context)
    start_batch(context, 1)
    return json.loads(handler.handle([{"body": png}], context)[0])


def pillow_decode(png: bytes) -> Image.Image:
    """``png`` decoded by Pillow alone (how the handler decoded every image before handler/png.py)."""
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def decoders() -> dict[str, Callable[[bytes], Any]]:
    """Pillow alone, the handler's :func:`handler.glyph.decode_image` (zlib-ng and libspng for
    plain PNGs, :mod:`handler.png`) and each other PNG decoder that is installed."""
    found: dict[str, Callable[[bytes], Any]] = {"pillow": pillow_decode, HANDLER_DECODER: decode_image}
    try:
        import cv2

        found[f"opencv {cv2.__version__}"] = lambda png: cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    except ImportError:
        pass
    try:
        import imagecodecs

        found[f"imagecodecs {imagecodecs.__version__} (libpng)"] = imagecodecs.png_decode
    except ImportError:
        pass
    return found


def by_mode(canvases: list[bytes]) -> dict[str, list[bytes]]:
    """The canvases grouped by their image mode (``L``, ``RGBA``)."""
    groups: dict[str, list[bytes]] = {}
    for png in canvases:
        groups.setdefault(Image.open(io.BytesIO(png)).mode, []).append(png)
    return groups


def decoder_lever(canvases: list[bytes]) -> dict[str, dict[str, float]]:
    """ms per canvas by each decoder of :func:`decoders`, per image mode."""
    found = decoders()
    return {mode: {name: median_ms(decode, pngs) for name, decode in found.items()} for mode, pngs in by_mode(canvases).items()}


def inflaters() -> dict[str, Callable[[bytes], bytes]]:
    """zlib as Python and Pillow link it (the system's), and zlib-ng as the handler uses it."""
    return {f"zlib {zlib.ZLIB_RUNTIME_VERSION}": zlib.decompress, f"zlib-ng {zlib_ng.ZLIBNG_VERSION}": zlib_ng.decompress}


def inflate_lever(canvases: list[bytes]) -> dict[str, dict[str, float]]:
    """ms per canvas to inflate its image data alone (the first half of decoding a PNG, before
    the rows are unfiltered; canvases are plain PNGs, :func:`handler.png.plain_png`) by each of
    :func:`inflaters`, per image mode."""
    found = inflaters()
    return {
        mode: {name: median_ms(inflate, [plain_png(png).stream for png in pngs]) for name, inflate in found.items()}
        for mode, pngs in by_mode(canvases).items()
    }


def run(models_dir: Path, data_dir: Path) -> dict[str, Any]:
    """Every lever of the module docstring, with what they were measured on."""
    torch.set_num_threads(1)
    digits = load_heldout("digits", data_dir)
    if digits is None:
        raise SystemExit(f"error: no test data under {data_dir}: pass --data-dir (e.g. ../shared/datasets)")
    canvases = [png for png in canvas_pngs(digits.images, range(300)) if png]
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, "-m", "benchmarks.levers", *sys.argv[1:]]),
        "machine": machine(),
        "models": model_files(models_dir),
        "conditions_at_start": load_conditions(),
        "torch_threads": 1,
        "decoders_ms": decoder_lever(canvases),
        "inflate_ms": inflate_lever(canvases),
        "json_us": json_lever(balanced_answer(models_dir, canvases[0])),
        "channels_last_ms": channels_last_lever(models_dir / "digits", [torch.randn(1, 1, 28, 28) for _ in range(100)]),
        "int8": {name: int8_lever(name, models_dir / name, data_dir) for name in MODELS},
        "width_forward_ms": width_lever(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=PROJECT / "models")
    parser.add_argument("--data-dir", type=Path, required=True, help="data root with the test splits and pen data")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON (else print them)")
    args = parser.parse_args(argv)
    figures = json.dumps(run(args.models_dir, args.data_dir.resolve()), indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(figures + "\n")
    print(figures)


if __name__ == "__main__":
    main()
