"""Tables in and out: CSV rows read and written, Markdown tables, and the number formats every
table and sentence of the results uses (docs/science.md §9: rates in percentage points, a
paired difference as its mean and 95 % Student-t interval).
"""
import csv
import io
import math


def parse_value(text):
    """A CSV cell as a Python value: empty -> None, ``True``/``False`` -> bool, then int, float,
    or the text itself."""
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_rows(path, types=None):
    """The rows of a CSV file as dicts. Without ``types`` every cell goes through
    :func:`parse_value`; with ``types`` (column -> callable) only those columns are converted and
    the others stay text."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if types is None:
        return [{k: parse_value(v) for k, v in row.items()} for row in rows]
    return [{k: types[k](v) if k in types else v for k, v in row.items()} for row in rows]


def to_csv(rows, columns=None):
    """CSV text of ``rows`` (dicts whose keys may differ): ``columns`` in that order, or every key
    in first-seen order; None is written as an empty cell."""
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buf.getvalue()


def markdown_table(header, rows):
    """A Markdown table: the header, the separator, one line per row (cells through ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def fmt(mean, std, scale=1):
    """``mean ± std`` scaled (100 for percentages); the mean alone when the deviation is
    undefined (one seed); a dash when absent."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    digits = 2 if scale == 100 or abs(mean * scale) < 100 else 0
    small = scale != 100 and abs(mean * scale) < 0.1 and mean != 0
    text = (lambda v: f"{v * scale:.2g}") if small else (lambda v: f"{v * scale:.{digits}f}")
    return text(mean) if std is None else f"{text(mean)} ± {text(std)}"


def signed(v):
    """A signed number for tables and sentences: two decimals from 1 up, three significant digits
    below (KL differences are small), a dash when absent."""
    if v is None:
        return "—"
    return f"{v:+.2f}" if abs(v) >= 1 or v == 0 else f"{v:+.3g}"


def ci_text(low, high, boot_low=None, boot_high=None):
    """``low to high`` of an interval (:func:`signed`), with the bootstrap interval in brackets
    when given; a dash when there is none (one seed)."""
    if low is None:
        return "—"
    text = f"{signed(low)} to {signed(high)}"
    if boot_low is not None:
        text += f" (bootstrap {signed(boot_low)} to {signed(boot_high)})"
    return text


def points(paired, scale=100.0):
    """A paired difference of rates (a :class:`divqat.results.stats.Paired` of fractions) in
    points: ``+mean [+low, +high]``, or ``+mean (n = 1)`` without an interval."""
    if paired.ci_low is None:
        return f"{scale * paired.mean_diff:+.2f} (n = 1)"
    return f"{scale * paired.mean_diff:+.2f} [{scale * paired.ci_low:+.2f}, {scale * paired.ci_high:+.2f}]"
