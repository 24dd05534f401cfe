"""`divqat experiment CONFIG --out DIR`: run (or resume) a TOML-configured experiment grid."""
from .cells import CellCache, grid_cells
from .config import load_config
from .runner import run_experiment


def add_arguments(parser):
    parser.add_argument("config", help="experiment TOML file (see divqat.experiments.config)")
    parser.add_argument("--out", required=True, help="output directory (re-running resumes it)")
    parser.add_argument("--no-report", action="store_true", help="write the tables, skip report.md and plots")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--seeds", help="run only these of the config's seeds, e.g. 0-4 or 0,2,5 (several "
                                        "processes on disjoint seeds may share one --out)")
    parser.add_argument("--reuse-stale", action="store_true",
                        help="reuse cells computed by other code (another code fingerprint) instead of "
                             "recomputing them; the report marks them stale")


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
    config = load_config(args.config)
    if args.seeds is not None:
        config.seeds = parse_seeds(args.seeds, config.seeds)
    if args.reuse_stale:
        adopted = CellCache(args.out).adopt_stale(grid_cells(config))
        print(f"{config.name}: reusing {adopted} stale cells (computed by other code)")
    counts = run_experiment(config, args.out, progress=not args.quiet, report=not args.no_report)
    print(f"{config.name}: {counts['victims_trained']} victims trained, {counts['cells_run']} cells run, "
          f"{counts['cells_cached']} cached; results in {args.out}")
    return 0
