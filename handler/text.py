"""Read several characters on one canvas (``mode=text``): segmentation into characters, the
choice among candidate segmentations by the recognizer's own confidence, and spaces.

Pure functions on numpy arrays; the handler runs the model between :func:`segment` and
:func:`read`, and the training's ``text`` evaluation calls the very same functions.

1. :func:`segment` takes the canvas's ink map (:func:`handler.glyph.canvas_ink`) and finds
   - the ink's connected components (``scipy.ndimage.label``, 8-connected, the mask of the glyph
     normalization's noise floor), specks of at most :attr:`SegmentSettings.speck` pixels left out;
   - the **line height**: the median height of the components at least half as tall as the
     tallest;
   - the **lines**: the bands of rows that components overlapping in y chain together; more
     than one band at least ``min_line`` line heights tall is a second line, refused (a 400:
     text is read on one line, and reading two lines as one gives a confident wrong string);
   - the **certain merges**: two components overlapping in x by at least ``merge_overlap`` of the
     narrower one's width when one of them is short (under ``short_piece`` line heights): the
     dot of an ``i`` or ``j``, the bar of a ``5``, ``7`` or ``T`` drawn apart, the pieces of an
     ``E``. What they join is a *group*;
   - **cut candidates** in groups wider than ``cut_width`` line heights (touching characters):
     the thinnest column of each run of columns crossed by little ink (at most ``cut_ink``
     stroke widths), at least ``min_piece`` line heights from the group's ends and from each
     other. A group's pieces between its cuts are *primitives*, and so are the other groups;
   - **links** between neighbouring primitives that may be one character: pieces of one group,
     groups that overlap in x at all, a mark (both sides under ``mark_size`` line heights) and a
     group less than ``mark_gap`` line heights apart;
   - the **candidates**: every run of one primitive, or of up to ``max_join`` linked ones no wider
     than ``max_width`` line heights, each normalized by :func:`handler.glyph.normalize_glyph`
     exactly as a single character is.
2. The model reads every candidate of a request in one batch.
3. :func:`read` chooses the segmentation whose characters have the largest product of
   probabilities (dynamic programming over the primitives; the probability of a candidate is its
   best character's calibrated probability, :func:`handler.confidence.character_probability`, so
   a model with a "not a character" output pushes pieces that are no character aside), then puts
   a space where a gap is clearly wider than the others (:func:`spaces`).

The defaults were chosen on 300 strings of each of ``digits`` and ``letters`` by the validation
writers of the pen data (``python -m training.evaluate --only text --part val``), never on the
test writers: groups are cut from 1.1 line heights on (0.6 and 0.9 split more characters that
were whole: exact match 91.3% and 94.3% against 96.3% for digits), and each character costs a
little (``character_bonus`` -0.3: letters 67.7% against 66.7% at 0; digits alike); linking
every pair of neighbours closer than 0.1 line heights merged more characters than it mended
(digits 87.7%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from handler.glyph import BlankImageError, GlyphSettings, InputError, bounding_box, measure_stroke_width, normalize_glyph

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
BLANK = "the drawing is blank: draw characters with visible strokes"


@dataclass(frozen=True)
class SegmentSettings:
    """Segmentation parameters; sizes are in line heights unless they say pixels."""

    speck: int = 2  # components at most this many pixels both ways are noise
    merge_overlap: float = 0.5  # certain merge: x overlap, share of the narrower component
    short_piece: float = 0.5  # ... when one of the two is shorter than this
    mark_size: float = 0.35  # a mark (dot, short bar): both sides under this
    mark_gap: float = 0.3  # a mark may join a neighbour this close
    cut_width: float = 1.1  # groups wider than this get cut candidates
    cut_ink: float = 2.5  # a cut crosses at most this many stroke widths of ink
    min_piece: float = 0.2  # cuts this far from a group's ends and from each other
    max_join: int = 3  # primitives in one character at most
    max_width: float = 1.6  # a character made of several primitives is at most this wide
    character_bonus: float = -0.3  # added to the log-probability of a reading per character
    space_gap: float = 0.6  # a space: a gap at least this wide ...
    space_ratio: float = 2.5  # ... and this many times the median of the narrower gaps
    min_line: float = 0.5  # a band of ink rows this tall, apart from the others, is a line of text


@dataclass(frozen=True)
class Piece:
    """Ink of one primitive: the pixels of components ``labels`` in columns [left, right)."""

    labels: tuple[int, ...]
    left: int
    right: int


@dataclass(frozen=True)
class Candidate:
    """Primitives [first, last) read as one character: ``box`` (x0, y0, x1, y1) in canvas pixels,
    x1 and y1 exclusive; ``glyph`` float32 [size, size], what the model reads."""

    first: int
    last: int
    box: tuple[int, int, int, int]
    glyph: np.ndarray


@dataclass(frozen=True)
class Segmentation:
    """The candidates of one canvas and what :func:`read` needs besides the model's answers."""

    primitives: int
    candidates: list[Candidate]
    line_height: float


