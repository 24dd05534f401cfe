"""`divqat attack`: extract a trained victim through a query-counted black box.

    divqat attack --victim DIR --attack {knockoff,knockoff-adaptive,copycat,jbda,dfme,maze,
                                         sink-aware,smoothing,mixed}
                  [--queryset D [--adapt-queries]] --budget N [--arch A]
                  [--output probs|topk|rounded|label [--k K] [--decimals D]]
                  [--defense NAME --defense-arg k=v ...] [--attack-arg k=v ...]
                  [--epochs N] [--lr LR] [--momentum M]
                  [--batch-size B] [--seed S]
                  [--device DEV] [--cache-dir DIR] [--no-progress] --out OUT

The victim of a ``divqat train --out DIR`` directory is deployed behind a
:class:`~divqat.blackbox.BlackBox` with the given output truncation, defense and budget; the
attack spends the budget and the surrogate is scored on the victim's test set
(:func:`divqat.metrics.evaluate_surrogate`). Writes OUT/surrogate.pt (arch, meta, state_dict)
and then OUT/metrics.json (victim_accuracy, adversary_accuracy, adversary_error, agreement,
normalized_accuracy, queries_used, fresh_queries, the attack's parameters and ``answered_hist``,
the histogram of the labels it was answered), both atomically. The mixed thief, which queries
part of the victim's test split, is scored on the rest (``scoring_images``).
"""
import tomllib
from pathlib import Path

from divqat.attacks.knockoff_adaptive import REWARDS
from divqat.attacks.registry import CACHED, SPECS, attack_call, attack_spec, scoring_limit
from divqat.blackbox import OUTPUT_MODES
from divqat.checks import check_output_dirs
from divqat.cli_options import add_victim_kind, arch_help, choices_text, dataset_help, key_values
from divqat.defenses import add_defense_arguments, defense_from_args
from divqat.serving.remote import add_arguments as add_remote_arguments
from divqat.serving.remote import is_url, open_remote_victims, reject_remote_options
from divqat.tensorboard_log import tensorboard_log

__all__ = ["add_arguments", "run"]

# the options that configure the surrogate's training (query-set attacks only)
_TRAIN_OPTIONS = ("epochs", "lr", "momentum", "batch_size")


