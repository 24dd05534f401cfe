"""Defenses by name, with their parameters given as Python values or as CLI strings.

    build_defense("dcp", beta=0.5)                           # Python values
    build_defense("dcp", beta="0.5", cap_log_odds="false")   # strings, as from the CLI
    build_defense("reverse-sigmoid")                         # the published defaults
    build_defense("mad", surrogate=model_or_dir, epsilon=0.5)

Names, aliases, parameters, defaults, ranges and help all come from each class's ``NAME``,
``ALIASES`` and ``PARAMS`` table (:mod:`divqat.defenses.params`); ``divqat defenses`` prints
them. On the command line (shared by ``divqat evaluate`` and ``divqat attack``, via
:func:`add_defense_arguments` and :func:`defense_from_args`):

    --defense dcp --defense-arg beta=0.5 --defense-arg gamma=0.1
"""
import os

import torch

from .dcp import DCP
from .label_only import LabelOnly
from .mad import MAD
from .misinformation import AdaptiveMisinformation
from .random_noise import RandomNoise
from .reverse_sigmoid import ReverseSigmoid
from .rounding import Rounding
from .topk import TopK

__all__ = ["DEFENSES", "ALIASES", "build_defense", "resolve_name", "parse_defense_args", "add_defense_arguments",
           "defense_from_args", "load_model", "random_model_like"]

#: name -> defense class, from each class's NAME
DEFENSES = {cls.NAME: cls for cls in (DCP, ReverseSigmoid, AdaptiveMisinformation, MAD, RandomNoise, Rounding, TopK,
                                      LabelOnly)}

#: other accepted spellings (after lower-casing and replacing "-" by "_"), from each class's ALIASES
ALIASES = {alias: cls.NAME for cls in DEFENSES.values() for alias in cls.ALIASES}


def load_model(source):
    """A model argument: an ``nn.Module`` as is, or a path to a ``divqat train --out`` directory
    (or to a file inside one, such as its model.pt), loaded as its float model with
    :func:`divqat.train.load_victim` (``kind="float"``)."""
    if isinstance(source, torch.nn.Module):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"expected an nn.Module or a path, got {type(source).__name__}")
    path = os.fspath(source)
    directory = path if os.path.isdir(path) else os.path.dirname(path) or "."
    if not os.path.exists(path) or not os.path.isfile(os.path.join(directory, "config.json")):
        raise ValueError(f"{path!r} is not a `divqat train --out` directory (or a file in one): "
                         "no config.json there")
    from divqat.train import load_victim

    return load_victim(directory, kind="float")


def random_model_like(victim, seed=0):
    """A randomly initialised model of ``victim``'s architecture (MAD's default defender
    surrogate, as in Orekondy et al., ICLR 2020). ``victim`` is a ``divqat train --out``
    directory or a divqat model (with ``.arch`` and ``.meta``). The weights are drawn from
    ``seed``; the global RNG is left as it was."""
    from divqat.models import build_model

    if isinstance(victim, (str, os.PathLike)):
        from divqat.train import load_config

        config = load_config(victim)
        arch, meta = config.get("arch"), config.get("meta")
    else:
        arch, meta = getattr(victim, "arch", None), getattr(victim, "meta", None)
    if not isinstance(arch, str) or not meta:
        raise ValueError("victim: its architecture is unknown, so no random model of it can be built")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(arch, **{key: meta[key] for key in ("num_classes", "in_channels", "image_size",
                                                                "mean", "std")})


