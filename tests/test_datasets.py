"""Specification of training/datasets.py on small files the tests write themselves: IDX reading,
torchvision's layout, orientation, splits, downloads (through file:// URLs) and the shared
normalization."""

import gzip
import hashlib
import struct

import numpy as np
import pytest

from handler.glyph import GlyphSettings, normalize_glyph
from training import datasets as D
from training.labels import BALANCED, LETTERS


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file: 0x0000, type 0x08, ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path, array: np.ndarray, gzipped: bool) -> None:
    data = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gzipped:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def letter_l(n: int) -> np.ndarray:
    """n upright images of an "L": a vertical bar on the left and a foot at the bottom. Its
    transpose is a "Γ", so orientation mistakes are easy to see."""
    image = np.zeros((28, 28), dtype=np.uint8)
    image[4:24, 6:9] = 255
    image[21:24, 6:20] = 255
    return np.repeat(image[None], n, axis=0)


@pytest.mark.parametrize("gzipped", [False, True])
def test_read_idx_round_trips_plain_and_gzipped_files(tmp_path, gzipped):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "images", array, gzipped)
    path = tmp_path / ("images.gz" if gzipped else "images")
    np.testing.assert_array_equal(D.read_idx(path), array)


def test_read_idx_refuses_a_wrong_magic_number(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"\x00" * 4)  # float IDX
    with pytest.raises(ValueError, match="magic number"):
        D.read_idx(path)


def test_read_idx_refuses_a_truncated_file(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(idx_bytes(np.zeros((10, 28, 28), np.uint8))[:-5])
    with pytest.raises(ValueError, match="header says"):
        D.read_idx(path)


def make_mnist(root, n_train=20, n_test=10, gzipped=True):
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", letter_l(n), gzipped)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n).astype(np.uint8), gzipped)


def test_mnist_loads_from_torchvision_layout_gzipped_or_not(tmp_path):
    make_mnist(tmp_path / "a", gzipped=True)
    make_mnist(tmp_path / "b", gzipped=False)
    for root in (tmp_path / "a", tmp_path / "b"):
        train, test = D.load_mnist(root)
        assert train.images.shape == (20, 28, 28) and len(test) == 10
        np.testing.assert_array_equal(train.images[0], letter_l(1)[0])  # MNIST is stored upright


def test_missing_data_names_the_files_and_data_dir(tmp_path):
    with pytest.raises(D.DatasetNotFound, match=r"train-images-idx3-ubyte.*DATA_DIR"):
        D.load_mnist(tmp_path)


def test_emnist_is_turned_upright_and_preferred_over_an_npz(tmp_path):
    raw = tmp_path / "EMNIST" / "raw"
    stored = letter_l(6).transpose(0, 2, 1)  # EMNIST stores images transposed
    for part in ("train", "test"):
        write_idx(raw / f"emnist-letters-{part}-images-idx3-ubyte", stored, gzipped=True)
        write_idx(raw / f"emnist-letters-{part}-labels-idx1-ubyte", np.full(6, 12, np.uint8), gzipped=True)
    make_npz(tmp_path / "FEMNIST" / "other.npz")
    data = D.load_recognizer_data("letters", tmp_path)
    assert data.source.startswith("EMNIST letters")
    np.testing.assert_array_equal(data.test.images[0], letter_l(1)[0])
    assert LETTERS[data.test.labels[0]] == "L"  # EMNIST Letters label 12 is l/L


def make_npz(path, writers=True):
    """An FEMNIST-style npz: transposed images, ByClass labels, 10 writers."""
    n = 200
    labels = np.arange(n) % 62
    arrays = {"images": letter_l(n).transpose(0, 2, 1), "labels": labels}
    if writers:
        arrays["writers"] = np.array([f"w{i % 10}" for i in range(n)])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def test_npz_images_are_turned_upright(tmp_path):
    make_npz(tmp_path / "f.npz")
    images, labels, writers = D.load_npz(tmp_path / "f.npz")
    np.testing.assert_array_equal(images[0], letter_l(1)[0])
    assert len(labels) == len(writers) == 200


def test_npz_letters_merge_case_and_drop_digits(tmp_path):
    make_npz(tmp_path / "FEMNIST" / "f.npz")
    data = D.load_recognizer_data("letters", tmp_path)
    every = np.concatenate([data.train.labels, data.val.labels, data.test.labels])
    assert every.min() >= 0 and every.max() == 25
    assert len(every) == 200 - 200 // 62 * 10 - min(200 % 62, 10)  # the digits are gone


def test_npz_balanced_uses_the_47_class_merge(tmp_path):
    make_npz(tmp_path / "FEMNIST" / "f.npz")
    data = D.load_recognizer_data("balanced", tmp_path)
    every = np.concatenate([data.train.labels, data.val.labels, data.test.labels])
    assert set(every) == set(range(len(BALANCED)))


@pytest.mark.parametrize("writers", [True, False])
def test_splits_are_disjoint_and_cover_everything(tmp_path, writers):
    make_npz(tmp_path / "FEMNIST" / "f.npz", writers=writers)
    data = D.load_recognizer_data("balanced", tmp_path)
    assert len(data.train) + len(data.val) + len(data.test) == 200
    assert ("by writer" in data.source) == writers


def test_writer_split_never_puts_a_writer_in_two_splits():
    writers = np.array([f"w{i % 37}" for i in range(1000)])
    train, val, test = D.writer_split(writers)
    assert not (train & val).any() and not (train & test).any() and not (val & test).any()
    assert (train | val | test).all()
    sets = [set(writers[m]) for m in (train, val, test)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    # The split is fixed: the same writers land in the test set on every call.
    np.testing.assert_array_equal(D.writer_split(writers)[2], test)


def test_normalize_images_is_normalize_glyph_on_every_image():
    images = np.concatenate([letter_l(3), np.zeros((1, 28, 28), np.uint8)])  # one blank image
    settings = GlyphSettings()
    glyphs = D.normalize_images(images, settings)
    assert glyphs.dtype == np.uint8 and glyphs.shape == (4, 28, 28)
    # Bit for bit what the handler computes: the model sees the same numbers in both places.
    expected = normalize_glyph(images[0] / 255.0, settings)
    np.testing.assert_array_equal(glyphs[0].astype(np.float32) / 255.0, expected)
    assert glyphs[3].max() == 0  # blank dataset images stay blank instead of failing the run


def test_download_verifies_checksums_from_any_url(tmp_path):
    source = tmp_path / "served.gz"
    source.write_bytes(b"payload")
    good = hashlib.md5(b"payload").hexdigest()
    D._fetch(source.as_uri(), tmp_path / "out" / "file.gz", good)
    assert (tmp_path / "out" / "file.gz").read_bytes() == b"payload"
    with pytest.raises(OSError, match="checksum mismatch"):
        D._fetch(source.as_uri(), tmp_path / "out" / "other.gz", "0" * 32)
    assert not list((tmp_path / "out").glob("other*"))  # nothing half-written is left


def test_download_that_cannot_reach_the_network_says_how_to_proceed(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "MNIST_URLS", ((tmp_path / "nowhere").as_uri() + "/",))
    with pytest.raises(D.DatasetNotFound, match="DATA_DIR"):
        D.download(tmp_path, "mnist")
