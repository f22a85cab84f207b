"""``python -m client predict`` against a real TorchServe (the ``torchserve`` fixture)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from client.__main__ import main as cli
from tests.canvases import drawing_png, encode, text_drawing, transparent_sketch, uniform_png
from tests.conftest import PROJECT, free_ports


@pytest.fixture
def images(tmp_path) -> dict[str, Path]:
    files = {
        "seven.png": drawing_png("7"),
        "one.png": transparent_sketch("1"),
        "dash.png": drawing_png("-"),
        "blank.png": uniform_png(255),
        "notes.txt": b"not an image",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in files}


def predict(torchserve, *args) -> None:
    cli(["--run-dir", str(torchserve.run_dir), "predict", *map(str, args)])


def test_prints_the_label_and_confidence_of_each_file(torchserve, images, capsys):
    predict(torchserve, images["seven.png"], images["one.png"])
    seven, one = capsys.readouterr().out.splitlines()
    assert re.fullmatch(rf"{re.escape(str(images['seven.png']))}: 7 \(\d+\.\d%\)", seven)
    assert re.fullmatch(rf"{re.escape(str(images['one.png']))}: 1 \(\d+\.\d%\)", one)


def test_a_drawing_that_is_no_character_is_said_to_be_none(torchserve, images, capsys):
    predict(torchserve, images["dash.png"])
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(rf"{re.escape(str(images['dash.png']))}: not a character \(closest: \d, \d+\.\d%\)", line)


def test_top_k_and_json_give_the_ranking(torchserve, images, capsys):
    predict(torchserve, "--top-k", 3, images["seven.png"])
    assert "   top 3: 7 " in capsys.readouterr().out

    predict(torchserve, "--json", "--top-k", 2, "--model", "digits", "--version", "1.0", images["seven.png"])
    [result] = json.loads(capsys.readouterr().out)
    assert result["file"] == str(images["seven.png"])
    assert (result["model"], result["version"], result["label"]) == ("digits", "1.0", "7")
    assert [entry["label"] for entry in result["top_k"]][0] == "7" and len(result["top_k"]) == 2


def test_files_it_cannot_use_are_reported_and_the_exit_status_is_1(torchserve, images, capsys):
    missing = images["seven.png"].parent / "missing.png"
    with pytest.raises(SystemExit) as exit:
        predict(torchserve, images["blank.png"], images["seven.png"], images["notes.txt"], missing)
    assert exit.value.code == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [out.strip()] and out.startswith(f"{images['seven.png']}: 7 (")
    assert f"error: {images['blank.png']}: the drawing is blank" in err
    assert f"error: {images['notes.txt']}: the body is not a readable image" in err
    assert f"error: {missing}: [Errno 2] No such file or directory" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nosuch"], "error: unknown model or version: Model not found: nosuch"),
        (["--version", "9.9"], "error: unknown model or version: Model version: 9.9 does not exist"),
    ],
)
def test_an_unknown_model_or_version_stops_with_one_message(torchserve, images, args, message):
    with pytest.raises(SystemExit) as exit:
        predict(torchserve, *args, images["seven.png"], images["one.png"])
    assert str(exit.value.code).startswith(message)


def test_a_server_that_is_down_is_named_by_the_installed_command(torchserve, images):
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    result = subprocess.run(
        [sys.executable, "-m", "client", "--run-dir", str(torchserve.run_dir),
         "--inference-url", dead, "predict", str(images["seven.png"])],
        capture_output=True, text=True, cwd=PROJECT, timeout=60,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == f"error: cannot reach TorchServe at {dead}: is it running? (make serve)"


def test_text_prints_the_string_read_and_json_the_whole_answer(torchserve, tmp_path, capsys):
    number = tmp_path / "number.png"
    number.write_bytes(encode(text_drawing("1704", gaps=30)))
    predict(torchserve, "--text", number)
    assert re.fullmatch(rf"{re.escape(str(number))}: 1704 \(\d+\.\d%\)", capsys.readouterr().out.strip())
    predict(torchserve, "--text", "--json", number)
    [answer] = json.loads(capsys.readouterr().out)
    assert answer["file"] == str(number) and answer["mode"] == "text" and answer["text"] == "1704"
    assert [c["label"] for c in answer["characters"]] == list("1704")


def test_text_names_the_pieces_that_are_no_character(torchserve, tmp_path, capsys):
    dashed = tmp_path / "dashed.png"
    dashed.write_bytes(encode(text_drawing("17-04", gaps=30)))
    predict(torchserve, "--text", dashed)
    assert re.fullmatch(rf"{re.escape(str(dashed))}: 17\d04 \(\d+\.\d%\), not a character: piece 3",
                        capsys.readouterr().out.strip())
