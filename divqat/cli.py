"""The `divqat` command: a thin layer over the library's functions.

Each subcommand lives in a command module (``command.py`` or ``*_command.py``) beside the library
module that owns its work, and exposes ``add_arguments(parser)`` and ``run(args) -> int``; library
modules parse no arguments (tests/test_command_modules.py). A command checks its output locations
(:mod:`divqat.checks`) before any work. Bad arguments, unreadable input files and file-system
errors end in a one-line error on stderr and exit status 2, never a traceback.
"""
import argparse
import importlib
import sys

from divqat import __version__

# subcommand -> (module, one-line help)
COMMANDS = {
    "train": ("divqat.train.command", "train a victim: fp, ptq, qat, divqat, adversarial"),
    "attack": ("divqat.attacks.command", "extract a victim through a query-counted black box"),
    "evaluate": ("divqat.evaluate_command", "evaluate a trained victim, optionally under a defense"),
    "defenses": ("divqat.defenses.command", "list the defenses, their parameters, defaults and ranges"),
    "train-misinformation": ("divqat.defenses.misinformation_command",
                             "train adaptive misinformation's model (for --defense am)"),
    "experiment": ("divqat.experiments.command", "run a TOML-configured grid of experiments"),
    "report": ("divqat.results.report_command", "write the Markdown report and plots of a run"),
    "bench": ("divqat.bench_command", "time the fused ops against PyTorch"),
    "demo": ("divqat.experiments.demo_command", "QAT vs DivQAT, bare and behind DCP, against KnockoffNets and Copycat on MNIST, end to end"),
    "export": ("divqat.serving.export_command", "write a quantized victim and its defense as one ONNX file"),
    "serve": ("divqat.serving.serve_command", "serve a defended model over HTTP with per-key query budgets"),
    "keys": ("divqat.serving.keys_command", "add, list and revoke the API keys of a served model"),
    "detect": ("divqat.detection.command", "calibrate the per-key extraction monitors of a served model"),
}


# subcommands that read datasets: each takes --data-root
DATA_COMMANDS = ("train", "attack", "evaluate", "experiment", "demo")


class UsageError(Exception):
    """A user mistake: reported as one line, exit status 2."""


def build_parser(command=None):
    """The argument parser; only ``command``'s module is imported (start-up stays fast)."""
    parser = argparse.ArgumentParser(prog="divqat", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"divqat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        if name == command:
            importlib.import_module(module_name).add_arguments(p)
            if name in DATA_COMMANDS and "--data-root" not in p._option_string_actions:  # evaluate has its own
                p.add_argument("--data-root", metavar="DIR", help="look for datasets in DIR first "
                               "(DIR or DIR/<dataset>; default: $DIVQAT_DATA, ~/.cache/divqat, system installs)")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    module = importlib.import_module(args._module)
    from divqat.data.sources import use_data_root

    try:
        with use_data_root(getattr(args, "data_root", None)):
            return int(module.run(args) or 0)
    except (UsageError, ValueError, OSError) as exc:  # OSError: FileNotFoundError, PermissionError, ...
        print(f"divqat {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"divqat {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
