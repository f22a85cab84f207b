"""The Gradio app: draw a character (or upload an image) and see what a recognizer reads, live,
with an honest confidence; ask which parts of the drawing drove the answer (a heat map from
TorchServe's Explanations API); correct a wrong answer (saved for fine-tuning); write a number or
a word on a wide pad and see the text read (``mode=text``) with each character's box; and manage
the served models.

    python -m client.app [--host 127.0.0.1] [--port 7860] [--run-dir .run]
                         [--inference-url URL] [--management-url URL] [--key-file PATH]
                         [--corrections-dir DIR] [--auth-file FILE] [--read-only]

``make client`` runs it against the TorchServe of ``make serve``. Every call goes through
:class:`client.api.TorchServeClient` (URLs, keys, retry on a refused token); the Sketchpad's value
becomes request bytes in :mod:`client.sketch`, the model list comes from :mod:`client.catalog`,
corrections are saved by :mod:`client.feedback`, and errors become sentences in
:mod:`client.messages`, shown on the page instead of tracebacks: every callback answers, none
raises.

Offline-safe: analytics off, no share link, no font or script from the internet; the page only
talks to this app, and the app only to the configured TorchServe. Loopback only unless told
otherwise: listening beyond it needs a login or ``--read-only`` (:func:`check_exposure`). Uploads
and corrections live under the run folder, not the system temp folder.
"""

from __future__ import annotations

import os

# Before gradio is imported: otherwise it tries to reach its analytics servers.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import argparse
import dataclasses
import ipaddress
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from client.api import DEFAULT_RUN_DIR, Endpoints, TorchServeClient, refused_pieces
from client.catalog import (
    TABLE_HEADERS,
    archive_name,
    choice_label,
    parse_choice,
    pick,
    registered_versions,
    store_archives,
    table_rows,
    version_choices,
)
from client.feedback import count_corrections, save_correction
from client.generations import Generations
from client.messages import EXPLAINED, explain
from client.sketch import (
    NoDrawingError,
    annotate,
    heat_map,
    image_from_base64,
    is_blank,
    png_bytes,
    sketch_image,
    sketch_to_png,
    upload_bytes,
)

# The 28x28 glyph, shown four times larger as crisp pixels.
CSS = "#seen img { image-rendering: pixelated; object-fit: contain; width: 112px; height: 112px; }"
# The pen is ready: Gradio's Sketchpad starts (and restarts after Clear) with no tool chosen, and
# a drag then selects its hint text instead of drawing. Choosing the brush for the user fixes it,
# once the pads are on the page (polled for up to 5 s; the Read text tab's pad appears when shown).
PEN_READY_JS = """(...args) => {
  const ready = (tries) => {
    for (const pad of document.querySelectorAll("#pad, #text-pad")) {
      if (pad.innerText.includes("select the draw tool")) pad.querySelector('button[aria-label="Brush"]')?.click();
    }
    const waiting = [...document.querySelectorAll("#pad, #text-pad")].some(
      (pad) => !pad.querySelector("canvas") || pad.innerText.includes("select the draw tool"));
    if (waiting && tries > 0) setTimeout(() => ready(tries - 1), 100);
  };
  ready(50);
  if (!window.recognizerTimed) {  // a stroke ends: the wait for its answer starts, and a new drawing
    window.recognizerTimed = true;
    window.padGeneration = window.padGeneration ?? 0;
    window.askedGeneration = {};
    document.addEventListener("pointerup", (event) => {
      if (event.target.closest?.("#pad canvas")) {
        window.recognizerAsked = window.padStrokeAt = performance.now();
        window.strokeGeneration = window.padGeneration += 1;
      }
    }, true);
    document.addEventListener("click", (event) => {  // a button asks about the drawing of this moment
      const button = event.target.closest?.("#recognize-drawing, #explain, #save-correction");
      if (button) window.askedGeneration[button.id] = window.padGeneration;
      // Showing the other tab, or asking about the file, starts a generation: answers for the
      // other tab's input still on their way are dropped.
      const other = event.target.closest?.("#recognize-upload, #draw-tab-button, #upload-tab-button");
      if (other && other.getAttribute("aria-selected") !== "true") window.askedGeneration[other.id] = window.padGeneration += 1;
    }, true);
  }
  return args;
}"""


# The drawing's generation (client.generations): each stroke (above), each Clear and each change of
# version or top k starts a new one, and every event that answers or clears sends, as its last
# input, the one the user acted in. Gradio runs an event's js when it sends the event, which for an
# event that reads the pad is after the pad's image is uploaded, up to seconds after the stroke or
# click (measured in a browser): so the stamps are taken when the user acted, not when the js runs.
def stamped_js(generation: str, before: str = "") -> str:
    """An event's js: ``before``, then its last input set to ``generation`` (a JS expression)."""
    return f"(...args) => {{ {before} args[args.length - 1] = {generation} ?? 0; return args; }}"


