"""Run the frontier's experiment configs seed by seed, and write its tables
(docs/science.md §8 and §9):

    python -m divqat.experiments.frontier run CONFIG.toml [...] --pair mnist_fmnist --out runs/frontier_mnist_fmnist --seeds 0 1
    python -m divqat.experiments.frontier table runs/frontier_mnist runs/frontier_fmnist --out docs/results/data/trained_in

``run`` runs experiment configs into one output directory seed by seed
(:func:`divqat.experiments.runner.run_seed_major`: every config for seed 0, then every config for
seed 1, ...), so an interrupted run leaves whole seeds of every config, the configs share their
cached victims, and a rerun resumes; of configs with dataset pairs it runs the pair ``--pair``
names, or each pair into ``OUT/<pair name>``. ``table`` reads the finished attack cells of experiment
output directories (one per dataset pair) and writes frontier.csv, frontier.md and the plots
(:mod:`divqat.results.frontier_files`).

This module is only the command-line entry; the work is the library's.
"""
import argparse
import sys

from divqat.results.frontier_files import write_frontier

from .runner import run_seed_major


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m divqat.experiments.frontier", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run experiment configs seed by seed into one directory")
    run.add_argument("configs", nargs="+", help="experiment TOML files (one dataset pair, or --pair)")
    run.add_argument("--out", required=True, help="experiment output directory (re-running resumes it)")
    run.add_argument("--pair", help="of configs with [[pairs]], run only this pair, into --out "
                                    "(default: each pair into --out/<pair name>)")
    run.add_argument("--seeds", type=int, nargs="+", required=True, help="seeds, in the order to run them")
    table = sub.add_parser("table", help="write frontier.csv, frontier.md and the plots")
    table.add_argument("runs", nargs="+", help="experiment output directories (one per dataset pair)")
    table.add_argument("--out", required=True, help="directory for frontier.csv, frontier.md and the plots")
    table.add_argument("--no-plots", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            print(f"frontier run: {run_seed_major(args.configs, args.out, args.seeds, pair=args.pair)}")
            return 0
        rows = write_frontier(args.runs, args.out, plots=not args.no_plots)
    except (ValueError, FileNotFoundError) as exc:
        print(f"frontier: error: {exc}", file=sys.stderr)
        return 2
    print(f"frontier: {len(rows)} rows -> {args.out}/frontier.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
