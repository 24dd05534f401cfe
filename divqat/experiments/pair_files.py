"""Write each dataset pair of experiment files as a config file of its own:

    python -m divqat.experiments.pair_files CONFIG.toml [CONFIG.toml ...] --out DIR [--pair NAME]

writes ``DIR/<config name>.toml`` for every pair (or only ``--pair``) of every file, and prints
the paths. The drivers (scripts/seeds10.sh, frontier.sh, labelonly.sh) run these with a frozen
copy of older code, which reads a file of one pair only (:mod:`divqat.experiments.pairs`).

This module is only the command-line entry; the work is the library's.
"""
import argparse
import sys
from pathlib import Path

from divqat.checks import check_output_dir
from divqat.utils import atomic_write_text

from .config import load_experiment_configs
from .pairs import pair_runs, pair_toml


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m divqat.experiments.pair_files",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="experiment TOML files with [[pairs]]")
    parser.add_argument("--out", required=True, help="directory for the files of one pair")
    parser.add_argument("--pair", help="write only this pair (default: every pair)")
    args = parser.parse_args(argv)
    try:
        check_output_dir("--out", args.out)
        runs = [run for path in args.configs
                for run in pair_runs(load_experiment_configs(path), args.out, args.pair, source=path)]
        paths = [atomic_write_text(pair_toml(config.raw), Path(args.out) / f"{config.name}.toml")
                 for config, _ in runs]
    except (ValueError, FileNotFoundError) as exc:
        print(f"pair_files: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
