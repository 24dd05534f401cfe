"""`divqat experiment CONFIG --out DIR [--pair NAME] [--executor ray [--address ADDRESS]] [--plan]`:
run (or resume) a TOML-configured experiment grid, here or on a Ray cluster, or (``--plan``)
show what a run would compute and about how long it takes; a config with dataset pairs runs the
pair ``--pair`` names into DIR, or each pair into ``DIR/<pair name>``."""
import sys
from pathlib import Path

from divqat.checks import check_out
from divqat.cli_options import add_deprecated_alias

from .cells import CellCache, grid_cells
from .config import load_experiment_configs
from .executors import make_executor
from .pairs import pair_runs
from .plan import PLAN_NOTE, plan_grid, plan_table
from .runner import ExperimentFailed, run_experiment


def add_arguments(parser):
    parser.add_argument("config", help="experiment TOML file (see divqat.experiments.config)")
    parser.add_argument("--out", required=True,
                        help="output directory (re-running resumes it); with Ray, on a filesystem every node sees")
    parser.add_argument("--pair", help="of a config with [[pairs]], run only this pair, into --out (default: "
                                       "each pair into --out/<pair name>)")
    parser.add_argument("--no-report", action="store_true", help="write the tables, skip report.md and plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or lines")
    add_deprecated_alias(parser, "--quiet", "--no-progress")
    parser.add_argument("--executor", choices=("sequential", "ray"), default="sequential",
                        help="run the cells one after another here (default) or as Ray tasks")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (as `ray start --head` prints it); default: a local Ray instance")
    parser.add_argument("--cpus-per-cell", type=int, default=None,
                        help="CPUs a cell declares and its torch thread count (ray default 1; "
                             "sequential default: torch's own thread count)")
    parser.add_argument("--gpus-per-cell", type=float, default=None,
                        help="GPUs a Ray cell declares (default 1 when the config's device is cuda, else 0)")
    parser.add_argument("--seeds", help="run only these of the config's seeds, e.g. 0-4 or 0,2,5 (several "
                                        "processes on disjoint seeds may share one --out)")
    parser.add_argument("--reuse-stale", action="store_true",
                        help="reuse cells computed by other code (another code fingerprint) instead of "
                             "recomputing them; the report marks them stale")
    parser.add_argument("--plan", action="store_true",
                        help="compute nothing, write nothing: print per seed the victims and cells the run "
                             "would compute (what --out lacks) and their estimated compute time, from the "
                             "times of --out's finished cells like them")


def parse_seeds(text, allowed):
    """``"0-4"`` or ``"0,2,5"`` (or a mix, ``"0-2,7"``) as a list of ints, each in ``allowed``."""
    seeds = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            seeds += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        raise ValueError(f"--seeds: expected e.g. 0-4 or 0,2,5, got {text!r}") from None
    missing = sorted(set(seeds) - set(allowed))
    if missing or not seeds:
        raise ValueError(f"--seeds: {missing or text!r} not among the config's seeds {allowed}")
    return sorted(set(seeds), key=seeds.index)


def run(args):
    check_out("--out", args.out, "experiment", inputs={"CONFIG": args.config}, resumable=True)
    runs = pair_runs(load_experiment_configs(args.config), args.out, args.pair, source=args.config)
    for config, out in runs:
        if out != Path(args.out):
            check_out("--out", out, "experiment", inputs={"CONFIG": args.config}, resumable=True)
        if args.seeds is not None:
            config.seeds = parse_seeds(args.seeds, config.seeds)
    if args.plan:
        for config, out in runs:
            print(f"{config.name} -> {out} (--plan: nothing is computed)\n"
                  f"{plan_table(plan_grid(config, out, args.reuse_stale), args.reuse_stale)}\n")
        print(PLAN_NOTE)
        return 0
    executor = make_executor(args.executor, address=args.address, cpus=args.cpus_per_cell,
                             gpus=args.gpus_per_cell, device=runs[0][0].device)
    return max(_run_one(config, out, executor, args) for config, out in runs)


def _run_one(config, out, executor, args):
    """Run one config's grid into ``out``; 1 if some cells failed, else 0."""
    if args.reuse_stale:
        adopted = CellCache(out).adopt_stale(grid_cells(config))
        print(f"{config.name}: reusing {adopted} stale cells (computed by other code)")
    status = 0
    try:
        counts = run_experiment(config, out, progress=not args.no_progress, report=not args.no_report,
                                executor=executor)
    except ExperimentFailed as failed:
        counts, status = failed.counts, 1
        print(f"divqat experiment: {failed}", file=sys.stderr)
    print(f"{config.name}: {counts['victims_trained']} victims trained, {counts['cells_run']} cells run, "
          f"{counts['cells_cached']} cached; results in {out}")
    return status
