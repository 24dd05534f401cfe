"""Progress that people can read, on a terminal and in a log file: the one progress helper of divqat.

:func:`progress_bar` counts the real unit of the work (queries, images, epochs, cells), not the
chunks it happens to be done in: ``size(item)`` says how many units an item of the iterable
holds (a batch of 256 images advances the count by 256). On a terminal it is a tqdm bar; when
its stream is not a terminal (a log file, a pipe, CI) it prints a plain line instead, at most
one every :data:`PLAIN_INTERVAL` seconds, and the final count when it ends if it printed a line
before or was made with ``leave=True`` (so a short inner step stays silent), with no escape
codes::

    querying: 3072/5000 queries (61%), 4 s elapsed, 2.6 s left
    querying: 5000/5000 queries (100%), 7 s elapsed

``DIVQAT_PROGRESS_INTERVAL`` (seconds) overrides the interval of the plain lines.
"""
import math
import os
import sys
import time

from tqdm.auto import tqdm

__all__ = ["Progress", "progress_bar", "write", "PLAIN_INTERVAL"]

PLAIN_INTERVAL = 5.0


def _plain_interval():
    value = os.environ.get("DIVQAT_PROGRESS_INTERVAL")
    if value is None:
        return PLAIN_INTERVAL
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"DIVQAT_PROGRESS_INTERVAL must be a number of seconds, got {value!r}") from None
    if not seconds >= 0:
        raise ValueError(f"DIVQAT_PROGRESS_INTERVAL must be >= 0, got {value!r}")
    return seconds


def _is_terminal(stream):
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _seconds(s):
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"


class Progress:
    """A progress counter over ``total`` units: a tqdm bar on a terminal, plain lines otherwise
    (see the module docstring). Iterate it to walk ``iterable`` (each item advances it by
    ``size(item)``, default 1), or call :meth:`update`; use it as a context manager or
    :meth:`close` it. ``enabled=False`` shows nothing."""

    def __init__(self, iterable=None, *, total=None, desc="", unit="it", size=None, enabled=True, leave=False,
                 initial=0, stream=None):
        if total is None and iterable is not None and size is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.size, self.total, self.desc, self.unit = iterable, size, total, desc, unit
        self.n, self.postfix, self.enabled, self.leave = initial, "", enabled, leave
        self.stream = sys.stderr if stream is None else stream
        self._bar = None
        if enabled and _is_terminal(self.stream):
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=f" {unit}", leave=leave,
                             file=self.stream, dynamic_ncols=True)
        self._start = self._last_line = time.monotonic()
        self._interval = _plain_interval() if enabled else math.inf
        self._shown = initial  # units counted at the last plain line
        self._printed = False
        self._closed = False

    @property
    def plain(self):
        """True when this prints plain lines (enabled, stream not a terminal)."""
        return self.enabled and self._bar is None

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1 if self.size is None else self.size(item))
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n=1):
        """Count ``n`` more units done."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._line_due():
            self._line()

    def set_postfix_str(self, text="", refresh=True):
        """Text shown after the count (e.g. what is running now); ``refresh=False`` waits for the
        next update to show it."""
        self.postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=refresh)
        elif refresh and self._line_due():
            self._line()

    def set_postfix(self, refresh=True, **values):
        """``key=value`` pairs shown after the count."""
        self.set_postfix_str(", ".join(f"{k}={v}" for k, v in values.items()), refresh=refresh)

    def line(self):
        """The plain line of the current count."""
        elapsed = time.monotonic() - self._start
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        text = f"{self.desc}: {count} {self.unit}"
        if self.total:
            text += f" ({100 * self.n / self.total:.0f}%)"
        text += f", {_seconds(elapsed)} elapsed"
        if self.total and 0 < self.n < self.total and elapsed > 0:
            text += f", {_seconds(elapsed * (self.total - self.n) / self.n)} left"
        if self.postfix:
            text += f"; {self.postfix}"
        return text

    def _line_due(self):
        return self.plain and time.monotonic() - self._last_line >= self._interval

    def _line(self):
        print(self.line(), file=self.stream, flush=True)
        self._last_line, self._shown, self._printed = time.monotonic(), self.n, True

    def close(self):
        """End the bar; in plain mode print the final count (once, if it moved since the last
        line, and only after an earlier line or with ``leave=True``)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.plain and self.n != self._shown and (self._printed or self.leave):
            self._line()


def progress_bar(iterable=None, **kwargs):
    """A :class:`Progress` (same arguments): ``for batch in progress_bar(loader, total=N,
    unit="images", size=lambda b: len(b[1]), desc="train")``."""
    return Progress(iterable, **kwargs)


def write(message):
    """Print a line on stdout without breaking a terminal bar (``tqdm.write``)."""
    tqdm.write(message)
