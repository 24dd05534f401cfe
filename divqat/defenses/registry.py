"""Defenses by name, with their parameters given as Python values or as CLI strings.

    build_defense("dcp", beta=0.5)                           # Python values
    build_defense("dcp", beta="0.5", cap_log_odds="false")   # strings, as from the CLI
    build_defense("reverse-sigmoid")                         # the published defaults
    build_defense("mad", surrogate=model_or_dir, epsilon=0.5)

Names, aliases, parameters, defaults, ranges and help all come from each class's ``NAME``,
``ALIASES`` and ``PARAMS`` table (:mod:`divqat.defenses.params`); ``divqat defenses`` prints
them. The command-line options ``--defense dcp --defense-arg beta=0.5`` are
:mod:`divqat.defenses.command`'s.
"""

from .dcp import DCP
from .label_only import LabelOnly
from .mad import MAD
from .misinformation import AdaptiveMisinformation
from .model_params import check_models_fit, load_model, random_model_like
from .random_noise import RandomNoise
from .reverse_sigmoid import ReverseSigmoid
from .rounding import Rounding
from .topk import TopK

__all__ = ["DEFENSES", "ALIASES", "build_defense", "resolve_name", "load_model", "random_model_like"]

#: name -> defense class, from each class's NAME
DEFENSES = {cls.NAME: cls for cls in (DCP, ReverseSigmoid, AdaptiveMisinformation, MAD, RandomNoise, Rounding, TopK,
                                      LabelOnly)}

#: other accepted spellings (after lower-casing and replacing "-" by "_"), from each class's ALIASES
ALIASES = {alias: cls.NAME for cls in DEFENSES.values() for alias in cls.ALIASES}


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
        check_models_fit(key, cls.PARAMS, args, victim)
    return cls(**args)

