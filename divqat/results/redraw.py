"""The experiment plots of :mod:`divqat.results.plots` drawn again from committed per-seed CSV
files (the run directories they came from are not in the repository).

Attack-cell plots (error and victim error against alpha, budget, defense trade-off, surrogate
robustness) come from a results CSV (the QAT and DivQAT victims' cells for the alpha, budget
and defense plots; every victim's for robustness); KL and L1 against alpha from a victims CSV.
"""
import shutil
import tempfile
from pathlib import Path

from .aggregate import summarize
from .plots import PLOTS, plot_robustness
from .tables import read_rows

# columns that describe a row rather than measure it
DESCRIPTIVE = {"victim_label", "method", "alpha", "direction", "T", "defense", "defense_label", "budget",
               "attack", "attack_label"}
SETTINGS = ("method_", "attack_epochs", "attack_momentum", "attack_rounds_", "defense_beta", "defense_gamma",
            "defense_epsilon")


def _metrics(rows):
    """Numeric columns that are neither row ids nor descriptive (method_*, defense_*, attack_* settings)."""
    columns = {k for row in rows for k in row}
    return sorted(c for c in columns if c not in DESCRIPTIVE and not c.startswith(SETTINGS)
                  and any(isinstance(row.get(c), (int, float)) and not isinstance(row.get(c), bool) for row in rows))


def redraw(results_csv, victims_csv, out_dir, prefix=""):
    """Every plot the CSVs have data for, written into ``out_dir`` as ``<prefix><name>.png``;
    returns the written file names."""
    cells, vrows = read_rows(results_csv), read_rows(victims_csv)
    quantized = [r for r in cells if r["method"] in ("qat", "divqat")]
    victims_summary = summarize(vrows, _metrics(vrows))
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for plot in PLOTS:
            rows = cells if plot is plot_robustness else quantized
            tables = {"cells": rows, "cells_summary": summarize(rows, _metrics(rows)),
                      "victims_summary": [] if plot is plot_robustness else victims_summary}
            for name in plot(tables, tmp):
                shutil.copyfile(Path(tmp) / name, Path(out_dir) / f"{prefix}{name}")
                written.append(f"{prefix}{name}")
    return written
