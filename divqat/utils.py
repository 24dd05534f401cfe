"""Small shared helpers: one seed for everything, atomic file writes, device resolution.

Atomic writes follow the usual POSIX recipe: write the whole payload to a temporary file in
the destination's directory (same filesystem), flush and fsync it, then ``os.replace`` it over
the destination, so a reader sees either the old file or the complete new one, never a
half-written result.
"""
from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

import numpy as np
import torch

__all__ = [
    "seed_everything",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_save",
    "resolve_device",
]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device).

    Returns a fresh CPU ``torch.Generator`` seeded with the same value, for code that prefers an
    explicit generator (e.g. ``DataLoader(generator=...)``). Two runs calling this with the same
    seed draw the same numbers from all three libraries.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds all CUDA devices
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a temporary binary file next to ``path``, then ``os.replace`` it.

    Parent directories are created. On any exception the temporary file is removed and the
    destination is left untouched. Returns the destination as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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