NEW_GENERATION = "window.padGeneration = (window.padGeneration ?? 0) + 1;"
# The pad was cleared after its last stroke: empty, whatever drawing a late report of it holds.
CLEARED_SINCE_STROKE = "if ((window.padClearedAt ?? -1) > (window.padStrokeAt ?? 0)) args[0] = null;"
CLEAR_JS = stamped_js("window.padGeneration", NEW_GENERATION)
PAD_CLEAR_JS = stamped_js("window.padGeneration", "window.padClearedAt = performance.now(); " + NEW_GENERATION)
STROKE_JS = stamped_js("window.strokeGeneration")
LIVE_JS = stamped_js("window.strokeGeneration", CLEARED_SINCE_STROKE)
# The answer is for what the tab shown holds: another version or top k redoes it, and so does
# showing the other tab (Recognizer.recognize_again takes the pad, then the file; the other tab's
# input is not sent).
SHOWN_TAB_ONLY = 'if (document.getElementById("upload-tab")?.checkVisibility()) args[0] = null; else args[1] = null;'
AGAIN_JS = stamped_js("window.padGeneration", f"{CLEARED_SINCE_STROKE} {SHOWN_TAB_ONLY} {NEW_GENERATION}")
# A tab shown: the generation its click started (above), and only its input; without a click (the
# tab Gradio selects when the page loads) NOT_ASKED: nothing to redo.
NOT_ASKED = -1
DRAW_SHOWN_JS = stamped_js(f'(window.askedGeneration?.["draw-tab-button"] ?? {NOT_ASKED})', f"{CLEARED_SINCE_STROKE} args[1] = null;")
UPLOAD_SHOWN_JS = stamped_js(f'(window.askedGeneration?.["upload-tab-button"] ?? {NOT_ASKED})', "args[0] = null;")
EXPLAIN_JS = stamped_js('window.askedGeneration?.["explain"]')
# Save correction sends the generation of the click and, last, the pad's generation when its image
# is sent: a stroke or a Clear in between changed the drawing that would be saved under the label.
CORRECTION_JS = stamped_js("window.padGeneration", 'args[args.length - 2] = window.askedGeneration?.["save-correction"] ?? 0;')


def asked_js(button: str) -> str:
    """A button's js: what a person waits is measured from now (:data:`WAITED_JS`); the stamp is
    the generation of the click on ``button`` (its element id)."""
    return stamped_js(f'window.askedGeneration?.["{button}"]', "window.recognizerAsked = performance.now();")


# What a person waits, measured where they wait: from the stroke's end (the pointerup above) or
# the click to the answer on the page, in the browser; the server's share is in the status line.
WAITED_JS = "(answer) => answer ? `${Math.round(performance.now() - window.recognizerAsked)} ms` : ''"
AUTH_ENV = "RECOGNIZER_APP_AUTH"  # "user:password", when no --auth-file is given
DRAWING_CHANGED = ("the drawing changed after you clicked Save correction (a stroke or Clear came before "
                   "its image was sent): nothing was saved; click Save correction again")
UNSURE = 0.5  # below this calibrated confidence the answer says which other label is close
RANKING, NOT_AN_ANSWER = "Ranking", "Closest labels (not an answer: the drawing is not taken for a character)"
WHAT_IS_READ = {"digits": "digit", "letters": "letter", "balanced": "digit or letter"}
MODELS_INFO = (
    "digits: 0-9 · letters: A-Z, upper and lower case merged (a and A are both A) · "
    "balanced: digits, A-Z and a b d e f g h n q r t"
)


@dataclass(frozen=True)
class AppSettings:
    """Where the app listens, which TorchServe it calls, what it shows first, where it keeps
    files and who may use it."""

    endpoints: Endpoints
    host: str = "127.0.0.1"
    port: int = 7860
    model: str = "digits"  # preselected in the model picker (its default version)
    top_k: int = 3
    max_top_k: int = 10
    canvas_side: int = 400  # canvas pixels of the square Sketchpad, shown about as large (see build_app)
    text_canvas: tuple[int, int] = (1000, 300)  # the Read text tab's wide Sketchpad (width, height)
    # Gradio's brush size is the pen's radius: 8 draws strokes 16 canvas pixels wide (measured in a
    # browser), inside the widths the models were trained on for characters drawn large on the pad.
    brush_size: int = 8
    scale_to: int = 2  # first value of the Models tab's Workers field (what serving.yaml runs)
    run_dir: Path = DEFAULT_RUN_DIR  # uploads and, by default, corrections live here
    corrections_dir: Path | None = None  # default: <run_dir>/corrections
    auth: tuple[tuple[str, str], ...] = ()  # logins (user, password); none: no login asked
    read_only: bool = False  # no Models tab and no corrections: nothing that changes the server or the disk

    @property
    def corrections(self) -> Path:
        return self.corrections_dir or self.run_dir / "corrections"

    @property
    def uploads(self) -> Path:
        return self.run_dir / "app-uploads"


