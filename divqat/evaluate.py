"""``divqat evaluate``: a trained victim's test accuracy, and what a defense costs it.

    divqat evaluate --victim runs/divqat
    divqat evaluate --victim runs/fp --victim-kind float --defense dcp --defense-arg beta=0.5 --out dcp.json

The victim is loaded with :func:`divqat.train.load_victim` and scored on the test split of the
dataset it was trained on (docs/science.md §6). With ``--defense`` the report adds the
defense's cost (:func:`divqat.defenses.defense_cost`): accuracy of the returned vectors, mean
L1 and KL between clean and returned vectors, and latency added per query. The result is
printed and, with ``--out``, written as JSON (atomically).
"""
import torch.nn.functional as F

from divqat.checks import check_int, check_out
from divqat.cli_options import add_deprecated_alias, add_victim_kind
from divqat.defenses import add_defense_arguments, defense_cost, defense_from_args
from divqat.metrics import accuracy, predict_logits
from divqat.utils import atomic_write_json


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


def evaluate_victim(victim_dir, kind="auto", defense=None, limit=None, data_root=None, batch_size=256,
                    repeats=5, progress=True):
    """The dict ``divqat evaluate`` reports: victim, kind, dataset, num_test, accuracy and,
    with a defense, the keys of :func:`divqat.defenses.defense_cost`."""
    check_int("limit", limit, 1, optional=True)
    check_int("batch_size", batch_size, 1)
    check_int("repeats", repeats, 1)
    from divqat.data import load_tensors
    from divqat.train import load_config, load_victim

    config = load_config(victim_dir)
    model = load_victim(victim_dir, kind=kind)
    x, y = load_tensors(config["dataset"], "test", root=data_root, limit=limit)
    result = {"victim": str(victim_dir), "kind": kind, "method": config.get("method"),
              "arch": config.get("arch"), "dataset": config["dataset"], "num_test": len(y)}
    if defense is None:
        result["accuracy"] = accuracy(F.softmax(predict_logits(model, x, batch_size), dim=1), y)
    else:
        cost = defense_cost(model, defense, (x, y), batch_size=batch_size, repeats=repeats, progress=progress)
        result["accuracy"] = cost["victim_accuracy_clean"]
        result.update(cost)
    return result


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
