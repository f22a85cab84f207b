"""The recognizers behind TorchServe's KServe envelopes (``TS_SERVICE_ENVELOPE=kserve|kservev2``).

KServe's TorchServe runtime starts TorchServe with ``TS_SERVICE_ENVELOPE`` set to ``kserve`` (KServe
protocol v1) or ``kservev2`` (the Open Inference Protocol, "v2"); with ``enable_envvars_config=true``
TorchServe then wraps the handler in its envelope (``ts/torch_handler/request_envelope/``), which
unwraps the request before the handler sees it and wraps what the handler returns. The handler
reads the same variable (:func:`from_environment`) and speaks the envelope's language:

- **v1** (``POST /v1/models/<model>:predict``): ``{"instances": [{"data": "<base64 PNG>",
  "top_k": 3}, ...]}`` gives ``{"predictions": [<the usual answer>, ...]}``, one per instance;
  every field of an instance but ``data`` is an option, as in a JSON request.
- **v2** (``POST /v2/models/<model>/infer``): every input tensor is one image, ``{"name": "image",
  "shape": [1], "datatype": "BYTES", "data": ["<base64 PNG>"], "parameters": {"top_k": 3}}``;
  the options go into the input's ``parameters``, because TorchServe 0.12's envelope drops the
  request-level ``parameters``. The answer's fields become output tensors (:func:`tensors`).

Both envelopes read only the first request of a batch (pytorch/serve#1302), so TorchServe's
batching must stay off behind them (``batchSize: 1``, the shipped setting). Bad input keeps the
project's error object and its 4xx status: v1 puts it in ``predictions`` in the place of the
instance it answers (the others are answered), v2 turns it into output tensors (``code``,
``type``, ``message``). What the envelope itself cannot parse (a body that is not JSON, a v2
body without ``inputs``) fails inside TorchServe before the handler runs, with its 503.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Callable, Mapping, Sequence

from ts.context import Context, RequestProcessor

from handler.glyph import InputError

ENVELOPE_VARIABLE = "TS_SERVICE_ENVELOPE"  # what KServe's runtime sets, and TorchServe reads
JSON_TYPE = "application/json"
# Parameters that the Open Inference Protocol defines for every input: not recognizer options.
OIP_PARAMETERS = ("content_type", "binary_data_size", "binary_data")

Answer = tuple[int, dict[str, Any]]  # HTTP status, the answer (or error) object
Handle = Callable[[list[dict[str, Any]], Context], list[str]]
ErrorBody = Callable[[InputError], dict[str, Any]]


def from_environment(environ: Mapping[str, str] = os.environ) -> Envelope | None:
    """The envelope TorchServe wraps the handler in, from ``TS_SERVICE_ENVELOPE``; ``None``
    when it is unset. Raises ``ValueError`` for an envelope the recognizers do not speak
    (the model then fails to load, saying why, instead of answering in a wrong shape)."""
    name = environ.get(ENVELOPE_VARIABLE, "").strip()
    if not name:
        return None
    if name not in ENVELOPES:
        raise ValueError(
            f"{ENVELOPE_VARIABLE}={name}: the recognizers speak {sorted(ENVELOPES)} or no envelope"
        )
    return ENVELOPES[name]


def tensors(name: str, value: Any) -> list[tuple[str, list[Any]]]:
    """One answer field as flat Open Inference Protocol tensors ``(name, data)``, derived from
    its shape alone so that new fields need no change here:

    - a scalar (``"label"``, ``"confidence"``) is a tensor of shape ``[1]``;
    - a list of scalars keeps its order;
    - a mapping of scalars (``"probabilities"``) gives its values as ``name`` and its keys as
      ``name.keys``, in the same order;
    - a list of records (``"top_k"``) gives one tensor per key, ``top_k.label`` and
      ``top_k.probability``;
    - any other mapping is flattened with dotted names.

    The datatype follows the values (TorchServe's envelope maps them: str -> BYTES, float -> FP64,
    int -> INT64, bool -> BOOL); the shape is ``[len(data)]``."""
    if isinstance(value, Mapping):
        if all(_is_scalar(item) for item in value.values()):
            return [(name, list(value.values())), (f"{name}.keys", list(value))]
        return [tensor for key, item in value.items() for tensor in tensors(f"{name}.{key}", item)]
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(item, Mapping) for item in value):
            return [(f"{name}.{key}", [item.get(key) for item in value]) for key in value[0]]
        return [(name, list(value))]
    return [(name, [value])]


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int, float))


@dataclass(frozen=True)
class Envelope:
    """How one envelope's requests reach the handler and its answers leave it."""

    name: str
    unwrap: Callable[[Any], list[dict[str, Any] | InputError]]  # envelope items -> request rows
    wrap: Callable[[list[Answer], list[Any], Context], list[Any]]  # answers -> what the envelope wraps
    empty: str  # the error of a request whose list of images is empty

    def handle(self, handle: Handle, error_body: ErrorBody, data: Any, context: Context) -> list[Any]:
        """Answer one enveloped request: each image it carries goes through ``handle`` (the
        handler's usual batch path) and the answers come back in the envelope's shape; an item
        the envelope's format rejects is answered with ``error_body``. The envelope's items become
        one batch, so each gets its own response slot while ``handle`` runs; the request's own
        slot then gets the first error status, if any. An empty list of images is answered with
        one error (:attr:`empty`): answering nothing would be TorchServe's 503."""
        items = data if isinstance(data, list) else [data]
        if items:
            unwrapped = self.unwrap(items)
        else:
            items, unwrapped = [None], [InputError(self.empty)]
        rows = [row for row in unwrapped if not isinstance(row, InputError)]
        answered = iter(run_batch(handle, rows, context))
        answers = [
            (row.status, error_body(row)) if isinstance(row, InputError) else next(answered)
            for row in unwrapped
        ]
        status = next((code for code, _ in answers if code != HTTPStatus.OK), HTTPStatus.OK)
        context.set_response_content_type(0, JSON_TYPE)
        if status != HTTPStatus.OK:
            context.set_response_status(status, HTTPStatus(status).phrase, 0)
        return self.wrap(answers, items, context)


