"""``python -m client explain``: which parts of a drawing drove the answer, saved as a heat map.

    python -m client explain [--model digits] [--version 1.0] IMAGE [--out heat.png]

Calls TorchServe's Explanations API (``POST /explanations/<model>``, :mod:`handler.explain`),
prints the answer and the method's cost, and saves the drawing with the heat map over it
(:func:`client.sketch.heat_map`: red supports the answer, blue speaks against it) as a PNG.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image

from client.api import TorchServeClient
from client.predict import DEFAULT_MODEL, text_line
from client.sketch import heat_map


def explain_command(client: TorchServeClient, args: argparse.Namespace) -> None:
    """Explain one image file, save the heat map, print one line. Errors propagate as for every
    command (``client.__main__`` prints them as a sentence)."""
    image = args.image.read_bytes()
    result = client.explain(args.model, image, args.version)
    explanation = result["explanation"]
    out = args.out or args.image.with_name(f"{args.image.stem}-explained.png")
    drawing = Image.open(io.BytesIO(image))
    heat_map(drawing, explanation["attributions"], explanation["frame"]).save(out)
    answer = text_line({**result, "file": str(args.image)}, show_ranking=False)
    print(f"{answer}; heat map saved to {out} "
          f"({explanation['method']}, {explanation['milliseconds']:.0f} ms in the handler)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``explain`` command's arguments."""
    parser.add_argument("image", type=Path, metavar="IMAGE", help="a PNG, JPEG, WebP, GIF or BMP file")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="digits, letters or balanced (default digits)")
    parser.add_argument("--version", help="default: the model's default version")
    parser.add_argument("--out", type=Path, help="the heat map PNG (default: IMAGE's name + -explained.png)")
