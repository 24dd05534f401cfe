"""Argument parsing lives only in command modules.

A command module is ``cli.py``, ``cli_options.py``, a ``command.py`` or ``*_command.py``, or the
``python -m divqat.experiments.frontier`` and ``python -m divqat.experiments.pair_files`` entries; every other module of divqat holds the functions
a Python user calls: it neither imports argparse nor defines ``add_arguments`` or ``run(args)``
(a subcommand's options and entry point). Checked on the source with ast, not by importing.
"""
import ast
from pathlib import Path

import divqat

ROOT = Path(divqat.__file__).parent
ENTRIES = {"experiments/frontier.py", "experiments/pair_files.py"}  # `python -m` entries: only their argparse main


def is_command_module(path, root=ROOT):
    rel = path.relative_to(root).as_posix()
    return (path.name in ("cli.py", "cli_options.py", "command.py") or path.name.endswith("_command.py")
            or rel in ENTRIES)


def _params(node):
    names = [a.arg for a in node.args.posonlyargs + node.args.args]
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


def argument_parsing(tree):
    """What in a module's ast ``tree`` belongs to a command module, as text (empty: nothing)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import argparse" for a in node.names if a.name.split(".")[0] == "argparse"]
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "argparse":
            found.append(f"line {node.lineno}: from argparse import ...")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name == "add_arguments" or (node.name == "run" and _params(node)[:1] == ["args"]):
                found.append(f"line {node.lineno}: def {node.name}({', '.join(_params(node))})")
    return found


def library_modules_parsing_arguments(root=ROOT):
    """{path relative to ``root``: what argument_parsing found} for every library module."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        if not is_command_module(path, root):
            hits = argument_parsing(ast.parse(path.read_text(), str(path)))
            if hits:
                found[path.relative_to(root).as_posix()] = hits
    return found


def test_only_command_modules_parse_arguments():
    found = library_modules_parsing_arguments()
    assert not found, "argument parsing outside the command modules (move it to a *_command.py):\n" + "\n".join(
        f"divqat/{path}: {'; '.join(hits)}" for path, hits in found.items())


def test_every_kind_of_argument_parsing_is_found(tmp_path):
    files = {
        "__init__.py": "",
        "lib.py": "import os\n\ndef evaluate(x):\n    return x\n\nclass Executor:\n"
                  "    def run(self, jobs):\n        pass\n",
        "imports.py": "import argparse\n",
        "from_imports.py": "def f():\n    from argparse import Namespace\n",
        "options.py": "def add_arguments(parser):\n    pass\n",
        "entry.py": "def run(args):\n    return 0\n",
        "method.py": "class C:\n    def run(self, args):\n        pass\n",
        "cli.py": "import argparse\n",
        "sub/__init__.py": "",
        "sub/command.py": "def add_arguments(parser):\n    pass\n\ndef run(args):\n    return 0\n",
        "sub/thing_command.py": "import argparse\n\ndef add_arguments(parser):\n    pass\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert library_modules_parsing_arguments(tmp_path) == {
        "entry.py": ["line 1: def run(args)"],
        "from_imports.py": ["line 2: from argparse import ..."],
        "imports.py": ["line 1: import argparse"],
        "method.py": ["line 2: def run(args)"],
        "options.py": ["line 1: def add_arguments(parser)"],
    }
