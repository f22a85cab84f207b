"""Handwriting datasets: read them from disk (torchvision's layout), download them when a user
has internet, split them, and normalize every image with the handler's glyph normalization.

Layout under a data root (``DATA_DIR``, default ``data/``), the same as torchvision's so that
users can point the project at files they already have::

    <root>/MNIST/raw/train-images-idx3-ubyte[.gz] ...
    <root>/EMNIST/raw/emnist-letters-train-images-idx3-ubyte[.gz] ...
    <root>/FEMNIST/*.npz        (images N x 28 x 28 uint8 EMNIST orientation, ByClass labels,
                                 optional writers; see ../shared/datasets/FEMNIST/README.md)

Images are returned upright, white ink (255) on black: EMNIST and FEMNIST store them
transposed, and that is undone here, once, so the model and the handler never flip anything.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from handler.glyph import BlankImageError, GlyphSettings, normalize_glyph
from training import labels as L

MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MNIST_FILES = {  # the official files and their md5 sums
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
EMNIST_URL = "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip"
EMNIST_MD5 = "58c8d27c78d21e728a6bc7b3cc06412e"  # of gzip.zip, as torchvision checks it
EMNIST_SPLITS = ("letters", "balanced")

# Writers are split with a fixed seed, independent of the training seed, so the test set never
# changes when someone retrains with another seed.
SPLIT_SEED = 20170101


class DatasetNotFound(FileNotFoundError):
    """Raised with a message that names the missing files and how to point DATA_DIR at them."""


@dataclass
class Split:
    """Images (N x 28 x 28 uint8, upright, ink 255 on 0) and class indices (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class RecognizerData:
    train: Split
    val: Split
    test: Split
    source: str  # a sentence naming the data, for metrics.json and the model card


# --------------------------------------------------------------------------------- IDX files


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or not) as a numpy array of unsigned bytes.

    IDX: two zero bytes, a type code (0x08 = uint8), the number of dimensions, then each
    dimension as a big-endian int32 and the data.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(
            f"{path} is not an IDX file of unsigned bytes (magic number {data[:4].hex()!r}, "
            "expected 0000 08 followed by the number of dimensions)"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise ValueError(f"{path}: header says {shape} ({expected} bytes) but holds {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find_raw(folder: Path, name: str) -> Path | None:
    """``name`` or ``name.gz`` in ``folder``, whichever exists."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return candidate
    return None


def _raw_files(folder: Path, names: list[str], dataset: str, root: Path) -> list[Path]:
    found = [_find_raw(folder, n) for n in names]
    missing = [n for n, f in zip(names, found) if f is None]
    if missing:
        raise DatasetNotFound(
            f"{dataset} is not in {folder}: missing {', '.join(missing)} (plain or .gz). "
            f"Run `make data DATA_DIR={root}` with internet access, or point DATA_DIR at a folder "
            f"that holds {dataset}/raw/ (torchvision's layout), e.g. `make train DATA_DIR=/path/to/data`."
        )
    return found  # type: ignore[return-value]


def load_mnist(root: str | os.PathLike) -> tuple[Split, Split]:
    """MNIST's official training and test sets."""
    root = Path(root)
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    xtr, ytr, xte, yte = (read_idx(p) for p in _raw_files(root / "MNIST" / "raw", names, "MNIST", root))
    return Split(xtr, ytr.astype(np.int64)), Split(xte, yte.astype(np.int64))


def load_emnist(root: str | os.PathLike, split: str) -> tuple[Split, Split]:
    """An EMNIST split's official training and test sets, upright, with raw EMNIST labels."""
    root = Path(root)
    names = [f"emnist-{split}-{part}-{kind}-ubyte" for part in ("train", "test") for kind in ("images-idx3", "labels-idx1")]
    xtr, ytr, xte, yte = (read_idx(p) for p in _raw_files(root / "EMNIST" / "raw", names, f"EMNIST {split}", root))
    upright = lambda x: np.ascontiguousarray(x.transpose(0, 2, 1))  # EMNIST stores columns first
    return Split(upright(xtr), ytr.astype(np.int64)), Split(upright(xte), yte.astype(np.int64))


def load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """An .npz of ``images`` (EMNIST orientation), ByClass ``labels`` and optional ``writers``.
    Returns upright images, labels and writers (or None)."""
    with np.load(path) as data:
        missing = {"images", "labels"} - set(data.files)
        if missing:
            raise ValueError(f"{path} lacks the arrays {sorted(missing)}")
        images = np.ascontiguousarray(data["images"].transpose(0, 2, 1))
        labels = data["labels"].astype(np.int64)
        writers = data["writers"] if "writers" in data.files else None
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"{path}: images must be N x 28 x 28 uint8, got {images.shape} {images.dtype}")
    return images, labels, writers


def find_npz(root: str | os.PathLike) -> Path | None:
    """The first .npz under ``<root>/FEMNIST/``, if any."""
    folder = Path(root) / "FEMNIST"
    found = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    return found[0] if found else None


# ---------------------------------------------------------------------------------- download


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, target: Path, md5: str) -> None:
    """Download ``url`` to ``target`` with a progress bar and check its md5."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
            for block in iter(lambda: response.read(1 << 16), b""):
                out.write(block)
                bar.update(len(block))
    if _md5(partial) != md5:
        partial.unlink()
        raise OSError(f"{url}: checksum mismatch (expected md5 {md5}); the download was discarded")
    partial.rename(target)


def download(root: str | os.PathLike, dataset: str) -> None:
    """Fetch MNIST (``mnist``) or EMNIST (``emnist``) into ``root`` unless present and verified.

    EMNIST comes as one 561 MB zip; only the letters and balanced files are extracted.
    """
    root = Path(root)
    try:
        if dataset == "mnist":
            raw = root / "MNIST" / "raw"
            for name, md5 in MNIST_FILES.items():
                if (raw / name).exists() and _md5(raw / name) == md5:
                    continue
                errors = []
                for base in MNIST_URLS:
                    try:
                        _fetch(base + name, raw / name, md5)
                        break
                    except (urllib.error.URLError, OSError) as exc:
                        errors.append(f"{base}{name}: {exc}")
                else:
                    raise OSError("; ".join(errors))
        elif dataset == "emnist":
            raw = root / "EMNIST" / "raw"
            archive = raw / "gzip.zip"
            if not (archive.exists() and _md5(archive) == EMNIST_MD5):
                _fetch(EMNIST_URL, archive, EMNIST_MD5)
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    name = Path(member).name
                    if any(name.startswith(f"emnist-{s}-") for s in EMNIST_SPLITS) and name.endswith(".gz"):
                        (raw / name).write_bytes(zf.read(member))
        else:
            raise ValueError(f"unknown dataset {dataset!r}: choose mnist or emnist")
    except (urllib.error.URLError, OSError) as exc:
        raise DatasetNotFound(
            f"could not download {dataset} into {root} ({exc}). Without internet, copy the files "
            f"into {root} in torchvision's layout or point DATA_DIR at a folder that has them."
        ) from exc


# ------------------------------------------------------------------------------------ splits


def random_split(n: int, fraction: float, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a (1 - fraction, fraction) split of ``n`` items, fixed by ``seed``."""
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * (1 - fraction)))
    return np.sort(order[:cut]), np.sort(order[cut:])


