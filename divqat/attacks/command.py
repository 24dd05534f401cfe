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
(:func:`divqat.metrics.evaluate_surrogate`). Writes, atomically and in this order,
OUT/transfer.pt (every query and answer: :mod:`divqat.attacks.replay`), OUT/surrogate.pt (arch,
meta, state_dict) and OUT/metrics.json (victim_accuracy, adversary_accuracy, adversary_error,
agreement, normalized_accuracy, queries_used, fresh_queries, the attack's parameters and
``answered_hist``, the histogram of the labels it was answered). The mixed thief, which queries
part of the victim's test split, is scored on the rest (``scoring_images``).

Paid work is never lost: everything that can stop the scoring (the test set, its input shape,
the evaluation key's budget) is checked before the first query; a failure after queries says
where they are saved, and the same command run again replays them (and reuses a finished
surrogate) instead of paying for them again.
"""
import tomllib

from divqat.attacks.knockoff_adaptive import REWARDS
from divqat.attacks.registry import CACHED, SPECS, attack_call, attack_spec, scoring_limit
from divqat.attacks.replay import TRANSFER_NAME, RecordingBlackBox, load_transfer
from divqat.blackbox import OUTPUT_MODES
from divqat.checks import RESULT_FILES, check_out, check_output_dirs, error_line, output_dir_claimed
from divqat.cli_options import add_victim_kind, arch_help, choices_text, dataset_help, key_values
from divqat.defenses import add_defense_arguments, defense_from_args
from divqat.serving.remote import is_url, open_remote_victims, reject_remote_options
from divqat.serving.remote_command import add_arguments as add_remote_arguments
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
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (transfer.pt, surrogate.pt, "
                        "metrics.json); rerun into it to resume a failed attack without paying again")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished attack in --out, or discard "
                        "the paid answers of an unfinished one (refused otherwise)")
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


# parsed arguments that do not decide the queries or the surrogate: a rerun may change them and
# still reuse the paid answers of OUT/transfer.pt (never an API key, which must not reach the disk)
_NOT_KEY = ("command", "_module", "out", "overwrite", "no_progress", "tensorboard", "device", "cache_dir",
            "data_root", "api_key", "eval_victim", "eval_api_key", "eval_dataset")


def _transfer_key(args):
    """What decides the attack's queries and surrogate (OUT/transfer.pt's ``key``); for a served
    victim --defense only applies to the scoring copy."""
    skip = _NOT_KEY + (("defense", "defense_arg") if is_url(args.victim) else ())
    return {k: v for k, v in sorted(vars(args).items()) if k not in skip}


def _out_rule(args):
    """The keywords of the output rule (:func:`divqat.checks.check_out`) for --out."""
    return {"inputs": {"--victim": None if is_url(args.victim) else args.victim, "--eval-victim": args.eval_victim,
                       "--surrogate-weights": args.surrogate_weights}, "overwrite": args.overwrite}


def _check_scoring(args, blackbox, scored, test_x):
    """ValueError naming the option, before the first paid query, when the surrogate could not be
    scored: a test set or evaluation victim of another input shape than the attacked one, or an
    evaluation key whose budget the server says is smaller than the test set."""
    evaluation = getattr(scored, "blackbox", scored)  # the server itself, through --eval-api-key
    option = "--eval-victim" if args.eval_victim else "--eval-dataset" if args.eval_dataset else "--victim"
    want = tuple(blackbox.input_shape)
    for what, shape in (("the test set's images have shape", tuple(test_x.shape[1:])),
                        ("the scoring victim takes inputs of shape", tuple(evaluation.input_shape))):
        if shape != want:
            raise ValueError(f"{option}: {what} {shape}, the attacked victim takes {want}: "
                             "the surrogate could not be scored")
    left = evaluation.budget_left if evaluation is not blackbox else None
    if left is not None and left < len(test_x):
        raise ValueError(f"--eval-api-key: the key has {left} queries left, scoring the surrogate needs "
                         f"{len(test_x)} (the test set)")


def _load_surrogate(out):
    """The finished surrogate a previous run left in OUT/surrogate.pt."""
    from divqat.models import build_model
    from divqat.utils import load_torch_file

    stored = load_torch_file(out / "surrogate.pt", "surrogate")
    if not isinstance(stored, dict) or not {"arch", "meta", "state_dict"} <= set(stored):
        raise ValueError(f"surrogate {out / 'surrogate.pt'}: not written by `divqat attack`: pass --overwrite")
    return build_model(stored["arch"], **stored["meta"], weights=out / "surrogate.pt")


def _save_surrogate(surrogate, out):
    from divqat.utils import atomic_save

    atomic_save({"arch": surrogate.arch, "meta": surrogate.meta,
                 "state_dict": {k: v.cpu() for k, v in surrogate.state_dict().items()}}, out / "surrogate.pt")


def _run_attack(args, fn, kwargs, recording, key, out):
    """``(surrogate, record)`` of the attack on ``recording``, its transfer set saved whatever
    happens (and, once the surrogate is saved, its record with it): a failure after paid
    queries is one line saying where they are."""
    transfer = out / TRANSFER_NAME
    try:
        with tensorboard_log(args.tensorboard):
            surrogate, record = fn(recording, budget=args.budget, seed=args.seed, **kwargs)
        _save_surrogate(surrogate, out)
    except BaseException as err:
        saved = recording.save(transfer, key) if recording.calls else 0
        if not isinstance(err, Exception) or not saved:
            raise
        raise ValueError(f"{error_line(err)}; the {saved} answers paid for are saved in {transfer}: "
                         "rerun the same command to reuse them") from None
    recording.save(transfer, key, record)
    return surrogate, record


def _surrogate(args, fn, kwargs, blackbox, out):
    """``(surrogate, record)``: the finished ones a previous run saved in ``out``, else those of
    the attack, replaying the answers a previous run paid for (:mod:`divqat.attacks.replay`)."""
    if args.overwrite:
        for name in RESULT_FILES["attack"]:  # the finished marker first
            (out / name).unlink(missing_ok=True)
    key = _transfer_key(args)
    calls, record = load_transfer(out / TRANSFER_NAME, key, blackbox.num_classes)
    if record is not None and (out / "surrogate.pt").is_file():
        print(f"{args.attack}: reusing the surrogate and the {record['queries_used']} answers saved in {out}")
        return _load_surrogate(out), record
    if args.surrogate_weights is not None:
        from divqat.attacks.surrogate import build_surrogate

        kwargs["arch"] = build_surrogate(blackbox, args.arch, weights=args.surrogate_weights)
    recording = RecordingBlackBox(blackbox, args.budget, calls, keep_queries=not attack_spec(args.attack).data_free)
    return _run_attack(args, fn, kwargs, recording, key, out)


def _score(surrogate, scored, test, device, out):
    """:func:`divqat.metrics.evaluate_surrogate`; a failure says where the paid work is saved."""
    from divqat.metrics import evaluate_surrogate

    try:
        return evaluate_surrogate(surrogate, scored, test, device=device)
    except Exception as err:
        raise ValueError(f"scoring the surrogate failed ({error_line(err)}); the transfer set and the surrogate are saved "
                         f"in {out / TRANSFER_NAME} and {out / 'surrogate.pt'}: rerun the same command to score "
                         "them without new queries") from None


def run(args):
    check_out("--out", args.out, "attack", **_out_rule(args))
    check_output_dirs({"--cache-dir": args.cache_dir})
    from divqat.blackbox import BlackBox
    from divqat.data import load_tensors
    from divqat.train import load_config
    from divqat.utils import atomic_write_json, resolve_device

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
    limit = scoring_limit(args.attack, kwargs)  # the mixed thief's scoring part
    test = load_tensors(dataset, "test", limit=limit)
    _check_scoring(args, blackbox, scored, test[0])
    with output_dir_claimed("--out", args.out, "attack", **_out_rule(args)) as out:
        surrogate, record = _surrogate(args, fn, kwargs, blackbox, out)
    scores = _score(surrogate, scored, test, device, out)
    metrics = {**record, **scores, "fresh_queries": blackbox.queries_used, "victim": str(args.victim),
               "victim_kind": args.victim_kind, "defense": blackbox.defense_id, **extra_metrics(),
               **({"scoring_images": len(test[0])} if limit is not None else {})}
    atomic_write_json(metrics, out / "metrics.json")
    print(f"{args.attack}: {record['queries_used']} queries, agreement {metrics['agreement']:.4f}, "
          f"adversary accuracy {metrics['adversary_accuracy']:.4f} (victim {metrics['victim_accuracy']:.4f}) "
          f"-> {out / 'metrics.json'}")
    return 0
