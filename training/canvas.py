"""Canvas styles and their encoding: how a drawing's ink becomes the PNG a client sends.

Both canvas renderers (scanned test images in :mod:`training.evaluate`, pen strokes in
:mod:`training.strokes`) produce an 8-bit ink coverage map and hand it to :func:`encode_canvas`,
so training, evaluation and the benchmarks draw the three canvas styles the same way.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

CANVAS_SIZE = 280
# Dark ink on white, light ink on black, black ink on a transparent background (RGBA, like
# Gradio's Sketchpad and most HTML canvases exported with toDataURL).
CANVAS_STYLES = ("black_on_white", "white_on_black", "transparent")


def encode_canvas(level: np.ndarray, style: str) -> bytes:
    """PNG bytes of a canvas whose ink coverage is ``level`` (uint8 [H, W], 255 = full ink),
    drawn in ``style``; raises ``ValueError`` for an unknown style."""
    if style == "black_on_white":
        image = Image.fromarray(255 - level)
    elif style == "white_on_black":
        image = Image.fromarray(level)
    elif style == "transparent":
        black = np.zeros(level.shape + (3,), dtype=np.uint8)
        image = Image.fromarray(np.dstack([black, level]), mode="RGBA")
    else:
        raise ValueError(f"unknown canvas style {style!r}: choose one of {CANVAS_STYLES}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
