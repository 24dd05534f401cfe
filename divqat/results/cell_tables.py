"""Means over seeds of an experiment's attack cells (a ``results*.csv`` of ``divqat report``) as
a Markdown pivot table: one row per value of the row columns, one column per value of the column
column and metric, each cell mean ± sample standard deviation over its seeds, in % or times
the metric's scale (``metric:scale``; the mean alone for one seed, a dash without a value;
:func:`divqat.results.tables.fmt`), and n the most seeds of a row's cells. Rows ``fp`` and ``qat`` come first, the rest sorted; columns sorted.
:func:`seed_ratios` gives, per seed, a metric's ratio to a baseline row's, and
:func:`queries_to_reach` the budget at which a row's mean curve reaches a baseline row's.
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


def parse_filters(words):
    """{column: allowed values} of a block's ``col=v1,v2`` words."""
    pairs = [w.split("=", 1) for w in words]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"filters: {' '.join(words)}: each is column=value[,value]")
    return {k: v.split(",") for k, v in pairs}


def parse_arguments(metrics, rows, column, *filters):
    """(metrics as (name, scale), row columns, column, filters) of a block's words: ``a,b:1e6``
    (scale 100 unless given), ``x,y``, ``z`` and ``col=v1,v2`` filters."""
    scaled = [(m.split(":")[0], float(m.split(":")[1]) if ":" in m else 100) for m in metrics.split(",")]
    return scaled, rows.split(","), column, parse_filters(filters)


def seed_ratios(rows, metric, row_column, column, baseline, filters):
    """Markdown: per value of ``row_column`` other than ``baseline`` and per value of ``column``,
    the ratio of ``metric`` to the baseline's on each seed both have (seed order, two decimals)."""
    keep = [r for r in rows if all(str(r[k]) in allowed for k, allowed in filters.items())]
    cells = {(r[row_column], r[column], r["seed"]): r[metric] for r in keep}
    columns = sorted({c for _, c, _ in cells}, key=_key)
    body = [[label] + [", ".join(f"{cells[label, c, s] / cells[baseline, c, s]:.2f}"
                                 for s in sorted({k[2] for k in cells if k[:2] == (label, c)})
                                 if (baseline, c, s) in cells) for c in columns]
            for label in sorted({k[0] for k in cells} - {baseline}, key=_key)]
    return markdown_table([row_column] + [f"{column} {c}" for c in columns], body)


def _crossing(curve, target):
    """The first x where the piecewise-linear ``curve`` (sorted (x, y)) reaches ``target``, or None."""
    for (x0, y0), (x1, y1) in zip(curve, curve[1:]):
        if y0 >= target:
            return x0
        if y1 >= target:
            return x0 + (target - y0) * (x1 - x0) / (y1 - y0)
    return curve[-1][0] if curve and curve[-1][1] >= target else None


def queries_to_reach(rows, metric, row_column, baseline, filters):
    """Markdown: per budget of the ``baseline`` row, its mean ``metric`` over seeds, and the
    budget at which each other row's mean curve (linear between budgets) first reaches it (its
    first budget when it starts above), with its ratio to that budget; ``—`` where it never does."""
    keep = [r for r in rows if all(str(r[k]) in allowed for k, allowed in filters.items())]
    groups = {}
    for r in keep:
        groups.setdefault(r[row_column], {}).setdefault(r["budget"], []).append(r[metric])
    curves = {label: sorted((b, sum(v) / len(v)) for b, v in by_budget.items()) for label, by_budget in groups.items()}
    others = sorted(set(curves) - {baseline}, key=_key)
    body = []
    for budget, target in curves[baseline]:
        cells = [_crossing(curves[label], target) for label in others]
        body.append([f"{budget:,}", f"{100 * target:.2f}"]
                    + ["—" if q is None else f"{q:,.0f} ({q / budget:.2f}×)" for q in cells])
    return markdown_table(["budget", f"{baseline} {metric} %", *(f"{label}: queries to reach it" for label in others)],
                          body)
