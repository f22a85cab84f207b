"""Specification of client/sketch.py: what the Gradio app receives becomes PNG request bytes that
keep the ink, including a Sketchpad's ink that lives only in the alpha channel."""

import base64
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from client.sketch import (
    NoDrawingError,
    image_from_base64,
    is_blank,
    sketch_image,
    sketch_to_png,
    upload_bytes,
)
from handler.glyph import canvas_to_glyph

SEVEN = [(60, 50), (200, 50), (110, 230)]


def sketchpad_layer(points=SEVEN, size=(280, 280)) -> Image.Image:
    """What a Sketchpad layer looks like: black ink, opaque, on a fully transparent canvas."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).line(points, fill=(0, 0, 0, 255), width=14, joint="curve")
    return layer


def sketchpad_value(layer: Image.Image, as_numpy: bool = True) -> dict:
    """The dict a Sketchpad callback receives (``type="numpy"`` is Gradio's default)."""
    background = Image.new("RGBA", layer.size, (0, 0, 0, 0))
    convert = np.asarray if as_numpy else (lambda image: image)
    return {
        "background": convert(background),
        "layers": [convert(layer)],
        "composite": convert(Image.alpha_composite(background, layer)),
    }


def black_on_white(points=SEVEN, size=(280, 280)) -> bytes:
    image = Image.new("L", size, 255)
    ImageDraw.Draw(image).line(points, fill=0, width=14, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


@pytest.mark.parametrize("as_numpy", [True, False], ids=["numpy", "pil"])
def test_the_sketchpad_composite_is_sent_with_its_alpha(as_numpy):
    layer = sketchpad_layer()
    image = decoded(sketch_to_png(sketchpad_value(layer, as_numpy)))
    assert image.mode == "RGBA"
    # Grey levels alone are all black: the drawing is only in the alpha channel, and it survives.
    assert image.convert("L").getextrema() == (0, 0)
    assert np.array_equal(np.asarray(image.getchannel("A")), np.asarray(layer.getchannel("A")))


@pytest.mark.parametrize("background", [(0, 0, 0, 0), (255, 255, 255, 255)], ids=["clear", "white"])
def test_a_sketch_reaches_the_model_as_the_same_glyph_as_black_ink_on_white(background):
    # In the browser the pad's background layer is opaque white; from an API client it may be
    # transparent. Either way the handler must see the drawing's glyph.
    layer = sketchpad_layer()
    value = sketchpad_value(layer)
    value["composite"] = Image.alpha_composite(Image.new("RGBA", layer.size, background), layer)
    sketch = sketch_to_png(value)
    assert np.abs(canvas_to_glyph(sketch) - canvas_to_glyph(black_on_white())).mean() < 0.01


def test_without_a_composite_the_layers_are_stacked_over_the_background():
    first = sketchpad_layer([(60, 50), (200, 50)])
    second = sketchpad_layer([(200, 50), (110, 230)])
    value = {"background": None, "layers": [np.asarray(first), second], "composite": None}
    stacked = sketch_image(value)
    assert stacked.mode == "RGBA"
    expected = np.maximum(np.asarray(first.getchannel("A")), np.asarray(second.getchannel("A")))
    assert np.array_equal(np.asarray(stacked.getchannel("A")), expected)


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"background": None, "layers": [], "composite": None},
        sketchpad_value(Image.new("RGBA", (280, 280), (0, 0, 0, 0))),  # cleared pad
        {"background": None, "layers": [], "composite": Image.new("RGBA", (280, 280), "white")},
    ],
    ids=["no-value", "no-images", "cleared", "white"],
)
def test_an_empty_pad_is_refused_before_any_request(value):
    with pytest.raises(NoDrawingError, match="draw"):
        sketch_to_png(value)


def test_an_upload_is_sent_as_the_file_s_bytes_even_when_it_is_not_an_image(tmp_path):
    # The handler decodes it and answers a sentence for a file that is no image (a text file
    # named .png): decoding it here would only turn that into an exception.
    for name, content in (("seven.png", black_on_white()), ("notes.png", b"not an image")):
        (tmp_path / name).write_bytes(content)
        assert upload_bytes(str(tmp_path / name)) == content


def test_a_missing_upload_is_refused():
    with pytest.raises(NoDrawingError, match="upload"):
        upload_bytes(None)


def test_blank_means_every_channel_is_uniform():
    assert is_blank(Image.new("L", (8, 8), 7))
    assert is_blank(Image.new("RGBA", (8, 8), (0, 0, 0, 0)))
    dot = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    dot.putpixel((3, 3), (0, 0, 0, 255))  # only the alpha differs
    assert not is_blank(dot)


def test_the_returned_glyph_decodes_from_base64():
    glyph = Image.new("L", (28, 28), 0)
    buffer = io.BytesIO()
    glyph.save(buffer, "PNG")
    decoded_glyph = image_from_base64(base64.b64encode(buffer.getvalue()).decode("ascii"))
    assert decoded_glyph.size == (28, 28)
