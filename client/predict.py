"""``python -m client predict``: recognize image files from the command line.

    python -m client predict [--model letters] [--version 1.0] [--top-k 3] [--text] [--json] IMAGE...

One line per file (``seven.png: 7 (98.2%)``, or ``dash.png: not a character (closest: 2, 31.0%)``;
with ``--text``, the string read on the canvas: ``number.png: 2025 (91.4%)``), or with ``--json``
the handler's answers as a JSON list, each with its ``file``. A file that cannot be read or that the handler refuses (blank, not
an image, too large) is reported on stderr and the exit status is 1, after the other files have
been recognized. Errors that concern every file (server down, unknown model, refused key) stop at
once with one message, printed by ``client.__main__``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from client.api import TOKEN_ERROR, ServingError, TorchServeClient, refused_pieces
from client.messages import INPUT_STATUSES, explain

DEFAULT_MODEL = "digits"


def is_input_error(error: ServingError) -> bool:
    """The handler refused this image (the next file may be fine); a refused key is not that."""
    return error.status in INPUT_STATUSES and error.type != TOKEN_ERROR


def recognize(client: TorchServeClient, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``{"file": ..., **prediction}`` or ``{"file": ..., "error": ...}`` for one image file."""
    try:
        image = path.read_bytes()
    except OSError as error:  # missing, a folder, unreadable
        return {"file": str(path), "error": explain(error, client.endpoints)}
    try:
        prediction = client.predict(args.model, image, args.version, args.top_k, mode="text" if args.text else None)
    except ServingError as error:
        if not is_input_error(error):
            raise
        return {"file": str(path), "error": explain(error, client.endpoints)}
    return {"file": str(path), **prediction}


def text_line(result: dict[str, Any], show_ranking: bool) -> str:
    """``seven.png: 7 (98.2%)``, with ``--top-k`` followed by the ranking; a drawing the service
    does not accept as a character (``"accepted": false``) is said to be none, with its guess.
    A text answer (``mode=text``) prints the string and its confidence, the pieces of it that are
    no character (``"accepted": false``) by their place, with ``--top-k`` each character's ranking."""
    if result.get("mode") == "text":
        line = f"{result['file']}: {result['text']} ({result['confidence']:.1%})"
        refused = refused_pieces(result)
        if refused:
            line += f", not a character: piece {', '.join(str(place) for place, _ in refused)}"
        if show_ranking:
            line += "".join(f"\n  {c['label']}: " + _ranking(c) for c in result["characters"])
        return line
    line = f"{result['file']}: {result['label']} ({result['confidence']:.1%})"
    if result.get("accepted") is False:
        line = f"{result['file']}: not a character (closest: {result['label']}, {result['confidence']:.1%})"
    if show_ranking:
        line += f"   top {len(result['top_k'])}: " + _ranking(result)
    return line


def _ranking(answer: dict[str, Any]) -> str:
    return ", ".join(f"{entry['label']} {entry['probability']:.1%}" for entry in answer["top_k"])


def predict_command(client: TorchServeClient, args: argparse.Namespace) -> None:
    """Recognize every file, print the results, exit with status 1 if any file failed."""
    results = [recognize(client, path, args) for path in args.images]
    failed = [result for result in results if "error" in result]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            if "error" not in result:
                print(text_line(result, show_ranking=args.top_k is not None))
    for result in failed:
        print(f"error: {result['file']}: {result['error']}", file=sys.stderr)
    if failed:
        sys.exit(1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``predict`` command's arguments."""
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                        help="PNG, JPEG, WebP, GIF or BMP files")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="digits, letters or balanced (default digits)")
    parser.add_argument("--version", help="default: the model's default version")
    parser.add_argument("--top-k", type=int, help="also print the k best labels")
    parser.add_argument("--text", action="store_true",
                        help="read several characters on each canvas (mode=text): a number, a code, a word")
    parser.add_argument("--json", action="store_true", help="print the handler's answers as JSON")
