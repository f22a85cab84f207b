"""Pen-stroke characters and non-characters as glyphs: split by writer, drawn, decoded, cached.

Every pen sample is drawn on canvases by :func:`training.strokes.draw_strokes` and decoded by
:func:`handler.glyph.canvas_to_glyph`, the handler's own call, so the model trains and is measured
on exactly what a served canvas becomes.

- Writers (``site/writer_id``) are split 70/15/15 into training, validation and test with a
  fixed seed: no writer is in two parts. Training writers' samples are drawn ``variants`` times,
  each time with stroke-level variation (:class:`training.strokes.StrokeAugment`) and a new canvas
  style, pen and placement; validation and test samples are drawn once in each canvas style,
  without stroke variation. A quarter of the training drawings are made with a pen that is fat
  for the drawing (:data:`TRAIN_PEN`).
- Non-characters (:mod:`training.nonchars`) come from three seeded series, one per part.

Drawing ~100k canvases takes a few minutes on two cores, so the glyphs of all samples are cached
under ``.cache/pen/``, keyed by the data files' bytes, the glyph settings and the drawing settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from handler.glyph import BlankImageError, GlyphSettings, canvas_to_glyph
from training import labels as L
from training.canvas import CANVAS_STYLES
from training.datasets import DatasetNotFound, Split, writer_split
from training.nonchars import NOT_DIGIT_LETTERS, nonchar
from training.strokes import PenSample, PenStyle, StrokeAugment, augment_strokes, draw_strokes, find_pen_data, read_pen_samples, upright

PARTS = ("train", "val", "test")
PEN_SEED = 20261130  # drawing seed, fixed so every run draws the same canvases
PEN_VAL = PEN_TEST = 0.15
NONCHAR_COUNTS = {"train": 9600, "val": 1600, "test": 1600}
DRAWING_VERSION = 3  # bump when the drawing code changes: the cache key includes it
# Training writers' characters: a quarter drawn with a pen fat for their size (small drawings,
# markers), which the usual pens never give and the models misread; validation and test parts are
# drawn with the usual pens, so their figures compare with earlier models' (the fat-pen figure
# is measured apart, training/evaluate.py).
TRAIN_PEN = PenStyle(fat=0.25)


@dataclass
class PenGlyphs:
    """Drawn and decoded pen data of one part, every row one canvas.

    ``glyphs`` uint8 [M, 28, 28]; ``sample`` the row's index into ``samples`` (-1 for a
    non-character); ``style`` index into ``CANVAS_STYLES``; ``nonchar`` the non-character kind
    ("" for a character). ``samples`` are the part's pen samples."""

    glyphs: np.ndarray
    sample: np.ndarray
    style: np.ndarray
    nonchar: np.ndarray
    samples: list[PenSample]


@dataclass
class PenData:
    """The three parts of the pen data (:data:`PARTS`) and a sentence naming it."""

    parts: dict[str, PenGlyphs]
    source: str


def split_writers(samples: Sequence[PenSample]) -> dict[str, list[PenSample]]:
    """Samples by part; a writer's samples all go to one part (``datasets.writer_split``)."""
    writers = np.array([s.writer for s in samples])
    masks = writer_split(writers, val=PEN_VAL, test=PEN_TEST)
    return {part: [s for s, keep in zip(samples, mask) if keep] for part, mask in zip(PARTS, masks)}


def writer_parts(files: Sequence[Path]) -> dict[str, list[PenSample]]:
    """Every sample of the pen-data ``files``, split by writer (:func:`split_writers`)."""
    return split_writers([sample for path in files for sample in read_pen_samples(path)])