def resolve_name(name):
    """The key of :data:`DEFENSES` for ``name`` (any case, "-" or "_", or an alias); ValueError if unknown."""
    if not isinstance(name, str):
        raise ValueError(f"defense name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in DEFENSES:
        raise ValueError(f"unknown defense {name!r}; choose from {', '.join(DEFENSES)} (aliases: {', '.join(ALIASES)})")
    return key


def build_defense(name, *, victim=None, victim_seed=0, **kwargs):
    """Build the defense ``name`` (a key of :data:`DEFENSES` or :data:`ALIASES`, any case, "-" or "_").

    Keyword arguments are the parameters of the class's ``PARAMS`` table (or their aliases);
    the others take their defaults. String values are parsed as the CLI gives them: numbers,
    booleans ("true"/"false"/"1"/"0"/"yes"/"no"), names. A model parameter (adaptive
    misinformation's ``misinformation_model=``, MAD's ``surrogate=``; both also ``model=``) is
    an ``nn.Module`` or a path to a ``divqat train --out`` directory (or a file inside it),
    loaded as a float model with ``divqat.train.load_victim``. MAD's surrogate defaults to
    ``random_model_like(victim, victim_seed)`` when ``victim`` (a run directory or divqat model)
    is given.

    Examples: ``build_defense("dcp", beta="0.5")``, ``build_defense("reverse-sigmoid")``,
    ``build_defense("am", model="runs/misinfo", tau="0.5")``,
    ``build_defense("mad", surrogate="runs/surrogate", epsilon="0.5", keep_argmax="true")``.

    Raises ValueError naming the defense or argument: unknown name, unknown or missing
    argument, unparsable string, value out of range.
    """
    key = resolve_name(name)
    cls = DEFENSES[key]
    params = {alias: p for p in cls.PARAMS for alias in (p.name, *p.aliases)}
    args = {}
    for arg, value in kwargs.items():
        if arg not in params:
            names = ", ".join(p.name for p in cls.PARAMS) or "none"
            raise ValueError(f"{key} has no argument {arg!r}; its arguments: {names}")
        param = params[arg]
        if param.name in args:
            raise ValueError(f"{key}: argument {param.name!r} given twice")
        if isinstance(value, str) or param.type == "model":
            try:
                value = param.parse(value) if isinstance(value, str) else load_model(value)
            except ValueError as err:
                raise ValueError(f"{key} argument {arg}: {err}") from None
        args[param.name] = value
    for param in cls.PARAMS:
        if param.victim_default and param.name not in args and victim is not None:
            args[param.name] = random_model_like(victim, victim_seed)
    if victim is not None:
        _check_models_fit(key, cls, args, victim)
    return cls(**args)


_SHAPE_KEYS = ("in_channels", "image_size", "num_classes")


def _check_models_fit(key, cls, args, victim):
    """ValueError naming the argument when a model argument of defense ``key`` takes other inputs
    or classes than ``victim`` (a run directory or a divqat model) answers."""
    if isinstance(victim, (str, os.PathLike)):
        from divqat.train import load_config

        meta = load_config(victim)["meta"]
    else:
        meta = getattr(victim, "meta", None)
    if not isinstance(meta, dict):
        return
    want = {k: meta.get(k) for k in _SHAPE_KEYS}
    for param in cls.PARAMS:
        got = getattr(args.get(param.name), "meta", None) if param.type == "model" else None
        if isinstance(got, dict) and {k: got.get(k) for k in _SHAPE_KEYS} != want:
            raise ValueError(f"{key} argument {param.name}: the model is built for "
                             f"{ {k: got.get(k) for k in _SHAPE_KEYS} }, the victim for {want}")


def parse_defense_args(items):
    """["beta=0.5", "gamma=0.1"] -> {"beta": "0.5", "gamma": "0.1"}; ValueError on a malformed or repeated key."""
    args = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--defense-arg expects KEY=VALUE, got {item!r}")
        if key in args:
            raise ValueError(f"--defense-arg {key} given twice")
        args[key] = value.strip()
    return args


def add_defense_arguments(parser):
    """Add ``--defense NAME`` and repeatable ``--defense-arg KEY=VALUE`` to an argparse parser."""
    parser.add_argument("--defense", default=None, metavar="NAME",
                        help=f"output perturbation applied to the victim's answers: {', '.join(DEFENSES)} "
                             f"(aliases {', '.join(ALIASES)}); parameters and defaults: `divqat defenses`")
    parser.add_argument("--defense-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="a defense parameter, repeatable (e.g. beta=0.5; a model argument takes "
                             "a `divqat train --out` directory); unset parameters take their defaults")


def defense_from_args(args):
    """The defense named by parsed ``--defense``/``--defense-arg`` options, or None without ``--defense``.

    When ``args.victim`` is a local ``divqat train --out`` directory, MAD's surrogate defaults to
    a random model of its architecture (:func:`random_model_like`, seed 0).
    """
    if args.defense is None:
        if args.defense_arg:
            raise ValueError("--defense-arg given without --defense")
        return None
    victim = getattr(args, "victim", None)
    victim = victim if isinstance(victim, str) and os.path.isfile(os.path.join(victim, "config.json")) else None
    return build_defense(args.defense, victim=victim, **parse_defense_args(args.defense_arg))
