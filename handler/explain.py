"""Which parts of a drawing drove the recognizer's answer: occlusion sensitivity on the glyph.

TorchServe's Explanations API (``POST /explanations/<model>[/<version>]``, same body as a
prediction) calls the handler's ``explain_handle``; the handler answers with :func:`explain`'s
map and :func:`glyph_frame`, the place of the 28x28 glyph on the canvas, so a client can lay the
map over the drawing.

Method: occlusion sensitivity (Zeiler and Fergus 2014, "Visualizing and Understanding
Convolutional Networks"), computed with Captum's :class:`captum.attr.Occlusion`: a
:data:`WINDOW` x :data:`WINDOW` patch of the glyph is set to the background (no ink), slid with
:data:`STRIDE`, and each glyph pixel gets the mean drop of the answered label's calibrated
probability over the patches that covered it. Positive: that ink supports the answer (hiding it
lowers the probability); negative: it speaks against it. Cost: ``((28 - 4) / 2 + 1)^2 = 169``
occluded glyphs plus the original, in one forward pass of 170 glyphs (README, "Explanations",
gives the measured time).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from handler.glyph import GlyphSettings, bounding_box

WINDOW = 4  # glyph pixels a side of the occluding patch: about a stroke's width and a half
STRIDE = 2  # glyph pixels between patches: each pixel is covered by up to four of them
METHOD = "occlusion"


def explain(
    probability: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, target: int, background: float
) -> np.ndarray:
    """Occlusion sensitivity of one glyph.

    ``probability``: standardized glyphs float [N, 1, size, size] -> calibrated probabilities
    [N, K]; ``inputs``: the one standardized glyph [1, 1, size, size]; ``target``: the class index
    whose probability is explained; ``background``: the standardized value of a pixel with no ink.
    Returns float32 [size, size]: the mean drop of ``target``'s probability when the patches
    covering each pixel are blanked (in probability units, -1..1).
    """
    from captum.attr import Occlusion  # imported on the first explanation: predictions never pay for it

    occlusion = Occlusion(probability)
    with torch.no_grad():
        attributions = occlusion.attribute(
            inputs, target=target, sliding_window_shapes=(1, WINDOW, WINDOW), strides=(1, STRIDE, STRIDE),
            baselines=background, perturbations_per_eval=256,
        )
    return attributions[0, 0].numpy().astype(np.float32)


def glyph_frame(ink: np.ndarray, settings: GlyphSettings) -> list[float]:
    """Where the glyph lies on the canvas: ``[x0, y0, x1, y1]`` in canvas pixels (x1, y1
    exclusive) of the square that :func:`handler.glyph.normalize_glyph` turns into the
    ``size`` x ``size`` glyph, from the canvas's ink map (float [H, W], 1 = ink).

    It mirrors the normalization's geometry: the ink's bounding box (above the noise floor),
    squared around its centre, scaled to ``box`` pixels and framed by a margin of
    ``(size - box) / 2``. For drawings on a canvas it is exact; a photo of paper is cropped by
    other rules, so its frame is approximate. Raises ``ValueError`` when the map holds no ink.
    """
    peak = float(ink.max()) if ink.size else 0.0
    mask = ink > settings.noise_floor * peak
    if peak <= 0 or not mask.any():
        raise ValueError("the drawing holds no ink")
    rows, cols = bounding_box(mask)
    height, width = rows.stop - rows.start, cols.stop - cols.start
    side = max(height, width)
    top, left = rows.start - (side - height) // 2, cols.start - (side - width) // 2
    scale = side / settings.box
    margin = (settings.size - settings.box) // 2 * scale
    x0, y0 = left - margin, top - margin
    return [float(x0), float(y0), float(x0 + settings.size * scale), float(y0 + settings.size * scale)]