class Recognizer:
    """The app's callbacks: each one calls TorchServe and returns values for the page, never
    raises (an error becomes a sentence on the page)."""

    def __init__(self, settings: AppSettings):
        self.settings = settings
        self.client = TorchServeClient(settings.endpoints)
        self.generations = Generations()  # which drawing each page shows now (client.generations)

    def failure(self, error: Exception) -> str:
        """The status line for an error: what went wrong and what to do (client.messages)."""
        return f"**Error:** {explain(error, self.settings.endpoints)}"

    def resolve(self, choice: str | None) -> tuple[str, str, Any]:
        """``(model, version, picker update)`` for a picker's value; an empty one (the page was
        opened while the server was down) is filled from the server now, so the page recovers
        without a reload. Raises what the management API raises (server still down, ...)."""
        if choice:
            return (*parse_choice(choice), gr.update())
        versions = registered_versions(self.client)
        picked = pick(versions, None, self.settings.model)
        if picked is None:
            raise ValueError("no model is registered (make serve registers them; the Models tab too)")
        return (*parse_choice(picked), gr.Dropdown(choices=version_choices(versions), value=picked))

    # -- recognition -----------------------------------------------------------------------------

    def recognize(
        self, to_bytes: Callable[[Any], bytes], value: Any, choice: str | None, top_k: float, live: bool = False,
        generation: float = 0, request: gr.Request | None = None,
    ) -> tuple | dict:
        """The answer (a sentence: the label, or that the drawing is not a character), ranking,
        calibrated confidence, glyph seen, status line and the picker (updated when it was
        empty) for one image. ``live``: an empty pad (just cleared) clears the answer without
        an error. Nothing (``gr.skip()``) when ``request``'s page sent a newer drawing
        ``generation`` (a stroke, a Clear) while this one was on its way (:mod:`client.generations`)."""
        return self._for_current_drawing(
            generation, request, lambda: self._answer(to_bytes, value, choice, top_k, live)
        )

    def _seen(self, generation: float, request: gr.Request | None) -> tuple[str | None, int]:
        """``request``'s page and the drawing ``generation`` it sent, noted (:meth:`Generations.see`)."""
        page, generation = session(request), int(generation or 0)
        self.generations.see(page, generation)
        return page, generation

    def _for_current_drawing(
        self, generation: float, request: gr.Request | None, compute: Callable[[], Any], shows: str | None = None
    ) -> Any:
        """``compute()``, or nothing (``gr.skip()``) when ``request``'s page sent a newer drawing
        generation than ``generation`` while it ran; ``shows``: the output it fills, noted as
        showing ``generation`` (:meth:`Generations.show`: a stroke's late event spares it)."""
        page, generation = self._seen(generation, request)
        computed = compute()
        if not self.generations.is_current(page, generation):
            return gr.skip()
        if shows:
            self.generations.show(page, shows, generation)
        return computed

    def _answer(
        self, to_bytes: Callable[[Any], bytes], value: Any, choice: str | None, top_k: float, live: bool
    ) -> tuple:
        try:
            image = to_bytes(value)
            model, version, picker = self.resolve(choice)
            started = time.perf_counter()
            result = self.client.predict(model, image, version, int(top_k), return_input=True)
            server_ms = (time.perf_counter() - started) * 1000.0
        except EXPLAINED as error:
            quiet = live and isinstance(error, NoDrawingError)
            return (*self.cleared(), "" if quiet else self.failure(error), gr.update())
        scores = {entry["label"]: entry["probability"] for entry in result["top_k"]}
        confidence = f"{result['confidence']:.1%}"
        name = f"{result['model']} {result['version']}"
        if result.get("accepted") is False:  # the ranking is still shown, but not as an answer
            ranking = gr.Label(value=scores, label=NOT_AN_ANSWER)
            read = f"does not take it for a {WHAT_IS_READ.get(result['model'], 'character')} (closest: {result['label']}, {confidence})"
            confidence = f"none: not an answer (closest {result['label']}, {confidence})"
        else:
            ranking = gr.Label(value=scores, label=RANKING)
            read = f"reads **{result['label']}** ({confidence})"
        status = f"{name} {read}; TorchServe answered in {server_ms:.0f} ms"
        seen = image_from_base64(result["input"])
        return answer_text(result), ranking, confidence, seen, status, picker

    def recognize_drawing(
        self, sketch: dict | None, choice: str | None, top_k: float, generation: float = 0,
        request: gr.Request | None = None,
    ) -> tuple | dict:
        return self.recognize(sketch_to_png, sketch, choice, top_k, generation=generation, request=request)

    def recognize_live(
        self, sketch: dict | None, choice: str | None, top_k: float, generation: float = 0,
        request: gr.Request | None = None,
    ) -> tuple | dict:
        """:meth:`recognize_drawing` on each finished stroke (quiet about an empty pad)."""
        return self.recognize(sketch_to_png, sketch, choice, top_k, live=True, generation=generation, request=request)

    def recognize_upload(
        self, path: str | None, choice: str | None, top_k: float, generation: float = 0,
        request: gr.Request | None = None,
    ) -> tuple | dict:
        return self.recognize(upload_bytes, path, choice, top_k, generation=generation, request=request)

    def recognize_again(
        self, sketch: dict | None, path: str | None, choice: str | None, top_k: float, generation: float = 0,
        request: gr.Request | None = None,
    ) -> tuple | dict:
        """The answer redone after the model version or top k changed: for the drawing on the
        pad, else for the uploaded image; quiet when there is neither. The page sends only the
        input of the tab shown (the other one as ``None``: :data:`SHOWN_TAB_ONLY`), so on the
        Upload tab the file's answer is redone even when the pad holds a drawing; nothing for
        generation :data:`NOT_ASKED` (a tab selected without the user's click)."""
        if generation == NOT_ASKED:
            return gr.skip()
        try:
            drawn = not is_blank(sketch_image(sketch))
        except NoDrawingError:
            drawn = False
        if drawn or not path:
            return self.recognize_live(sketch, choice, top_k, generation, request)
        return self.recognize_upload(path, choice, top_k, generation, request)

    def clear(self, generation: float = 0, request: gr.Request | None = None) -> tuple:
        """Empty answer, ranking, confidence, glyph, status, heat map and wait (the pad or the
        upload was cleared, starting drawing ``generation``): an answer still on its way for
        ``request``'s page is dropped."""
        self._seen(generation, request)
        return *self.cleared(), "", None, ""

    def stroke(self, generation: float = 0, request: gr.Request | None = None) -> tuple | Any:
        """A stroke started drawing ``generation``: an answer still on its way is dropped, and the
        heat map and the correction's status (not in read-only mode: the heat map alone) go, as
        they were about another drawing, unless they were asked for after the stroke (this event
        can reach the server after such a click: :meth:`Generations.shows_older`)."""
        page, generation = self._seen(generation, request)
        cleared = tuple(
            empty if self.generations.shows_older(page, output, generation) else gr.skip()
            for output, empty in (("heat", None), ("correction", ""))[: 1 if self.settings.read_only else 2]
        )
        return cleared if len(cleared) > 1 else cleared[0]

    def explain_drawing(
        self, sketch: dict | None, choice: str | None, generation: float = 0, request: gr.Request | None = None
    ) -> tuple | dict:
        """The drawing with a heat map of what drove the answer (:mod:`handler.explain`) and a
        status line; nothing (``gr.skip()``) when the drawing changed while it was computed."""
        return self._for_current_drawing(generation, request, lambda: self._explain(sketch, choice), shows="heat")

    def _explain(self, sketch: dict | None, choice: str | None) -> tuple:
        try:
            image = sketch_image(sketch)
            png = png_bytes(image)
            model, version, _ = self.resolve(choice)
            result = self.client.explain(model, png, version)
        except EXPLAINED as error:
            return None, self.failure(error)
        explanation = result["explanation"]
        shown = heat_map(image, explanation["attributions"], explanation["frame"])
        status = (f"Red: ink that made {result['model']} {result['version']} answer **{result['label']}**; "
                  f"blue: ink that spoke against it ({explanation['method']} sensitivity, "
                  f"{explanation['milliseconds']:.0f} ms in the handler).")
        return shown, status

    def save_correction(
        self, sketch: dict | None, label: str | None, generation: float = 0, sent: float = 0,
        request: gr.Request | None = None,
    ) -> str | dict:
        """Save the drawing as an example of ``label`` (:mod:`client.feedback`); a status line
        (saved, or why not), which a stroke of a later drawing takes away. ``generation``: the
        drawing's when Save was clicked; ``sent``: when the page sent its image (Gradio sends it
        after uploading it, and a stroke or Clear may come in between): when they differ, the
        image is not the drawing the label was typed for, and nothing is saved."""
        page, generation = self._seen(generation, request)
        self.generations.show(page, "correction", generation)
        if int(sent or 0) != generation:
            return self.failure(ValueError(DRAWING_CHANGED))
        return self._save(sketch, label)

    def _save(self, sketch: dict | None, label: str | None) -> str:
        try:
            path = save_correction(self.settings.corrections, sketch_to_png(sketch), label or "")
        except (OSError, ValueError) as error:
            return self.failure(error)
        count = count_corrections(self.settings.corrections)
        return (f"Saved as an example of **{label.strip()}**: {path} ({count} correction{'s' * (count != 1)} so far; "
                f"`make train FEEDBACK_DIR={self.settings.corrections}` trains on them).")

    def read_text(self, sketch: dict | None, choice: str | None) -> tuple:
        """The text read on the wide pad (``mode=text``), the drawing with each character's box
        and label, the TorchServe time, a status line and the picker (updated when it was empty)."""
        try:
            image = sketch_image(sketch)
            png = png_bytes(image)
            model, version, picker = self.resolve(choice)
            started = time.perf_counter()
            result = self.client.predict(model, png, version, mode="text")
            elapsed_ms = (time.perf_counter() - started) * 1000.0
        except EXPLAINED as error:
            return "", None, "", self.failure(error), gr.update()
        status = text_status(result)
        boxes = annotate(image, result["characters"])
        return result["text"], boxes, f"{elapsed_ms:.0f} ms", status, picker

    @staticmethod
    def cleared() -> tuple:
        """Empty answer, ranking, confidence and glyph (the pad was cleared, or the call failed)."""
        return "", gr.Label(value=None, label=RANKING), "", None

    # -- models ----------------------------------------------------------------------------------

    def refresh(
        self, picked: str | None, managed: str | None, text_picked: str | None = None, done: str = ""
    ) -> tuple:
        """Models table, the three model pickers (each keeps its value while that version is
        registered), the store's archives (the archive picker keeps its value) and a status line, from the management API now (new
        registrations appear without restarting the app). When the server cannot be reached,
        the table and pickers stay as they are and the status line says so."""
        # Choices only: the archive picker keeps its value too.
        archive = gr.Dropdown(choices=store_archives(self.settings.endpoints.model_store))
        try:
            versions = registered_versions(self.client)
        except EXPLAINED as error:
            # The server is down: that is what the user needs to hear, not an action's own error
            # (often this one, or an empty picker's, as the picker is empty when the page opened
            # while the server was down); a done action is still reported.
            failed = self.failure(error)
            if done and not done.startswith("**Error:**"):
                failed = f"{done} {failed}"
            return gr.update(), gr.update(), gr.update(), archive, gr.update(), failed
        choices = version_choices(versions)
        pickers, notes = [], []
        for current in (picked, managed, text_picked):
            value = pick(versions, current, self.settings.model)
            pickers.append(gr.Dropdown(choices=choices, value=value))
            if current and value != current:
                notes.append(f"{shown_choice(current)} is not registered: a picker now shows "
                             f"{shown_choice(value) if value else 'nothing'}.")
        message = done or f"{len(versions)} model versions registered."
        table = gr.Dataframe(value=table_rows(versions), headers=TABLE_HEADERS)
        return table, pickers[0], pickers[1], archive, pickers[2], " ".join([message, *dict.fromkeys(notes)])

    def load(self, picked: str | None, managed: str | None, text_picked: str | None) -> tuple:
        """:meth:`refresh` when the page opens, plus the Recognize tab's status line: empty, or
        that the server cannot be reached (the next drawing tries again)."""
        models = self.refresh(picked, managed, text_picked)
        message = models[-1]
        down = message if message.startswith("**Error:**") else ""
        return (*models, down + (" Draw when it runs: the app asks the server again." if down else ""))

    def manage(
        self, action: Callable[[], Any], done: str, picked: str | None, managed: str | None,
        text_picked: str | None,
    ) -> tuple:
        """Run one management ``action``, then refresh with ``done`` or the error; every picker
        keeps its value."""
        try:
            action()
        except EXPLAINED as error:
            return self.refresh(picked, managed, text_picked, self.failure(error))
        return self.refresh(picked, managed, text_picked, done)

    def scale(self, managed: str | None, workers: float | None, picked: str | None, text_picked: str | None = None) -> tuple:
        count = int(workers) if workers is not None else -1

        def action() -> None:
            if count < 0:
                raise ValueError("enter how many workers the version should run (0 or more)")
            model, version = parse_choice(managed or "")
            self.client.scale(model, count, version)

        done = f"{shown_choice(managed)} now runs {count} worker{'' if count == 1 else 's'}."
        return self.manage(action, done, picked, managed, text_picked)

    def set_default(self, managed: str | None, picked: str | None, text_picked: str | None = None) -> tuple:
        return self.manage(
            lambda: self.client.set_default(*parse_choice(managed or "")),
            f"{shown_choice(managed)} is now the default version.", picked, managed, text_picked,
        )

    def unregister(self, managed: str | None, picked: str | None, text_picked: str | None = None) -> tuple:
        return self.manage(
            lambda: self.client.unregister(*parse_choice(managed or "")),
            f"{shown_choice(managed)} is unregistered.", picked, managed, text_picked,
        )

    def register(self, archive: str | None, picked: str | None, managed: str | None, text_picked: str | None = None) -> tuple:
        def action() -> None:
            if not archive:
                raise ValueError("choose an archive of the model store (make archive builds them)")
            self.client.register(archive_name(archive, self.settings.endpoints.model_store))

        return self.manage(action, f"{archive} is registered.", picked, managed, text_picked)


