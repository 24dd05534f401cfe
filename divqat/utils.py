"""Small shared helpers: one seed for everything, atomic file writes and safe reads, the
device of a model, a data set as tensors, device resolution.

Atomic writes follow the usual POSIX recipe: write the whole payload to a temporary file in
the destination's directory (same filesystem), flush and fsync it, then ``os.replace`` it over
the destination, so a reader sees either the old file or the complete new one, never a
half-written result. The file gets the mode an ordinary ``open(path, "w")`` would give it (the
existing file's, else 0666 less the umask). A process killed mid-write leaves its temporary
``.NAME.*.tmp`` behind; :func:`remove_temporaries` clears them.

Reads of files divqat wrote (:func:`load_torch_file`, :func:`read_json`) raise ``ValueError``
naming the file and what is wrong with it, never a library traceback, and never suggest
unpickling arbitrary objects (every ``torch.load`` uses ``weights_only=True``).
"""
from __future__ import annotations

import glob
import json
import os
import pickle
import random
import stat
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np
import torch

from divqat.checks import check_int

__all__ = [
    "seed_everything",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_save",
    "remove_temporaries",
    "load_torch_file",
    "read_json",
    "model_device",
    "dataset_tensors",
    "resolve_device",
]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device).

    Returns a fresh CPU ``torch.Generator`` seeded with the same value, for code that prefers an
    explicit generator (e.g. ``DataLoader(generator=...)``). Two runs calling this with the same
    seed draw the same numbers from all three libraries.
    """
    seed = check_int("seed", seed, 0, 2**32 - 1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds all CUDA devices
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def _ordinary_mode(path):
    """The mode ``open(path, "w")`` would leave: the existing file's, else 0o666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0o022)  # reading the umask means setting it: put it straight back
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a temporary binary file next to ``path``, then ``os.replace`` it.

    Parent directories are created. On any exception the temporary file is removed and the
    destination is left untouched. Returns the destination as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _ordinary_mode(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Atomically write ``data`` (bytes) to ``path``."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return atomic_write_bytes(text.encode("utf-8"), path)


def atomic_write_json(obj: Any, path: str | os.PathLike, indent: int = 2) -> Path:
    """Atomically write ``obj`` as JSON (sorted keys, trailing newline) to ``path``.

    Serialisation happens before the file is opened, so an unserialisable object raises
    ``TypeError`` without touching the destination.
    """
    return atomic_write_text(json.dumps(obj, indent=indent, sort_keys=True) + "\n", path)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """Atomically ``torch.save`` ``obj`` to ``path`` (load it back with ``weights_only=True``)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def remove_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the ``.NAME.*.tmp`` files an interrupted :func:`atomic_write` of ``path`` left
    behind; returns the removed paths."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp")) if path.parent.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def load_torch_file(path: str | os.PathLike, what: str, map_location="cpu") -> Any:
    """``torch.load(path, weights_only=True)``; ValueError naming the file and ``what`` it should
    hold when it is missing, truncated, not a torch file, or holds objects other than tensors
    and plain types (refused, without PyTorch's hint to load it unsafely)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" in str(err):  # the weights-only unpickler met a class or function
            raise ValueError(f"{what} {path}: refused: it holds objects other than tensors and plain types "
                             "(divqat never writes such files; remove it)") from None
        raise ValueError(f"{what} {path} is unreadable (truncated or not a torch file)") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError, IndexError, struct.error) as err:
        reason = str(err).splitlines()[0] if str(err) and "weights_only" not in str(err) else type(err).__name__
        raise ValueError(f"{what} {path} is unreadable (truncated or not a torch file: {reason})") from None


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """The parsed JSON of ``path``; ValueError naming the file when it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} {path} is not valid JSON (truncated or corrupt: {err})") from None


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def dataset_tensors(data, name: str = "test_set") -> tuple[torch.Tensor, torch.Tensor]:
    """(X, Y) from an (X, Y) tensor pair or a Dataset of (x, y) (stacked; labels as int64).
    ValueError naming ``name`` for anything else, an empty set, or X and Y of other lengths."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data):
        x, y = data
    elif isinstance(data, torch.utils.data.Dataset):
        if len(data) == 0:
            raise ValueError(f"{name} is empty")
        xs, ys = zip(*(data[i] for i in range(len(data))))
        x, y = torch.stack(xs), torch.as_tensor(ys, dtype=torch.int64)
    else:
        raise ValueError(f"{name} must be an (X, Y) tensor pair or a Dataset of (x, y)")
    if x.shape[0] == 0 or x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: X and Y must hold the same nonzero number of rows, "
                         f"got {x.shape[0]} and {y.shape[0]}")
    return x, y


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` / ``"cpu"`` / ``"cuda"`` / ``"cuda:N"`` / a ``torch.device`` into a device.

    ``"auto"`` picks CUDA when available, else CPU. An unparsable name, or CUDA asked for on a
    machine without it, raises ``ValueError`` naming the argument (a user mistake: the CLI
    prints it as one line).
    """
    if isinstance(name, torch.device):
        device = name
    elif isinstance(name, str):
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(name)
        except RuntimeError as err:
            raise ValueError(f"device: cannot parse {name!r} (use auto, cpu, cuda or cuda:N)") from err
    else:
        raise ValueError(f"device must be a str or torch.device, got {type(name).__name__}")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device: unsupported device type {device.type!r} (use auto, cpu, cuda)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device
