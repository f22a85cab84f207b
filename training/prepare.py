"""A recognizer's splits, normalized with the handler's glyph normalization and cached.

Normalizing ~140k images takes a minute on two cores; training and evaluation are re-run far
more often than the data or the settings change, so the normalized arrays are cached under
``.cache/`` keyed by a hash of the raw images, labels and glyph settings. A change to any of them
(or to the data on disk) gives a new key, never a stale cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from handler.glyph import GlyphSettings
from training.datasets import RecognizerData, Split, load_recognizer_data, normalize_images
from training.evaluate import canvas_glyphs
from training.pen import PenData, prepare_pen

DEFAULT_CACHE = Path(__file__).resolve().parent.parent / ".cache"


@dataclass
class PreparedData:
    """Normalized splits (uint8 glyphs, divide by 255) plus the raw test images, which the canvas
    robustness check draws onto canvases the way people draw. ``train_canvas``, when asked for,
    holds each training image drawn on a canvas and decoded as the handler does (same order);
    ``pen``, when asked for, the pen-stroke data split by writer (:mod:`training.pen`)."""

    train: Split
    val: Split
    test: Split
    raw_test: np.ndarray
    source: str
    train_canvas: np.ndarray | None = None
    pen: PenData | None = None


def _limited(split: Split, limit: int | None) -> Split:
    return split if limit is None else Split(split.images[:limit], split.labels[:limit])


def _cache_key(recognizer: str, data: RecognizerData, settings: GlyphSettings) -> str:
    digest = hashlib.sha1(json.dumps([recognizer, asdict(settings)], sort_keys=True).encode())
    for split in (data.train, data.val, data.test):
        digest.update(np.ascontiguousarray(split.images).tobytes())
        digest.update(np.ascontiguousarray(split.labels).tobytes())
    return digest.hexdigest()[:16]


def prepare(
    recognizer: str,
    data_dir: str | os.PathLike,
    settings: GlyphSettings,
    limit: int | None = None,
    cache_dir: str | os.PathLike = DEFAULT_CACHE,
    canvas_seed: int | None = None,
    pen_variants: int | None = None,
    cased_letters: bool = False,
) -> PreparedData:
    """Load a recognizer's splits from ``data_dir``, keep the first ``limit`` images of each
    (for smoke tests), and normalize them, from the cache when possible. With ``canvas_seed``,
    also draw every training image on a canvas (``training.evaluate.canvas_glyphs``, seeded);
    with ``pen_variants``, also the pen data under ``data_dir`` (:func:`training.pen.prepare_pen`);
    ``cased_letters``: see :func:`training.datasets.load_recognizer_data`."""
    data = load_recognizer_data(recognizer, data_dir, cased_letters=cased_letters)
    source = data.source if limit is None else f"{data.source}; only the first {limit} images of each split used (--limit)"
    data = RecognizerData(*(_limited(s, limit) for s in (data.train, data.val, data.test)), source)
    key = _cache_key(recognizer, data, settings)
    path = Path(cache_dir) / "normalized" / f"{recognizer}-{key}.npz"
    if path.exists():
        with np.load(path) as cached:
            glyphs = {name: cached[name] for name in ("train", "val", "test")}
    else:
        glyphs = {
            name: normalize_images(split.images, settings, desc=f"normalizing {recognizer} {name}")
            for name, split in (("train", data.train), ("val", data.val), ("test", data.test))
        }
        _save(path, glyphs)
    train_canvas = None
    if canvas_seed is not None:
        canvas_path = path.with_name(f"{recognizer}-{key}-canvas{canvas_seed}.npz")
        if canvas_path.exists():
            with np.load(canvas_path) as cached:
                train_canvas = cached["train"]
        else:
            train_canvas = canvas_glyphs(data.train.images, settings, seed=canvas_seed)
            _save(canvas_path, {"train": train_canvas})
    pen = None if pen_variants is None else prepare_pen(data_dir, settings, pen_variants, cache_dir, limit)
    return PreparedData(
        Split(glyphs["train"], data.train.labels),
        Split(glyphs["val"], data.val.labels),
        Split(glyphs["test"], data.test.labels),
        data.test.images,
        data.source,
        train_canvas,
        pen,
    )


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part.npz")  # a crash never leaves half a cache file
    np.savez(partial, **arrays)
    partial.rename(path)
