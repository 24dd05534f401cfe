"""``divqat attack --victim http://HOST:PORT``: the victims of an attack by URL (the options are
:mod:`divqat.serving.remote_command`'s).

    divqat attack --victim http://127.0.0.1:8000 --api-key TOKEN --attack knockoff --queryset D
                  --budget N (--eval-victim DIR | --eval-api-key TOKEN2 --eval-dataset NAME) --out OUT

The attack spends the key of ``--api-key`` (or of the DIVQAT_API_KEY variable) through an
:class:`~divqat.serving.http_blackbox.HttpBlackBox`. Scoring the surrogate needs the victim's
answers on its test set, which must not come out of the adversary's budget; they come from

- ``--eval-victim DIR``: a local copy, the run directory the server was exported from, deployed
  with the same ``--defense``/``--defense-arg`` as the served file (the test set is DIR's); or
- ``--eval-api-key TOKEN2`` (or DIVQAT_EVAL_API_KEY) with ``--eval-dataset NAME``: the server
  itself, through a second key whose budget covers the test set.

metrics.json records which ("evaluation") and the server's count for the attack's key
("server_queries_used").
"""
import os

from divqat.serving.http_blackbox import HttpBlackBox, is_url

__all__ = ["is_url", "open_remote_victims", "reject_remote_options", "API_KEY_ENV",
           "EVAL_API_KEY_ENV"]

API_KEY_ENV = "DIVQAT_API_KEY"
EVAL_API_KEY_ENV = "DIVQAT_EVAL_API_KEY"
_LOCAL_ONLY = ("victim_kind", "output", "k", "decimals", "cache_dir")


class _ServerAnswers:
    """The served victim as :func:`divqat.metrics.evaluate_surrogate` reads it: ``uncounted_query``
    here means not counted against the adversary's key; the second key pays for these rows."""

    def __init__(self, blackbox):
        self.blackbox = blackbox

    def uncounted_query(self, x):
        return self.blackbox.query(x)


def reject_remote_options(args):
    """ValueError naming the first URL-victim option given with a directory victim."""
    for option in ("api_key", "eval_victim", "eval_api_key", "eval_dataset"):
        if getattr(args, option) is not None:
            raise ValueError(f"--{option.replace('_', '-')} applies to a served victim (--victim http://...)")


def _check_local_options(args):
    defaults = {"victim_kind": "auto", "output": "probs", "k": None, "decimals": None, "cache_dir": None}
    for option in _LOCAL_ONLY:
        if getattr(args, option, defaults[option]) != defaults[option]:
            raise ValueError(f"--{option.replace('_', '-')} does not apply to a served victim: the server's "
                             "file fixes its answers (and they are not cached)")


def open_remote_victims(args, defense, device):
    """``(blackbox, evaluation victim, test dataset name, extra_metrics)`` for ``--victim URL``;
    ``extra_metrics()``, called after the attack, gives metrics.json's "evaluation" and
    "server_queries_used".

    ``defense`` (from --defense) applies only to the local copy of ``--eval-victim``. Raises
    ValueError naming the option for a missing key, a missing or doubled evaluation source,
    and options that only a local victim has.
    """
    from divqat.blackbox import BlackBox
    from divqat.train import load_config

    _check_local_options(args)
    eval_key = args.eval_api_key or os.environ.get(EVAL_API_KEY_ENV)
    if (args.eval_victim is None) == (eval_key is None):
        raise ValueError("a served victim needs exactly one of --eval-victim DIR (a local copy) and --eval-api-key "
                         "TOKEN (a second key) to score the surrogate")
    if eval_key is not None and args.eval_dataset is None:
        raise ValueError("--eval-dataset: name the test set scored through --eval-api-key")
    if args.eval_victim is not None:
        if args.eval_dataset is not None:
            raise ValueError("--eval-dataset applies to --eval-api-key; --eval-victim DIR scores on DIR's test set")
        dataset = load_config(args.eval_victim)["dataset"]
        local = BlackBox.from_dir(args.eval_victim, defense=defense, device=device)
    elif defense is not None:
        raise ValueError("--defense applies to the local copy of --eval-victim; the served file holds its own defense")
    blackbox = HttpBlackBox(args.victim, args.api_key or os.environ.get(API_KEY_ENV))
    if args.eval_victim is not None:
        scored, evaluation = local, f"local copy {args.eval_victim}"
    else:
        scored, dataset, evaluation = _ServerAnswers(HttpBlackBox(args.victim, eval_key)), args.eval_dataset, \
            "server, second key"
    return blackbox, scored, dataset, lambda: {"evaluation": evaluation,
                                               "server_queries_used": blackbox.server_queries_used}