def session(request: gr.Request | None) -> str | None:
    """The page a callback serves (Gradio's session hash; ``None`` for a direct call)."""
    return request.session_hash if request is not None else None


def shown_choice(choice: str | None) -> str:
    """A picker's value as the page shows it: ``"digits/1.0"`` -> ``"digits 1.0"``."""
    return choice_label(choice) if choice else "(no version chosen)"


def text_status(result: dict[str, Any]) -> str:
    """The text answer (``mode=text``) as a person reads it: the string, how many characters and
    its confidence; when a piece of it is no character (``"accepted": false``), which ones, as
    the string holds their closest guess."""
    count = len(result["characters"])
    status = (f"{result['model']} {result['version']} reads **{result['text']}** "
              f"({count} character{'' if count == 1 else 's'}, confidence {result['confidence']:.1%})")
    refused = refused_pieces(result)
    if refused:
        kind = WHAT_IS_READ.get(result["model"], "character")
        pieces = ", ".join(f"piece {place} (read as {label})" for place, label in refused)
        verdict = f"does not look like a {kind}" if len(refused) == 1 else f"do not look like {kind}s"
        status += f". **Check it:** {pieces} {verdict}"
    return status


def answer_text(result: dict[str, Any]) -> str:
    """The answer as a person reads it: the label and how sure the model is (calibrated), or,
    when the service does not accept the drawing as a character, that it is none, with the
    closest label; an unsure answer names the runner-up."""
    kind = WHAT_IS_READ.get(result["model"], "character")
    confidence = f"{result['confidence']:.1%}"
    if result.get("accepted") is False:
        return (f"### This does not look like a {kind}\n"
                f"(the closest is {result['label']}, {confidence}: draw one {kind}, larger or clearer)")
    text = f"### {result['label']}\n{confidence} sure"
    runner_up = result["top_k"][1] if len(result["top_k"]) > 1 else None
    if result["confidence"] < UNSURE and runner_up:
        text += f": not sure, it could also be {runner_up['label']} ({runner_up['probability']:.1%})"
    return text