def run_batch(handle: Handle, rows: list[dict[str, Any]], context: Context) -> list[Answer]:
    """``handle(rows)`` with one response slot per row (the worker made one, for the enveloped
    request): each row's status and decoded JSON answer."""
    if not rows:
        return []
    outer_slots = context.request_processor
    slots = [RequestProcessor({}) for _ in rows]
    context.request_processor = slots
    try:
        bodies = handle(rows, context)
    finally:
        context.request_processor = outer_slots
    return [(slot.get_response_status_code() or HTTPStatus.OK, json.loads(body))
            for slot, body in zip(slots, bodies)]


def json_row(image: Any, options: Mapping[str, Any], image_field: str) -> dict[str, Any] | InputError:
    """A request row as a JSON body gives it (``{"image": ..., <options>}``), so the usual request
    parsing checks the image and the options."""
    if not isinstance(image, str):
        return InputError(f"{image_field} must be a base64 string or a data: URL")
    return {"body": {"image": image, **options}}


# -- KServe v1 ---------------------------------------------------------------------------------


def v1_rows(instances: list[Any]) -> list[dict[str, Any] | InputError]:
    """``instances`` (``[{"data": "<base64>", "top_k": 3}, ...]``, or bare base64 strings)."""
    rows: list[dict[str, Any] | InputError] = []
    for instance in instances:
        if isinstance(instance, str):
            rows.append(json_row(instance, {}, '"data"'))
        elif isinstance(instance, Mapping) and "data" in instance:
            options = {key: value for key, value in instance.items() if key != "data"}
            rows.append(json_row(instance["data"], options, 'an instance\'s "data"'))
        else:
            rows.append(InputError(
                'send {"instances": [{"data": "<base64 PNG>"}]} (options such as "top_k" beside '
                '"data"): an instance must be an object with "data"'
            ))
    return rows


def v1_predictions(answers: list[Answer], instances: list[Any], context: Context) -> list[Any]:
    """The answers in the order of the instances: the envelope puts them in ``predictions``."""
    return [answer for _, answer in answers]


# -- KServe v2 (Open Inference Protocol) -------------------------------------------------------


def v2_rows(inputs: list[Any]) -> list[dict[str, Any] | InputError]:
    """``inputs`` as TorchServe's v2 envelope hands them over: the tensor's dict with ``data``
    already replaced by its first element for a BYTES tensor, so the shape tells whether more
    were sent (they would be dropped silently: refused instead)."""
    rows: list[dict[str, Any] | InputError] = []
    for tensor in inputs:
        name = tensor.get("name") if isinstance(tensor, Mapping) else None
        if name is None or tensor.get("datatype") != "BYTES" or list(tensor.get("shape", [])) != [1]:
            rows.append(InputError(
                'every input must be one image: {"name": "image", "shape": [1], "datatype": '
                '"BYTES", "data": ["<base64 PNG>"]} (send several inputs for several images)'
            ))
            continue
        parameters = tensor.get("parameters") or {}
        if not isinstance(parameters, Mapping):
            rows.append(InputError(f'the "parameters" of input {name!r} must be an object'))
            continue
        options = {key: value for key, value in parameters.items() if key not in OIP_PARAMETERS}
        rows.append(json_row(tensor.get("data"), options, f"the data of input {name!r}"))
    return rows


def v2_outputs(answers: list[Answer], inputs: list[Any], context: Context) -> list[Any]:
    """Each answer's fields as output tensors. TorchServe's envelope names output ``i`` after
    ``context.input_names[i]`` (it sets them from the inputs), so the names are replaced by the
    tensors' names here; with several inputs each name is prefixed with its input's name
    (``image.label``)."""
    prefixes = [
        f"{item.get('name') if isinstance(item, Mapping) else index}." if len(inputs) > 1 else ""
        for index, item in enumerate(inputs)
    ]
    names, data = [], []
    for prefix, (_, answer) in zip(prefixes, answers):
        for field, value in answer.items():
            for name, values in tensors(field, value):
                names.append(prefix + name)
                data.append(values)
    context.input_names = names
    return data


ENVELOPES = {
    "kserve": Envelope(
        "kserve", v1_rows, v1_predictions,
        '"instances" is empty: send {"instances": [{"data": "<base64 PNG>"}]}, one instance per image',
    ),
    "kservev2": Envelope(
        "kservev2", v2_rows, v2_outputs,
        '"inputs" is empty: send {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", '
        '"data": ["<base64 PNG>"]}]}, one input per image',
    ),
}
