"""`divqat report DIR`: rewrite an experiment directory's tables, plots and report.md."""
from divqat.checks import check_output_dir

from .report import write_report


def add_arguments(parser):
    parser.add_argument("dir", help="an experiment output directory (divqat experiment --out DIR)")


def run(args):
    check_output_dir("DIR", args.dir)
    path = write_report(args.dir)
    print(f"report written: {path}")
    return 0
