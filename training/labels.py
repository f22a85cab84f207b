"""Label maps of the three recognizers and the conversions from each dataset's raw labels.

Class indices are what the model outputs; names are what users see (``index_to_name.json``).

- digits: MNIST, ``0``-``9``.
- letters: the EMNIST Letters convention: 26 classes ``A``-``Z`` with upper and lower case
  merged. EMNIST Letters stores labels 1..26; FEMNIST stores 62 classes that we merge.
- balanced: the EMNIST Balanced convention: 47 classes, digits, ``A``-``Z``, and the 11 lower
  case letters whose shape differs from their capital. The other 15 lower case letters are
  merged into their capitals, as EMNIST does (Cohen et al. 2017, section II-B).
"""

from __future__ import annotations

import string

import numpy as np

DIGITS = list(string.digits)
LETTERS = list(string.ascii_uppercase)
BALANCED_LOWERCASE = list("abdefghnqrt")  # kept apart from their capitals in EMNIST Balanced
BALANCED = DIGITS + LETTERS + BALANCED_LOWERCASE

# FEMNIST / EMNIST ByClass order: 0-9 digits, 10-35 A-Z, 36-61 a-z.
BYCLASS = DIGITS + LETTERS + list(string.ascii_lowercase)

CLASS_NAMES: dict[str, list[str]] = {"digits": DIGITS, "letters": LETTERS, "balanced": BALANCED}
# A case-aware letters model learns upper and lower case apart (index + 26 for lower case) and
# answers them merged (training.model.CaseMerged).
CASED_LETTERS = LETTERS + list(string.ascii_lowercase)


def index_to_name(recognizer: str) -> dict[str, str]:
    """The ``index_to_name.json`` mapping TorchServe and the handler read: ``{"0": "A", ...}``."""
    return {str(i): name for i, name in enumerate(CLASS_NAMES[recognizer])}


def byclass_to_balanced(labels: np.ndarray) -> np.ndarray:
    """Map ByClass labels (0..61) onto Balanced (0..46) with EMNIST's merge rule."""
    table = np.empty(len(BYCLASS), dtype=np.int64)
    for index, name in enumerate(BYCLASS):
        merged = name if name in BALANCED else name.upper()
        table[index] = BALANCED.index(merged)
    return table[np.asarray(labels, dtype=np.int64)]


def byclass_to_letters(labels: np.ndarray, cased: bool = False) -> np.ndarray:
    """Map ByClass letter labels (10..61) onto Letters (0..25), case merged, or with ``cased``
    onto :data:`CASED_LETTERS` (lower case 26..51); digits give -1."""
    labels = np.asarray(labels, dtype=np.int64)
    letters = np.where(labels >= 36, labels - 36 + (26 if cased else 0), labels - 10)
    return np.where(labels >= 10, letters, -1)


def emnist_letters_to_index(labels: np.ndarray) -> np.ndarray:
    """EMNIST Letters stores 1 = a/A ... 26 = z/Z; the model's indices start at 0."""
    return np.asarray(labels, dtype=np.int64) - 1
