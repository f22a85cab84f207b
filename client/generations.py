"""Which of a page's answers may still be shown: those for the drawing on the pad now.

The app's callbacks for one page run concurrently (a stroke's live answer, a click, another top k,
a Clear are separate Gradio events), and they reach the server out of the order the user acted
in: Gradio's Sketchpad uploads its image before an event that reads it is sent, up to a second
later (measured in a browser). So an answer asked before a Clear or a new stroke could land after
it, on the empty pad or over the new drawing's answer: a silent wrong answer. Gradio's ``cancels``
does not help: a call already running is allowed to finish and its outputs are shown.

So the page counts **generations** of its drawing, in the browser, where the user's order is
known: each stroke, each Clear and each change of version or top k starts a new one (the events'
js in :mod:`client.app`), and every event that answers, or clears, sends the generation the user
acted in (of the stroke or the click, not of the moment Gradio sends it). The server keeps the
newest generation each page (Gradio's ``session_hash``) has sent (:meth:`Generations.see`), and a
call whose generation is older than that when it ends answers nothing (``gr.skip()``,
:meth:`Generations.is_current`). Calls of the app's API send no generation (0): a script's calls,
which share a session, never drop each other.

A stroke also takes away what explained or corrected the previous drawing (the heat map, the
correction's status line), and that event reaches the server late too, possibly after a click that
came after the stroke: so each such output notes the generation it was asked in
(:meth:`Generations.show`), and a stroke's event clears only what was asked in an older generation
(:meth:`Generations.shows_older`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

MAX_PAGES = 10_000  # pages remembered; the longest unused is forgotten first


class Generations:
    """The newest drawing generation each page has sent (thread-safe: Gradio runs callbacks on
    worker threads). A page not seen yet (or forgotten) is at generation 0; ``page`` ``None`` (a
    direct Python call, no browser page) is always current."""

    def __init__(self, max_pages: int = MAX_PAGES):
        self.max_pages = max_pages
        self._newest: OrderedDict[str, int] = OrderedDict()
        self._shown: dict[str, dict[str, int]] = {}  # page -> output -> generation it was asked in
        self._lock = threading.Lock()

    def see(self, page: str | None, generation: int) -> None:
        """``page`` sent ``generation`` (a call asked in it starts, or a Clear)."""
        if page is None:
            return
        with self._lock:
            newest = max(self._newest.pop(page, 0), generation)
            self._newest[page] = newest
            while len(self._newest) > self.max_pages:
                forgotten, _ = self._newest.popitem(last=False)
                self._shown.pop(forgotten, None)

    def is_current(self, page: str | None, generation: int) -> bool:
        """Whether ``page`` has sent no newer generation than ``generation``."""
        if page is None:
            return True
        with self._lock:
            return self._newest.get(page, 0) <= generation

    def show(self, page: str | None, output: str, generation: int) -> None:
        """``page``'s ``output`` (a name) now shows what was asked in ``generation``; call
        :meth:`see` for the page first."""
        if page is None:
            return
        with self._lock:
            if page in self._newest:
                self._shown.setdefault(page, {})[output] = generation

    def shows_older(self, page: str | None, output: str, generation: int) -> bool:
        """Whether ``page``'s ``output`` shows what was asked before ``generation`` (or nothing
        noted): a stroke that started ``generation`` may clear it."""
        if page is None:
            return True
        with self._lock:
            return self._shown.get(page, {}).get(output, -1) < generation
