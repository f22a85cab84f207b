"""Clean canvases and dataset images give, bit for bit, the glyphs of the normalization the
shipped models were trained and evaluated with (commit be383c3; see tests/clean_canvases.py).

Photo and layered-image support (EXIF orientation, partly transparent backgrounds, paper photos)
only changes what happens to images that are not clean canvases."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.clean_canvases import FIXTURE, digests

PROJECT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("DATA_DIR") or PROJECT / "data")


@pytest.fixture(scope="module")
def recorded() -> dict[str, list[str]]:
    return json.loads(FIXTURE.read_text())


def differences(expected: list[str], found: list[str]) -> list[int]:
    assert len(found) == len(expected)
    return [index for index, (a, b) in enumerate(zip(expected, found)) if a != b]


def test_synthetic_canvases_give_the_recorded_glyphs(recorded):
    assert differences(recorded["synthetic"], digests(None)["synthetic"]) == []


def test_mnist_canvases_and_dataset_images_give_the_recorded_glyphs(recorded):
    if not (DATA_DIR / "MNIST" / "raw").is_dir():
        pytest.skip(f"no MNIST under DATA_DIR={DATA_DIR}: set DATA_DIR to the datasets folder")
    found = digests(DATA_DIR)
    assert differences(recorded["mnist_canvas"], found["mnist_canvas"]) == []
    assert differences(recorded["mnist_dataset"], found["mnist_dataset"]) == []
