"""``divqat defenses``: list every defense with its parameters, defaults, valid ranges and help.

    divqat defenses              # all of them
    divqat defenses mad          # one (any accepted name or alias)

Everything printed comes from the classes' ``NAME``/``ALIASES``/``PARAMS`` tables
(:mod:`divqat.defenses.params`), the same tables that check the constructors' arguments and
parse ``--defense-arg KEY=VALUE``.

The options that choose a defense, shared by ``divqat evaluate`` and ``divqat attack``, are
here too (:func:`add_defense_arguments`, :func:`defense_from_args`):

    --defense dcp --defense-arg beta=0.5 --defense-arg gamma=0.1
"""
import os
import sys
import textwrap

from divqat.cli_options import key_values

from .registry import ALIASES, DEFENSES, build_defense, resolve_name

__all__ = ["add_arguments", "run", "describe", "parse_defense_args", "add_defense_arguments", "defense_from_args"]


def add_arguments(parser):
    parser.add_argument("name", nargs="?", metavar="NAME",
                        help=f"show one defense only (one of {', '.join(DEFENSES)} or an alias)")


def describe(cls):
    """The text ``divqat defenses`` prints for one defense class."""
    title = cls.NAME + (f" (aliases: {', '.join(cls.ALIASES)})" if cls.ALIASES else "")
    summary = " ".join((sys.modules[cls.__module__].__doc__ or "").strip().split("\n\n")[0].split())
    lines = [title, textwrap.fill(summary, 96, initial_indent="  ", subsequent_indent="  ")]
    if cls.needs_input:
        lines.append("  runs a model of its own on the query inputs")
    if not cls.PARAMS:
        lines.append("  no parameters")
    for p in cls.PARAMS:
        aliases = f" (also {', '.join(p.aliases)})" if p.aliases else ""
        lines.append(f"  --defense-arg {p.name}=VALUE{aliases}")
        lines.append(f"      {p.help}")
        lines.append(f"      valid: {p.range_text()}; default: {p.default_text()}")
        if p.source:
            lines.append(f"      source: {p.source}")
    return "\n".join(lines)


def run(args):
    classes = [DEFENSES[resolve_name(args.name)]] if args.name else list(DEFENSES.values())
    print("\n\n".join(describe(cls) for cls in classes))
    print("\nuse: --defense NAME [--defense-arg KEY=VALUE ...] with divqat evaluate or divqat attack")
    return 0


def parse_defense_args(items):
    """["beta=0.5", "gamma=0.1"] -> {"beta": "0.5", "gamma": "0.1"}; ValueError on a malformed or repeated key."""
    return key_values(items, "--defense-arg")


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