def _draw_job(job: tuple) -> np.ndarray:
    """Draw one canvas and decode it as the handler does; a canvas the handler would refuse as
    blank (none of the data's, in practice) becomes zeros, as blank dataset images do."""
    strokes, style, seed, vary, pen, settings = job
    rng = np.random.default_rng(seed)
    if vary:
        strokes = augment_strokes(strokes, StrokeAugment(), rng)
    try:
        glyph = canvas_to_glyph(draw_strokes(strokes, CANVAS_STYLES[style], rng, pen), settings)
    except BlankImageError:
        glyph = np.zeros((settings.size, settings.size), dtype=np.float32)
    return np.uint8(np.clip(glyph * 255.0 + 0.5, 0, 255))


def _draw(jobs: list[tuple], desc: str) -> np.ndarray:
    """The glyphs (uint8 [N, 28, 28]) of :func:`_draw_job` jobs, drawn on two processes."""
    with Pool(processes=min(2, os.cpu_count() or 1)) as pool:
        return np.stack(list(tqdm(pool.imap(_draw_job, jobs, chunksize=64), total=len(jobs), desc=desc, unit="canvas")))


def _jobs(part: str, samples: list[PenSample], variants: int, settings: GlyphSettings, nonchars: int):
    """(job, sample index, style, non-character kind) of every canvas of a part."""
    part_seed = PARTS.index(part)
    draws = variants if part == "train" else len(CANVAS_STYLES)
    pen = TRAIN_PEN if part == "train" else PenStyle()
    for index, sample in enumerate(samples):
        strokes = upright(sample.strokes)
        for draw in range(draws):
            style = (index + draw) % len(CANVAS_STYLES)
            seed = [PEN_SEED, part_seed, 0, index, draw]
            yield (strokes, style, seed, part == "train", pen, settings), index, style, ""
    for index in range(nonchars):
        kind, strokes = nonchar(index, seed=PEN_SEED + part_seed)
        style = index % len(CANVAS_STYLES)
        yield (strokes, style, [PEN_SEED, part_seed, 1, index], False, PenStyle(), settings), -1, style, kind


def _draw_part(
    part: str, samples: list[PenSample], variants: int, settings: GlyphSettings, nonchars: int
) -> dict[str, np.ndarray]:
    rows = list(_jobs(part, samples, variants, settings, nonchars))
    return {
        "glyphs": _draw([r[0] for r in rows], f"drawing pen {part}"),
        "sample": np.array([r[1] for r in rows], dtype=np.int64),
        "style": np.array([r[2] for r in rows], dtype=np.int64),
        "nonchar": np.array([r[3] for r in rows]),
    }


FAT_PEN_SEED = 3  # the fat-pen drawings of a part: their own series of seeds


def fat_pen_glyphs(samples: Sequence[PenSample], settings: GlyphSettings) -> np.ndarray:
    """Each sample drawn once (styles taking turns, no stroke variation) with a pen that is fat for
    its size (``PenStyle(fat=1.0)``) and decoded as the handler does: uint8 [N, 28, 28]. The
    evaluation's measure of small drawings and markers; not cached (a test part takes seconds)."""
    pen = PenStyle(fat=1.0)
    jobs = [(upright(s.strokes), i % len(CANVAS_STYLES), [PEN_SEED, FAT_PEN_SEED, i], False, pen, settings)
            for i, s in enumerate(samples)]
    return _draw(jobs, "drawing with fat pens")


