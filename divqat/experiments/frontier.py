"""Run the frontier's experiment configs seed by seed, and write its tables
(docs/science.md §8 and §9):

    python -m divqat.experiments.frontier run CONFIG.toml [CONFIG.toml ...] --out runs/frontier_mnist --seeds 0 1 2
    python -m divqat.experiments.frontier table runs/frontier_mnist runs/frontier_fmnist --out docs/results/data/trained_in

``run`` runs experiment configs into one output directory seed by seed (every config for seed
0, then every config for seed 1, ...), so an interrupted run leaves whole seeds of every
config, the configs share their cached victims, and a rerun resumes. ``table`` reads the
finished attack cells of experiment output directories (one per dataset pair) and writes
frontier.csv, frontier.md and the plots (:mod:`divqat.results.frontier_files`).
"""
import argparse
import dataclasses
import sys
from collections import defaultdict

from divqat.checks import check_output_dir
from divqat.results.frontier_files import write_frontier

from .config import load_experiment_config
from .runner import run_experiment


def run_seed_major(config_paths, out_dir, seeds, progress=False):
    """Run every config for each seed in turn into ``out_dir`` (module docstring); returns the
    summed work counts of :func:`divqat.experiments.runner.run_experiment`."""
    check_output_dir("--out", out_dir)
    configs = [load_experiment_config(path) for path in config_paths]  # all validated before any work
    totals = defaultdict(int)
    for seed in seeds:
        for config in configs:
            counts = run_experiment(dataclasses.replace(config, seeds=[seed]), out_dir, progress=progress, report=False)
            for key, value in counts.items():
                totals[key] += value
            print(f"frontier run: seed {seed} {config.name}: {counts}", flush=True)
    return dict(totals)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m divqat.experiments.frontier", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run experiment configs seed by seed into one directory")
    run.add_argument("configs", nargs="+", help="experiment TOML files (one dataset pair)")
    run.add_argument("--out", required=True, help="experiment output directory (re-running resumes it)")
    run.add_argument("--seeds", type=int, nargs="+", required=True, help="seeds, in the order to run them")
    table = sub.add_parser("table", help="write frontier.csv, frontier.md and the plots")
    table.add_argument("runs", nargs="+", help="experiment output directories (one per dataset pair)")
    table.add_argument("--out", required=True, help="directory for frontier.csv, frontier.md and the plots")
    table.add_argument("--no-plots", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            print(f"frontier run: {run_seed_major(args.configs, args.out, args.seeds)}")
            return 0
        rows = write_frontier(args.runs, args.out, plots=not args.no_plots)
    except (ValueError, FileNotFoundError) as exc:
        print(f"frontier: error: {exc}", file=sys.stderr)
        return 2
    print(f"frontier: {len(rows)} rows -> {args.out}/frontier.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
