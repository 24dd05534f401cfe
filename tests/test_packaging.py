"""The declared Python range is one the code runs on: setup.py's python_requires against the
standard-library modules the package imports without a fallback (issue 13: tomllib is 3.11+)."""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADDED_IN = {"tomllib": (3, 11)}  # standard-library modules newer than some supported Pythons


def _declared_minimum():
    text = (ROOT / "setup.py").read_text()
    match = re.search(r'python_requires=">=(\d+)\.(\d+)"', text)
    assert match, "setup.py declares no python_requires lower bound"
    return tuple(int(v) for v in match.groups())


def test_python_requires_covers_every_unconditional_stdlib_import():
    minimum = _declared_minimum()
    for path in sorted((ROOT / "divqat").rglob("*.py")):
        for module, since in ADDED_IN.items():
            if re.search(rf"^import {module}\b", path.read_text(), flags=re.M):
                assert minimum >= since, f"{path.relative_to(ROOT)} imports {module} ({since}+), setup.py allows {minimum}"


def test_this_interpreter_is_in_the_declared_range():
    assert sys.version_info[:2] >= _declared_minimum()