@dataclass(frozen=True)
class Reading:
    """The chosen characters, left to right (indices into the candidates), and the text with its
    spaces."""

    characters: list[int]
    text: str


def too_many(count: int, limit: int) -> InputError:
    return InputError(
        f"the drawing holds {count} characters; the limit is {limit} per request: "
        "send the text in shorter parts"
    )


def _union_find(count: int, pairs: Sequence[tuple[int, int]]) -> list[int]:
    """The root of each of ``count`` items once the ``pairs`` are joined."""
    parent = list(range(count))

    def root(item: int) -> int:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    for a, b in pairs:
        parent[root(a)] = root(b)
    return [root(item) for item in range(count)]


def _overlap(boxes: np.ndarray) -> np.ndarray:
    """[n, n] overlap in x of boxes (x0, y0, x1, y1) as a share of the narrower one's width
    (negative: a gap)."""
    left = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    right = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    widths = boxes[:, 2] - boxes[:, 0]
    return (right - left) / np.maximum(np.minimum(widths[:, None], widths[None, :]), 1)


def _cuts(mask: np.ndarray, height: float, settings: SegmentSettings) -> list[int]:
    """Columns of a group's mask (cropped to the group) where touching characters may be cut."""
    counts = mask.sum(axis=0)
    thin = counts <= settings.cut_ink * measure_stroke_width(mask)
    runs, found = ndimage.label(thin)
    edge = settings.min_piece * height
    chosen: list[int] = []
    for run in ndimage.find_objects(runs):
        columns = np.arange(run[0].start, run[0].stop)
        lowest = columns[counts[columns] == counts[columns].min()]
        cut = int(lowest[len(lowest) // 2])
        if edge <= cut <= len(counts) - edge and all(abs(cut - other) >= edge for other in chosen):
            chosen.append(cut)
    return sorted(chosen)


def _pieces_mask(labels: np.ndarray, pieces: Sequence[Piece]) -> tuple[np.ndarray, int]:
    """The pixels of ``pieces`` in the columns they span (bool [H, columns]) and the first
    column's x."""
    left, right = min(p.left for p in pieces), max(p.right for p in pieces)
    window = labels[:, left:right]
    columns = np.arange(left, right)
    mask = np.zeros(window.shape, dtype=bool)
    for piece in pieces:
        inside = (columns >= piece.left) & (columns < piece.right)
        ink = window == piece.labels[0] if len(piece.labels) == 1 else np.isin(window, piece.labels)
        mask |= ink & inside[None, :]
    return mask, left


def _candidate(
    ink: np.ndarray, labels: np.ndarray, pieces: Sequence[Piece], first: int, glyph_settings: GlyphSettings,
    origin: tuple[int, int],
) -> Candidate:
    """``pieces`` (primitives ``first``, ...) as one character: its box (in the pixels of the
    canvas, where ``ink`` and ``labels`` start at ``origin``, x and y), and its glyph from its ink
    alone (other characters' ink in its box removed), normalized as a single character."""
    mask, left = _pieces_mask(labels, pieces)
    rows, cols = bounding_box(mask)
    x, y = origin
    box = (x + int(left + cols.start), y + int(rows.start), x + int(left + cols.stop), y + int(rows.stop))
    crop = np.where(mask[rows, cols], ink[rows, left + cols.start : left + cols.stop], 0.0)
    try:
        glyph = normalize_glyph(crop, glyph_settings)
    except BlankImageError:  # ink too faint to be a character on its own: zeros, as in training
        glyph = np.zeros((glyph_settings.size, glyph_settings.size), dtype=np.float32)
    return Candidate(first, first + len(pieces), box, glyph)


def too_many_lines(count: int) -> InputError:
    return InputError(
        f"the drawing holds {count} lines of text; text is read on one line: "
        "send each line in a request of its own"
    )


def lines(boxes: np.ndarray, min_height: float) -> int:
    """How many lines of text components with ``boxes`` (int [n, 4]: x0, y0, x1, y1) hold: the
    bands of rows that components overlapping in y chain together, counting those at least
    ``min_height`` pixels tall (the dot of an ``i`` or a bar drawn above a character is no line)."""
    bands: list[list[int]] = []
    for top, bottom in sorted(boxes[:, [1, 3]].tolist()):
        if bands and top < bands[-1][1]:
            bands[-1][1] = max(bands[-1][1], bottom)
        else:
            bands.append([top, bottom])
    return sum(bottom - top >= min_height for top, bottom in bands)


def segment(
    ink: np.ndarray,
    glyph_settings: GlyphSettings = GlyphSettings(),
    settings: SegmentSettings = SegmentSettings(),
    max_characters: int = 32,
) -> Segmentation:
    """The candidate characters of a canvas's ink map (float [H, W] in [0, 1], 1 = ink; see the
    module docstring). Raises :class:`handler.glyph.BlankImageError` when no ink is left once
    specks are dropped, :class:`handler.glyph.InputError` when the ink holds more than
    ``max_characters`` groups or more than one line (:func:`lines`)."""
    peak = float(ink.max()) if ink.size else 0.0
    mask = ink > glyph_settings.noise_floor * peak
    if not mask.any():
        raise BlankImageError(BLANK)
    # Everything below works on the ink's bounding box (a third of a wide canvas, or less: the
    # components are labelled in a third of the time) and gives the candidates' boxes back in
    # canvas pixels.
    rows, cols = bounding_box(mask)
    origin = (int(cols.start), int(rows.start))
    ink = ink[rows, cols]
    labels, _ = ndimage.label(mask[rows, cols], structure=EIGHT_CONNECTED)
    found = ndimage.find_objects(labels)
    kept = [
        (index + 1, (s[1].start, s[0].start, s[1].stop, s[0].stop))
        for index, s in enumerate(found)
        if s is not None and max(s[0].stop - s[0].start, s[1].stop - s[1].start) > settings.speck
    ]
    if not kept:
        raise BlankImageError(BLANK)
    ids = [label for label, _ in kept]
    boxes = np.array([box for _, box in kept])
    heights = boxes[:, 3] - boxes[:, 1]
    height = float(np.median(heights[heights >= heights.max() / 2]))
    found_lines = lines(boxes, settings.min_line * height)
    if found_lines > 1:
        raise too_many_lines(found_lines)

    overlap = _overlap(boxes)
    short = heights < settings.short_piece * height
    certain = (overlap >= settings.merge_overlap) & (short[:, None] | short[None, :])
    roots = _union_find(len(kept), list(zip(*np.nonzero(np.triu(certain, 1)))))
    members: dict[int, list[int]] = {}
    for item, root in enumerate(roots):
        members.setdefault(root, []).append(item)
    groups = sorted(members.values(), key=lambda items: boxes[items, 0].min() + boxes[items, 2].max())
    if len(groups) > max_characters:
        raise too_many(len(groups), max_characters)

    # Primitives: each group, or a wide group's pieces between its cuts; linked[i] says whether
    # primitives i and i + 1 may be one character.
    pieces: list[Piece] = []
    owner: list[int] = []  # each primitive's group
    group_boxes = []
    for number, items in enumerate(groups):
        x0, y0 = int(boxes[items, 0].min()), int(boxes[items, 1].min())
        x1, y1 = int(boxes[items, 2].max()), int(boxes[items, 3].max())
        group_boxes.append((x0, y0, x1, y1))
        group_labels = tuple(ids[i] for i in items)
        cuts: list[int] = []
        if x1 - x0 > settings.cut_width * height:
            cuts = [x0 + c for c in _cuts(np.isin(labels[y0:y1, x0:x1], group_labels), height, settings)]
        edges = [x0, *cuts, x1]
        pieces += [Piece(group_labels, left, right) for left, right in zip(edges, edges[1:])]
        owner += [number] * (len(edges) - 1)

    def is_mark(box: tuple[int, int, int, int]) -> bool:
        return max(box[2] - box[0], box[3] - box[1]) < settings.mark_size * height

    linked = []
    for i in range(len(pieces) - 1):
        a, b = group_boxes[owner[i]], group_boxes[owner[i + 1]]
        gap = b[0] - a[2]
        near_mark = (is_mark(a) or is_mark(b)) and gap < settings.mark_gap * height
        linked.append(owner[i] == owner[i + 1] or gap < 0 or near_mark)

    candidates = []
    for first in range(len(pieces)):
        for last in range(first + 1, min(len(pieces), first + settings.max_join) + 1):
            if last > first + 1 and not linked[last - 2]:
                break
            joined = pieces[first:last]
            if last > first + 1 and max(p.right for p in joined) - joined[0].left > settings.max_width * height:
                break
            candidates.append(_candidate(ink, labels, joined, first, glyph_settings, origin))
    return Segmentation(len(pieces), candidates, height)


def best_path(segmentation: Segmentation, probabilities: np.ndarray, bonus: float = 0.0) -> list[int]:
    """The candidates (indices, left to right) that cover every primitive once with the largest
    product of ``probabilities`` (float [candidates], each candidate's best character's
    probability) times ``exp(bonus)`` per character: dynamic programming over the primitives."""
    count = segmentation.primitives
    best = [-math.inf] * (count + 1)
    best[0] = 0.0
    back: list[int | None] = [None] * (count + 1)
    order = sorted(range(len(segmentation.candidates)), key=lambda i: segmentation.candidates[i].first)
    for index in order:
        candidate = segmentation.candidates[index]
        score = best[candidate.first] + math.log(max(float(probabilities[index]), 1e-12)) + bonus
        if score > best[candidate.last]:
            best[candidate.last], back[candidate.last] = score, index
    path, position = [], count
    while position > 0:
        index = back[position]
        path.append(index)
        position = segmentation.candidates[index].first
    return path[::-1]


def spaces(boxes: Sequence[tuple[int, int, int, int]], height: float, settings: SegmentSettings = SegmentSettings()) -> list[bool]:
    """Whether a space goes before each character after the first (``len(boxes) - 1`` flags):
    where the gap between two neighbours' boxes is at least ``space_gap`` line heights and at
    least ``space_ratio`` times the median of the string's gaps narrower than that (when it has
    any), so a writer who spaces every character widely gets no spaces but the widest gaps."""
    gaps = np.array([b[0] - a[2] for a, b in zip(boxes, boxes[1:])], dtype=np.float64)
    wide = gaps >= settings.space_gap * height
    narrow = gaps[~wide]
    if narrow.size:
        wide &= gaps >= settings.space_ratio * max(float(np.median(narrow)), 0.0)
    return wide.tolist()


def read(
    segmentation: Segmentation,
    probabilities: np.ndarray,
    labels: Sequence[str],
    settings: SegmentSettings = SegmentSettings(),
    max_characters: int = 32,
) -> Reading:
    """The text of a segmentation, given each candidate's best character's probability
    (``probabilities`` float [candidates]) and answered label (``labels``). Raises
    :class:`handler.glyph.InputError` when it holds more than ``max_characters`` characters."""
    chosen = best_path(segmentation, probabilities, settings.character_bonus)
    if len(chosen) > max_characters:
        raise too_many(len(chosen), max_characters)
    boxes = [segmentation.candidates[i].box for i in chosen]
    gaps = spaces(boxes, segmentation.line_height, settings)
    text = "".join((" " if space else "") + labels[i] for space, i in zip([False, *gaps], chosen))
    return Reading(chosen, text)
