"""Corrections: a drawing the recognizer got wrong, saved with the label the user says is right.

Saved in torchvision's ``ImageFolder`` layout, ``<root>/<label>/<id>.png``: the canvas PNG exactly
as it was sent to the recognizer, so training (``make train FEEDBACK_DIR=<root>``,
:mod:`training.feedback`) normalizes it as serving did. The app's root is
``<run folder>/corrections`` (git-ignored with the run folder) unless ``--corrections-dir`` says
otherwise. Folder names are case-sensitive (``a`` and ``A`` are two folders): keep the root on a
case-sensitive file system.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

LABEL = re.compile(r"[0-9A-Za-z]")  # one character of a recognizer: a digit or a letter


def save_correction(root: Path, png: bytes, label: str) -> Path:
    """Write ``png`` (encoded drawing) as ``root/<label>/<time>-<random>.png``; returns its path.

    Raises ``ValueError`` when ``label`` is not one digit or letter (it names a folder: nothing
    else may reach the disk)."""
    label = (label or "").strip()
    if not LABEL.fullmatch(label):
        raise ValueError(f"type the right answer as one digit or letter (got {label!r})")
    folder = root / label
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.png"
    path.write_bytes(png)
    return path


def count_corrections(root: Path) -> int:
    """How many corrections ``root`` holds (every ``<label>/*.png``)."""
    return sum(1 for _ in root.glob("*/*.png")) if root.is_dir() else 0
