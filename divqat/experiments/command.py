"""`divqat experiment CONFIG --out DIR`: run (or resume) a TOML-configured experiment grid."""
from divqat.checks import check_output_dir

from .config import load_experiment_config
from .runner import run_experiment


def add_arguments(parser):
    parser.add_argument("config", help="experiment TOML file (see divqat.experiments.config)")
    parser.add_argument("--out", required=True, help="output directory (re-running resumes it)")
    parser.add_argument("--no-report", action="store_true", help="write the tables, skip report.md and plots")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args):
    check_output_dir("--out", args.out)
    config = load_experiment_config(args.config)
    counts = run_experiment(config, args.out, progress=not args.quiet, report=not args.no_report)
    print(f"{config.name}: {counts['victims_trained']} victims trained, {counts['cells_run']} cells run, "
          f"{counts['cells_cached']} cached; results in {args.out}")
    return 0
