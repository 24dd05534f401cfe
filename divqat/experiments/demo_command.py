"""`divqat demo`: QAT, DivQAT and the relabelling victim, bare and behind DCP, against KnockoffNets and Copycat on the built-in data, end to end.

The experiment and its table are :mod:`divqat.experiments.demo`'s; ``--quick`` shrinks every
setting for a smoke test. Results (and the cache that makes a re-run instant) go to ``--out``,
the printed table's rows to ``--out``/demo.csv (per-seed rows behind them: results.csv and
victims.csv).
"""
import time

from divqat.checks import check_output_dir
from divqat.results.tables import to_csv
from divqat.utils import atomic_write_text

from .demo import demo_config, demo_rows, demo_table
from .runner import run_experiment

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true", help="tiny settings (a smoke test, well under a minute)")
    parser.add_argument("--out", default="divqat-demo", help="output directory (default ./divqat-demo)")
    parser.add_argument("--seed", type=int, default=0, help="seeds python, numpy and torch (default 0)")
    parser.add_argument("--alpha", type=float, default=1.0, help="DivQAT's alpha (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args):
    check_output_dir("--out", args.out)
    config = demo_config(args.quick, args.seed, args.alpha)
    start = time.perf_counter()
    counts = run_experiment(config, args.out, progress=not args.no_progress)
    rows = demo_rows(args.out)
    atomic_write_text(to_csv(rows), f"{args.out}/demo.csv")
    print(demo_table(rows))
    print(f"{time.perf_counter() - start:.0f} s ({counts['victims_trained']} victims trained, "
          f"{counts['cells_run']} attacks run, {counts['cells_cached']} cached); report: {args.out}/report.md, "
          f"table rows: {args.out}/demo.csv")
    return 0
