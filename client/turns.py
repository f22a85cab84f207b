"""Which of a page's answers may still be shown: the latest one, for the drawing on the pad.

The app's callbacks for one page run concurrently (a stroke's live answer, a click, another top k,
a Clear are separate Gradio events), so an answer that was on its way when the drawing changed
could land after the new drawing's answer, or on a cleared pad: a silent wrong answer. Gradio's
``cancels`` does not help here: a call already running is allowed to finish and its outputs are
shown. So each page (Gradio's ``session_hash``) counts **turns**: a live answer (a stroke's, or
one redone for another version or top k) takes one when it starts (:meth:`Turns.take`), and so
does Clear; a call whose turn is no longer the latest when it ends (:meth:`Turns.is_latest`)
answers nothing (``gr.skip()``). An asked call (a button: an answer, an upload's, the heat map;
also the app's API, whose calls from one script share a session) takes no turn but notes the one
it started in (:meth:`Turns.current`): it is dropped when the drawing changed while it ran, and
never drops another.

Gradio's Sketchpad also reports some strokes twice, the second time up to seconds later (seen
with long strokes), with the same drawing: after a Clear, that repeat would bring the cleared
drawing's answer back onto the empty pad. A live call for the very drawing the page's previous
live call had (:meth:`Turns.repeats`) answers nothing either: its answer is shown already, or
was cleared.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

MAX_PAGES = 10_000  # pages remembered; the longest unused is forgotten first


@dataclass
class _Page:
    turn: int = 0
    drawing: bytes | None = None  # digest of the drawing of the page's last live call


class Turns:
    """Turns and the last live drawing, per page (thread-safe: Gradio runs callbacks on worker
    threads). A page not seen yet (or forgotten) is at turn 0 with no drawing. ``page`` ``None``
    (a direct Python call, no browser page) is never stale and never repeats."""

    def __init__(self, max_pages: int = MAX_PAGES):
        self.max_pages = max_pages
        self._pages: OrderedDict[str, _Page] = OrderedDict()
        self._lock = threading.Lock()

    def _page(self, page: str) -> _Page:
        """``page``'s record, made the most recently used (call with the lock held)."""
        record = self._pages.pop(page, None) or _Page()
        self._pages[page] = record
        while len(self._pages) > self.max_pages:
            self._pages.popitem(last=False)
        return record

    def take(self, page: str | None) -> int:
        """A new turn for ``page``: every call still running on it is stale from now on."""
        if page is None:
            return 0
        with self._lock:
            record = self._page(page)
            record.turn += 1
            return record.turn

    def current(self, page: str | None) -> int:
        """``page``'s turn now, taking none."""
        if page is None:
            return 0
        with self._lock:
            record = self._pages.get(page)
            return record.turn if record else 0

    def is_latest(self, page: str | None, turn: int) -> bool:
        """Whether no turn was taken on ``page`` since ``turn`` (a forgotten page: taken as latest)."""
        if page is None:
            return True
        with self._lock:
            record = self._pages.get(page)
            return record is None or record.turn == turn

    def repeats(self, page: str | None, drawing: bytes) -> bool:
        """Whether ``drawing`` (the encoded image a live call is about to send) is the one of
        ``page``'s previous live call; it becomes the page's last drawing either way."""
        if page is None:
            return False
        digest = hashlib.sha256(drawing).digest()
        with self._lock:
            record = self._page(page)
            repeated, record.drawing = record.drawing == digest, digest
            return repeated