def build_app(settings: AppSettings) -> gr.Blocks:
    """The page: Recognize (Sketchpad or upload, live answers, heat map, corrections), Read text
    and Models tabs; without the Models tab and corrections when ``settings.read_only``."""
    recognizer = Recognizer(settings)
    side = settings.canvas_side
    pen = gr.Brush(default_size=settings.brush_size, colors=["#000000"], color_mode="fixed")
    manages = not settings.read_only
    with gr.Blocks(title="Handwriting recognizers", analytics_enabled=False) as app:
        gr.Markdown("# Handwriting recognizers\nDraw a digit or a letter: the answer follows each stroke.")
        with gr.Tab("Recognize"):
            with gr.Row():
                with gr.Column():
                    with gr.Row():
                        picker = gr.Dropdown(
                            label="Model version", choices=[], allow_custom_value=True, elem_id="model",
                            info=MODELS_INFO, scale=3,
                        )
                        top_k = gr.Slider(1, settings.max_top_k, value=settings.top_k, step=1, label="Top k", scale=1)
                    with gr.Tab("Draw", elem_id="draw-tab") as draw_tab:
                        # A canvas slightly larger than the pad shows it (zoom under 100%), so the
                        # zoom Gradio picks on load is the one it resets to on Clear: no jump.
                        pad = gr.Sketchpad(
                            label="Draw one character, large: the pen is ready (the bar on the left has the eraser)",
                            canvas_size=(side, side), height=side + 40,
                            layers=False, brush=pen, elem_id="pad",
                        )
                        with gr.Row():
                            draw_button = gr.Button("Recognize drawing", variant="primary", elem_id="recognize-drawing")
                            explain_button = gr.Button("Why? (heat map)", elem_id="explain")
                        if manages:
                            with gr.Row():
                                correct_label = gr.Textbox(
                                    label="Not right? The right answer is", elem_id="correct-label",
                                    placeholder="one digit or letter", scale=2,
                                )
                                correct_button = gr.Button("Save correction", elem_id="save-correction", scale=1)
                            correction_status = gr.Markdown(elem_id="correction-status")
                    with gr.Tab("Upload", elem_id="upload-tab") as upload_tab:
                        upload = gr.File(
                            label="Image file (PNG, JPEG, WebP, GIF, BMP)", type="filepath", elem_id="upload",
                        )
                        upload_button = gr.Button("Recognize image", variant="primary", elem_id="recognize-upload")
                with gr.Column():
                    answer = gr.Markdown(elem_id="answer")
                    ranking = gr.Label(label=RANKING, elem_id="ranking")
                    with gr.Row():
                        confidence = gr.Textbox(
                            label="Confidence (calibrated)", interactive=False, elem_id="confidence"
                        )
                        waited = gr.Textbox(
                            label="You waited (stroke or click to answer)", interactive=False, elem_id="waited"
                        )
                    seen = gr.Image(
                        label="What the model saw (28x28)", type="pil", interactive=False,
                        height=168, format="png", elem_id="seen",
                    )
                    heat = gr.Image(
                        label="Why: what drove the answer", type="pil", interactive=False, format="png",
                        elem_id="heat",
                    )
                    status = gr.Markdown(elem_id="status")
        with gr.Tab("Read text") as text_tab:
            width, height = settings.text_canvas
            with gr.Row():
                text_pad = gr.Sketchpad(
                    label="Write a number, a code or a word on one line", canvas_size=(width, height),
                    height=height + 120, layers=False, brush=pen, elem_id="text-pad",
                )
            with gr.Row():
                text_picker = gr.Dropdown(
                    label="Model version", choices=[], allow_custom_value=True, elem_id="text-model",
                    info=MODELS_INFO,
                )
                text_button = gr.Button("Read text", variant="primary", elem_id="read-text")
            text_read = gr.Textbox(label="Text read", interactive=False, elem_id="text-read")
            text_boxes = gr.Image(
                label="Characters found", type="pil", interactive=False, format="png", elem_id="text-boxes"
            )
            text_time = gr.Textbox(label="TorchServe answered in", interactive=False, elem_id="text-round-trip")
            text_status = gr.Markdown(elem_id="text-status")
        # Read-only: the tab is not shown and none of its buttons is wired (no API endpoint).
        with gr.Tab("Models", visible=manages):
            table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, elem_id="models-table")
            with gr.Row():
                managed = gr.Dropdown(label="Model version", choices=[], allow_custom_value=True, elem_id="managed")
                workers = gr.Number(label="Workers", value=settings.scale_to, precision=0, elem_id="workers")
                scale_button = gr.Button("Scale workers", elem_id="scale")
                default_button = gr.Button("Set as default", elem_id="set-default")
                unregister_button = gr.Button("Unregister", variant="stop", elem_id="unregister")
            with gr.Row(visible=False) as confirm_row:
                confirm_text = gr.Markdown(elem_id="confirm-text")
                confirm_button = gr.Button("Yes, unregister it", variant="stop", elem_id="confirm-unregister")
                cancel_button = gr.Button("Cancel", elem_id="cancel-unregister")
            with gr.Row():
                archives = store_archives(settings.endpoints.model_store)
                archive = gr.Dropdown(
                    label="Archive in the model store", choices=archives, value=archives[0] if archives else None,
                    allow_custom_value=True,
                )
                register_button = gr.Button("Register", elem_id="register")
                refresh_button = gr.Button("Refresh", elem_id="refresh")
            models_status = gr.Markdown(elem_id="models-status")

        results = [answer, ranking, confidence, seen, status, picker]
        # The drawing's generation, which the page's events send (client.generations; set by the
        # events' js, never shown; the app's API leaves it at 0).
        generation = gr.Number(value=0, precision=0, visible=False)
        draw_button.click(
            recognizer.recognize_drawing, [pad, picker, top_k, generation], results, api_name="recognize_drawing",
            js=asked_js("recognize-drawing"),
        ).then(None, answer, waited, js=WAITED_JS)
        # Live: each finished stroke changes the pad; "always_last" drops the drawings a newer
        # one has replaced while a call was running, so the latest drawing wins. Across events
        # (a stroke, a click, another top k, Clear), only the answers for the drawing on the pad
        # are shown (client.generations).
        pad.change(
            recognizer.recognize_live, [pad, picker, top_k, generation], results, api_visibility="private",
            trigger_mode="always_last", show_progress="hidden", js=LIVE_JS,
        ).then(None, answer, waited, js=WAITED_JS)
        # A new stroke makes the heat map and a correction's status about another drawing.
        pad.input(
            recognizer.stroke, generation, [heat, correction_status] if manages else heat,
            api_visibility="private", show_progress="hidden", js=STROKE_JS,
        )
        upload_button.click(
            recognizer.recognize_upload, [upload, picker, top_k, generation], results, api_name="recognize_upload",
            js=asked_js("recognize-upload"),
        ).then(None, answer, waited, js=WAITED_JS)
        explain_button.click(
            recognizer.explain_drawing, [pad, picker, generation], [heat, status], api_name="explain", js=EXPLAIN_JS,
        )
        # Another version or top k, or the other tab shown: the answer is redone for the tab's input,
        # and the heat map, which explained the previous answer, goes (as after a new stroke).
        redone = (  # picker and top k: the user changed them (not a blur, not the app)
            (picker.input, AGAIN_JS), (top_k.input, AGAIN_JS), (draw_tab.select, DRAW_SHOWN_JS),
            (upload_tab.select, UPLOAD_SHOWN_JS),
        )
        for changed, again in redone:
            changed(
                recognizer.recognize_again, [pad, upload, picker, top_k, generation], results,
                api_visibility="private", trigger_mode="always_last", show_progress="hidden", js=again,
            ).then(lambda: None, None, heat, api_visibility="private")
        for source, clear_js in ((pad, PAD_CLEAR_JS), (upload, CLEAR_JS)):
            source.clear(recognizer.clear, generation, [answer, ranking, confidence, seen, status, heat, waited],
                         api_visibility="private", js=clear_js)
        for sketchpad in (pad, text_pad):
            sketchpad.clear(None, None, None, js=PEN_READY_JS)
        text_tab.select(None, None, None, js=PEN_READY_JS)  # its pad is drawn when the tab is first shown
        if manages:
            sent = gr.Number(value=0, precision=0, visible=False)  # the pad's generation when its image is sent
            correct_button.click(
                recognizer.save_correction, [pad, correct_label, generation, sent], correction_status,
                api_name="save_correction", js=CORRECTION_JS,
            )

        text_results = [text_read, text_boxes, text_time, text_status, text_picker]
        text_button.click(recognizer.read_text, [text_pad, text_picker], text_results, api_name="read_text")
        text_pad.clear(lambda: ("", None, "", ""), None, text_results[:4], api_visibility="private")

        models = [table, picker, managed, archive, text_picker, models_status]
        pickers = [picker, managed, text_picker]
        app.load(recognizer.load, pickers, [*models, status], api_name="refresh_models", js=PEN_READY_JS)
        for dropdown in (picker, text_picker):  # re-read the server whenever the user opens a picker
            dropdown.focus(recognizer.refresh, pickers, models, api_visibility="private")
        if manages:
            refresh_button.click(recognizer.refresh, pickers, models, api_visibility="private")
            scale_button.click(recognizer.scale, [managed, workers, picker, text_picker], models, api_name="scale")
            default_button.click(recognizer.set_default, [managed, picker, text_picker], models, api_name="set_default")
            unregister_button.click(
                lambda choice: (gr.Row(visible=True), f"Unregister **{shown_choice(choice)}**? Requests "
                                "to it fail from then on."),
                managed, [confirm_row, confirm_text], api_visibility="private",
            )
            cancel_button.click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private")
            confirm_button.click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private").then(
                recognizer.unregister, [managed, picker, text_picker], models, api_name="unregister",
            )
            register_button.click(recognizer.register, [archive, picker, managed, text_picker], models, api_name="register")
    return app


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


