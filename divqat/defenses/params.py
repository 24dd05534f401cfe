"""A defense's parameter table: one :class:`Param` per constructor argument.

Each defense class lists its parameters once, in ``PARAMS``; everything else is derived from
that table: the constructor's argument binding and checks (:func:`bind`), ``params()``, the
parsing of ``--defense-arg KEY=VALUE`` strings (:meth:`Param.parse`), the defaults and the
help printed by ``divqat defenses``. ``source`` says where a default comes from (the paper,
docs/science.md §4, or this repository's choice where the paper sweeps the value).
"""
from dataclasses import dataclass

import torch

from divqat.checks import bounds_text, check_choice, check_int, check_real

from .model_params import load_model

__all__ = ["Param", "REQUIRED", "bind"]


class _Required:
    def __repr__(self):
        return "REQUIRED"


#: the default of a parameter that has none
REQUIRED = _Required()

_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
TYPES = ("real", "int", "bool", "choice", "model")


@dataclass(frozen=True)
class Param:
    """One parameter of a defense.

    ``type`` is "real", "int", "bool", "choice" (one of ``choices``) or "model" (an
    ``nn.Module``; on the command line a ``divqat train --out`` directory). ``low``/``high``
    bound numbers (inclusive, None: unbounded). ``aliases`` are other keywords accepted by
    :func:`divqat.defenses.build_defense`. ``victim_default`` marks a model parameter whose
    default is a randomly initialised model of the victim's architecture.
    """

    name: str
    type: str
    default: object = REQUIRED
    help: str = ""
    source: str = ""
    low: float = None
    high: float = None
    choices: tuple = ()
    aliases: tuple = ()
    victim_default: bool = False

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError(f"Param {self.name}: type must be one of {TYPES}, got {self.type!r}")

    @property
    def required(self):
        return self.default is REQUIRED

    def check(self, value):
        """``value`` checked and normalised (float for "real"); ValueError naming the parameter."""
        if self.type == "real":
            return check_real(self.name, value, self.low, self.high)
        if self.type == "int":
            return check_int(self.name, value, self.low, self.high)
        if self.type == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be a bool, got {value!r}")
            return value
        if self.type == "choice":
            return check_choice(self.name, value, self.choices)
        if not isinstance(value, torch.nn.Module):
            raise ValueError(f"{self.name} must be an nn.Module, got {type(value).__name__}")
        return value.eval()

    def parse(self, text):
        """The value of a command-line string (a model: a ``divqat train --out`` directory), unchecked."""
        convert = {"real": float, "int": int, "bool": lambda t: _BOOLS[t.lower()], "choice": str}.get(self.type)
        if convert is None:
            return load_model(text)
        try:
            return convert(text)
        except (ValueError, KeyError):
            raise ValueError(f"expected {self.range_text()}, got {text!r}") from None

    def range_text(self):
        """The valid values, in words."""
        if self.type in ("real", "int"):
            noun = "a number" if self.type == "real" else "an integer"
            if self.low is None and self.high is None:
                return noun
            return f"{noun} {bounds_text(self.low, self.high)}"
        if self.type == "bool":
            return "true or false"
        if self.type == "choice":
            return " or ".join(self.choices)
        return "a `divqat train --out` directory (Python: an nn.Module)"

    def default_text(self):
        """The default, in words."""
        if self.victim_default:
            return "a randomly initialised model of the victim's architecture (where the victim is known)"
        if self.required:
            return "required"
        return str(self.default).lower() if isinstance(self.default, bool) else str(self.default)


def bind(owner, params, args, kwargs):
    """{name: checked value} for ``owner(*args, **kwargs)`` against its ``params`` table.

    Positional arguments follow the table's order; missing arguments take their defaults.
    ValueError names an unknown, repeated or missing argument and any value out of range.
    """
    names = [p.name for p in params]
    if len(args) > len(params):
        raise ValueError(f"{owner} takes at most {len(params)} arguments ({', '.join(names) or 'none'}), "
                         f"got {len(args)}")
    given = dict(zip(names, args))
    for key, value in kwargs.items():
        if key not in names:
            raise ValueError(f"{owner} has no argument {key!r}; its arguments: {', '.join(names) or 'none'}")
        if key in given:
            raise ValueError(f"{owner}: argument {key!r} given twice")
        given[key] = value
    values = {}
    for p in params:
        if p.name not in given and p.required:
            raise ValueError(f"{owner} needs {p.name} ({p.range_text()}): {p.help}")
        values[p.name] = p.check(given.get(p.name, p.default))
    return values
