"""Pen strokes as a data source: read them, vary them as writers do, draw them on canvases.

A canvas drawing is a few strokes of a round pen, not a scan of a paper form. This module reads
pen-stroke characters in the JSON Lines schema of UNIPEN-dev (``../shared/datasets/UNIPEN-dev``;
a user can bring their own pen data in it), varies them at the stroke level (jitter, slant,
per-stroke scale, shift and rotation, small rotations of the whole character) and draws them the
way people draw on a canvas (pen width, size, position, canvas style), supersampled for
anti-aliasing. The PNG it returns is decoded by :func:`handler.glyph.canvas_to_glyph`, exactly as
the handler decodes a served canvas (see :mod:`training.pen`).

Schema, one JSON object a line (``.jsonl`` or ``.jsonl.gz``)::

    {"id": "1a/apb/w001/0", "kind": "digit" | "uppercase" | "lowercase", "label": "4",
     "contributor": "apb", "writer_id": "w001",
     "strokes": [[[x, y], [x, y], ...], ...]}      # pen-down strokes, y pointing UP

Other keys (``unipen_category``, ``quality``) are allowed and ignored. A writer is
``(contributor, writer_id)``: writer ids are unique only within a contributing site.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import jsonschema
import numpy as np
from PIL import Image, ImageDraw

from training.canvas import CANVAS_SIZE, CANVAS_STYLES, encode_canvas

KINDS = ("digit", "uppercase", "lowercase")
SAMPLE_SCHEMA = {
    "type": "object",
    "required": ["id", "kind", "label", "contributor", "writer_id", "strokes"],
    "properties": {
        "id": {"type": "string"},
        "kind": {"enum": list(KINDS)},
        "label": {"type": "string", "pattern": "^[0-9A-Za-z]$"},
        "contributor": {"type": "string", "minLength": 1},
        "writer_id": {"type": "string", "minLength": 1},
        # The points are checked with numpy (shape and finiteness), far faster than per point.
        "strokes": {"type": "array", "minItems": 1, "items": {"type": "array", "minItems": 1}},
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(SAMPLE_SCHEMA)


class PenDataError(ValueError):
    """A pen-data file that does not follow the schema; the message names the file and line."""


@dataclass(frozen=True)
class PenSample:
    """One pen-drawn character. ``strokes``: float64 arrays [n, 2] of (x, y) in the data's own
    units with y pointing up (tablet convention), in time order."""

    id: str
    kind: str
    label: str
    site: str
    writer: str  # "<site>/<writer_id>": unique across sites
    strokes: tuple[np.ndarray, ...]


def _sample(record: object, where: str) -> PenSample:
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(record))
    if error is not None:
        path = "/".join(str(p) for p in error.absolute_path) or "the record"
        raise PenDataError(f"{where}: {path}: {error.message}")
    strokes = []
    for index, stroke in enumerate(record["strokes"]):
        try:
            points = np.asarray(stroke, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise PenDataError(f"{where}: strokes/{index}: points must be [x, y] numbers ({exc})") from None
        if points.ndim != 2 or points.shape[1] != 2 or not np.isfinite(points).all():
            raise PenDataError(f"{where}: strokes/{index}: each point must be [x, y], two finite numbers")
        strokes.append(points)
    kind, label = record["kind"], record["label"]
    expected = {"digit": str.isdigit, "uppercase": str.isupper, "lowercase": str.islower}[kind]
    if not expected(label):
        raise PenDataError(f"{where}: label {label!r} is not of kind {kind!r}")
    site = record["contributor"]
    return PenSample(record["id"], kind, label, site, f"{site}/{record['writer_id']}", tuple(strokes))


def read_pen_samples(path: str | os.PathLike) -> list[PenSample]:
    """Every sample of a JSON Lines file (gzipped when it ends in ``.gz``).

    Raises :class:`PenDataError` naming the file, line and field of the first record that breaks
    the schema (module docstring), and ``FileNotFoundError`` for a missing file.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    samples = []
    with opener(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise PenDataError(f"{where}: not valid JSON ({exc})") from None
            samples.append(_sample(record, where))
    if not samples:
        raise PenDataError(f"{path}: no samples")
    return samples


def find_pen_data(root: str | os.PathLike) -> list[Path]:
    """The pen-data files under a data root: ``<root>/UNIPEN-dev/*.jsonl[.gz]`` and
    ``<root>/pen/*.jsonl[.gz]`` (a user's own pen data), sorted."""
    found: list[Path] = []
    for folder in ("UNIPEN-dev", "pen"):
        directory = Path(root) / folder
        if directory.is_dir():
            found += sorted(p for p in directory.iterdir() if p.name.endswith((".jsonl", ".jsonl.gz")))
    return found


# ------------------------------------------------------------------------------ augmentation


@dataclass(frozen=True)
class StrokeAugment:
    """Stroke-level variation, as one writer's strokes vary from one character to the next.
    Distances are fractions of the character's longer side; angles in degrees. Zeros: none."""

    jitter: float = 0.006  # standard deviation of each point's displacement
    slant: float = 0.3  # shear x += slant * y, uniform in [-slant, slant]
    aspect: float = 0.15  # width scaled by a factor in [1 - aspect, 1 + aspect]
    rotation: float = 8.0  # the whole character
    stroke_scale: float = 0.1  # each stroke about its centre
    stroke_rotation: float = 5.0  # each stroke about its centre
    stroke_shift: float = 0.04  # each stroke moved


def upright(strokes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Strokes in image coordinates (y down), from the data's y-up convention."""
    return [points * (1.0, -1.0) for points in strokes]


def _rotation(degrees: float) -> np.ndarray:
    angle = math.radians(degrees)
    return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


def augment_strokes(
    strokes: Sequence[np.ndarray], settings: StrokeAugment, rng: np.random.Generator
) -> list[np.ndarray]:
    """Randomly varied copies of strokes (image coordinates, any units). Returns new arrays."""
    points = np.concatenate(strokes)
    extent = float(max(np.ptp(points, axis=0).max(), 1e-9))
    centre = (points.min(axis=0) + points.max(axis=0)) / 2.0
    u = lambda half: rng.uniform(-half, half)
    whole = _rotation(u(settings.rotation)) @ np.array(
        [[1.0 + u(settings.aspect), u(settings.slant)], [0.0, 1.0]]
    )
    varied = []
    for stroke in strokes:
        local = stroke - centre
        middle = local.mean(axis=0)
        each = _rotation(u(settings.stroke_rotation)) * (1.0 + u(settings.stroke_scale))
        local = (local - middle) @ each.T + middle + rng.uniform(-1, 1, 2) * settings.stroke_shift * extent
        local = local + rng.normal(0.0, settings.jitter * extent, local.shape)
        varied.append(local @ whole.T + centre)
    return varied


# ---------------------------------------------------------------------------------- drawing


@dataclass(frozen=True)
class PenStyle:
    """How a person draws on a canvas: the character's longer side as a fraction of the canvas
    side and the pen width in pixels of a 280-pixel canvas (scaled with the canvas).

    A share ``fat`` of the drawings is made with a pen that is fat for the drawing: a small
    character drawn with the app's default pen, or a marker. Their size is drawn from
    ``fat_size`` and their pen width, as a share of the character's longer side, from
    ``fat_ratio`` (the usual pens give 0.02-0.14). Strokes that wide close small loops and merge
    nearby strokes, which normalization cannot undo, so a model only reads them if it saw them."""

    size: tuple[float, float] = (0.35, 0.8)
    pen_width: tuple[float, float] = (5.0, 14.0)
    supersample: int = 4  # strokes are drawn at this many times the resolution, then averaged
    fat: float = 0.0
    fat_size: tuple[float, float] = (0.12, 0.8)
    fat_ratio: tuple[float, float] = (0.1, 0.35)


def stroke_coverage(strokes: Sequence[np.ndarray], width: float, supersample: int = 4) -> np.ndarray:
    """Ink coverage (uint8 [H, W], 255 = ink) of strokes given in canvas pixels (image
    coordinates, already placed with room for the pen), drawn as polylines with round caps and
    joins, ``width`` pixels wide; anti-aliased by drawing ``supersample`` times larger and taking
    the mean of each block (PIL's ``Image.reduce``)."""
    points = np.concatenate(strokes)
    right, bottom = np.ceil(points.max(axis=0) + width).astype(int)
    scale = supersample
    big = Image.new("L", (int(right) * scale, int(bottom) * scale), 0)
    draw = ImageDraw.Draw(big)
    pen = width * scale
    radius = pen / 2.0
    for stroke in strokes:
        xy = [tuple(p) for p in stroke * scale]
        if len(xy) > 1:
            draw.line(xy, fill=255, width=max(1, int(round(pen))), joint="curve")
        for x, y in (xy[0], xy[-1]):  # round caps (joints are rounded by ``joint="curve"``)
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    return np.asarray(big.reduce(scale))


def draw_strokes(
    strokes: Sequence[np.ndarray],
    style: str,
    rng: np.random.Generator,
    pen: PenStyle = PenStyle(),
    size: int = CANVAS_SIZE,
) -> bytes:
    """PNG bytes of strokes (image coordinates, any units) drawn on a ``size`` x ``size`` canvas
    in ``style`` (:data:`training.canvas.CANVAS_STYLES`): the character's longer side scaled to a
    random part of the canvas (aspect ratio kept: a ``1`` stays thin), a random pen width, a
    random position; a share ``pen.fat`` with a fat pen (:class:`PenStyle`). A character with no
    extent (a dot) is drawn as one dab of the pen."""
    if style not in CANVAS_STYLES:
        raise ValueError(f"unknown canvas style {style!r}: choose one of {CANVAS_STYLES}")
    points = np.concatenate(strokes)
    low = points.min(axis=0)
    extent = float(np.ptp(points, axis=0).max())
    if pen.fat and rng.uniform() < pen.fat:  # no draw at all without fat pens: the same canvases as before
        longest = rng.uniform(*pen.fat_size) * size
        width = rng.uniform(*pen.fat_ratio) * longest
    else:
        width = rng.uniform(*pen.pen_width) * size / CANVAS_SIZE
        longest = rng.uniform(*pen.size) * size
    scale = longest / extent if extent > 0 else 0.0
    placed = [(stroke - low) * scale for stroke in strokes]
    span = np.ptp(np.concatenate(placed), axis=0) + width  # the drawing with its pen
    room = np.maximum(size - span, 0.0)
    offset = rng.uniform(0.0, 1.0, 2) * room + width / 2.0
    return strokes_png([p + offset for p in placed], width, (size, size), style, pen.supersample)


def strokes_png(
    strokes: Sequence[np.ndarray], width: float, shape: tuple[int, int], style: str, supersample: int = 4
) -> bytes:
    """PNG bytes of a canvas of ``shape`` (height, width) in ``style`` with strokes given in its
    pixels (image coordinates, placed with room for the pen) drawn ``width`` pixels wide
    (:func:`stroke_coverage`); ink beyond the canvas is cut off."""
    coverage = stroke_coverage(strokes, width, supersample)
    canvas = np.zeros(shape, dtype=np.uint8)
    height, breadth = min(shape[0], coverage.shape[0]), min(shape[1], coverage.shape[1])
    canvas[:height, :breadth] = coverage[:height, :breadth]
    return encode_canvas(canvas, style)