class ExposureError(RuntimeError):
    """The app would listen beyond loopback with nothing keeping strangers from its Models tab."""


def check_exposure(settings: AppSettings) -> None:
    """Refuse to listen beyond loopback unless a login is required or nothing on the page can
    change the server or the disk (``read_only``). Raises :class:`ExposureError` saying how."""
    if is_loopback(settings.host) or settings.auth or settings.read_only:
        return
    raise ExposureError(
        f"--host {settings.host} makes the app reachable from other machines, and its Models tab "
        "and corrections change the server and the disk. Require a login: --auth-file FILE (one "
        f"user:password a line) or the {AUTH_ENV}=user:password variable (never on the command "
        "line, where other users can read it); or add --read-only to run without the Models tab "
        "and corrections."
    )


def read_credentials(text: str, source: str) -> tuple[tuple[str, str], ...]:
    """Logins from ``user:password`` lines (blank lines and ``#`` comments skipped). Raises
    ``ValueError`` naming ``source`` for a line without a user or a password."""
    logins = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, separator, password = line.partition(":")
        if not (user and separator and password):
            raise ValueError(f"{source}, line {number}: expected user:password")
        logins.append((user, password))
    if not logins:
        raise ValueError(f"{source} holds no user:password line")
    return tuple(logins)