def add_arguments(parser):
    parser.add_argument("--victim", required=True, metavar="DIR|URL",
                        help="a `divqat train --out` directory, or the URL of a `divqat serve` server")
    add_victim_kind(parser)
    parser.add_argument("--attack", required=True, metavar="NAME", help=f"the attack: {choices_text(SPECS)}")
    parser.add_argument("--queryset", metavar="DATASET", help=dataset_help("the adversary's natural images") +
                        "; not for the data-free dfme and maze")
    parser.add_argument("--adapt-queries", action="store_true",
                        help="resize/recolour query images that do not fit the victim (otherwise an error)")
    parser.add_argument("--budget", required=True, type=int, metavar="N", help="queries the adversary may spend")
    parser.add_argument("--arch", metavar="ARCH", help=arch_help("surrogate architecture", "the victim's"))
    parser.add_argument("--surrogate-weights", metavar="FILE",
                        help="start the surrogate from this state dict (torch.save of your network's or "
                        "the whole model's state_dict)")
    parser.add_argument("--output", default="probs", metavar="MODE",
                        help=f"what a query returns: {choices_text(OUTPUT_MODES, 'probs')}")
    parser.add_argument("--k", type=int, help="entries kept by --output topk (the TopK defense)")
    parser.add_argument("--decimals", type=int, help="decimals kept by --output rounded (the Rounding defense: "
                        "largest-remainder rounding, rows sum to 1)")
    add_defense_arguments(parser)
    add_remote_arguments(parser)
    parser.add_argument("--reward", metavar="NAME", help=f"knockoff-adaptive reward: {choices_text(REWARDS, 'all')}")
    parser.add_argument("--attack-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="an attack parameter, repeatable (e.g. k=4 for smoothing, mode=drop for sink-aware, "
                        "in_share=0.1 for mixed; values read as TOML: numbers, true/false, else text)")
    parser.add_argument("--epochs", type=int, help="surrogate training epochs (default: 50 for MNIST-like "
                        "victims, else 100; not for dfme/maze, whose steps follow from the budget)")
    parser.add_argument("--lr", type=float, help="surrogate SGD learning rate (default 0.01)")
    parser.add_argument("--momentum", type=float, help="surrogate SGD momentum (default 0.5)")
    parser.add_argument("--batch-size", type=int, help="surrogate training batch size (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seeds python, numpy and torch: the query order, "
                        "the surrogate's initial weights and its training (default 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--cache-dir", metavar="DIR", help=f"transfer-set cache shared by {'/'.join(CACHED)} runs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (surrogate.pt, metrics.json)")
    parser.add_argument("--tensorboard", metavar="DIR", help="also write the surrogate's training losses as "
                        "TensorBoard events in DIR (needs the tensorboard package)")


def _attack_args(items):
    """["k=4", "aggregate=vote"] -> {"k": 4, "aggregate": "vote"}: each value read as a TOML value
    (numbers, true/false), else kept as text; ValueError on a malformed or repeated key."""
    args = key_values(items, "--attack-arg")
    for key, text in args.items():
        try:
            args[key] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            pass
    return args


def _attack_call(args, device):
    """The attack's function and keyword arguments from the command line (:func:`attack_call`)."""
    spec = attack_spec(args.attack)
    train = {key: getattr(args, key) for key in _TRAIN_OPTIONS if getattr(args, key) is not None}
    if spec.data_free:
        if args.queryset is not None:
            raise ValueError(f"{args.attack} is data-free: drop --queryset")
        if train:
            raise ValueError(f"{args.attack} uses its paper's settings and trains for as many steps as the budget "
                             f"pays for: drop --{'/--'.join(k.replace('_', '-') for k in train)}")
    elif args.queryset is None:
        raise ValueError(f"{args.attack} needs --queryset (the adversary's natural images)")
    if args.cache_dir is not None and not spec.cached:
        raise ValueError(f"--cache-dir applies to {', '.join(CACHED)} only "
                         "(their queries do not depend on the surrogate)")
    options = {"arch": args.arch, **train}
    for key in ("adapt_queries", "reward"):  # passed when given: an attack without them refuses them
        if getattr(args, key) not in (None, False):
            options[key] = getattr(args, key)
    extra = _attack_args(args.attack_arg)
    both = sorted(set(extra) & {key for key, value in options.items() if value is not None})
    if both:
        raise ValueError(f"--attack-arg {both[0]}: give it once, with its own option --{both[0].replace('_', '-')}")
    options.update(extra)
    victim_data = None
    if spec.splits_test:
        if is_url(args.victim):
            raise ValueError(f"{args.attack} draws queries from the victim's test split: give a local --victim directory")
        from divqat.train import load_config

        victim_data = load_config(args.victim)["dataset"]
    return attack_call(args.attack, options, queryset=args.queryset, device=device, progress=not args.no_progress,
                       cache_dir=args.cache_dir, victim_data=victim_data)


def run(args):
    check_output_dirs({"--out": args.out, "--cache-dir": args.cache_dir})
    from divqat.blackbox import BlackBox
    from divqat.data import load_tensors
    from divqat.metrics import evaluate_surrogate
    from divqat.train import load_config
    from divqat.utils import atomic_save, atomic_write_json, resolve_device

    if args.budget <= 0:
        raise ValueError(f"--budget must be > 0, got {args.budget}")
    device = str(resolve_device(args.device))
    fn, kwargs = _attack_call(args, device)
    defense = defense_from_args(args)
    if is_url(args.victim):
        blackbox, scored, dataset, extra_metrics = open_remote_victims(args, defense, device)
    else:
        reject_remote_options(args)
        blackbox = BlackBox.from_dir(args.victim, kind=args.victim_kind, output=args.output, k=args.k,
                                     decimals=args.decimals, defense=defense, budget=args.budget, device=device)
        scored, dataset, extra_metrics = blackbox, load_config(args.victim)["dataset"], dict
    if args.surrogate_weights is not None:
        from divqat.attacks.surrogate import build_surrogate

        kwargs["arch"] = build_surrogate(blackbox, args.arch, weights=args.surrogate_weights)
    with tensorboard_log(args.tensorboard):
        surrogate, record = fn(blackbox, budget=args.budget, seed=args.seed, **kwargs)
    limit = scoring_limit(args.attack, kwargs)  # the mixed thief's scoring part
    test = load_tensors(dataset, "test", limit=limit)
    metrics = {**record, **evaluate_surrogate(surrogate, scored, test, device=device),
               "fresh_queries": blackbox.queries_used, "victim": str(args.victim),
               "victim_kind": args.victim_kind, "defense": blackbox.defense_id, **extra_metrics(),
               **({"scoring_images": len(test[0])} if limit is not None else {})}
    out = Path(args.out)
    atomic_save({"arch": surrogate.arch, "meta": surrogate.meta,
                 "state_dict": {k: v.cpu() for k, v in surrogate.state_dict().items()}}, out / "surrogate.pt")
    atomic_write_json(metrics, out / "metrics.json")
    print(f"{args.attack}: {record['queries_used']} queries, agreement {metrics['agreement']:.4f}, "
          f"adversary accuracy {metrics['adversary_accuracy']:.4f} (victim {metrics['victim_accuracy']:.4f}) "
          f"-> {out / 'metrics.json'}")
    return 0
