"""Turn what the Gradio app receives (a Sketchpad value or an uploaded image) into request bytes.

Gradio's ``Sketchpad`` hands a callback ``{"background", "layers", "composite"}``. With its
default ``image_mode="RGBA"`` the ink is black on a *transparent* background: the drawing lives in
the alpha channel and a greyscale conversion of the composite is uniformly black. So nothing here
flattens or converts to grey: the image is sent as PNG with its alpha, and the handler's
:func:`handler.glyph.ink_map` finds the ink whatever the canvas style.

All functions are pure (PIL images and numpy arrays in, bytes or images out); the app and the
tests call them without a server.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Modes PNG stores as they are; anything else (CMYK, YCbCr, float, ...) is converted first.
PNG_MODES = ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA")


class NoDrawingError(ValueError):
    """There is nothing to recognize: no image, or an image whose pixels are all the same."""


def as_image(value: Image.Image | np.ndarray) -> Image.Image:
    """A PIL image from what a Gradio image component hands over (``type="pil"`` or ``"numpy"``)."""
    return value if isinstance(value, Image.Image) else Image.fromarray(np.asarray(value))


def sketch_image(value: Mapping[str, Any] | None) -> Image.Image:
    """The drawing shown on a Sketchpad: its ``composite``, or, when a caller (an API client, say)
    sent only ``background`` and ``layers``, those layers stacked in order, alpha kept.

    Raises :class:`NoDrawingError` when the value holds no image at all.
    """
    if value is not None and value.get("composite") is not None:
        return as_image(value["composite"])
    parts = [] if value is None else [value.get("background"), *(value.get("layers") or [])]
    images = [as_image(part).convert("RGBA") for part in parts if part is not None]
    if not images:
        raise NoDrawingError("the sketchpad is empty: draw a character first")
    stacked = Image.new("RGBA", images[0].size, (0, 0, 0, 0))
    for image in images:
        stacked.alpha_composite(image.resize(stacked.size) if image.size != stacked.size else image)
    return stacked


def is_blank(image: Image.Image) -> bool:
    """True when every pixel is the same in every channel (alpha included): nothing was drawn."""
    extrema = image.getextrema()
    bands = extrema if isinstance(extrema[0], tuple) else (extrema,)
    return all(low == high for low, high in bands)


def png_bytes(image: Image.Image) -> bytes:
    """Encode as PNG, keeping the alpha channel (where a Sketchpad puts the ink).

    Raises :class:`NoDrawingError` for a blank image, so an empty pad is reported before any
    request is made.
    """
    if is_blank(image):
        raise NoDrawingError("the image is blank: draw or upload a character first")
    if image.mode not in PNG_MODES:
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def sketch_to_png(value: Mapping[str, Any] | None) -> bytes:
    """Sketchpad value -> the PNG bytes to send for recognition."""
    return png_bytes(sketch_image(value))


def upload_bytes(path: str | Path | None) -> bytes:
    """An uploaded file's bytes, sent as they are: the handler decodes every image format and
    says in a sentence what is wrong with a file that is not an image (decoding it here would
    turn such a file into an exception instead). Raises :class:`NoDrawingError` when no file was
    uploaded, ``OSError`` when it cannot be read."""
    if not path:
        raise NoDrawingError("no image was uploaded: choose an image file first")
    return Path(path).read_bytes()


def image_from_base64(text: str) -> Image.Image:
    """Decode the base64 PNG the handler returns as ``input`` (the 28x28 glyph the model saw)."""
    return Image.open(io.BytesIO(base64.b64decode(text)))


BOX_COLOUR = (220, 40, 40)  # boxes and labels over the drawing
SUPPORT_COLOUR = np.array([220, 40, 40], np.float32)  # heat map: ink that supports the answer
AGAINST_COLOUR = np.array([40, 90, 220], np.float32)  # heat map: ink that speaks against it
HEAT_OPACITY = 0.75  # of the strongest attribution; weaker ones are fainter
INK_FADE = 0.3  # the drawing under a heat map: its ink this dark


def on_white(image: Image.Image) -> Image.Image:
    """The drawing as the page shows it: RGB, transparent parts white."""
    shown = Image.new("RGBA", image.size, (255, 255, 255, 255))
    shown.alpha_composite(image.convert("RGBA"))
    return shown.convert("RGB")


def heat_layer(attributions: Sequence[Sequence[float]], frame: Sequence[float], size: tuple[int, int]) -> np.ndarray:
    """An explanation's glyph map (float [s, s], :mod:`handler.explain`) laid on a canvas of
    ``size`` (width, height): scaled (bilinear) onto ``frame`` (``[x0, y0, x1, y1]`` canvas
    pixels, possibly beyond the canvas) and divided by its strongest value. Float32 [H, W] in
    -1..1, 0 outside the frame."""
    heat = np.asarray(attributions, dtype=np.float32)
    peak = float(np.abs(heat).max())
    heat = heat / peak if peak > 0 else heat
    x0, y0, x1, y1 = (int(round(value)) for value in frame)
    scaled = np.asarray(Image.fromarray(heat, mode="F").resize((max(1, x1 - x0), max(1, y1 - y0)), Image.BILINEAR))
    width, height = size
    layer = np.zeros((height, width), dtype=np.float32)
    left, top, right, bottom = max(x0, 0), max(y0, 0), min(x0 + scaled.shape[1], width), min(y0 + scaled.shape[0], height)
    if left < right and top < bottom:
        layer[top:bottom, left:right] = scaled[top - y0 : bottom - y0, left - x0 : right - x0]
    return layer


def heat_map(image: Image.Image, attributions: Sequence[Sequence[float]], frame: Sequence[float]) -> Image.Image:
    """The drawing (faded, on white) with an explanation over it: red where the ink supports the
    answer, blue where it speaks against it, stronger where it matters more (RGB, the drawing's
    size)."""
    # The ink is faded to a light grey: the heat must show where the ink is black.
    shown = 255.0 - INK_FADE * (255.0 - np.asarray(on_white(image), dtype=np.float32))
    layer = heat_layer(attributions, frame, image.size)[..., None]
    colour = np.where(layer > 0, SUPPORT_COLOUR, AGAINST_COLOUR)
    opacity = HEAT_OPACITY * np.abs(layer)
    return Image.fromarray(np.uint8(shown * (1 - opacity) + colour * opacity + 0.5))


def annotate(image: Image.Image, characters: Sequence[Mapping[str, Any]]) -> Image.Image:
    """The drawing (shown over white, as on the page) with each character of a text answer
    (``mode=text``: ``{"label", "box": [x0, y0, x1, y1], ...}``, box in the image's pixels, x1 and
    y1 exclusive) outlined, its label written above its box (below when the box touches the top)."""
    shown = on_white(image)
    pen = ImageDraw.Draw(shown)
    font = ImageFont.load_default(size=max(12, image.height // 12))
    for character in characters:
        x0, y0, x1, y1 = character["box"]
        pen.rectangle((x0, y0, x1 - 1, y1 - 1), outline=BOX_COLOUR, width=2)
        above = y0 - font.size - 4 >= 0
        pen.text((x0, y0 - 2 if above else y1 + 2), character["label"], fill=BOX_COLOUR, font=font,
                 anchor="lb" if above else "lt")
    return shown