def launch(settings: AppSettings, block: bool = True) -> gr.Blocks:
    """Start the app on ``settings.host:port``; never with a share link. ``block=False`` returns
    at once (the tests run the app in-process). Raises :class:`ExposureError` (see
    :func:`check_exposure`)."""
    check_exposure(settings)
    # Gradio keeps every uploaded file (and the drawings it passes around) in GRADIO_TEMP_DIR,
    # the system temp folder by default: keep them with the run's other files instead.
    settings.uploads.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(settings.uploads.resolve())
    app = build_app(settings)
    app.launch(
        server_name=settings.host,
        server_port=settings.port,
        share=False,
        prevent_thread_lock=not block,
        quiet=True,  # Gradio's banner suggests share=True; main() says where the app is instead
        footer_links=[],
        css=CSS,
        auth=list(settings.auth) or None,
        auth_message="Sign in with a login of the app's --auth-file or RECOGNIZER_APP_AUTH.",
    )
    return app


def parse_settings(argv: list[str] | None = None) -> AppSettings:
    """Flags first, then environment variables, then the run folder of ``make serve``. Logins
    come from ``--auth-file`` or :data:`AUTH_ENV`, never from the command line itself."""
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m client.app", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (GRADIO_SERVER_NAME; default 127.0.0.1); "
                             "beyond loopback it needs --auth-file, RECOGNIZER_APP_AUTH or --read-only")
    parser.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")),
                        help="port to listen on (GRADIO_SERVER_PORT; default 7860)")
    parser.add_argument("--run-dir", type=Path,
                        help="the server's run folder (RECOGNIZER_RUN_DIR; default .run); uploads go there")
    parser.add_argument("--inference-url",
                        help="RECOGNIZER_INFERENCE_URL; default: from the run folder")
    parser.add_argument("--management-url",
                        help="RECOGNIZER_MANAGEMENT_URL; default: from the run folder")
    parser.add_argument("--key-file", type=Path,
                        help="RECOGNIZER_KEY_FILE; default: <run folder>/key_file.json")
    parser.add_argument("--model-store", type=Path,
                        help="archives the Models tab offers to register; default: the server's")
    parser.add_argument("--model", default=AppSettings.model,
                        help="model preselected (default digits)")
    parser.add_argument("--corrections-dir", type=Path,
                        help="where corrections are saved (<dir>/<label>/<id>.png); default <run folder>/corrections")
    parser.add_argument("--auth-file", type=Path,
                        help=f"logins, one user:password a line ({AUTH_ENV}=user:password otherwise)")
    parser.add_argument("--read-only", action="store_true",
                        help="no Models tab and no corrections: nothing on the page changes the server or the disk")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir or env("RECOGNIZER_RUN_DIR") or DEFAULT_RUN_DIR)
    endpoints = Endpoints.discover(
        run_dir=run_dir, inference=args.inference_url,
        management=args.management_url, key_file=args.key_file,
    )
    if args.model_store:
        endpoints = dataclasses.replace(endpoints, model_store=args.model_store)
    try:
        if args.auth_file:
            auth = read_credentials(args.auth_file.read_text(), str(args.auth_file))
        else:
            auth = read_credentials(env(AUTH_ENV), AUTH_ENV) if env(AUTH_ENV) else ()
    except (OSError, ValueError) as error:
        parser.error(f"cannot read the logins: {error}")
    return AppSettings(
        endpoints=endpoints, host=args.host, port=args.port, model=args.model, run_dir=run_dir,
        corrections_dir=args.corrections_dir, auth=auth, read_only=args.read_only,
    )


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    endpoints = settings.endpoints
    try:
        check_exposure(settings)
    except ExposureError as error:
        sys.exit(f"error: {error}")
    print(
        f"Drawing app on http://{settings.host}:{settings.port} (Ctrl+C stops it), calling "
        f"TorchServe at {endpoints.inference} and {endpoints.management} with the keys of "
        f"{endpoints.key_file}" + ("; login required" if settings.auth else "")
        + ("; read-only (no Models tab, no corrections)" if settings.read_only else ""),
        flush=True,
    )
    try:
        launch(settings)
    except OSError as error:  # the port is taken, the address is not this machine's, ...
        sys.exit(f"error: cannot listen on {settings.host}:{settings.port}: {error}")


if __name__ == "__main__":
    main()
