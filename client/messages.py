"""One readable sentence for each error a user of the clients can meet, instead of a traceback.

The Gradio app shows these sentences on the page and ``python -m client`` prints them after
``error:``, so both say the same thing: where the server was expected, which key file was used,
what to do next.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests

from client.api import TOKEN_ERROR, Endpoints, ServingError

MODEL_NOT_FOUND = 404  # TorchServe's status for an unknown model or version
CONFLICT = 409  # TorchServe's status for registering a version that is already registered
INPUT_STATUSES = (400, 413)  # the handler's answers to an image it cannot use: its message says what to fix
TOO_LARGE = 413  # also TorchServe's own answer, with no body, to a request over max_request_size
# What a client call can raise that :func:`explain` turns into a sentence (connection errors are
# OSErrors; a missing key file is a FileNotFoundError; a blank drawing is a ValueError).
EXPLAINED = (ServingError, requests.RequestException, OSError, ValueError)


def server_address(url: str) -> str:
    """``http://127.0.0.1:8080/predictions/digits`` -> ``http://127.0.0.1:8080``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def explain(error: Exception, endpoints: Endpoints) -> str:
    """What went wrong and what to do about it, in one or two sentences."""
    if isinstance(error, requests.ConnectionError):
        request = getattr(error, "request", None)
        where = server_address(request.url) if request is not None else endpoints.inference
        return f"cannot reach TorchServe at {where}: is it running? (make serve)"
    if isinstance(error, requests.Timeout):
        return f"TorchServe did not answer in time: {error}"
    if isinstance(error, ServingError):
        if error.type == TOKEN_ERROR:
            return (
                f"TorchServe refused the key from {endpoints.key_file}, even after re-reading it: "
                "is that the key file of this server? (python -m client keys renews expired keys)"
            )
        if error.status == MODEL_NOT_FOUND:
            return (
                f"unknown model or version: {error.message} "
                "(python -m client models list shows what is registered)"
            )
        if error.status == CONFLICT:
            return (f"{error.message.rstrip('.')}: unregister that version first, or register an "
                    "archive of another version (a model exported with another version in its model.json)")
        if error.status == TOO_LARGE and not error.message:  # refused before the handler saw it
            return ("the request is larger than TorchServe accepts (max_request_size, 6 MiB in "
                    "config/config.properties; an image travels base64-encoded, a third larger): "
                    "send an image of at most 4 MiB, or a smaller PNG or JPEG of it")
        if error.status in INPUT_STATUSES:
            return error.message
        return f"TorchServe could not do it: {error.message or error.type} (HTTP {error.status})"
    if isinstance(error, (OSError, ValueError)):  # a missing key file, a blank drawing, ...
        return str(error)
    return f"{type(error).__name__}: {error}"
