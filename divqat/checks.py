"""Argument checks shared by the library and the command line: each raises ``ValueError`` with
one line naming the argument, which the CLI prints as ``divqat CMD: error: ...`` (exit 2).

- :func:`check_real`, :func:`check_int`, :func:`check_choice`: values of options.
- :func:`check_output_dir`, :func:`check_output_file`: where a command will write, checked
  before any work is done, so a bad ``--out`` never costs a trained model or spent queries.
"""
import math
import numbers
import os
import tempfile
from pathlib import Path

__all__ = ["bounds_text", "check_real", "check_int", "check_choice", "check_output_dir", "check_output_dirs", "check_output_file"]


def bounds_text(low=None, high=None, low_open=False):
    """How a range reads in a message: ">= 0", "> 0", "<= 1", "in [0, 1]", "in (0, 1]"."""
    if high is None:
        return f"> {low}" if low_open else f">= {low}"
    if low is None:
        return f"<= {high}"
    return f"in ({low}, {high}]" if low_open else f"in [{low}, {high}]"


def check_real(name, value, low=None, high=None, *, low_open=False, optional=False):
    """``value`` as a float; ValueError naming ``name`` unless it is a finite real in [low, high]
    (``(low, high]`` with ``low_open``; None: unbounded). ``optional=True`` lets None through."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        raise ValueError(f"{name} must be {bounds_text(low, high, low_open)}, got {value!r}")
    return float(value)


def check_int(name, value, low=None, high=None, *, optional=False):
    """``value`` as an int; ValueError naming ``name`` unless it is an integer in [low, high]
    (None: unbounded). ``optional=True`` lets None through."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {bounds_text(low, high)}, got {value!r}")
    return int(value)


def check_choice(name, value, choices):
    """``value``; ValueError naming ``name`` unless it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def _check_writable(directory, name, path):
    """ValueError unless a file can be created in the existing ``directory`` (tried, not guessed:
    permission bits say nothing about read-only mounts or a process running as root)."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise ValueError(f"{name} {path}: cannot write in {directory} ({err.strerror or err})") from None


def _nearest_existing(path):
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path(".")


def check_output_dir(name, path, *, optional=False):
    """ValueError naming ``name`` unless ``path`` is, or can be created as, a writable directory."""
    if path is None and optional:
        return
    path = Path(path)
    existing = _nearest_existing(path.absolute())
    if not existing.is_dir():
        what = "an existing file" if existing == path.absolute() else f"below the file {existing}"
        raise ValueError(f"{name} {path} is {what}, not a directory")
    _check_writable(existing, name, path)


def check_output_dirs(paths):
    """:func:`check_output_dir` for each ``{option name: path}`` of ``paths`` (None: not given)."""
    for name, path in paths.items():
        check_output_dir(name, path, optional=True)


def check_output_file(name, path, *, optional=False):
    """ValueError naming ``name`` unless ``path`` can be written as a file (its directory
    writable or creatable, and ``path`` itself not a directory)."""
    if path is None and optional:
        return
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{name} {path} is a directory, not a file")
    if os.path.lexists(path) and not path.is_file():
        raise ValueError(f"{name} {path} exists and is not a regular file")
    check_output_dir(name, path.parent)
