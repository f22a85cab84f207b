"""Specification of handler/glyph.py: any canvas becomes the same 28x28 glyph, and bad input is
refused with InputError before it can cost anything."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from handler.glyph import (
    BlankImageError,
    GlyphSettings,
    ImageLimits,
    InputError,
    canvas_to_glyph,
    decode_image,
    ink_map,
    normalize_glyph,
)
from tests.canvases import encode, png_with_declared_size

SEVEN = [(0.25, 0.2), (0.75, 0.2), (0.4, 0.85)]  # a "7" as a polyline in canvas fractions


def draw(
    points=SEVEN,
    size=280,
    width=12,
    style="black-on-white",
    scale=1.0,
    shift=(0, 0),
    fmt="PNG",
) -> bytes:
    """Render a polyline on a canvas of the given style and encode it."""
    ink, background, mode = {
        "black-on-white": (0, 255, "L"),
        "white-on-black": (255, 0, "L"),
        "transparent": ((0, 0, 0, 255), (0, 0, 0, 0), "RGBA"),
        "blue-on-yellow": ((20, 40, 200), (250, 240, 120), "RGB"),
    }[style]
    image = Image.new(mode, (size, size), background)
    xy = [(size / 2 + (x - 0.5) * size * scale + shift[0], size / 2 + (y - 0.5) * size * scale + shift[1]) for x, y in points]
    ImageDraw.Draw(image).line(xy, fill=ink, width=width, joint="curve")
    return encode(image, fmt)


def close(a: np.ndarray, b: np.ndarray, mean_tol: float = 0.04) -> bool:
    return float(np.abs(a - b).mean()) < mean_tol


# ------------------------------------------------------------------------------ invariances


@pytest.mark.parametrize("style", ["white-on-black", "transparent", "blue-on-yellow"])
def test_every_canvas_style_gives_the_glyph_of_black_on_white(style):
    reference = canvas_to_glyph(draw(style="black-on-white"))
    assert close(canvas_to_glyph(draw(style=style)), reference, mean_tol=0.01)


def test_position_and_size_on_the_canvas_do_not_matter():
    reference = canvas_to_glyph(draw())
    moved = canvas_to_glyph(draw(scale=0.4, shift=(-70, 60), width=5))
    assert close(moved, reference)


def test_thin_and_thick_pens_give_nearly_the_same_glyph():
    thin, thick = canvas_to_glyph(draw(width=3)), canvas_to_glyph(draw(width=34))
    assert close(thin, thick, mean_tol=0.06)


def test_canvas_size_does_not_matter():
    assert close(canvas_to_glyph(draw(size=600, width=26)), canvas_to_glyph(draw(size=140, width=6)))


def test_lossy_jpeg_gives_nearly_the_png_glyph():
    assert close(canvas_to_glyph(draw(fmt="JPEG")), canvas_to_glyph(draw()), mean_tol=0.03)


def test_output_is_28x28_in_unit_range_with_the_glyph_centred_in_its_box():
    settings = GlyphSettings()
    glyph = canvas_to_glyph(draw(), settings)
    assert glyph.shape == (28, 28) and glyph.dtype == np.float32
    assert glyph.min() >= 0.0 and glyph.max() == pytest.approx(1.0)
    margin = (settings.size - settings.box) // 2
    # The glyph fills the box along its longer side, and the frame around the box stays dark
    # except for the smoothing's spill.
    assert glyph[:margin - 1].max() < 0.05 and glyph[-(margin - 1):].max() < 0.05
    rows = np.flatnonzero(glyph.max(axis=1) > 0.5)
    assert rows[-1] - rows[0] >= settings.box - 3


def test_glyph_values_are_the_8_bit_levels_training_stores():
    glyph = canvas_to_glyph(draw(style="transparent"))
    levels = glyph * 255.0
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)


def test_aspect_ratio_is_kept():
    tall = canvas_to_glyph(draw(points=[(0.5, 0.1), (0.5, 0.9)]))
    cols = np.flatnonzero(tall.max(axis=0) > 0.5)
    rows = np.flatnonzero(tall.max(axis=1) > 0.5)
    assert (rows[-1] - rows[0]) > 3 * (cols[-1] - cols[0])


def test_normalize_glyph_accepts_dataset_images_as_ink_maps():
    image = np.zeros((28, 28), dtype=np.float32)
    image[6:22, 13:16] = 1.0  # a "1", white ink on black like MNIST
    glyph = normalize_glyph(image)
    assert glyph.shape == (28, 28) and glyph.max() == pytest.approx(1.0)


def test_ink_map_marks_ink_not_background():
    ink = ink_map(Image.open(io.BytesIO(draw(style="transparent"))))
    assert ink[0, 0] == 0.0 and ink.max() == pytest.approx(1.0)


# -------------------------------------------------------------------------------- blank input


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (280, 280), 255),
        Image.new("L", (280, 280), 0),
        Image.new("RGBA", (280, 280), (0, 0, 0, 0)),
        Image.new("RGB", (280, 280), (30, 30, 30)),  # a fully inked canvas: no background left
    ],
    ids=["white", "black", "transparent", "fully-inked"],
)
def test_a_canvas_without_a_drawing_is_refused(image):
    with pytest.raises(BlankImageError, match="blank"):
        canvas_to_glyph(encode(image))


def test_faint_noise_is_not_a_drawing():
    noise = np.random.default_rng(0).integers(250, 256, size=(280, 280), dtype=np.uint8)
    with pytest.raises(BlankImageError):
        canvas_to_glyph(encode(Image.fromarray(noise)))


def test_blank_errors_are_input_errors_with_status_400():
    assert issubclass(BlankImageError, InputError) and BlankImageError("x").status == 400


# ------------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    "data, status, message",
    [
        (b"", 400, "no image"),
        (b"this is not an image at all", 400, "not a readable image"),
        (draw()[:200], 400, "truncated or corrupt"),
        (png_with_declared_size(20000, 20000), 400, "pixels a side"),
        (png_with_declared_size(5000, 300), 400, "5000x300"),
        (png_with_declared_size(1, 1), 400, "at least"),
    ],
    ids=["empty", "text", "truncated", "bomb-header", "wide-header", "1x1"],
)
def test_bad_bytes_raise_input_error_with_a_helpful_message(data, status, message):
    with pytest.raises(InputError, match=message) as error:
        decode_image(data)
    assert error.value.status == status


def test_over_size_body_is_413():
    with pytest.raises(InputError) as error:
        decode_image(draw(), ImageLimits(max_bytes=100))
    assert error.value.status == 413


def test_dimensions_are_refused_before_pixels_are_decoded():
    # 1 GB of pixels declared in a few bytes: refused from the header, in no time.
    with pytest.raises(InputError, match="limit"):
        decode_image(png_with_declared_size(30000, 30000))


def canvas_image(mode: str) -> Image.Image:
    return Image.open(io.BytesIO(draw())).convert(mode)


@pytest.mark.parametrize(
    "data",
    [
        encode(canvas_image("RGB"), "JPEG"),
        encode(canvas_image("CMYK"), "JPEG"),
        encode(canvas_image("RGB"), "WEBP"),
        encode(canvas_image("RGB"), "BMP"),
        encode(canvas_image("P"), "PNG"),
        encode(canvas_image("LA"), "PNG"),
        encode(Image.fromarray((np.asarray(canvas_image("L")).astype(np.uint16) * 257)), "PNG"),
        encode(canvas_image("P"), "GIF"),
    ],
    ids=["jpeg", "cmyk-jpeg", "webp", "bmp", "palette-png", "grey-alpha-png", "16-bit-png", "gif"],
)
def test_every_accepted_format_and_mode_gives_the_same_glyph(data):
    assert close(canvas_to_glyph(data), canvas_to_glyph(draw()), mean_tol=0.03)


def test_animated_gif_uses_its_first_frame():
    first = canvas_image("L")
    second = Image.new("L", first.size, 255)  # a blank second frame
    data = encode(first, "GIF", save_all=True, append_images=[second])
    assert close(canvas_to_glyph(data), canvas_to_glyph(draw()), mean_tol=0.03)


def test_settings_round_trip_and_reject_unknown_keys():
    settings = GlyphSettings(box=22)
    assert GlyphSettings.from_dict(settings.__dict__) == settings
    with pytest.raises(KeyError, match="unknown"):
        GlyphSettings.from_dict({"boxx": 20})
