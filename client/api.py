"""Talk to the recognizers' TorchServe: the one place that knows its URLs, keys and error format.

Every caller (the management CLI, ``make serve/status``, the Gradio app, the tests, the
benchmarks) goes through :class:`TorchServeClient`, so token handling is written once:

- **Where**: :meth:`Endpoints.discover` takes explicit arguments first, then the environment
  (``RECOGNIZER_INFERENCE_URL``, ``RECOGNIZER_MANAGEMENT_URL``, ``RECOGNIZER_METRICS_URL``,
  ``RECOGNIZER_KEY_FILE``, ``RECOGNIZER_RUN_DIR``), then the configuration ``make serve`` wrote
  into the run folder (``.run/config.properties``), then TorchServe's default ports.
- **Keys**: TorchServe writes ``key_file.json`` (inference, management and API keys) into its run
  folder. Inference calls send the inference key, management calls the management key (the
  metrics port needs none). Keys expire (``token_expiration_min``) and can be rotated
  (``POST /token``), so on a refused token the client re-reads the key file and retries once; if
  the key in the file has expired and nobody has rotated it yet, it rotates it with the API key
  first.
- **Worker gone**: when the worker computing a prediction dies or is scaled down or
  unregistered, TorchServe fails that request; the client sends it again once (predictions are
  pure functions of their input), so scaling and version changes lose no prediction. (With
  batching on, TorchServe 0.12 never answers the requests such a worker was gathering into a
  batch; the shipped models do not batch: docs/reliability.md.)
- **Management calls wait by polling**: ``register`` and ``scale`` return once the workers are
  READY, without TorchServe's ``synchronous=true`` (see :meth:`TorchServeClient.register`).
- **Errors**: TorchServe and the handler both answer errors with ``{"code", "type", "message"}``;
  they become :class:`ServingError` with those fields.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_RUN_DIR = PROJECT / ".run"
DEFAULT_URLS = {
    "inference": "http://127.0.0.1:8080",
    "management": "http://127.0.0.1:8081",
    "metrics": "http://127.0.0.1:8082",
}
ADDRESS_PROPERTIES = {api: f"{api}_address" for api in DEFAULT_URLS}  # config.properties keys
RUN_CONFIG = "config.properties"  # in a run folder: the configuration TorchServe runs with
KEY_FILE = "key_file.json"  # in a run folder: TorchServe writes it into its working directory
TOKEN_ERROR = "InvalidKeyException"  # what TorchServe answers (HTTP 400) to a missing/bad token
WORKER_GONE = ("Worker died.", "Worker scaled down.")  # a request's worker went away mid-request


class ServingError(RuntimeError):
    """An error answer from TorchServe or the handler: HTTP status, type and a message that says
    what went wrong (for the handler's 4xx: what to fix)."""

    def __init__(self, status: int, type: str, message: str):
        super().__init__(f"{status} {type}: {message}")
        self.status = status
        self.type = type
        self.message = message

    @classmethod
    def from_response(cls, response: requests.Response) -> "ServingError":
        """The error of ``response``: its ``type`` and ``message``; an answer of another shape
        (not JSON, or a KServe envelope's error, as a server started with ``ENVELOPE=`` answers a
        request without ``instances``) keeps its whole text as the message, never an empty one."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("message"):
            return cls(response.status_code, body.get("type", ""), body["message"])
        return cls(response.status_code, response.reason or "", " ".join(response.text.split()))


def read_properties(path: Path) -> dict[str, str]:
    """``key=value`` lines of a Java properties file (comments skipped, ``\\\\`` unescaped)."""
    properties = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            properties[key.strip()] = value.strip().replace("\\\\", "\\")
    return properties


@dataclass(frozen=True)
class Endpoints:
    """Where a TorchServe listens and where its key file is."""

    inference: str
    management: str
    metrics: str
    key_file: Path
    model_store: Path | None = None  # known when discovered from a run folder

    @classmethod
    def from_run_dir(cls, run_dir: Path) -> "Endpoints":
        """The endpoints of the server ``python -m handler.server start`` runs in ``run_dir``."""
        properties = read_properties(run_dir / RUN_CONFIG)
        urls = {api: properties.get(key, DEFAULT_URLS[api]) for api, key in ADDRESS_PROPERTIES.items()}
        store = properties.get("model_store")
        return cls(**urls, key_file=run_dir / KEY_FILE, model_store=Path(store) if store else None)

    @classmethod
    def discover(
        cls,
        run_dir: Path | None = None,
        inference: str | None = None,
        management: str | None = None,
        metrics: str | None = None,
        key_file: Path | None = None,
    ) -> "Endpoints":
        """Arguments, then ``RECOGNIZER_*`` variables, then the run folder, then the defaults."""
        env = os.environ.get
        run_dir = Path(run_dir or env("RECOGNIZER_RUN_DIR") or DEFAULT_RUN_DIR)
        if (run_dir / RUN_CONFIG).is_file():
            base = cls.from_run_dir(run_dir)
        else:
            base = cls(**DEFAULT_URLS, key_file=run_dir / KEY_FILE)
        return cls(
            inference=inference or env("RECOGNIZER_INFERENCE_URL") or base.inference,
            management=management or env("RECOGNIZER_MANAGEMENT_URL") or base.management,
            metrics=metrics or env("RECOGNIZER_METRICS_URL") or base.metrics,
            key_file=Path(key_file or env("RECOGNIZER_KEY_FILE") or base.key_file),
            model_store=base.model_store,
        )


@dataclass(frozen=True)
class Keys:
    """The keys of one ``key_file.json``, with the inference and management keys' expiry."""

    inference: str
    management: str
    api: str
    expires: dict[str, datetime]

    @classmethod
    def read(cls, key_file: Path) -> "Keys":
        """The keys in ``key_file``. Raises :class:`FileNotFoundError` when there is none and
        :class:`ValueError` (naming the file and what it lacks) for a file of another shape."""
        try:
            data = json.loads(key_file.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no key file at {key_file}: is TorchServe running? (make serve)"
            ) from None
        except ValueError as error:  # not JSON, or not UTF-8
            raise ValueError(f"{key_file} is not a TorchServe key file (not JSON: {error})") from None
        try:
            expires = {
                kind: datetime.fromisoformat(data[kind]["expiration time"].replace("Z", "+00:00"))
                for kind in ("inference", "management")
            }
            return cls(
                inference=data["inference"]["key"],
                management=data["management"]["key"],
                api=data["API"]["key"],
                expires=expires,
            )
        except (KeyError, TypeError, AttributeError, ValueError) as error:  # ValueError: a bad date
            raise ValueError(
                f"{key_file} is not a TorchServe key file ({type(error).__name__}: {error}): it holds "
                '"inference", "management" and "API", each with a "key" and an "expiration time"'
            ) from None

    def expired(self, kind: str) -> bool:
        return datetime.now(timezone.utc) >= self.expires[kind]


class TorchServeClient:
    """HTTP calls to one TorchServe; see the module docstring for URLs, keys and errors."""

    def __init__(self, endpoints: Endpoints | None = None, timeout: float = 30.0):
        self.endpoints = endpoints or Endpoints.discover()
        self.timeout = timeout
        self.session = requests.Session()
        self._keys: Keys | None = None
        self.retried = 0  # predictions sent again because their worker went away
        self.desynchronized = 0  # predictions sent again because the answer read was another's

    # -- transport -------------------------------------------------------------------------------

    @property
    def keys(self) -> Keys:
        """The keys, read from the key file on first use and after a refused token."""
        if self._keys is None:
            self._keys = Keys.read(self.endpoints.key_file)
        return self._keys

    def request(self, api: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One call to ``api`` ("inference" or "management") with the right token; a refused
        token is renewed from the key file and the call retried once. A prediction carries a
        fresh ``X-Correlation-Id``, which the handler echoes: an answer with another one is
        another request's, and the prediction is sent again on a new connection. (The metrics
        port needs no token: ``curl <metrics URL>/metrics``.)"""
        url = getattr(self.endpoints, api).rstrip("/") + path
        kwargs.setdefault("timeout", self.timeout)
        headers = kwargs.pop("headers", {})

        prediction = api == "inference" and path.startswith(("/predictions/", "/explanations/"))

        def send(key: str) -> requests.Response:
            auth = {**headers, "Authorization": f"Bearer {key}"}
            sent = uuid.uuid4().hex if prediction else None
            if sent:
                auth["X-Correlation-Id"] = sent
            response = self.session.request(method, url, headers=auth, **kwargs)
            if sent and response.headers.get("X-Correlation-Id", sent) != sent:
                # Another request's answer: this connection is one answer behind, as after
                # TorchServe 0.12 once wrote one answer twice under a scale-down
                # (docs/reliability.md). Drop the connections and ask again on a new one.
                self.desynchronized += 1
                self.session.close()
                response = self.session.request(method, url, headers=auth, **kwargs)
            return response

        key = getattr(self.keys, api)
        response = send(key)
        if is_token_error(response):
            self._renew_key(api, key)
            response = send(getattr(self.keys, api))
        if prediction and is_worker_gone(response):
            # A prediction (or explanation) is a pure function of its input: send it again, once,
            # to a live worker.
            self.retried += 1
            response = send(getattr(self.keys, api))
        return response

    def call(self, api: str, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request`, raising :class:`ServingError` on an error status; returns the JSON
        body (or ``None`` when the body is empty)."""
        response = self.request(api, method, path, **kwargs)
        if not response.ok:
            raise ServingError.from_response(response)
        return response.json() if response.content else None

    def _renew_key(self, api: str, refused: str) -> None:
        """Re-read the key file; when it still holds the refused key and that key has expired,
        rotate it (the API key may) so that the retry has a valid one."""
        self._keys = Keys.read(self.endpoints.key_file)
        if getattr(self._keys, api) == refused and self._keys.expired(api):
            self.rotate_key(api)

    def rotate_key(self, kind: str) -> str:
        """Replace the ``inference`` or ``management`` key (TorchServe rewrites the key file);
        returns the new key. The old key is refused from then on."""
        url = self.endpoints.management.rstrip("/") + "/token"
        response = self.session.post(
            url,
            params={"type": kind},
            headers={"Authorization": f"Bearer {self.keys.api}"},
            timeout=self.timeout,
        )
        if not response.ok:
            raise ServingError.from_response(response)
        self._keys = Keys.read(self.endpoints.key_file)
        return getattr(self._keys, kind)

    # -- inference -------------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        return self.call("inference", "GET", "/ping")

    def predict(
        self,
        model: str,
        image: bytes,
        version: str | None = None,
        top_k: int | None = None,
        return_input: bool = False,
        mode: str | None = None,
    ) -> dict[str, Any]:
        """Recognize the drawing in ``image`` (encoded PNG, JPEG, ... bytes); returns the output
        contract (README, "Serving"), with ``mode="text"`` the text contract (several characters
        on one canvas). Raises :class:`ServingError` with the handler's message."""
        body = request_body(image, top_k=top_k, return_input=return_input, mode=mode)
        return self.call("inference", "POST", inference_path("predictions", model, version), json=body)

    def explain(self, model: str, image: bytes, version: str | None = None) -> dict[str, Any]:
        """The prediction of the drawing in ``image`` with its ``explanation`` (which parts of the
        glyph drove the answer, and where the glyph lies on the canvas: README, "Explanations"),
        from TorchServe's Explanations API. Raises :class:`ServingError` like :meth:`predict`."""
        path = inference_path("explanations", model, version)
        return self.call("inference", "POST", path, json=request_body(image))

    # -- management ------------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """Registered models (name and archive; their default versions)."""
        return self.call("management", "GET", "/models", params={"limit": 1000})["models"]

    def describe(self, model: str, version: str | None = None) -> list[dict[str, Any]]:
        """``model``'s default version, or ``version``, or with ``"all"`` every version: their
        settings and their workers (id, pid, status)."""
        return self.call("management", "GET", model_path(model, version))

    def register(
        self, archive: str, model_name: str | None = None, timeout: float = 120.0, **params: Any
    ) -> dict[str, Any]:
        """Register ``archive`` (a ``.mar`` file name in the model store) and wait until its
        workers are READY. TorchServe takes the workers, batch size and timeouts from the archive's
        model-config.yaml; ``params`` (e.g. ``batch_size=8``) are passed through.

        The waiting is done here, by polling, when the archive's manifest can be read (the model
        store is known from the run folder): TorchServe 0.12 answers a *synchronous* management
        call on one of its network threads, which it shares with inference connections, and holds
        that thread until the workers are up, so predictions on those connections stall for
        seconds. Without a known model store the call falls back to ``synchronous=true``."""
        manifest = self.archive_manifest(archive)
        query = {"url": archive, "synchronous": "false" if manifest else "true", **params}
        if model_name:
            query["model_name"] = model_name
        result = self.call("management", "POST", "/models", params=query)
        if not manifest:
            return result
        name, version = model_name or manifest["modelName"], manifest["modelVersion"]
        ready = self.wait_for_workers(name, version, timeout=timeout)
        return {"status": f"{name} {version} registered with {len(ready['workers'])} workers READY"}

    def scale(
        self, model: str, workers: int, version: str | None = None, timeout: float = 120.0
    ) -> dict[str, Any]:
        """Run exactly ``workers`` workers for ``model`` (default version) and wait until they are
        READY (polling, for the reason given in :meth:`register`). A 5xx is asked again, once: the
        call only sets the worker count, and TorchServe 0.12 can fail a scale-down with a 500 when
        it stops a worker as that worker takes a request (a NullPointerException in its
        ``BatchAggregator.sendError``). Zero workers keep the version registered but answering
        503 until it is scaled up again. Raises ``ValueError`` for a negative count (TorchServe
        answers it with a 500)."""
        if workers < 0:
            raise ValueError(f"{workers} workers: a model runs 0 workers (registered, answering nothing) or more")
        params = {"min_worker": workers, "max_worker": workers}
        try:
            self.call("management", "PUT", model_path(model, version), params=params)
        except ServingError as error:
            if error.status < 500:
                raise
            self.call("management", "PUT", model_path(model, version), params=params)
        ready = self.wait_for_workers(model, version, workers, timeout)
        if workers == 0:
            return {"status": f"{model} {ready['modelVersion']} runs no workers: its predictions get a 503 "
                              "until it is scaled up again"}
        return {"status": f"{model} {ready['modelVersion']} runs {workers} worker{'s' * (workers != 1)}, all READY"}

    def wait_for_workers(
        self, model: str, version: str | None = None, workers: int | None = None, timeout: float = 120.0
    ) -> dict[str, Any]:
        """Poll until ``model`` (default version) runs ``workers`` workers (default: its
        ``minWorkers``), all READY; returns its description. Raises :class:`TimeoutError` with
        what the workers were doing (a handler that fails to load keeps them from READY)."""
        deadline = time.monotonic() + timeout
        while True:
            described = self.describe(model, version)[0]
            running = [worker["status"] for worker in described["workers"]]
            wanted = described["minWorkers"] if workers is None else workers
            if len(running) == wanted and all(status == "READY" for status in running):
                return described
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{model} {described['modelVersion']}: {wanted} READY workers wanted, after "
                    f"{timeout:.0f} s: {', '.join(running) or 'no worker'} (the server's log says why)"
                )
            time.sleep(0.1)

    def archive_manifest(self, archive: str) -> dict[str, Any] | None:
        """The ``model`` section (name, version) of ``archive``'s manifest in the model store, or
        ``None`` when the store is unknown or holds no such file."""
        store = self.endpoints.model_store
        if store is None or not (store / archive).is_file():
            return None
        with zipfile.ZipFile(store / archive) as mar:
            return json.loads(mar.read("MAR-INF/MANIFEST.json"))["model"]

    def set_default(self, model: str, version: str) -> dict[str, Any]:
        return self.call("management", "PUT", f"/models/{model}/{version}/set-default")

    def unregister(
        self, model: str, version: str | None = None, quiet: float = 1.0, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Remove ``model`` (or one version of it) once it is idle. TorchServe 0.12 drops the
        requests still queued for a version it unregisters (their clients wait until they time
        out), so this first waits until the version has had no pending request for ``quiet``
        seconds (at most ``timeout``): after ``set_default`` to another version, the old one
        drains in milliseconds and no request is lost."""
        deadline = time.monotonic() + timeout
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < quiet and time.monotonic() < deadline:
            time.sleep(0.1)
            if self.describe(model, version)[0]["jobQueueStatus"]["pendingRequests"]:
                idle_since = time.monotonic()
        return self.call("management", "DELETE", model_path(model, version))


def request_body(image: bytes, **options: Any) -> dict[str, Any]:
    """The JSON body of a prediction or explanation: the base64 image and the options given
    (``None`` and ``False`` ones are left out: the handler's defaults apply)."""
    body: dict[str, Any] = {"image": base64.b64encode(image).decode("ascii")}
    return body | {name: value for name, value in options.items() if value is not None and value is not False}


def refused_pieces(answer: dict[str, Any]) -> list[tuple[int, str]]:
    """The characters of a text answer (``mode=text``) that the service does not accept as
    characters (``"accepted": false``): their places in the string (from 1) and the labels the
    string holds for them."""
    return [(place, c["label"]) for place, c in enumerate(answer["characters"], 1) if c.get("accepted") is False]


def inference_path(api: str, model: str, version: str | None = None) -> str:
    """``/predictions/digits`` or ``/explanations/digits/1.0``: the inference API's path."""
    return f"/{api}/{model}" + (f"/{version}" if version else "")


def model_path(model: str, version: str | None = None) -> str:
    """The management API's path of ``model`` (its default version) or of one ``version``."""
    return f"/models/{model}" + (f"/{version}" if version else "")


def is_worker_gone(response: requests.Response) -> bool:
    """TorchServe 0.12 fails the request a worker is computing when that worker is killed,
    scaled down or unregistered (500/507 InternalServerException "Worker died.")."""
    if response.status_code < 500:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return body.get("type") == "InternalServerException" and body.get("message") in WORKER_GONE


def is_token_error(response: requests.Response) -> bool:
    """TorchServe refuses a missing, wrong or expired token with HTTP 400 InvalidKeyException."""
    if response.status_code != 400:
        return False
    try:
        return response.json().get("type") == TOKEN_ERROR
    except ValueError:
        return False
