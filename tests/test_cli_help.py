"""The CLI explains itself: every option of every subcommand has help, no help shows a Python
repr, options with a fixed set of values list them, defaults are stated; renamed options keep
working under their old spelling (hidden, with a notice)."""
import argparse
import json
import re

import pytest

from divqat.cli import COMMANDS, build_parser, main
from divqat.cli_options import _DeprecatedAlias, choices_text

# a Python symbol, a dict/list/tuple/set repr, an object repr, None
PYTHON_REPR = re.compile(r"\bdivqat\.\w+\.[A-Z_]{3,}\b|[{\[(]['\"]|<(class|function|module|bound|built-in)\b"
                         r"|\bobject at 0x|\bNone\b|dict_keys|\bTrue\b|\bFalse\b")


def _subparser(name):
    parser = build_parser(name)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _options(name):
    return [a for a in _subparser(name)._actions if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]


def _parsers(parser, path):
    """``(path, parser)`` for ``parser`` and every nested subcommand parser under it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def _value_sets():
    """option -> the values its help must list, per subcommand."""
    from divqat.attacks.knockoff_adaptive import REWARDS
    from divqat.attacks.registry import SPECS
    from divqat.blackbox import OUTPUT_MODES
    from divqat.data import DATASETS
    from divqat.defenses import DEFENSES
    from divqat.models import ARCHITECTURES
    from divqat.reference.kl_loss import DIRECTIONS
    from divqat.train.artifacts import KINDS
    from divqat.train.loop import OPTIMIZERS
    from divqat.train.victim import METHODS

    return {
        "train": {"--dataset": DATASETS, "--arch": ARCHITECTURES, "--method": METHODS, "--direction": DIRECTIONS,
                  "--optimizer": OPTIMIZERS},
        "attack": {"--victim-kind": KINDS, "--attack": SPECS, "--queryset": DATASETS, "--output": OUTPUT_MODES,
                   "--defense": DEFENSES, "--reward": REWARDS},
        "evaluate": {"--victim-kind": KINDS, "--defense": DEFENSES},
        "train-misinformation": {"--dataset": DATASETS, "--arch": ARCHITECTURES, "--optimizer": OPTIMIZERS},
    }


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_has_help_and_no_python_repr(name):
    for path, parser in _parsers(_subparser(name), f"divqat {name}"):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            if action.help == argparse.SUPPRESS:
                assert isinstance(action, _DeprecatedAlias), f"{path} {action.option_strings}: hidden, not an alias"
                continue
            assert action.help and len(action.help) > 8, f"{path} {action.option_strings or action.dest}: no help"
        bad = [line for line in parser.format_help().splitlines() if PYTHON_REPR.search(line)]
        assert not bad, f"{path} --help shows Python: {bad}"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_defaults_are_stated(name):
    for action in _options(name):
        if action.help == argparse.SUPPRESS or action.required or action.default in (None, False, [], True):
            continue
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            continue
        assert "default" in action.help, f"divqat {name} {action.option_strings}: default {action.default} not said"


@pytest.mark.parametrize("name", sorted(_value_sets()))
def test_help_lists_the_valid_values(name):
    helps = {opt: a.help for a in _options(name) for opt in a.option_strings}
    for option, values in _value_sets()[name].items():
        unwrapped = " ".join(helps[option].split())
        for value in values:
            assert re.search(rf"(?<![\w-]){re.escape(value)}(?![\w-])", unwrapped), (name, option, value)


def test_choices_text():
    assert choices_text(["a"]) == "a"
    assert choices_text(("a", "b", "c"), "b") == "a, b or c (default b)"


def test_one_name_per_concept_across_subcommands():
    """The model of a victim directory that answers is --victim-kind, and silence is --no-progress,
    wherever a subcommand has them."""
    for name in COMMANDS:
        visible = {o for a in _options(name) if a.help != argparse.SUPPRESS for o in a.option_strings}
        assert not visible & {"--kind", "--quiet"}, name
    for name in ("train", "attack", "evaluate", "experiment", "demo", "train-misinformation"):
        assert "--no-progress" in {o for a in _options(name) for o in a.option_strings}, name


@pytest.mark.parametrize("command,old,new,value", [
    ("evaluate", "--kind", "--victim-kind", "float"),
    ("evaluate", "--limit", "--test-limit", "7"),
    ("experiment", "--quiet", "--no-progress", None),
    ("bench", "--repeat", "--repeats", "3"),
])
def test_deprecated_spellings_still_parse(command, old, new, value, capsys):
    required = {"evaluate": ["--victim", "V"], "experiment": ["grid.toml", "--out", "O"], "bench": []}[command]
    extra = [value] if value is not None else []
    parser = build_parser(command)
    with_old = parser.parse_args([command, *required, old, *extra])
    assert f"{old} is deprecated, use {new}" in capsys.readouterr().err
    with_new = parser.parse_args([command, *required, new, *extra])
    assert capsys.readouterr().err == ""
    assert vars(with_old) == vars(with_new)
    dest = new.lstrip("-").replace("-", "_")
    assert getattr(with_new, dest) == {"float": "float", "7": 7, "3": 3, None: True}[value]
    for text in (parser.format_help(), _subparser(command).format_help()):
        assert not re.search(rf"{old}(?![\w-])", text)  # hidden


def test_deprecated_spellings_run_the_same_evaluation(tmp_path, capsys):
    from divqat.models import build_model_for
    from divqat.train.artifacts import start_run, write_run_results

    model = build_model_for("smallcnn", "digits")
    start_run(tmp_path, {"arch": "smallcnn", "dataset": "digits", "method": "fp", "quantized": False,
                            "meta": dict(model.meta)})
    write_run_results(tmp_path, model, {})
    common = ["evaluate", "--victim", str(tmp_path), "--no-progress"]
    assert main(common + ["--kind", "float", "--limit", "30", "--out", str(tmp_path / "old.json")]) == 0
    assert main(common + ["--victim-kind", "float", "--test-limit", "30", "--out", str(tmp_path / "new.json")]) == 0
    old, new = (json.loads((tmp_path / f).read_text()) for f in ("old.json", "new.json"))
    assert old == new and new["num_test"] == 30 and new["kind"] == "float"


def test_top_level_help_lists_every_subcommand_with_help():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    assert set(helps) == set(COMMANDS) and all(h and len(h) > 8 for h in helps.values())
    assert not PYTHON_REPR.search(build_parser().format_help())
