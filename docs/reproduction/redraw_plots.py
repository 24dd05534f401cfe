"""Redraw the committed plots of docs/reproduction.md from the committed per-seed CSV files
(the run directories they came from are not in the repository):

    python docs/reproduction/redraw_plots.py

Attack-cell plots (error and victim error against alpha, budget, defense trade-off, surrogate
robustness) come from the 3-seed results_<pair>_cpu.csv (the QAT and DivQAT victims' cells for
the alpha, budget and defense plots; the fp and adversarially trained victims' for robustness);
KL and L1 against alpha from the ten-seed seeds10/<pair>/victims.csv (the 3-seed victim records
were never committed).
"""
import shutil
import tempfile
from pathlib import Path

from divqat.experiments.aggregate import summarize
from divqat.experiments.comparisons import read_rows
from divqat.experiments.plots import PLOTS, plot_robustness

HERE = Path(__file__).resolve().parent
# (results csv, victims csv, prefix of the committed PNG names)
PAIRS = (("results_mnist_fmnist_cpu.csv", "seeds10/mnist_fmnist/victims.csv", ""),
         ("results_fmnist_mnist_cpu.csv", "seeds10/fmnist_mnist/victims.csv", "fmnist_mnist_"))
# columns that describe a row rather than measure it
DESCRIPTIVE = {"victim_label", "method", "alpha", "direction", "T", "defense", "defense_label", "budget",
               "attack", "attack_label"}


def _metrics(rows):
    """Numeric columns that are neither row ids nor descriptive (method_*, defense_*, attack_* settings)."""
    settings = ("method_", "attack_epochs", "attack_momentum", "attack_rounds_", "defense_beta", "defense_gamma",
                "defense_epsilon")
    columns = {k for row in rows for k in row}
    return sorted(c for c in columns if c not in DESCRIPTIVE and not c.startswith(settings)
                  and any(isinstance(row.get(c), (int, float)) and not isinstance(row.get(c), bool) for row in rows))


def main():
    for results, victims, prefix in PAIRS:
        cells, vrows = read_rows(HERE / results), read_rows(HERE / victims)
        quantized = [r for r in cells if r["method"] in ("qat", "divqat")]
        victims_summary = summarize(vrows, _metrics(vrows))
        with tempfile.TemporaryDirectory() as tmp:
            for plot in PLOTS:
                rows = cells if plot is plot_robustness else quantized
                tables = {"cells_summary": summarize(rows, _metrics(rows)),
                          "victims_summary": [] if plot is plot_robustness else victims_summary}
                for name in plot(tables, tmp):
                    shutil.copyfile(Path(tmp) / name, HERE / f"{prefix}{name}")
                    print(f"{prefix}{name}")


if __name__ == "__main__":
    main()
