"""Batch augmentation on the torch side: random affine warps, optional elastic distortion and
stroke-thickness jitter, applied to a whole [N, 1, H, W] batch at once.

The glyph normalization already removes most of what varies between drawings (position, size,
stroke width), so augmentation only has to cover what it cannot: slant, rotation, aspect
(normalization keeps a drawing's width to height, so a narrow hand's 2 stays narrow), residual
stroke differences and wobbly lines. It is kept moderate; strengths are per recognizer
in ``config/recognizers.yaml`` and were chosen on the validation split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentSettings:
    """Strengths of each random transform; all zeros is the identity."""

    rotation: float = 0.0  # degrees, uniform in [-rotation, rotation]
    scale: float = 0.0  # relative, x and y each uniform in [1 - scale, 1 + scale]
    shear: float = 0.0  # shear factor, uniform in [-shear, shear]
    translate: float = 0.0  # fraction of the image side, uniform in [-translate, translate]
    stroke: float = 0.0  # probability that an image's strokes are thickened or thinned
    elastic: float = 0.0  # elastic displacement amplitude, in pixels
    elastic_sigma: float = 3.0  # smoothness of the elastic field, in pixels
    narrow: float = 0.0  # probability that an image is squeezed horizontally, as narrow hands write ...
    narrow_min: float = 0.4  # ... to a width uniform in [narrow_min, 1] of its own


def _uniform(n: int, half_range: float, generator: torch.Generator | None) -> torch.Tensor:
    return (torch.rand(n, generator=generator) * 2.0 - 1.0) * half_range


def random_affine(n: int, settings: AugmentSettings, generator: torch.Generator | None = None) -> torch.Tensor:
    """[n, 2, 3] matrices for ``affine_grid``: rotation, anisotropic scale (with ``narrow``, a
    share of the images squeezed horizontally), shear and translation about the image centre (in
    normalized coordinates, -1..1)."""
    angle = _uniform(n, math.radians(settings.rotation), generator)
    sx = 1.0 + _uniform(n, settings.scale, generator)
    sy = 1.0 + _uniform(n, settings.scale, generator)
    shear = _uniform(n, settings.shear, generator)
    tx = _uniform(n, 2.0 * settings.translate, generator)
    ty = _uniform(n, 2.0 * settings.translate, generator)
    if settings.narrow > 0:  # drawn only when asked: the other settings' warps stay as they were
        squeezed = torch.rand(n, generator=generator) < settings.narrow
        width = settings.narrow_min + torch.rand(n, generator=generator) * (1.0 - settings.narrow_min)
        sx = torch.where(squeezed, sx / width, sx)  # sampling a wider input makes the glyph narrower
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output coordinates to input coordinates: rotation @ shear @ scale.
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * sx
    theta[:, 0, 1] = (cos * shear - sin) * sy
    theta[:, 1, 0] = sin * sx
    theta[:, 1, 1] = (sin * shear + cos) * sy
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    return theta


def _gaussian_blur(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N, C, H, W], per channel."""
    radius = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=field.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = field.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    field = F.conv2d(F.pad(field, (radius, radius, 0, 0), mode="replicate"), horizontal, groups=channels)
    return F.conv2d(F.pad(field, (0, 0, radius, radius), mode="replicate"), vertical, groups=channels)


def elastic_field(
    n: int, size: int, settings: AugmentSettings, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A smooth random displacement [n, size, size, 2] in normalized coordinates (Simard et al.
    2003): white noise, Gaussian-blurred, scaled to peak at about ``elastic`` pixels."""
    noise = torch.rand(n, 2, size, size, generator=generator) * 2.0 - 1.0
    field = _gaussian_blur(noise, settings.elastic_sigma)
    peak = field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    field = field / peak * (settings.elastic * 2.0 / size)  # pixels -> normalized units
    return field.permute(0, 2, 3, 1)


def vary_strokes(
    images: torch.Tensor, probability: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Thicken or thin the strokes of a random subset of images by part of one pixel.

    A full 3x3 dilation or erosion changes a 2.4 px stroke by 2 px, far more than the residual
    variation left after normalization, so the result is blended with the original by a random
    amount: thickening up to a full step, thinning up to half a step (more would break strokes).
    """
    n = images.shape[0]
    chosen = (torch.rand(n, generator=generator) < probability).float()
    thicken = torch.rand(n, generator=generator) < 0.5
    amount = torch.rand(n, generator=generator) * torch.where(thicken, 1.0, 0.5) * chosen
    dilated = F.max_pool2d(images, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-images, 3, stride=1, padding=1)
    target = torch.where(thicken.view(-1, 1, 1, 1), dilated, eroded)
    return images + amount.view(-1, 1, 1, 1) * (target - images)


def augment(
    images: torch.Tensor, settings: AugmentSettings, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Randomly warp a batch [N, 1, H, W] of glyphs in [0, 1] (ink = 1, background = 0).

    One ``grid_sample`` applies the affine warp and the elastic field together, so the glyph is
    resampled once; zero padding is right because the background is 0.
    """
    n, _, height, width = images.shape
    theta = random_affine(n, settings, generator)
    grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
    if settings.elastic > 0:
        grid = grid + elastic_field(n, height, settings, generator)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if settings.stroke > 0:
        warped = vary_strokes(warped, settings.stroke, generator)
    return warped
