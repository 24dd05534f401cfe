"""``divqat evaluate``: a trained victim's test accuracy, and what a defense costs it.

    divqat evaluate --victim runs/divqat
    divqat evaluate --victim runs/fp --victim-kind float --defense dcp --defense-arg beta=0.5 --out dcp.json

The work is :func:`divqat.evaluate.evaluate_victim`'s; the result is printed and, with ``--out``,
written as JSON (atomically).
"""
from divqat.checks import check_out
from divqat.cli_options import add_deprecated_alias, add_victim_kind
from divqat.defenses import add_defense_arguments, defense_from_args
from divqat.evaluate import evaluate_victim
from divqat.utils import atomic_write_json

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    a = parser.add_argument
    a("--victim", required=True, metavar="DIR", help="a `divqat train --out` directory")
    add_victim_kind(parser)
    add_deprecated_alias(parser, "--kind", "--victim-kind")
    add_defense_arguments(parser)
    a("--test-limit", type=int, default=None, metavar="N", help="evaluate on the first N test examples")
    add_deprecated_alias(parser, "--limit", "--test-limit")
    a("--data-root", default=None, help="dataset directory (default: the loaders' search path)")
    a("--batch-size", type=int, default=256, help="queries per batch (default 256)")
    a("--repeats", type=int, default=5, help="timed repeats for the defense's latency (default 5)")
    a("--out", default=None, metavar="FILE.json", help="also write the result as JSON here")
    a("--overwrite", action="store_true", help="replace an existing --out file (refused otherwise)")
    a("--no-progress", action="store_true", help="no progress bar")


def run(args):
    if args.out is not None:
        check_out("--out", args.out, "evaluate", inputs={"--victim": args.victim}, overwrite=args.overwrite,
                  is_file=True)
    defense = defense_from_args(args)
    result = evaluate_victim(args.victim, kind=args.victim_kind, defense=defense, limit=args.test_limit,
                             data_root=args.data_root, batch_size=args.batch_size, repeats=args.repeats,
                             progress=not args.no_progress)
    for key, value in result.items():
        print(f"{key}: {value:.6g}" if isinstance(value, float) else f"{key}: {value}")
    if args.out is not None:
        atomic_write_json(result, args.out)
    return 0
