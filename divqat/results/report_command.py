"""`divqat report DIR`: rewrite an experiment directory's tables, comparisons, plots and report.md,
and print every paired comparison in words (n, mean Δ, 95 % interval, sign count, verdict).

`divqat report RESULTS.csv [--victims VICTIMS.csv] --out COMPARISONS.csv`: the paired
comparisons of committed per-seed CSV files alone (their sentences are printed).

`divqat report --update docs README.md`: rewrite every generated block (tables and figures)
of these Markdown files, and of every Markdown file under these directories, from the
committed CSVs (:mod:`divqat.results.docs_blocks`).
"""
from pathlib import Path

from divqat.checks import check_out, check_output_dir
from divqat.utils import atomic_write_text

from .comparisons import csv_comparisons
from .docs_blocks import markdown_files, update
from .report import write_report
from .tables import read_rows, to_csv


def add_arguments(parser):
    parser.add_argument("dir", nargs="?", help="an experiment output directory (divqat experiment --out DIR), or a "
                                    "results.csv of one (then --out is required)")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="N",
                        help="add a percentile bootstrap interval from N resamples to every paired "
                             "comparison (default 0: the Student-t interval only)")
    parser.add_argument("--victims", help="with a results.csv: the victims.csv of the same run")
    parser.add_argument("--out", help="with a results.csv: where to write the comparisons CSV")
    parser.add_argument("--no-plots", action="store_true",
                        help="with DIR: tables and report.md only, no plots (for a report copied away from its plots)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file (refused otherwise)")
    parser.add_argument("--update", nargs="+", metavar="PATH",
                        help="instead of DIR: rewrite the generated blocks of these Markdown files (and of every "
                             "*.md under these directories) from the committed CSVs they name")


def run(args):
    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    if args.update:
        if args.dir or args.out or args.victims or args.no_plots:
            raise ValueError("--update: takes no DIR, --out, --victims or --no-plots")
        files = markdown_files(args.update)
        counts = {path: update(path) for path in files}
        for path, count in counts.items():
            if count:
                print(f"{path}: {count} generated blocks rewritten")
        print(f"{sum(counts.values())} generated blocks in {sum(bool(c) for c in counts.values())} files")
        return 0
    if args.dir is None:
        raise ValueError("DIR: an experiment directory or a results CSV is needed (or --update PATH ...)")
    source = Path(args.dir)
    if source.is_file() and source.suffix == ".csv":
        if not args.out:
            raise ValueError(f"DIR {source} is a results CSV: --out (the comparisons CSV to write) is needed")
        if args.no_plots:
            raise ValueError("--no-plots: only with an experiment directory (a results CSV gives no plots)")
        check_out("--out", args.out, "report", inputs={"DIR": source, "--victims": args.victims},
                  overwrite=args.overwrite, is_file=True)
        rows = csv_comparisons(source, args.victims, args.bootstrap)
        atomic_write_text(to_csv(rows), args.out)
        print("\n".join(r["sentence"] for r in rows))
        print(f"{len(rows)} comparisons written: {args.out}")
        return 0
    if args.out or args.victims:
        raise ValueError("--out and --victims: only with a results CSV file")
    check_output_dir("DIR", args.dir)
    path = write_report(args.dir, bootstrap=args.bootstrap, plots=not args.no_plots)
    rows = read_rows(Path(args.dir) / "comparisons.csv")
    print("\n".join(r["sentence"] for r in rows))
    print(f"report written: {path} ({len(rows)} paired comparisons in comparisons.csv)")
    return 0
