"""``python -m client explain`` against a real TorchServe (the ``torchserve`` fixture): the
answer, the handler's cost, and the heat map saved as a PNG over the drawing."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from client.__main__ import main as cli
from tests.canvases import drawing_png, uniform_png


def test_the_heat_map_is_saved_as_a_png_over_the_drawing(torchserve, tmp_path, capsys):
    drawing = tmp_path / "seven.png"
    drawing.write_bytes(drawing_png("7"))
    cli(["--run-dir", str(torchserve.run_dir), "explain", str(drawing)])
    out = tmp_path / "seven-explained.png"  # the default name
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(rf"{re.escape(str(drawing))}: 7 \(\d+\.\d%\); heat map saved to {re.escape(str(out))} "
                        r"\(occlusion, \d+ ms in the handler\)", line)
    shown = np.asarray(Image.open(out).convert("RGB"), dtype=np.int32)
    assert shown.shape == (280, 280, 3)
    assert np.count_nonzero(shown[..., 0] > shown[..., 2] + 60) > 100  # red where the ink drove the answer


def test_a_blank_drawing_is_a_sentence(torchserve, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    blank.write_bytes(uniform_png(255))
    with pytest.raises(SystemExit) as stop:
        cli(["--run-dir", str(torchserve.run_dir), "explain", str(blank), "--out", str(tmp_path / "heat.png")])
    assert str(stop.value).startswith("error: ") and "blank" in str(stop.value)
    assert not (tmp_path / "heat.png").exists()
