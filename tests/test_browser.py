"""A real browser on the real app: headless Chromium (Debian's ``chromium``, installed by
``make browser``), driven by Playwright, draws on the Sketchpad with the mouse and reads the
answer from the page. Screenshots go to ``tests/artifacts/`` (git-ignored) for CI to keep."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect, sync_playwright

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
# wide, shown at about 460): how a person draws the character with the mouse.
STROKES = {
    "7": [[(-70, -90), (75, -90), (-15, 100)]],
    "1": [[(5, -100), (0, 100)]],
}
# Mouse moves per straight segment; the pad joins them with a stroke. Each move is rendered in
# software (no GPU), up to ~0.5 s each on a busy 2-core machine, so a few are enough.
MOVES_PER_SEGMENT = 4


@pytest.fixture(scope="module")
def requests_elsewhere() -> list[str]:
    """URLs the page requested from anything but the app (it must work offline)."""
    return []


@pytest.fixture(scope="module")
def page(gradio_app: str, requests_elsewhere: list[str]) -> Iterator[Page]:
    """The app's page in headless Chromium, with the model picker filled from the server."""
    if not CHROMIUM.is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make browser` (or set CHROMIUM=/path/to/it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        app_host = urlsplit(gradio_app).netloc
        page.on("request", lambda request: requests_elsewhere.append(request.url)
                if leaves_the_app(request.url, app_host) else None)
        page.goto(gradio_app)
        expect(page.locator("#model input")).to_have_value("digits 1.0 (default)")
        yield page
        browser.close()


def leaves_the_app(url: str, app_host: str) -> bool:
    """A network request to another host (data: and blob: URLs never leave the browser)."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != app_host


def draw(page: Page, char: str) -> None:
    """Pick the brush and draw ``char`` with mouse moves on the Sketchpad's canvas."""
    page.get_by_role("button", name="Brush").click()
    box = page.locator("#pad canvas").first.bounding_box()
    centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    for stroke in STROKES[char]:
        (x, y), *rest = stroke
        page.mouse.move(centre_x + x, centre_y + y)
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(centre_x + x, centre_y + y, steps=MOVES_PER_SEGMENT)
        page.mouse.up()


def recognized(page: Page) -> str:
    """Press Recognize and return the label the page shows."""
    page.locator("#recognize-drawing").click()
    label = page.locator('#ranking [data-testid="label-output-value"]')
    expect(label).to_be_visible()
    return label.inner_text().strip()


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / name, full_page=True)


def test_a_seven_drawn_with_the_mouse_is_read_as_7(page):
    draw(page, "7")
    label = recognized(page)
    screenshot(page, "browser-seven.png")
    assert label == "7"
    expect(page.locator("#status")).to_contain_text("digits 1.0 reads 7")
    expect(page.locator("#round-trip textarea")).to_have_value(re.compile(r"\d+ ms"))
    expect(page.locator("#seen img")).to_be_visible()


def test_clearing_the_pad_clears_the_result_and_a_one_is_read_as_1(page):
    page.get_by_role("button", name="Clear canvas").click()
    expect(page.locator('#ranking [data-testid="label-output-value"]')).to_have_count(0)
    expect(page.locator("#confidence textarea")).to_have_value("")
    draw(page, "1")
    label = recognized(page)
    screenshot(page, "browser-one.png")
    assert label == "1"


def test_the_page_fetched_nothing_from_outside_the_app(page, requests_elsewhere):
    assert requests_elsewhere == []
