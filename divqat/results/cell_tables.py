"""Means over seeds of an experiment's attack cells (a ``results*.csv`` of ``divqat report``) as
a Markdown pivot table: one row per value of the row columns, one column per value of the column
column and metric, each cell mean ± sample standard deviation over its seeds, in % or times
the metric's scale (``metric:scale``; the mean alone for one seed, a dash without a value;
:func:`divqat.results.tables.fmt`), and n the most seeds of a row's cells. Rows ``fp`` and ``qat`` come first, the rest sorted; columns sorted.
"""
from .stats import mean_sd
from .tables import fmt, markdown_table


def _key(value):
    return str(value) != "fp", str(value) != "qat", isinstance(value, str), value


def _cell(rows, metric, scale):
    values = [r[metric] for r in rows if r[metric] is not None]
    return fmt(*mean_sd(values), scale) if values else "—"


def cell_means(rows, metrics, row_columns, column, filters):
    """The pivot table (module docstring) of the ``rows`` that match every filter (column ->
    allowed values as text); ``metrics``: (name, scale) pairs."""
    keep = [r for r in rows if all(str(r[k]) in allowed for k, allowed in filters.items())]
    if not keep:
        raise ValueError(f"filters: no row matches {filters}")
    cells = {}
    for r in keep:
        cells.setdefault((tuple(r[c] for c in row_columns), r[column]), []).append(r)
    columns = sorted({c for _, c in cells}, key=_key)
    body = []
    for key in sorted({k for k, _ in cells}, key=lambda k: tuple(map(_key, k))):
        n = max(len(cells.get((key, c), [])) for c in columns)
        body.append([*map(str, key), n] + [_cell(cells.get((key, c), []), m, scale) for c in columns for m, scale in metrics])
    return markdown_table([*row_columns, "n"] + [f"{column} {c}: {m}" + ("" if scale == 100 else f" ×{scale:g}")
                                                 for c in columns for m, scale in metrics], body)


def parse_arguments(metrics, rows, column, *filters):
    """(metrics as (name, scale), row columns, column, filters) of a block's words: ``a,b:1e6``
    (scale 100 unless given), ``x,y``, ``z`` and ``col=v1,v2`` filters."""
    pairs = [f.split("=", 1) for f in filters]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"filters: {' '.join(filters)}: each is column=value[,value]")
    scaled = [(m.split(":")[0], float(m.split(":")[1]) if ":" in m else 100) for m in metrics.split(",")]
    return scaled, rows.split(","), column, {k: v.split(",") for k, v in pairs}
