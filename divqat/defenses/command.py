"""``divqat defenses``: list every defense with its parameters, defaults, valid ranges and help.

    divqat defenses              # all of them
    divqat defenses mad          # one (any accepted name or alias)

Everything printed comes from the classes' ``NAME``/``ALIASES``/``PARAMS`` tables
(:mod:`divqat.defenses.params`), the same tables that check the constructors' arguments and
parse ``--defense-arg KEY=VALUE``.
"""
import sys
import textwrap

from .registry import DEFENSES, resolve_name

__all__ = ["add_arguments", "run", "describe"]


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
