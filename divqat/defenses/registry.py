"""Defenses by name, with their parameters given as Python values or as CLI strings.

    build_defense("dcp", beta=0.5)                           # Python values
    build_defense("dcp", beta="0.5", cap_log_odds="false")   # strings, as from the CLI
    build_defense("mad", surrogate=model_or_dir, epsilon=0.5)

On the command line (shared by ``divqat evaluate`` and ``divqat attack``, via
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

__all__ = ["DEFENSES", "ALIASES", "build_defense", "parse_defense_args", "add_defense_arguments",
           "defense_from_args", "load_model"]

DEFENSES = {
    "dcp": DCP,
    "reverse_sigmoid": ReverseSigmoid,
    "adaptive_misinformation": AdaptiveMisinformation,
    "mad": MAD,
    "random_noise": RandomNoise,
    "rounding": Rounding,
    "topk": TopK,
    "label_only": LabelOnly,
}

#: other accepted spellings (after lower-casing and replacing "-" by "_")
ALIASES = {"am": "adaptive_misinformation", "top_k": "topk", "label": "label_only"}

#: keyword spellings accepted by build_defense for a defense's model argument
_ARG_ALIASES = {"adaptive_misinformation": {"model": "misinformation_model"}, "mad": {"model": "surrogate"}}

_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _strict_bool(text):
    if text.lower() not in _BOOLS:
        raise ValueError(text)
    return _BOOLS[text.lower()]


def _parser(convert, expected):
    """A CLI string parser: ``convert(text)``, or ValueError("expected <expected>, got 'text'")."""
    def parse(text):
        try:
            return convert(text)
        except ValueError:
            raise ValueError(f"expected {expected}, got {text!r}") from None
    return parse


_parse_float, _parse_int = _parser(float, "a number"), _parser(int, "an integer")
_parse_bool = _parser(_strict_bool, "true or false")


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


# how a string from the CLI becomes each constructor argument
_PARSERS = {
    DCP: {"beta": _parse_float, "gamma": _parse_float, "nu": _parse_float, "cap_log_odds": _parse_bool},
    ReverseSigmoid: {"beta": _parse_float, "gamma": _parse_float},
    AdaptiveMisinformation: {"misinformation_model": load_model, "tau": _parse_float, "nu": _parse_float},
    MAD: {"surrogate": load_model, "epsilon": _parse_float, "ydist": str, "oracle": str, "keep_argmax": _parse_bool},
    RandomNoise: {"epsilon": _parse_float, "dist": str, "seed": _parse_int},
    Rounding: {"decimals": _parse_int},
    TopK: {"k": _parse_int},
    LabelOnly: {},
}
_MODEL_ARGS = ("misinformation_model", "surrogate")


def build_defense(name, **kwargs):
    """Build the defense ``name`` (a key of :data:`DEFENSES` or :data:`ALIASES`, any case, "-" or "_").

    Keyword arguments are the constructor's (see each class); string values are parsed as the
    CLI gives them: numbers, booleans ("true"/"false"/"1"/"0"/"yes"/"no"), names. The model of
    adaptive misinformation (``misinformation_model=``, or ``model=``) and of MAD
    (``surrogate=``, or ``model=``) is an ``nn.Module`` or a path to a ``divqat train --out``
    directory (or a file inside it), loaded as a float model with ``divqat.train.load_victim``.

    Examples: ``build_defense("dcp", beta="0.5")``, ``build_defense("topk", k=3)``,
    ``build_defense("am", model="runs/misinfo", tau="0.5")``,
    ``build_defense("mad", surrogate="runs/surrogate", epsilon="0.5", keep_argmax="true")``.

    Raises ValueError naming the defense or argument: unknown name, unknown or missing
    argument, unparsable string, value out of range.
    """
    if not isinstance(name, str):
        raise ValueError(f"defense name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in DEFENSES:
        raise ValueError(f"unknown defense {name!r}; choose from {', '.join(DEFENSES)} (aliases: {', '.join(ALIASES)})")
    cls = DEFENSES[key]
    parsers = _PARSERS[cls]
    args = {}
    for arg, value in kwargs.items():
        target = _ARG_ALIASES.get(key, {}).get(arg, arg)
        if target not in parsers:
            raise ValueError(f"{key} has no argument {arg!r}; its arguments: {', '.join(parsers) or 'none'}")
        if target in args:
            raise ValueError(f"{key}: argument {target!r} given twice")
        if isinstance(value, str) or target in _MODEL_ARGS:
            try:
                value = parsers[target](value)
            except ValueError as err:
                raise ValueError(f"{key} argument {arg}: {err}") from None
        args[target] = value
    try:
        return cls(**args)
    except TypeError as err:  # a missing required argument
        raise ValueError(f"{key}: {err}; its arguments: {', '.join(parsers)}") from None


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
                        help=f"output perturbation applied to the victim's answers: {', '.join(DEFENSES)}")
    parser.add_argument("--defense-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="a defense parameter, repeatable (e.g. beta=0.5; a model argument takes "
                             "a `divqat train --out` directory)")


def defense_from_args(args):
    """The defense named by parsed ``--defense``/``--defense-arg`` options, or None without ``--defense``."""
    if args.defense is None:
        if args.defense_arg:
            raise ValueError("--defense-arg given without --defense")
        return None
    return build_defense(args.defense, **parse_defense_args(args.defense_arg))
