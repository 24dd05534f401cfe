"""The frontier's files in one directory: ``frontier.csv`` (one row per cell and seed,
:mod:`divqat.results.frontier`), ``frontier.md`` (:func:`divqat.results.frontier_tables.frontier_markdown`)
and the plots (:mod:`divqat.results.frontier_plots`), each written atomically, from experiment
output directories; from those whose thieves kept the labels they were answered, also
``answered_labels.csv`` (:func:`divqat.results.frontier.answered_label_rows`)."""
from pathlib import Path

from divqat.utils import atomic_write_text

from .frontier import COLUMNS, answered_label_rows, frontier_rows
from .frontier_plots import plot_frontier
from .frontier_tables import frontier_markdown
from .tables import to_csv


def write_frontier_files(rows, out_dir, plots=True):
    """Write frontier.csv, frontier.md and (``plots``) the plots of ``rows`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(to_csv(rows, COLUMNS), out_dir / "frontier.csv")
    atomic_write_text(frontier_markdown(rows), out_dir / "frontier.md")
    if plots:
        plot_frontier(rows, out_dir)
    return rows


def write_frontier(run_dirs, out_dir, plots=True):
    """The frontier files of the finished attack cells of ``run_dirs`` (one directory per dataset
    pair); returns the rows."""
    for run_dir in run_dirs:
        if not Path(run_dir, "cells").is_dir():
            raise FileNotFoundError(f"{run_dir}: no cells/ directory (not an experiment output directory)")
    rows = frontier_rows(run_dirs)
    if not rows:
        raise ValueError(f"no finished attack cells in {', '.join(map(str, run_dirs))}")
    write_frontier_files(rows, out_dir, plots)  # makes out_dir
    labels = answered_label_rows(run_dirs)
    if labels:  # the thieves' answered labels, where their cells kept them
        atomic_write_text(to_csv(labels), Path(out_dir) / "answered_labels.csv")
    return rows

