"""The forward pass as the handler runs it: the archive's TorchScript model, made ready for
inference, or the same network exported to ONNX and run by ONNX Runtime.

``model.pt`` (TorchScript, float32) is every archive's model file, the one training exported and
the model cards measured. ``handler.backend`` in ``config/serving.yaml`` says what runs it:

- ``torchscript``: ``model.pt`` frozen and optimized for inference (``torch.jit.freeze`` inlines
  the weights as constants; ``torch.jit.optimize_for_inference`` folds each BatchNorm into its
  convolution and picks oneDNN kernels; PyTorch's "TorchScript" documentation).
- ``onnxruntime``: ``model.onnx``, which ``make archive`` exports from ``model.pt``
  (:func:`export_onnx`) and checks against it, run by ONNX Runtime's CPU execution provider.
  On this project's 28x28 glyphs it runs a batch of one in about half the time (README,
  "Benchmarks").

Either way a backend is a callable from the model input (float32 ``[N, 1, size, size]``,
standardized) to the logits (float32 ``[N, outputs]``), and :func:`check_same` holds it to the
TorchScript model's outputs when the worker starts, so a backend can never answer differently
from the model that was evaluated.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

BACKENDS = ("torchscript", "onnxruntime")
DEFAULT_BACKEND = "torchscript"  # for settings without handler.backend: needs nothing but torch
ONNX_FILE = "model.onnx"
INPUT, OUTPUT = "glyphs", "logits"  # the ONNX graph's input and output names
ONNX_OPSET = 17
MAX_ABS_DIFF = 1e-4  # largest logit difference from model.pt a backend may show (float32 rounding)

Forward = Callable[[torch.Tensor], torch.Tensor]


class BackendError(RuntimeError):
    """A backend cannot run, or its outputs differ from the TorchScript model's."""


def optimized_torchscript(model: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """``model`` (in eval mode) frozen and optimized for inference on this CPU."""
    return torch.jit.optimize_for_inference(torch.jit.freeze(model.eval()))


def export_onnx(model: torch.jit.ScriptModule, size: int) -> bytes:
    """The ONNX graph of a TorchScript recognizer (input ``glyphs`` float32 ``[N, 1, size,
    size]``, output ``logits``; any batch size), by PyTorch's TorchScript-based exporter
    (``torch.onnx.export(dynamo=False)``). Raises :class:`BackendError` without the ``onnx``
    package."""
    try:
        import onnx  # noqa: F401  (the exporter's own error would not say where it comes from)
    except ImportError as error:
        raise BackendError(
            "exporting model.onnx for handler.backend onnxruntime needs the onnx package: "
            "pip install -r requirements.txt, or set handler.backend: torchscript"
        ) from error
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The torch.export-based exporter (the default since PyTorch 2.9) cannot take a
        # ScriptModule, so this is the TorchScript-based one, which warns that it is deprecated.
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        torch.onnx.export(
            model.eval(), (torch.zeros(1, 1, size, size),), buffer, input_names=[INPUT], output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=ONNX_OPSET, dynamo=False,
        )
    return buffer.getvalue()


class OnnxRuntimeModel:
    """An ONNX recognizer run by ONNX Runtime on ``threads`` intra-op threads, called like the
    TorchScript model. Raises :class:`BackendError` when ``onnxruntime`` is not installed or the
    file is missing."""

    def __init__(self, path: Path, threads: int):
        try:
            import onnxruntime
        except ImportError as error:
            raise BackendError(
                "handler.backend is onnxruntime but the onnxruntime package is not installed: "
                "pip install -r requirements-serving.txt, or set handler.backend: torchscript"
            ) from error
        if not path.is_file():
            raise BackendError(f"{path} is missing: package the model with handler.backend: onnxruntime (make archive)")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        glyphs = np.ascontiguousarray(inputs.detach().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: glyphs})[0])


def known_backend(name: str, where: str = "") -> str:
    """``name`` when it is one of :data:`BACKENDS`; else raises :class:`BackendError` naming the
    choices (``where`` says where the name was read, e.g. " in the serving configuration")."""
    if name not in BACKENDS:
        raise BackendError(f"unknown handler.backend {name!r}{where}: choose one of {', '.join(BACKENDS)}")
    return name


def load_backend(name: str, model: torch.jit.ScriptModule, model_dir: Path, threads: int) -> Forward:
    """The forward pass of backend ``name`` (one of :data:`BACKENDS`) for the archive unpacked in
    ``model_dir`` whose TorchScript model is ``model``. Raises :class:`BackendError` for an
    unknown name, or when the backend cannot run."""
    if known_backend(name) == "torchscript":
        return optimized_torchscript(model)
    return OnnxRuntimeModel(model_dir / ONNX_FILE, threads)


def check_same(backend: Forward, model: torch.jit.ScriptModule, inputs: torch.Tensor, what: str) -> None:
    """Raise :class:`BackendError` when ``backend``'s logits on ``inputs`` differ from
    ``model``'s in shape or by more than :data:`MAX_ABS_DIFF` (``what`` names the backend in the
    message), or when ``model``'s own are not finite."""
    with torch.no_grad():  # not inference_mode: its tensors must not meet a model the ONNX export traced
        got, expected = backend(inputs), model(inputs)
    if not bool(torch.isfinite(expected).all()):
        raise BackendError("model.pt itself answers NaN or infinite logits: export the model again")
    if got.shape != expected.shape:
        raise BackendError(f"{what} answers {tuple(got.shape)} logits where model.pt answers {tuple(expected.shape)}")
    difference = float((got - expected).abs().max())
    if not difference <= MAX_ABS_DIFF:  # NaN too
        raise BackendError(f"{what} answers differently from model.pt (logits differ by {difference:.2e})")
