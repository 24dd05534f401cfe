"""Argument checks shared by the library and the command line: each raises ``ValueError`` with
one line naming the argument, which the CLI prints as ``divqat CMD: error: ...`` (exit 2).

- :func:`check_real`, :func:`check_int`, :func:`check_choice`, :func:`check_bool`: values of options.
- :func:`check_output_dir`, :func:`check_output_file`: where a command will write, checked
  before any work is done, so a bad ``--out`` never costs a trained model or spent queries.
- :func:`error_line`: an exception as one line of such an error.
- :func:`check_out`: the one rule of every command's ``--out``: it never replaces an input of
  the command or another command's results, nor its own finished results without
  ``--overwrite``; :func:`claim_output_dir` (:func:`output_dir_claimed`) locks an output
  directory for this process.
"""
import contextlib
import fcntl
import json
import math
import numbers
import os
import tempfile
from pathlib import Path

__all__ = ["bounds_text", "check_real", "check_int", "check_choice", "check_bool", "check_output_dir", "check_output_dirs",
           "check_output_file", "RESULT_FILES", "output_kind", "check_out", "claim_output_dir",
           "output_dir_claimed", "error_line"]


def error_line(err, *, with_type=False):
    """An exception as one line of an error message: its message's first line, else its type's
    name; ``with_type``: ``"Type: first line"`` (for an exception raised by the user's code)."""
    text = str(err).strip()
    if not text:
        return type(err).__name__
    line = text.splitlines()[0]
    return f"{type(err).__name__}: {line}" if with_type else line


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


def check_bool(name, value):
    """``value``; ValueError naming ``name`` unless it is True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
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


#: the files each writing command leaves in its output directory; the first, written last, marks
#: it finished
RESULT_FILES = {
    "train": ("metrics.json", "config.json", "model.pt", "model_int8.onnx", "log.jsonl", "checkpoint.pt",
              "curves.png"),
    "train-misinformation": ("metrics.json", "config.json", "model.pt", "log.jsonl"),
    "attack": ("metrics.json", "surrogate.pt", "transfer.pt"),
    "experiment": ("results.csv", "results.json", "victims.csv", "summary.csv", "comparisons.csv", "report.md"),
}


def output_kind(directory):
    """``(command, finished)`` when ``directory`` holds the output of a divqat command that writes
    a directory (a key of :data:`RESULT_FILES`), else None. Recognised by the files each leaves."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    if (directory / "cells").is_dir() and (directory / "victims").is_dir():  # made first, by CellCache
        kind = "experiment"
    elif (directory / "surrogate.pt").exists() or (directory / "transfer.pt").exists():
        kind = "attack"
    elif (directory / "config.json").is_file():
        try:
            method = json.loads((directory / "config.json").read_text(encoding="utf-8")).get("method")
        except (ValueError, AttributeError, OSError):
            method = None
        kind = "train-misinformation" if method == "misinformation" else "train"
    else:
        return None
    return kind, (directory / RESULT_FILES[kind][0]).is_file()


def _same(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).absolute().resolve() == Path(b).absolute().resolve()


def _check_inputs(name, path, inputs, written):
    """ValueError when writing ``path`` (and, for a directory, the files ``written`` in it) would
    replace an input of the command."""
    for option, given in (inputs or {}).items():
        if given is None:
            continue
        given = Path(given)
        clash = _same(path, given) or (written is not None and given.name in written and _same(path, given.parent))
        if written is None and not clash and given.is_dir() and path.exists() and _same(path.parent, given):
            clash = True  # an existing file of an input directory
        if clash:
            raise ValueError(f"{name} {path} would overwrite {option} {given}, an input of this command: "
                             f"choose another {name}")


def check_out(name, path, command, *, inputs=None, overwrite=False, resumable=False, is_file=False):
    """ValueError naming ``name`` unless ``command`` (``"train"``, ``"evaluate"``, ...) may write its
    output at ``path``, checked before any work:

    - never an input of the command (``inputs``: ``{option: path or None}``), nor, for a
      directory, a place where its files would replace an input;
    - never another command's results: a directory that :func:`output_kind` recognises as
      another command's, or a file such a directory holds;
    - its own finished results (an existing file; a directory whose finished marker is there)
      only with ``overwrite``; ``resumable``: an unfinished or finished one of its own is taken up
      again (an experiment resumes its grid).
    Plus :func:`check_output_file` / :func:`check_output_dir` (writable, of the right type).
    """
    path = Path(path)
    written = None if is_file else RESULT_FILES.get(command, ())
    _check_inputs(name, path, inputs, written)
    if is_file:
        check_output_file(name, path)
        holder = output_kind(path.parent)
        if holder is not None and path.name in RESULT_FILES[holder[0]]:
            raise ValueError(f"{name} {path} is a file of the `divqat {holder[0]}` results in {path.parent}: "
                             f"choose another {name}")
        if path.exists() and not overwrite:
            raise ValueError(f"{name} {path} exists: pass --overwrite to replace it")
        return
    check_output_dir(name, path)
    found = output_kind(path)
    if found is None:
        return
    kind, finished = found
    if kind != command:
        raise ValueError(f"{name} {path} holds the {'finished ' if finished else ''}results of `divqat {kind}`: "
                         f"choose another {name}")
    if finished and not overwrite and not resumable:
        raise ValueError(f"{name} {path} holds a finished run: pass --overwrite to replace it")


_claims = {}  # resolved directory -> the descriptor of it this process holds locked


def claim_output_dir(name, path, command, **rule):
    """Create the directory ``path``, hold an exclusive lock on it for the rest of this process, so
    that no other divqat process writes into it meanwhile (ValueError naming ``name`` when another
    one holds it), then apply :func:`check_out` ``(name, path, command, **rule)`` again under the
    lock: what another process finished there since the first check is not replaced.

    The lock is a ``flock`` of the directory itself: it writes nothing and dies with the process.
    A process keeps the claims of its unfinished outputs only (a finished output's writer is done
    with it); a non-main torchrun process (RANK > 0) writes into its main process's claim and
    claims nothing; a file system without ``flock`` is not locked."""
    _lock(name, Path(path))
    check_out(name, path, command, **rule)


def _lock(name, path):
    if os.environ.get("RANK", "0") != "0":
        return
    path = Path(path)
    key = str(path.absolute().resolve())
    if key in _claims:
        return
    for held in [k for k in _claims if (output_kind(k) or (None, False))[1]]:
        os.close(_claims.pop(held))
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ValueError(f"{name} {path} is in use by another divqat process: wait for it or choose "
                         f"another {name}") from None
    except OSError:  # no flock on this file system
        os.close(fd)
        return
    _claims[key] = fd


@contextlib.contextmanager
def output_dir_claimed(name, path, command, **rule):
    """:func:`claim_output_dir` for a ``with`` block that writes ``path``: when the block raises
    and the directory it created is still empty, the directory goes again (a failed command
    leaves nothing behind)."""
    path = Path(path)
    created = not path.exists()
    claim_output_dir(name, path, command, **rule)
    try:
        yield path
    except BaseException:
        if created and path.is_dir() and not any(path.iterdir()):
            fd = _claims.pop(str(path.absolute().resolve()), None)
            if fd is not None:
                os.close(fd)
            path.rmdir()
        raise
