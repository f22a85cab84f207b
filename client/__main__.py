"""Command line for the recognizers' TorchServe: ``python -m client <command>``.

    python -m client models list
    python -m client models describe letters
    python -m client models register letters-2.0.mar --workers 1
    python -m client models scale letters --workers 3 [--version 2.0]
    python -m client models set-default letters 2.0
    python -m client models unregister letters [2.0]
    python -m client keys [--rotate inference|management]
    python -m client predict [--model letters] [--version 1.0] [--top-k 3] [--text] [--json] IMAGE...
    python -m client explain [--model digits] [--version 1.0] IMAGE [--out heat.png]

Management commands use the management key from the key file (``.run/key_file.json`` unless
``--run-dir``, ``--key-file`` or the ``RECOGNIZER_*`` variables say otherwise; see
:mod:`client.api`). New commands register themselves in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from client.api import Endpoints, TorchServeClient
from client.catalog import archive_name
from client.explain import add_arguments as add_explain_arguments
from client.explain import explain_command
from client.messages import EXPLAINED, explain
from client.predict import add_arguments as add_predict_arguments
from client.predict import predict_command


def models_list(client: TorchServeClient, args: argparse.Namespace) -> Any:
    return client.models()


def models_describe(client: TorchServeClient, args: argparse.Namespace) -> Any:
    return client.describe(args.name, args.version or "all")


def models_register(client: TorchServeClient, args: argparse.Namespace) -> Any:
    name = archive_name(args.archive, client.endpoints.model_store)
    result = client.register(name, model_name=args.model_name)
    if args.workers is not None:
        # TorchServe starts the archive's minWorkers whatever `initial_workers` says: scale after.
        model = client.archive_manifest(name)
        result = client.scale(args.model_name or model["modelName"], args.workers, model["modelVersion"])
    return result


def models_scale(client: TorchServeClient, args: argparse.Namespace) -> Any:
    return client.scale(args.name, args.workers, args.version)


def models_set_default(client: TorchServeClient, args: argparse.Namespace) -> Any:
    return client.set_default(args.name, args.version)


def models_unregister(client: TorchServeClient, args: argparse.Namespace) -> Any:
    return client.unregister(args.name, args.version)


def keys(client: TorchServeClient, args: argparse.Namespace) -> Any:
    if args.rotate:
        client.rotate_key(args.rotate)
    current = client.keys
    for kind in ("inference", "management"):
        if current.expired(kind):
            client.rotate_key(kind)
    current = client.keys
    return {
        kind: {"key": getattr(current, kind), "expires": current.expires[kind].isoformat()}
        for kind in ("inference", "management")
    } | {"key_file": str(client.endpoints.key_file)}


Command = Callable[[TorchServeClient, argparse.Namespace], Any]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m client", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, help="the server's run folder (default .run)")
    parser.add_argument("--key-file", type=Path, help="default: <run folder>/key_file.json")
    parser.add_argument("--management-url", help="default: from the run folder's configuration")
    parser.add_argument("--inference-url", help="default: from the run folder's configuration")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(subparsers: Any, name: str, function: Command, help: str) -> argparse.ArgumentParser:
        sub = subparsers.add_parser(name, help=help)
        sub.set_defaults(handler=function)
        return sub

    models = commands.add_parser("models", help="list, describe, register, scale, unregister")
    actions = models.add_subparsers(dest="action", required=True)
    add(actions, "list", models_list, "registered models")
    sub = add(actions, "describe", models_describe, "versions, settings and workers of a model")
    sub.add_argument("name")
    sub.add_argument("version", nargs="?", help="default: every version")
    sub = add(actions, "register", models_register, "register an archive of the model store")
    sub.add_argument("archive", help="a .mar file in the model store (name or path)")
    sub.add_argument("--workers", type=int, help="default: minWorkers of the archive's config")
    sub.add_argument("--model-name", help="default: the name in the archive")
    sub = add(actions, "scale", models_scale, "set the number of workers")
    sub.add_argument("name")
    sub.add_argument("--workers", type=int, required=True)
    sub.add_argument("--version", help="default: the default version")
    sub = add(actions, "set-default", models_set_default, "make a version the default")
    sub.add_argument("name")
    sub.add_argument("version")
    sub = add(actions, "unregister", models_unregister, "remove a model (or one version)")
    sub.add_argument("name")
    sub.add_argument("version", nargs="?", help="default: the default version")

    sub = add(commands, "keys", keys, "show the API keys, renewing expired ones")
    sub.add_argument("--rotate", choices=("inference", "management"), help="replace this key")

    add_predict_arguments(add(commands, "predict", predict_command, "recognize image files"))
    add_explain_arguments(add(commands, "explain", explain_command, "save a heat map of what drove the answer"))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    endpoints = Endpoints.discover(
        run_dir=args.run_dir, inference=args.inference_url, management=args.management_url,
        key_file=args.key_file,
    )
    client = TorchServeClient(endpoints)
    try:
        result = args.handler(client, args)
    except EXPLAINED as error:  # server down, refused key, unknown model, ...: one sentence
        sys.exit(f"error: {explain(error, endpoints)}")
    if result is not None:  # None: the command printed its own output (predict, explain)
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
