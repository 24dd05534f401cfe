"""Options that several ``divqat`` subcommands share: one name, one help text, one list of valid
values per concept, and the old spellings kept as hidden aliases that still work.

Help texts list the values a user may type (``lenet5, smallcnn, ...``), never a Python symbol;
:func:`choices_text` writes such a list. A renamed option stays accepted under its old name
(:func:`add_deprecated_alias`): hidden from ``--help``, it does what the new name does and
prints a one-line notice naming the new one.
"""
import argparse
import sys

__all__ = ["choices_text", "dataset_help", "arch_help", "add_deprecated_alias", "add_victim_kind", "key_values"]


def choices_text(values, default=None):
    """``"a, b or c (default a)"``: the valid values as a user types them."""
    values = [str(v) for v in values]
    text = values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"
    return text if default is None else f"{text} (default {default})"


def dataset_help(role="dataset"):
    """Help for an option naming a dataset: the built-in names, or a folder of your images."""
    from divqat.data import DATASETS

    return f"{role}: {', '.join(DATASETS)}, or imagefolder:PATH (a folder of class folders of images)"


def arch_help(role="architecture", default=None):
    """Help for an option naming a model architecture: the built-in names, or your own builder."""
    from divqat.models import ARCHITECTURES

    text = f"{role}: {', '.join(ARCHITECTURES)}, or package.module:callable (your own)"
    return text if default is None else f"{text} (default {default})"


class _DeprecatedAlias(argparse.Action):
    """Does what ``target`` does, after a notice on stderr naming the option to use instead."""

    def __init__(self, option_strings, dest, target=None, **kwargs):
        self.target = target
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        new = self.target.option_strings[0]
        print(f"divqat: {option_string} is deprecated, use {new}", file=sys.stderr)
        self.target(parser, namespace, values, new)


def add_deprecated_alias(parser, old, new):
    """Accept ``old`` as a hidden, deprecated spelling of the already added option ``new``."""
    target = parser._option_string_actions[new]
    parser.add_argument(old, action=_DeprecatedAlias, target=target, dest=target.dest, nargs=target.nargs,
                        default=argparse.SUPPRESS, metavar=target.metavar, help=argparse.SUPPRESS,
                        choices=target.choices, type=target.type)


def add_victim_kind(parser):
    """``--victim-kind``: which model of a ``divqat train --out`` directory answers."""
    from divqat.train.artifacts import KINDS

    parser.add_argument("--victim-kind", default="auto", metavar="KIND",
                        help=f"which model of the victim directory answers: {choices_text(KINDS, 'auto')}; "
                        "auto is int8 for quantized methods, else float")


def key_values(items, option):
    """Repeated ``option KEY=VALUE`` strings -> {KEY: VALUE} (text, stripped); ValueError naming
    ``option`` on a malformed or repeated key."""
    args = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{option} expects KEY=VALUE, got {item!r}")
        if key in args:
            raise ValueError(f"{option} {key} given twice")
        args[key] = value.strip()
    return args
