"""A real browser on the real app: headless Chromium (Debian's ``chromium``, installed by
``make browser``), driven by Playwright, draws on the Sketchpad with the mouse, as a person does
(no tool picked first), and reads the answers from the page: live after each stroke, after a
Clear, for a blob, for an upload that is no image, with a heat map; it shows either tab, changes
top k on it and sees the answer for that tab's input; it types a correction longer
than one character and sees it refused whole, and a correction refused when a stroke follows
the click before the drawing is sent; it holds an answer back and clears the pad or
adds a stroke while it is on its way, and that answer never lands; it holds the pad's upload
back and clears (after a stroke, after the Recognize button) or changes top k meanwhile, and the
late answer never lands either; it confirms an unregister,
and it opens the page while TorchServe is down, starts it and draws without a reload.

The time from the end of a stroke to the answer on the page is measured inside the page
(``pointerup`` on the canvas to the answer's text changing, one clock) and written to
``tests/artifacts/browser-latency.json``; screenshots go there too (git-ignored) for CI to keep."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from handler.server import PORT_NAMES, TorchServe, free_ports
from tests.canvases import drawing, encode
from tests.conftest import PROJECT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# Headless, and nothing that would reach the internet (see ../shared/docs/platform-notes.md).
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
ARTIFACTS = PROJECT / "tests" / "artifacts"
TIMEOUT_MS = 30_000

# Strokes as offsets from the canvas centre, in pixels of the page (the pad is 400 canvas pixels
# wide, shown at about 380): how a person draws the character with the mouse.
STROKES = {
    "7": [[(-70, -90), (75, -90), (-15, 100)]],
    "1": [[(5, -100), (0, 100)]],
    # A filled blob: back and forth over a small square until it is ink.
    "blob": [[(x, y) for row in range(0, 60, 8) for x, y in ((-30, -30 + row), (30, -30 + row))]],
}
# Mouse moves per straight segment; the pad joins them with a stroke. Each move is rendered in
# software (no GPU), up to ~0.5 s each on a busy 2-core machine, so a few are enough.
MOVES_PER_SEGMENT = 4
ANSWER = "#answer"
UPLOADS = "**/gradio_api/upload**"  # where the page uploads the pad's image before an event reads it
# Records, in the page's clock, when a stroke ends on the pad and when the answer's text next
# changes to an answer (the label with "sure", or the "does not look like" notice).
WATCH_JS = """() => {
  window.strokeEnded = null; window.answerShown = null;
  const answer = document.querySelector("#answer");
  const before = answer.innerText;
  document.querySelector("#pad canvas").addEventListener(
    "pointerup", () => { window.strokeEnded = performance.now(); }, {capture: true, once: true});
  new MutationObserver((changes, observer) => {
    const text = answer.innerText;
    if (text !== before && /sure|does not look/.test(text)) { window.answerShown = performance.now(); observer.disconnect(); }
  }).observe(answer, {subtree: true, childList: true, characterData: true});
}"""


# The wait, and the browser's own share of it: from the stroke's end to the first request the
# page sends for it (Gradio's pad exports its images first: rendering and PNG encoding in the page).
TIMES_JS = """() => {
  const sent = performance.getEntriesByType("resource").map((entry) => entry.startTime)
    .filter((start) => start > window.strokeEnded);
  return {stroke_to_answer_ms: Math.round(window.answerShown - window.strokeEnded),
          stroke_to_first_request_ms: Math.round(Math.min(...sent) - window.strokeEnded)};
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make browser` (or set CHROMIUM=/path/to/it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def requests_elsewhere() -> list[str]:
    """URLs the page requested from anything but the app (it must work offline)."""
    return []


@pytest.fixture(scope="module")
def latencies() -> Iterator[list[dict]]:
    """Stroke-end-to-answer times measured in the page (:data:`TIMES_JS`), written with their
    medians to the artifacts at the end."""
    measured: list[dict] = []
    yield measured
    if measured:
        ARTIFACTS.mkdir(exist_ok=True)
        medians = {f"median_{key}": statistics.median(m[key] for m in measured) for key in measured[0]}
        summary = {"strokes": measured, **medians}
        (ARTIFACTS / "browser-latency.json").write_text(json.dumps(summary, indent=2) + "\n")


@pytest.fixture(scope="module")
def page(gradio_app: str, browser: Browser, requests_elsewhere: list[str]) -> Iterator[Page]:
    """The app's page in headless Chromium, with the model picker filled from the server."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    app_host = urlsplit(gradio_app).netloc
    page.on("request", lambda request: requests_elsewhere.append(request.url)
            if leaves_the_app(request.url, app_host) else None)
    page.goto(gradio_app)
    expect(page.locator("#model input")).to_have_value("digits 1.0 (default)")
    yield page
    page.close()


def leaves_the_app(url: str, app_host: str) -> bool:
    """A network request to another host (data: and blob: URLs never leave the browser)."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != app_host


def draw(page: Page, shape: str, pad: str = "#pad") -> None:
    """Draw ``shape`` with mouse moves on a Sketchpad's canvas, touching no tool first."""
    box = page.locator(f"{pad} canvas").first.bounding_box()
    centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    for stroke in STROKES[shape]:
        (x, y), *rest = stroke
        page.mouse.move(centre_x + x, centre_y + y)
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(centre_x + x, centre_y + y, steps=MOVES_PER_SEGMENT)
        page.mouse.up()


def draw_and_time(page: Page, shape: str, latencies: list[float]) -> str:
    """Draw ``shape`` (one stroke), wait for the live answer, record the stroke-end-to-answer
    time measured in the page; returns the answer's text."""
    page.evaluate(WATCH_JS)
    draw(page, shape)
    page.wait_for_function("() => window.answerShown !== null", timeout=TIMEOUT_MS)
    latencies.append(page.evaluate(TIMES_JS))
    return page.locator(ANSWER).inner_text()


def zoom(page: Page) -> str:
    """The zoom the Sketchpad shows (``95%``)."""
    return page.locator("#pad").get_by_text("%").first.inner_text()


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / name, full_page=True)


def test_a_seven_drawn_with_the_mouse_is_answered_live(page, latencies):
    expect(page.locator("#pad")).not_to_contain_text("select the draw tool")  # the pen is ready
    answer = draw_and_time(page, "7", latencies)
    screenshot(page, "browser-seven.png")
    assert answer.startswith("7\n") and "sure" in answer, answer
    expect(page.locator('#ranking [data-testid="label-output-value"]')).to_have_text("7")
    expect(page.locator("#status")).to_contain_text("digits 1.0 reads 7")
    expect(page.locator("#waited textarea")).to_have_value(re.compile(r"^\d+ ms$"))
    expect(page.locator("#seen img")).to_be_visible()


def test_after_clear_the_pen_is_ready_the_pad_does_not_jump_and_a_one_is_read(page, latencies):
    before = zoom(page)
    page.get_by_role("button", name="Clear canvas").click()
    expect(page.locator(ANSWER)).to_have_text("")
    expect(page.locator("#confidence textarea")).to_have_value("")
    expect(page.locator("#pad")).not_to_contain_text("select the draw tool")
    assert zoom(page) == before
    answer = draw_and_time(page, "1", latencies)
    screenshot(page, "browser-one.png")
    assert answer.startswith("1\n"), answer


def test_the_heat_map_shows_what_drove_the_answer(page):
    page.locator("#explain").click()
    expect(page.locator("#heat img")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("occlusion sensitivity")
    screenshot(page, "browser-heat-map.png")


def test_a_correction_typed_longer_than_one_character_is_refused_whole(page, latencies):
    # A drawing to correct (a 7 over the pad's 1), its answer awaited.
    draw_and_time(page, "7", latencies)
    # Typed key by key, as a person types: a box that kept only the first key saved "h" for "hello".
    page.locator("#correct-label textarea").press_sequentially("hello")
    page.locator("#save-correction").click()
    expect(page.locator("#correction-status")).to_contain_text(
        "type the right answer as one digit or letter (got 'hello')")
    page.locator("#correct-label textarea").fill("")


def test_a_correction_is_not_saved_when_a_stroke_follows_the_click_before_the_drawing_is_sent(page, latencies):
    draw_and_time(page, "7", latencies)
    page.locator("#correct-label textarea").fill("7")
    with uploads_held(page) as held:
        page.locator("#save-correction").click()
        wait_for_upload(page, held)
        draw(page, "1")  # the 7 with a 1 over it would have been saved as a 7
    # The page uploads the drawing again with the 1 before it sends the event: seconds on a busy machine.
    expect(page.locator("#correction-status")).to_contain_text("nothing was saved", timeout=TIMEOUT_MS)
    page.locator("#save-correction").click()  # again, nothing drawn since: saved
    expect(page.locator("#correction-status")).to_contain_text("Saved as an example of 7", timeout=TIMEOUT_MS)
    page.locator("#correct-label textarea").fill("")


def test_a_blob_is_not_a_digit(page, latencies):
    """Needs models with the "not a character" output (shipped models answer accepted=true)."""
    page.get_by_role("button", name="Clear canvas").click()
    expect(page.locator(ANSWER)).to_have_text("")
    answer = draw_and_time(page, "blob", latencies)
    screenshot(page, "browser-blob.png")
    assert answer.startswith("This does not look like a digit"), answer


def ranking_rows(page: Page) -> int:
    return page.locator("#ranking .confidence-set").count()


def test_another_top_k_redoes_the_answer_and_a_new_stroke_drops_the_heat_map(page, latencies):
    page.locator("#explain").click()  # explains the blob's answer
    expect(page.locator("#heat img")).to_be_visible()
    shown = ranking_rows(page)
    slider = page.locator("input[type=number]").first  # Top k's box
    slider.fill(str(shown + 2))
    slider.press("Enter")
    expect(page.locator("#ranking .confidence-set")).to_have_count(shown + 2, timeout=TIMEOUT_MS)
    expect(page.locator("#heat img")).to_have_count(0)  # it explained the answer before
    page.locator("#explain").click()
    expect(page.locator("#heat img")).to_be_visible()
    # Over the drawing: the heat map is of another drawing now. The answer is awaited, so that it
    # cannot land on a later test's pad.
    draw_and_time(page, "1", latencies)
    expect(page.locator("#heat img")).to_have_count(0)


class HeldAnswer:
    """Holds the app's next call to TorchServe's inference API back until :meth:`let_go`: an
    answer still on its way when the user acts again, on demand (the app runs in this process,
    :func:`tests.conftest.gradio_app`; the call itself is the real one, made late)."""

    def __init__(self, predict: Callable[..., Any]):
        self.predict = predict
        self.armed = False
        self.taken, self.released, self.returned = threading.Event(), threading.Event(), threading.Event()
        self.lock = threading.Lock()

    def hold_next(self) -> None:
        with self.lock:
            self.armed = True
            for event in (self.taken, self.released, self.returned):
                event.clear()

    def wait_until_held(self) -> bool:
        """Whether a call is being held (waits for one up to the test's timeout)."""
        return self.taken.wait(TIMEOUT_MS / 1000)

    def let_go(self) -> None:
        """Let the held call go to TorchServe; wait until it has returned to the app."""
        self.released.set()
        if self.taken.is_set():
            self.returned.wait(TIMEOUT_MS / 1000)

    def __call__(self, client: Any, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            held, self.armed = self.armed, False
        if not held:
            return self.predict(client, *args, **kwargs)
        self.taken.set()
        try:
            self.released.wait(TIMEOUT_MS / 1000)
            return self.predict(client, *args, **kwargs)
        finally:
            self.returned.set()


@pytest.fixture
def held_answer(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldAnswer]:
    from client.api import TorchServeClient

    held = HeldAnswer(TorchServeClient.predict)
    monkeypatch.setattr(TorchServeClient, "predict", lambda client, *args, **kwargs: held(client, *args, **kwargs))
    yield held
    held.let_go()  # never left waiting, nor landing on a later test's page


def redo_with_top_k(page: Page, top_k: int) -> None:
    """Type another top k into its box: the app redoes the answer (Recognizer.recognize_again)."""
    box = page.locator("input[type=number]").first
    box.fill(str(top_k))
    box.press("Enter")


def redo_held_back(page: Page, shape: str, top_k: int, held_answer: HeldAnswer, latencies: list[dict]) -> None:
    """On a cleared pad, ``shape`` drawn and answered, then its answer redone for ``top_k`` and
    held back in the app: on its way while the test acts."""
    page.get_by_role("button", name="Clear canvas").click()
    expect(page.locator(ANSWER)).to_have_text("")
    draw_and_time(page, shape, latencies)
    held_answer.hold_next()
    redo_with_top_k(page, top_k)
    assert held_answer.wait_until_held()


def test_an_answer_on_its_way_when_the_pad_is_cleared_never_lands(page, latencies, held_answer):
    redo_held_back(page, "7", 3, held_answer, latencies)
    page.get_by_role("button", name="Clear canvas").click()
    expect(page.locator(ANSWER)).to_have_text("")
    held_answer.let_go()  # TorchServe answers for the cleared 7 now
    page.wait_for_timeout(1500)
    expect(page.locator(ANSWER)).to_have_text("")
    assert ranking_rows(page) == 0


def test_an_answer_on_its_way_when_a_stroke_is_added_never_replaces_the_new_drawings(page, latencies, held_answer):
    redo_held_back(page, "1", 4, held_answer, latencies)
    before = shown_answer(page)
    draw(page, "7")  # over the 1: another drawing, answered live
    shown = settled_answer(page)
    assert shown != before
    held_answer.let_go()  # the held answer, for the 1 alone, would say TorchServe took over a second
    page.wait_for_timeout(1500)
    assert shown_answer(page) == shown


@contextmanager
def uploads_held(page: Page) -> Iterator[list[Route]]:
    """The page's uploads to the app held back until the block ends (then sent, in order): Gradio
    uploads the pad's image before it sends an event that reads the pad, up to a second on a busy
    machine, and the user acts meanwhile. Yields the held uploads."""
    held: list[Route] = []
    holding = [True]
    page.route(UPLOADS, lambda route: held.append(route) if holding[0] else route.continue_())
    try:
        yield held
    finally:
        holding[0] = False
        for route in held:
            route.continue_()
        page.unroute(UPLOADS)


def wait_for_upload(page: Page, held: list[Route]) -> None:
    for _ in range(TIMEOUT_MS // 100):
        if held:
            return
        page.wait_for_timeout(100)
    raise AssertionError("the page uploaded nothing")


def clear_while_the_upload_is_held(page: Page, act: Callable[[], None]) -> None:
    """``act`` (a stroke, a click) with the page's upload held back, then Clear, then the upload
    goes; the page is given 2 s for a late answer to land."""
    with uploads_held(page) as held:
        act()
        wait_for_upload(page, held)
        page.get_by_role("button", name="Clear canvas").click()
        expect(page.locator(ANSWER)).to_have_text("")
    page.wait_for_timeout(2000)


def test_a_strokes_answer_the_pad_reports_after_a_clear_never_lands(page, latencies):
    """The stroke's report reaches the server after the Clear that followed it, holding the cleared
    drawing: its answer used to land on the empty pad."""
    page.get_by_role("button", name="Clear canvas").click()
    expect(page.locator(ANSWER)).to_have_text("")
    clear_while_the_upload_is_held(page, lambda: draw(page, "7"))
    expect(page.locator(ANSWER)).to_have_text("")
    assert ranking_rows(page) == 0


def test_an_answer_asked_with_the_button_then_cleared_never_lands(page, latencies):
    draw_and_time(page, "1", latencies)
    clear_while_the_upload_is_held(page, page.locator("#recognize-drawing").click)
    expect(page.locator(ANSWER)).to_have_text("")
    expect(page.locator("#status")).to_have_text("")


def test_a_strokes_late_answer_never_replaces_the_answer_for_a_top_k_chosen_after_it(page, latencies):
    top_k = int(page.locator("input[type=number]").first.input_value()) % 5 + 1  # another one
    with uploads_held(page) as held:
        draw(page, "7")
        wait_for_upload(page, held)
        redo_with_top_k(page, top_k)  # the stroke's own answer, with the old top k, comes after
    settled_answer(page)
    assert ranking_rows(page) == top_k
    assert page.locator(ANSWER).inner_text().startswith("7\n")


def shown_answer(page: Page) -> tuple[str, str]:
    """The answer and the status line (which says how long TorchServe took) on the page."""
    return page.locator(ANSWER).inner_text(), page.locator("#status").inner_text()


def settled_answer(page: Page, quiet_ms: int = 1000) -> tuple[str, str]:
    """:func:`shown_answer` once it has not changed for ``quiet_ms`` (a stroke may bring more
    than one answer: the last one is the drawing's)."""
    shown, still_ms = shown_answer(page), 0
    for _ in range(TIMEOUT_MS // 250):
        page.wait_for_timeout(250)
        now = shown_answer(page)
        shown, still_ms = now, (still_ms + 250 if now == shown else 0)
        if still_ms >= quiet_ms and "processing" not in now[0]:
            return shown
    raise AssertionError(f"the answer kept changing for {TIMEOUT_MS} ms: {shown}")


def test_an_upload_that_is_not_an_image_gets_a_sentence(page, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("shopping list: eggs, milk\n")
    page.get_by_role("tab", name="Upload").click()
    page.locator("#upload input[type=file]").set_input_files(notes)
    # Uploaded to the app: Gradio shows the name, sometimes with the extension set apart ("notes .png").
    expect(page.locator("#upload")).to_contain_text(re.compile(r"notes\s*\.png"))
    page.locator("#recognize-upload").click()
    expect(page.locator("#status")).to_contain_text("Error:")
    status = page.locator("#status").inner_text()
    assert "image" in status and "Traceback" not in status and "HTTP" not in status, status
    assert page.get_by_text("Error", exact=True).count() == 0  # no bare error badge
    page.locator("#upload").get_by_role("button", name="Clear").click()  # the next test uploads again
    expect(page.locator(ANSWER)).to_have_text("")
    page.get_by_role("tab", name="Draw").click()


def test_the_answer_is_for_the_tab_shown_and_another_top_k_redoes_it(page, tmp_path, latencies):
    page.get_by_role("button", name="Clear canvas").click()
    expect(page.locator(ANSWER)).to_have_text("")
    assert draw_and_time(page, "7", latencies).startswith("7\n")
    one = tmp_path / "one.png"
    one.write_bytes(encode(drawing("1")))
    page.get_by_role("tab", name="Upload").click()
    expect(page.locator(ANSWER)).to_have_text("")  # no file yet: the 7 is on the other tab
    page.locator("#upload input[type=file]").set_input_files(one)
    expect(page.locator("#upload")).to_contain_text(re.compile(r"one\s*\.png"))
    page.locator("#recognize-upload").click()
    expect(page.locator(ANSWER)).to_contain_text(ANSWERED_ONE)
    # On the Upload tab, the uploaded 1's answer is redone, not the 7 on the pad.
    top_k = ranking_rows(page) % 5 + 1
    redo_with_top_k(page, top_k)
    expect(page.locator("#ranking .confidence-set")).to_have_count(top_k)
    assert settled_answer(page)[0].startswith("1\n")
    # Back on the Draw tab, the drawing's, and for another top k too; then the file's again.
    page.get_by_role("tab", name="Draw").click()
    expect(page.locator(ANSWER)).to_contain_text(ANSWERED_SEVEN)
    redo_with_top_k(page, top_k % 5 + 1)
    expect(page.locator("#ranking .confidence-set")).to_have_count(top_k % 5 + 1)
    assert settled_answer(page)[0].startswith("7\n")
    page.get_by_role("tab", name="Upload").click()
    expect(page.locator(ANSWER)).to_contain_text(ANSWERED_ONE)
    page.locator("#upload").get_by_role("button", name="Clear").click()
    expect(page.locator(ANSWER)).to_have_text("")
    page.get_by_role("tab", name="Draw").click()
    expect(page.locator(ANSWER)).to_contain_text(ANSWERED_SEVEN)


ANSWERED_ONE, ANSWERED_SEVEN = (re.compile(rf"^\s*{digit}\s+\S+% sure") for digit in "17")


def test_unregister_asks_first_then_the_version_is_gone(page, torchserve):
    page.get_by_role("tab", name="Models").click()
    managed = page.locator("#managed input")
    managed.click()
    page.get_by_role("option", name="balanced 1.0 (default)").click()
    page.locator("#unregister").click()
    expect(page.locator("#confirm-text")).to_contain_text("Unregister balanced 1.0?")
    assert torchserve.client().describe("balanced")  # nothing happened yet
    page.locator("#confirm-unregister").click()
    try:
        expect(page.locator("#models-status")).to_contain_text("balanced 1.0 is unregistered.")
        expect(page.locator("#confirm-unregister")).to_be_hidden()
        assert "balanced" not in {model["modelName"] for model in torchserve.client().models()}
    finally:  # leave the session's server as it was
        if "balanced" not in {model["modelName"] for model in torchserve.client().models()}:
            torchserve.client().register("balanced.mar")
    page.get_by_role("tab", name="Recognize").click()


def test_the_read_text_tab_has_its_pen_ready_and_draws_the_boxes(page):
    page.get_by_role("tab", name="Read text").click()
    expect(page.locator("#text-pad canvas").first).to_be_visible()
    expect(page.locator("#text-pad")).not_to_contain_text("select the draw tool")
    draw(page, "1", pad="#text-pad")
    page.locator("#read-text").click()
    expect(page.locator("#text-read textarea")).to_have_value("1")
    expect(page.locator("#text-boxes img")).to_be_visible()
    screenshot(page, "browser-text.png")
    page.get_by_role("tab", name="Recognize").click()


def test_the_page_fetched_nothing_from_outside_the_app(page, requests_elsewhere):
    assert requests_elsewhere == []


def test_a_page_opened_while_torchserve_is_down_recovers_when_it_starts(browser, torchserve, tmp_path, latencies):
    ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
    run_dir, app_port = tmp_path / "run", free_ports(1)[0]
    run_dir.mkdir()
    app = subprocess.Popen(
        [sys.executable, "-m", "client.app", "--port", str(app_port), "--run-dir", str(run_dir),
         "--inference-url", f"http://127.0.0.1:{ports['inference']}",
         "--management-url", f"http://127.0.0.1:{ports['management']}",
         "--model-store", str(torchserve.model_store)],
        cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    server = TorchServe(run_dir=run_dir, model_store=torchserve.model_store, ports=ports)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    try:
        for _ in range(120):  # the app needs ~5-10 s to import gradio and listen
            try:
                page.goto(f"http://127.0.0.1:{app_port}")
                break
            except Exception:  # noqa: BLE001  (connection refused: not listening yet)
                page.wait_for_timeout(500)
        expect(page.locator("#status")).to_contain_text("is TorchServe running?")
        expect(page.locator("#model input")).to_have_value("")
        server.start(["digits"])
        answer = draw_and_time(page, "7", latencies)
        assert answer.startswith("7\n"), answer
        expect(page.locator("#model input")).to_have_value("digits 1.0 (default)")
        screenshot(page, "browser-recovered.png")
    finally:
        page.close()
        server.stop()
        app.terminate()
        app.wait(timeout=30)