def writer_split(
    writers: np.ndarray, val: float = 0.1, test: float = 0.1, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (train, val, test) such that no writer appears in two splits."""
    unique = np.unique(writers)
    order = np.random.default_rng(seed).permutation(len(unique))
    n_test, n_val = int(round(len(unique) * test)), int(round(len(unique) * val))
    test_writers = unique[order[:n_test]]
    val_writers = unique[order[n_test : n_test + n_val]]
    in_test = np.isin(writers, test_writers)
    in_val = np.isin(writers, val_writers)
    return ~(in_test | in_val), in_val, in_test


def _subset(images: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> Split:
    return Split(images[mask], labels[mask])


def _hold_out(train: Split, fraction: float) -> tuple[Split, Split]:
    """An official training set less a random ``fraction`` (fixed seed), and that fraction, which
    becomes the validation split."""
    keep, val = random_split(len(train), fraction)
    return _subset(train.images, train.labels, keep), _subset(train.images, train.labels, val)


def load_recognizer_data(
    recognizer: str, root: str | os.PathLike, npz: str | os.PathLike | None = None, val_fraction: float = 0.1,
    cased_letters: bool = False,
) -> RecognizerData:
    """The train/val/test data of a recognizer, from the best source found under ``root``.

    digits: MNIST (official test set; validation taken from its training set).
    letters, balanced: EMNIST if its files are under ``root``, else an .npz such as FEMNIST
    (``npz`` or ``<root>/FEMNIST/*.npz``), split by writer. ``cased_letters``: the letters'
    training labels keep the case (``labels.CASED_LETTERS``; validation and test stay merged);
    only an .npz with ByClass labels has it, EMNIST Letters raises ``DatasetNotFound``.
    """
    root = Path(root)
    if recognizer == "digits":
        train, test = load_mnist(root)
        train, val = _hold_out(train, val_fraction)
        return RecognizerData(
            train, val, test,
            f"MNIST: {len(train)} training and {len(val)} validation images from the official "
            f"training set; the official {len(test)} test images",
        )
    if recognizer not in ("letters", "balanced"):
        raise ValueError(f"unknown recognizer {recognizer!r}: choose digits, letters or balanced")

    emnist_raw = root / "EMNIST" / "raw"
    if _find_raw(emnist_raw, f"emnist-{recognizer}-train-images-idx3-ubyte"):
        train, test = load_emnist(root, recognizer)
        if recognizer == "letters" and cased_letters:
            raise DatasetNotFound(
                "EMNIST Letters merges upper and lower case, so a case-aware letters model cannot "
                "learn from it: set case_aware: false for letters in config/recognizers.yaml"
            )
        if recognizer == "letters":
            train.labels, test.labels = L.emnist_letters_to_index(train.labels), L.emnist_letters_to_index(test.labels)
        train, val = _hold_out(train, val_fraction)
        return RecognizerData(
            train, val, test,
            f"EMNIST {recognizer}: official training set (10% held out for validation) and official test set",
        )

    npz_path = Path(npz) if npz else find_npz(root)
    if npz_path is None:
        raise DatasetNotFound(
            f"no data for {recognizer}: neither EMNIST {recognizer} under {emnist_raw} nor an .npz "
            f"under {root / 'FEMNIST'}. Point DATA_DIR at a folder that holds one of them "
            "(on the project's machines: DATA_DIR=../shared/datasets)."
        )
    images, byclass, writers = load_npz(npz_path)
    if recognizer == "letters":
        labels = L.byclass_to_letters(byclass)
        is_letter = labels >= 0
        images, labels = images[is_letter], labels[is_letter]
        writers = writers[is_letter] if writers is not None else None
    else:
        labels = L.byclass_to_balanced(byclass)
    if writers is None:  # every image its own "writer": a plain random split
        masks = writer_split(np.arange(len(labels)), val=val_fraction)
        how = "random 80/10/10 split (the .npz has no writers)"
    else:
        masks = writer_split(writers, val=val_fraction)
        how = f"split by writer 80/10/10 ({len(np.unique(writers))} writers, none in two splits)"
    train, val, test = (_subset(images, labels, m) for m in masks)
    if recognizer == "letters" and cased_letters:
        train = Split(train.images, L.byclass_to_letters(byclass[is_letter][masks[0]], cased=True))
        how += "; training labels keep the case"
    return RecognizerData(train, val, test, f"{npz_path.name} ({len(labels)} images), {how}")


# ----------------------------------------------------------------------------- normalization


def _normalize_one(args: tuple[np.ndarray, GlyphSettings]) -> np.ndarray:
    image, settings = args
    try:
        return normalize_glyph(image.astype(np.float32) / 255.0, settings)
    except BlankImageError:  # a handful of dataset images are empty; keep them as zeros
        return np.zeros((settings.size, settings.size), dtype=np.float32)


def normalize_images(images: np.ndarray, settings: GlyphSettings, desc: str = "normalizing") -> np.ndarray:
    """Pass every image through the handler's ``normalize_glyph`` (in parallel, with a progress
    bar). Returns uint8 (N x size x size) to keep memory small; divide by 255 for floats."""
    jobs = ((image, settings) for image in images)
    with Pool(processes=min(2, os.cpu_count() or 1)) as pool:
        glyphs = list(tqdm(pool.imap(_normalize_one, jobs, chunksize=512), total=len(images), desc=desc, unit="img"))
    return np.uint8(np.clip(np.stack(glyphs) * 255.0 + 0.5, 0, 255))


def main(argv: list[str] | None = None) -> None:
    """``python -m training.datasets download [mnist|emnist ...] --data-dir DIR``."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("command", choices=["download"])
    parser.add_argument("datasets", nargs="*", default=["mnist", "emnist"], choices=["mnist", "emnist"])
    parser.add_argument("--data-dir", default="data", help="data root (torchvision's layout)")
    args = parser.parse_args(argv)
    try:
        for name in args.datasets:
            download(args.data_dir, name)
            print(f"{name}: ready in {args.data_dir}")
    except DatasetNotFound as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
