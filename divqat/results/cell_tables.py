"""Means over seeds of an experiment's attack cells (a ``results*.csv`` of ``divqat report``) as
a Markdown pivot table: one row per value of the row columns, one column per value of the column
column and metric, each cell mean ± sample standard deviation over its seeds, in % (the mean
alone for one seed, a dash for none; :func:`divqat.results.tables.fmt`), and n the most seeds
of a row's cells. Rows ``fp`` and ``qat`` come first, the rest sorted; columns sorted.
"""
from .stats import mean_sd
from .tables import fmt, markdown_table


def _key(value):
    return str(value) != "fp", str(value) != "qat", isinstance(value, str), value


def cell_means(rows, metrics, row_columns, column, filters):
    """The pivot table (module docstring) of the ``rows`` that match every filter (column ->
    allowed values as text)."""
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
        body.append([*map(str, key), n] + [fmt(*mean_sd([r[m] for r in cells[key, c]]), 100) if (key, c) in cells
                                           else "—" for c in columns for m in metrics])
    return markdown_table([*row_columns, "n"] + [f"{column} {c}: {m}" for c in columns for m in metrics], body)


def parse_arguments(metrics, rows, column, *filters):
    """(metrics, row columns, column, filters) of a block's words: ``a,b``, ``x,y``, ``z`` and
    ``col=v1,v2`` filters."""
    pairs = [f.split("=", 1) for f in filters]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"filters: {' '.join(filters)}: each is column=value[,value]")
    return metrics.split(","), rows.split(","), column, {k: v.split(",") for k, v in pairs}
