"""TorchServe handler of the handwriting recognizers (digits, letters, balanced).

One handler serves the three models: everything model-specific is read from the archive
(``model.pt``, ``index_to_name.json``, ``preprocessing.json``, ``model.json``) and from the
``handler:`` section of its ``model-config.yaml``. Each request is normalized by
:mod:`handler.glyph`, the code that prepared the training data, so the model sees drawings the way
it saw its training set.

A request with bad input (not an image, blank, too large, broken JSON or base64, ...) gets its own
4xx and a JSON body ``{"code", "type", "message"}``; the other requests of its batch are answered
normally. The archive stores this file twice: top level as ``recognizer.py`` (TorchServe's entry
point, which must define exactly one class) and inside the ``handler/`` package with the modules it
imports.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import sys
import time
from dataclasses import replace
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import orjson
import torch
from PIL import Image, ImageDraw
from ts.context import Context
from ts.handler_utils.timer import timed
from ts.service import Service
from ts.torch_handler.base_handler import BaseHandler

from handler import START_FAILURE, envelope, text
from handler.explain import METHOD, STRIDE, WINDOW, explain, glyph_frame
from handler.forward import DEFAULT_BACKEND, check_same, load_backend
from handler.confidence import NO_CALIBRATION, accepted, answered_probabilities, character_probability, ranking
from handler.glyph import GlyphSettings, ImageLimits, InputError, canvas_ink, canvas_to_glyph, decode_image, ink_map
from handler.payload import TEXT, Batch, Request, parse_request
from handler.worker import worker_log_level

logger = logging.getLogger(__name__)

THREADS_ENV = "RECOGNIZER_TORCH_THREADS"  # overrides handler.torch_threads without re-archiving
BACKEND_ENV = "RECOGNIZER_BACKEND"  # overrides handler.backend without re-archiving
DEFAULT_TOP_K = 5
DEFAULT_MAX_CHARACTERS = 32  # mode=text: characters per request (handler.max_characters)
JSON_TYPE = "application/json"
# A request's X-Correlation-Id is echoed on its answer, so that a client can check that the answer
# it reads is its own (client.api does; docs/reliability.md, "Scaling under load").
CORRELATION_ID = "x-correlation-id"


def _keeping_repeats(retrieve: Callable[[list[dict]], tuple]) -> Callable[[list[dict]], tuple]:
    """``retrieve`` (TorchServe's ``Service.retrieve_data_for_inference``: the worker's requests
    -> request headers, one dict of fields per request, request ids), with every field a request
    sends more than once as the list of its values instead of its last value."""

    def retrieve_keeping_repeats(batch: list[dict]) -> tuple:
        headers, rows, ids = retrieve(batch)
        for request, row in zip(batch, rows):
            names = [parameter["name"] for parameter in request["parameters"]]
            for name in {name for name in names if names.count(name) > 1}:
                row[name] = [p["value"] for p in request["parameters"] if p["name"] == name]
        return headers, rows, ids

    retrieve_keeping_repeats.keeps_repeats = True  # type: ignore[attr-defined]
    return retrieve_keeping_repeats


def keep_repeated_fields() -> None:
    """Make this worker hand the handler every value of a repeated field, as a list.

    TorchServe 0.12's worker folds a request's parameters into a dict before the handler sees
    them, so of two multipart parts named ``data`` only the last reached the handler and the other
    was dropped without a word. With this, :func:`handler.payload.parse_request` sees both and
    refuses the request. Idempotent."""
    current = Service.retrieve_data_for_inference
    if not getattr(current, "keeps_repeats", False):
        Service.retrieve_data_for_inference = staticmethod(_keeping_repeats(current))


class RecognizerHandler(BaseHandler):
    """Canvas image in, ranked labels out; see the module docstring and README's output contract."""

    def initialize(self, context: Context) -> None:
        """Load the TorchScript model and label map (BaseHandler), the model's preprocessing
        constants, its version and the handler settings from ``model-config.yaml``, then the
        backend that runs the forward pass (``handler.backend``, :mod:`handler.forward`), held
        to the TorchScript model's outputs on the warm-up request; last, the worker's log level
        (``handler.worker_log_level``, :func:`handler.worker.worker_log_level`). Whatever stops it is also
        written to standard error after :data:`handler.START_FAILURE`, where the server's logs
        show it (the worker's own log lines are INFO, which the shipped log configuration drops)."""
        try:
            self._initialize(context)
        except Exception as error:
            print(f"{START_FAILURE}: {context.model_name}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            raise

    def _initialize(self, context: Context) -> None:
        settings = (context.model_yaml_config or {}).get("handler") or {}
        keep_repeated_fields()
        # One intra-op thread per worker: on 2 cores, torch's default (all cores in every worker)
        # oversubscribed the CPU and multiplied tail latency by 10.
        threads = int(os.environ.get(THREADS_ENV) or settings.get("torch_threads", 1))
        torch.set_num_threads(threads)
        super().initialize(context)

        model_dir = Path(context.system_properties["model_dir"])
        preprocessing = json.loads((model_dir / "preprocessing.json").read_text())
        self.glyph_settings = GlyphSettings.from_dict(preprocessing["glyph"])
        self.mean = float(preprocessing["mean"])
        self.std = float(preprocessing["std"])
        self.calibration = preprocessing.get("calibration") or NO_CALIBRATION
        self.version = str(json.loads((model_dir / "model.json").read_text())["version"])
        self.classes = [self.mapping[str(index)] for index in range(len(self.mapping))]
        self.limits = ImageLimits(**settings.get("limits", {}))
        self.default_top_k = int(settings.get("top_k", DEFAULT_TOP_K))
        # KServe's protocols, when TorchServe wraps this handler in its envelope (handler/envelope.py)
        self.envelope = envelope.from_environment()
        self.max_characters = int(settings.get("max_characters", DEFAULT_MAX_CHARACTERS))

        # Warm up through the whole pipeline: the first decode loads PIL's plugins and TorchScript
        # optimizes the model on its second run; left cold, the first request took ~190 ms.
        batch = self.preprocess([{"body": stroke_png()}])
        self.backend = os.environ.get(BACKEND_ENV) or settings.get("backend", DEFAULT_BACKEND)
        scripted, self.model = self.model, load_backend(self.backend, self.model, model_dir, threads)
        check_same(self.model, scripted, batch.inputs, f"handler.backend {self.backend}")
        for _ in range(2):
            with torch.inference_mode():
                outputs = self.model(batch.inputs.to(self.device)).shape[-1]
        # The model and its label map must agree (one more output: "not a character").
        expected = len(self.classes) + (self.calibration.get("reject_threshold") is not None)
        if outputs != expected:
            raise ValueError(f"the model has {outputs} outputs but {len(self.classes)} labels (expected {expected})")
        logger.info(
            "%s %s ready: %d classes, backend %s, %d threads",
            context.model_name, self.version, len(self.classes), self.backend, threads,
        )
        worker_log_level(settings)

    def handle(self, data: Any, context: Context) -> list[Any]:
        """BaseHandler's batch path, or, behind a KServe envelope, that path for each image of
        the enveloped request with the answers in the envelope's shape; each answer carries its
        request's ``X-Correlation-Id`` when the request has one."""
        if self.envelope is None:
            answers = super().handle(data, context)
        else:
            answers = self.envelope.handle(super().handle, error_body, data, context)
        for index in range(len(context.request_processor)):  # the HTTP requests (an envelope's hold many images)
            sent = {name.lower(): value for name, value in context.get_all_request_header(index).items()}
            if CORRELATION_ID in sent:
                context.set_response_header(index, "X-Correlation-Id", sent[CORRELATION_ID])
        return answers

    @timed
    def preprocess(self, data: list[dict[str, Any]]) -> Batch:
        """Parse each request and normalize its drawing (with ``mode=text``, every candidate
        character of its segmentation, :mod:`handler.text`); a request that fails keeps its error."""
        outcomes: list[Request | InputError] = []
        glyphs: list[np.ndarray] = []
        segmentations: list[text.Segmentation | None] = []
        for row in data:
            try:
                request = parse_request(row)
                if request.mode == TEXT:
                    ink = canvas_ink(request.image, self.glyph_settings, self.limits)
                    segmentation = text.segment(ink, self.glyph_settings, max_characters=self.max_characters)
                    glyphs += [candidate.glyph for candidate in segmentation.candidates]
                else:
                    segmentation = None
                    glyphs.append(canvas_to_glyph(request.image, self.glyph_settings, self.limits))
                outcomes.append(request)
                segmentations.append(segmentation)
            except InputError as error:
                outcomes.append(error)
                segmentations.append(None)
        size = self.glyph_settings.size
        stacked = np.stack(glyphs) if glyphs else np.zeros((0, size, size), np.float32)
        inputs = torch.from_numpy((stacked - self.mean) / self.std).unsqueeze(1)
        return Batch(outcomes=outcomes, glyphs=glyphs, inputs=inputs, segmentations=segmentations)

    @timed
    def inference(self, batch: Batch) -> Batch:
        """One forward pass over every glyph of the batch (none: no rows), then the calibrated
        probabilities and the accepted flags (:mod:`handler.confidence`); the logits are kept for
        what only some requests need (a text request's :func:`character_probability`)."""
        if not batch.glyphs:
            return replace(batch, probabilities=torch.empty(0, len(self.classes)),
                           accepted=torch.empty(0, dtype=torch.bool), logits=torch.empty(0, len(self.classes)))
        with torch.inference_mode():
            outputs = self.model(batch.inputs.to(self.device)).cpu()
        count, temperature = len(self.classes), self.calibration["temperature"]
        return replace(
            batch,
            probabilities=answered_probabilities(outputs, count, temperature),
            accepted=accepted(outputs, count, self.calibration),
            logits=outputs,
        )

    @timed
    def postprocess(self, batch: Batch) -> list[str]:
        """One JSON document per request, in order: a prediction, or that request's error with
        its own HTTP status (:meth:`respond`)."""
        return self.respond(batch, self.answer)

    def explain_handle(self, data_preprocess: Batch, raw_data: list[dict[str, Any]]) -> list[str]:
        """TorchServe's Explanations API (``POST /explanations/<model>``, BaseHandler calls this
        instead of inference and postprocess): each request's prediction plus an ``explanation``
        (:meth:`explanation`), or its error."""
        return self.respond(self.inference(data_preprocess), self.explanation)

    def respond(self, batch: Batch, answer: Callable[..., dict[str, Any]]) -> list[str]:
        """One JSON document per request, in order: ``answer(request, batch, segmentation, rows)``,
        or that request's error with its own HTTP status. ``X-Batch-Size`` tells how many requests
        shared the forward pass (batching is TorchServe's decision; the header makes it visible to
        tests and benchmarks)."""
        rows = iter(range(len(batch.glyphs)))
        responses = []
        for index, outcome in enumerate(batch.outcomes):
            self.context.set_response_content_type(index, JSON_TYPE)
            self.context.set_response_header(index, "X-Batch-Size", str(len(batch.outcomes)))
            if not isinstance(outcome, InputError):
                try:
                    responses.append(to_json(answer(outcome, batch, batch.segmentations[index], rows)))
                    continue
                except InputError as error:  # mode=text: more characters than allowed, or explained
                    outcome = error
            status = HTTPStatus(outcome.status)
            self.context.set_response_status(status.value, status.phrase, index)
            responses.append(to_json(error_body(outcome)))
        return responses

    def answer(
        self, request: Request, batch: Batch, segmentation: text.Segmentation | None, rows: Iterator[int]
    ) -> dict[str, Any]:
        """The answer to one request from its rows of the batch (taken from ``rows``): one, or the
        candidates of its text ``segmentation``."""
        if segmentation is None:
            row = next(rows)
            return self.prediction(request, batch.glyphs[row], batch.probabilities[row], bool(batch.accepted[row]))
        taken = [next(rows) for _ in segmentation.candidates]
        return self.text_prediction(request, segmentation, batch, taken)

    def explanation(
        self, request: Request, batch: Batch, segmentation: text.Segmentation | None, rows: Iterator[int]
    ) -> dict[str, Any]:
        """The prediction of one character with ``explanation``: ``method``, ``window`` and
        ``stride`` (glyph pixels), ``attributions`` (float [size][size]: how much each glyph pixel
        supports the answered label, :func:`handler.explain.explain`), ``frame`` (the glyph's
        square on the canvas, :func:`handler.explain.glyph_frame`) and ``milliseconds`` (its
        cost). Raises :class:`InputError` for a text request (one character is explained)."""
        if segmentation is not None:
            for _ in segmentation.candidates:
                next(rows)
            raise InputError("explanations are for one character: send the drawing without mode=text")
        row = next(rows)
        result = self.prediction(request, batch.glyphs[row], batch.probabilities[row], bool(batch.accepted[row]))
        count, temperature = len(self.classes), self.calibration["temperature"]
        started = time.perf_counter()
        attributions = explain(
            lambda glyphs: answered_probabilities(self.model(glyphs), count, temperature),
            batch.inputs[row : row + 1].to(self.device), self.classes.index(result["label"]),
            background=-self.mean / self.std,
        )
        frame = glyph_frame(ink_map(decode_image(request.image, self.limits)), self.glyph_settings)
        result["explanation"] = {
            "method": METHOD,
            "window": WINDOW,
            "stride": STRIDE,
            "attributions": np.round(attributions, 4).tolist(),
            "frame": [round(value, 1) for value in frame],
            "milliseconds": round((time.perf_counter() - started) * 1000.0, 1),
        }
        return result

    def prediction(
        self, request: Request, glyph: np.ndarray, probabilities: torch.Tensor, is_character: bool
    ) -> dict[str, Any]:
        """The output contract: best label, its calibrated confidence, whether the drawing is
        accepted as one of the model's characters, the ``top_k`` ranking and every class's
        probability."""
        values = probabilities.tolist()
        top = ranking(values, self.classes, request.top_k or self.default_top_k)
        result = {
            "model": self.context.model_name,
            "version": self.version,
            "label": top[0]["label"],
            "confidence": top[0]["probability"],
            "accepted": is_character,
            "top_k": top,
            "probabilities": dict(zip(self.classes, values)),
        }
        if request.return_input:
            result["input"] = glyph_png_base64(glyph)
        return result

    def text_prediction(
        self, request: Request, segmentation: text.Segmentation, batch: Batch, rows: list[int]
    ) -> dict[str, Any]:
        """The text contract (``mode=text``): the string read, its confidence (the product of its
        characters' confidences), whether every character of it is accepted as one of the model's
        characters (a piece that is none, a dash between digits, is still in ``text``: the string
        is flagged, not silently mended) and each character, left to right, with its box in
        canvas pixels. Raises :class:`InputError` when it holds more than ``max_characters``."""
        answered = batch.probabilities[rows]
        labels = [self.classes[i] for i in answered.argmax(dim=1).tolist()]
        best = character_probability(batch.logits[rows], len(self.classes), self.calibration["temperature"])
        reading = text.read(segmentation, best.numpy(), labels,
                            max_characters=self.max_characters)
        characters = []
        for chosen in reading.characters:
            row = rows[chosen]
            top = ranking(batch.probabilities[row].tolist(), self.classes, request.top_k or self.default_top_k)
            character = {
                "label": top[0]["label"],
                "confidence": top[0]["probability"],
                "accepted": bool(batch.accepted[row]),
                "box": list(segmentation.candidates[chosen].box),
                "top_k": top,
            }
            if request.return_input:
                character["input"] = glyph_png_base64(batch.glyphs[row])
            characters.append(character)
        return {
            "model": self.context.model_name,
            "version": self.version,
            "mode": TEXT,
            "text": reading.text,
            "confidence": float(np.prod([c["confidence"] for c in characters])),
            "accepted": all(c["accepted"] for c in characters),
            "characters": characters,
        }


def to_json(answer: dict[str, Any]) -> str:
    """An answer as a JSON document, by orjson: a ``balanced`` answer (47 probabilities) takes
    about 30 us with the standard library's encoder and 2 us with orjson (README, "Benchmarks")."""
    return orjson.dumps(answer).decode()


def error_body(error: InputError) -> dict[str, Any]:
    """The error contract, shaped like TorchServe's own errors (``{"code", "type", "message"}``)."""
    return {"code": error.status, "type": type(error).__name__, "message": str(error)}


def stroke_png(side: int = 64) -> bytes:
    """A small canvas with one black stroke on white: the warm-up request."""
    image = Image.new("L", (side, side), 255)
    ImageDraw.Draw(image).line([(side // 2, side // 5), (side // 2, side * 4 // 5)], fill=0, width=side // 10)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def glyph_png_base64(glyph: np.ndarray) -> str:
    """The glyph the model saw (white ink on black, like MNIST) as a base64 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.uint8(np.clip(glyph, 0.0, 1.0) * 255.0 + 0.5)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
