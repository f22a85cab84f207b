"""The recognizers' network: a compact VGG-style CNN for 28x28 glyphs.

Four 3x3 convolutions (each followed by BatchNorm and ReLU) in three stages separated by 2x2
max pooling, 28 -> 14 -> 7 -> 3, then one hidden fully connected layer with dropout. With the
default width of 32 it has about 0.44 M parameters (under 2 MB as TorchScript). Only one thin
convolution runs at full 28x28 resolution: on this project's 2-core CPUs a second one there
made a training step about three times slower (measured: 356 ms against 124 ms a batch of 128).

The input is a float32 batch [N, 1, 28, 28] already standardized as (glyph - mean) / std; the
output is logits [N, num_classes]. Normalization constants live in ``preprocessing.json``, not
in the network, so the handler and the training loop apply them in one visible place.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn(in_channels: int, out_channels: int) -> list[nn.Module]:
    # No conv bias: BatchNorm's shift makes it redundant.
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class GlyphNet(nn.Module):
    """conv(w)-pool, conv(2w)-conv(2w)-pool, conv(4w)-pool, fc(8w)-dropout-fc(classes)."""

    def __init__(self, num_classes: int, width: int = 32, dropout: float = 0.3):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv_bn(1, w), nn.MaxPool2d(2),  # 28 -> 14
            *_conv_bn(w, 2 * w), *_conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),  # 14 -> 7
            *_conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),  # 7 -> 3
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4 * w * 3 * 3, 8 * w, bias=False),
            nn.BatchNorm1d(8 * w),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(8 * w, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, as reported in ``model.json`` and the model card."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class CaseMerged(nn.Module):
    """A letters network that learned upper and lower case apart, answering them merged.

    ``net`` outputs logits over ``labels.CASED_LETTERS`` (26 capitals, then 26 lower case) and,
    optionally, further outputs (the "not a character" class) after them. Each letter's merged
    logit is the log-sum-exp of its two cases' logits, so its softmax probability is exactly the
    sum of theirs; the further outputs pass through. ``net`` alone gives the training logits.
    """

    def __init__(self, net: nn.Module, letters: int = 26):
        super().__init__()
        self.net = net
        self.letters = letters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cased = self.net(x)
        n = self.letters
        merged = torch.logsumexp(torch.stack([cased[:, :n], cased[:, n : 2 * n]]), dim=0)
        return torch.cat([merged, cased[:, 2 * n :]], dim=1)


def training_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The logits the training loss is taken on: a :class:`CaseMerged` model's cased ones."""
    return model.net(x) if isinstance(model, CaseMerged) else model(x)
