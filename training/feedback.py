"""Corrections as a training source: a user's own drawings, with the labels they said are right.

The drawing app saves each correction as ``<root>/<label>/<id>.png`` (torchvision's
``ImageFolder`` layout; :mod:`client.feedback`), the canvas exactly as it was sent to the
recognizer. ``python -m training.train --feedback-dir ROOT`` (``make train FEEDBACK_DIR=ROOT``)
normalizes each image with the handler's :func:`handler.glyph.canvas_to_glyph`, as serving does,
and mixes them into every training batch (:class:`training.train.Mixture`): a ``--feedback-share``
of each batch (default :data:`FEEDBACK_SHARE`) is drawn from them at random, so a handful of
corrections weigh as much as thousands of scans. They never enter a validation or test split:
the model cards keep measuring the shared data.

A folder whose name is not one of the recognizer's characters is skipped (a ``digits`` training
ignores letters), with the merge rules of the label maps (:mod:`training.labels`): ``letters``
merges lower case into capitals, ``balanced`` keeps its 11 distinct lower case letters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handler.glyph import GlyphSettings, InputError, canvas_to_glyph
from training.labels import BALANCED, CASED_LETTERS, CLASS_NAMES

FEEDBACK_SHARE = 0.1  # of each training batch, when there are corrections
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


@dataclass
class Feedback:
    """Corrections normalized for training: glyphs uint8 [N, 28, 28] (ink 255 on 0), class
    indices int64 [N], and a one-line description for the model card."""

    glyphs: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.labels)


def class_index(label: str, recognizer: str, cased: bool = False) -> int | None:
    """The recognizer's class index of a correction's folder name, or ``None`` when it is not
    one of its characters."""
    if cased:
        return CASED_LETTERS.index(label) if label in CASED_LETTERS else None
    if recognizer == "letters" or (recognizer == "balanced" and label not in BALANCED):
        label = label.upper()
    classes = CLASS_NAMES[recognizer]
    return classes.index(label) if label in classes else None


def load_feedback(
    root: str | os.PathLike, recognizer: str, settings: GlyphSettings, cased: bool = False
) -> Feedback:
    """Every correction under ``root`` (``<label>/<id>.<image suffix>``, sorted) that is one of
    ``recognizer``'s characters, normalized by :func:`canvas_to_glyph`.

    Raises ``FileNotFoundError`` when ``root`` is not a folder, ``ValueError`` naming the file
    when an image cannot be read or holds no drawing (remove it, or draw it again)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no corrections folder at {root} (the app saves them there)")
    glyphs, labels, skipped = [], [], 0
    for path in sorted(p for p in root.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES):
        index = class_index(path.parent.name, recognizer, cased)
        if index is None:
            skipped += 1
            continue
        try:
            glyph = canvas_to_glyph(path.read_bytes(), settings)
        except InputError as error:
            raise ValueError(f"correction {path}: {error}") from None
        glyphs.append(np.uint8(np.clip(glyph, 0.0, 1.0) * 255.0 + 0.5))
        labels.append(index)
    size = settings.size
    source = f"{len(labels)} corrections from {root}" + (f" ({skipped} of other characters skipped)" if skipped else "")
    return Feedback(
        np.stack(glyphs) if glyphs else np.zeros((0, size, size), np.uint8),
        np.array(labels, dtype=np.int64),
        source,
    )