def _cache_key(files: list[Path], settings: GlyphSettings, variants: int, limit: int | None) -> str:
    digest = hashlib.sha1(json.dumps(
        [asdict(settings), asdict(StrokeAugment()), asdict(PenStyle()), asdict(TRAIN_PEN), variants, PEN_SEED,
         NONCHAR_COUNTS, DRAWING_VERSION, limit], sort_keys=True).encode())
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def prepare_pen(
    data_dir: str | os.PathLike,
    settings: GlyphSettings,
    variants: int,
    cache_dir: str | os.PathLike,
    limit: int | None = None,
) -> PenData:
    """The pen data under ``data_dir`` (:func:`training.strokes.find_pen_data`), split by writer,
    drawn and decoded (from the cache when possible); ``limit`` keeps that many samples, evenly
    spread, and non-characters of each part (smoke tests). Raises ``DatasetNotFound`` without any data."""
    files = find_pen_data(data_dir)
    if not files:
        raise DatasetNotFound(
            f"no pen data under {data_dir}: expected UNIPEN-dev/*.jsonl.gz or pen/*.jsonl "
            "(see training/strokes.py for the schema); set pen: 0 in config/recognizers.yaml to train without"
        )
    all_parts = writer_parts(files)
    # A limit keeps samples spread over the part (the files are sorted by kind and site).
    parts = {part: kept[:: max(1, len(kept) // limit)][:limit] if limit else kept
             for part, kept in all_parts.items()}
    nonchars = {part: min(count, limit or count) for part, count in NONCHAR_COUNTS.items()}
    path = Path(cache_dir) / "pen" / f"pen-{_cache_key(files, settings, variants, limit)}.npz"
    if path.exists():
        with np.load(path) as cached:
            arrays = {key: cached[key] for key in cached.files}
    else:
        arrays = {}
        for part in PARTS:
            drawn = _draw_part(part, parts[part], variants, settings, nonchars[part])
            arrays.update({f"{part}_{key}": value for key, value in drawn.items()})
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part.npz")
        np.savez(partial, **arrays)
        partial.rename(path)
    writers = {part: len({s.writer for s in parts[part]}) for part in PARTS}
    total, used = sum(map(len, all_parts.values())), sum(map(len, parts.values()))
    source = (
        f"{', '.join(p.name for p in files)}: {total if used == total else f'{used} (--limit) of {total}'} pen-stroke characters of "
        f"{sum(writers.values())} writers, split by writer {writers['train']}/{writers['val']}/"
        f"{writers['test']}; training writers drawn {variants} times with stroke variation, "
        f"{TRAIN_PEN.fat:.0%} of them with pens fat for their size"
    )
    return PenData(
        {part: PenGlyphs(*(arrays[f"{part}_{k}"] for k in ("glyphs", "sample", "style", "nonchar")), parts[part])
         for part in PARTS},
        source,
    )


# ------------------------------------------------------------------------------------ labels


def sample_classes(recognizer: str, samples: Sequence[PenSample], cased: bool = False) -> np.ndarray:
    """Each sample's class index for a recognizer: its character's class, the reject class
    (``len(classes)``) for a letter sent to ``digits`` that looks like no digit
    (:data:`training.nonchars.NOT_DIGIT_LETTERS`), or -1 when the recognizer has no use for it.
    ``cased`` (letters): lower case as its own class (``labels.CASED_LETTERS``), reject 52."""
    names = L.CASED_LETTERS if cased else L.CLASS_NAMES[recognizer]
    reject = len(names)
    out = np.full(len(samples), -1, dtype=np.int64)
    for i, sample in enumerate(samples):
        if recognizer == "digits":
            if sample.kind == "digit":
                out[i] = names.index(sample.label)
            elif sample.kind == "uppercase" and sample.label in NOT_DIGIT_LETTERS:
                out[i] = reject
        elif recognizer == "letters":
            if sample.kind != "digit":
                out[i] = names.index(sample.label if cased else sample.label.upper())
        else:
            out[i] = L.byclass_to_balanced(np.array([L.BYCLASS.index(sample.label)]))[0]
    return out


def recognizer_split(recognizer: str, part: PenGlyphs, cased: bool = False) -> Split:
    """The part's canvases that a recognizer learns from, with its class indices: its own
    characters, and the reject class for non-characters (and digits' out-of-class letters);
    ``cased``: see :func:`sample_classes`."""
    per_sample = sample_classes(recognizer, part.samples, cased)
    reject = len(L.CASED_LETTERS if cased else L.CLASS_NAMES[recognizer])
    classes = np.where(part.sample >= 0, per_sample[np.maximum(part.sample, 0)], reject)
    keep = classes >= 0
    return Split(part.glyphs[keep], classes[keep])
