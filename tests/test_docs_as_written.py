"""The docs as a newcomer uses them (README.md, BENCHMARKS.md, docs/, experiments/): every
`divqat ...` command line in a shell code block parses with the command's own argument parser
(divqat.cli.build_parser) and names experiment files that exist, so a line copied from the docs
never meets an option that was renamed or a config that was removed (nothing is run: parsing
only); and every relative link leads to a file that exists, and its #anchor to a heading of it."""
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from divqat.cli import build_parser
from divqat.results.docs_blocks import markdown_files

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)\s*$")
SHELL_FENCES = ("", "bash", "sh", "shell", "console")
SEPARATORS = {"&&", "||", ";", "|"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+ (.*)$", re.M)


def doc_files():
    return markdown_files([ROOT / "README.md", ROOT / "BENCHMARKS.md", ROOT / "docs", ROOT / "experiments"])


def shell_lines(path):
    """(line number, command) of the shell code blocks of ``path``, continuation lines joined."""
    inside, fence, pending, start = False, "", "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        m = FENCE.match(line.strip())
        if m:
            inside, fence = not inside, m.group(1)
            continue
        if not inside or fence not in SHELL_FENCES:
            continue
        start = start if pending else number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""


def divqat_argvs(command):
    """The argument lists of the `divqat` invocations in one shell line (after `&&`, `;`, `|`,
    environment assignments and `nice`); none where the line is not shell (a diagram, SQL)."""
    try:
        tokens = shlex.split(command, comments=True)
    except ValueError:
        return []
    argvs, segment = [], []
    for token in tokens + [";"]:
        if token not in SEPARATORS:
            segment.append(token)
            continue
        while segment and (segment[0] == "nice" or ("=" in segment[0] and not segment[0].startswith("-"))):
            segment.pop(0)
        if segment and Path(segment[0]).name == "divqat":
            argvs.append(segment[1:])
        segment = []
    return argvs


COMMANDS = [(f"{path.relative_to(ROOT)}:{number}", argv)
            for path in doc_files() for number, line in shell_lines(path) for argv in divqat_argvs(line)]


def test_the_docs_hold_divqat_commands():
    where = {w.split(":")[0] for w, _ in COMMANDS}
    assert len(COMMANDS) >= 50 and {"README.md", "docs/guide/command-line.md", "docs/deploy.md"} <= where


def test_a_wrong_option_is_caught():
    """The check below fails on a command its parser refuses (the oracle is argparse itself)."""
    assert parse_error(["train", "--dataset", "mnist", "--epochs", "three"]) is not None
    assert parse_error(["keys", "add", "alice", "--db", "keys.db", "--budget", "10"]) is None
    assert divqat_argvs("FOO=1 nice .venv/bin/divqat report runs/x && echo divqat # divqat bench") == [
        ["report", "runs/x"]]


def parse_error(argv):
    """The parser's last line of complaint about ``argv``, or None where it parses."""
    err = io.StringIO()
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser(command).parse_args(argv)
    except SystemExit as exc:
        if exc.code:
            return err.getvalue().strip().splitlines()[-1]
    return None


@pytest.mark.parametrize("where,argv", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_each_documented_command_parses_and_names_files_that_exist(where, argv):
    error = parse_error(argv)
    assert error is None, f"{where}: divqat {' '.join(argv)}: {error}"
    for arg in argv:
        if arg.startswith("experiments/") and arg.endswith(".toml") and "$" not in arg:
            assert (ROOT / arg).is_file(), f"{where}: {arg} does not exist"


def anchor(heading):
    """GitHub's anchor of a Markdown heading: lower case, punctuation but hyphens dropped, spaces
    to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_anchor_follows_githubs_rule():
    assert anchor("Relabelling: foreign inputs answered with the next class") == \
        "relabelling-foreign-inputs-answered-with-the-next-class"
    assert anchor("Where the study stands, at 5,000 queries") == "where-the-study-stands-at-5000-queries"


LINKS = [(path, target) for path in doc_files() for target in LINK.findall(path.read_text())
         if not re.match(r"^[a-z]+:", target)]  # http:, https:, mailto: are not checked (no network)


@pytest.mark.parametrize("path,target", LINKS, ids=[f"{p.relative_to(ROOT)}->{t}" for p, t in LINKS])
def test_each_relative_link_leads_somewhere(path, target):
    file, _, fragment = target.partition("#")
    goal = (path.parent / file) if file else path
    assert goal.exists(), f"{path.relative_to(ROOT)}: {target}: no such file"
    if fragment and goal.suffix == ".md":
        anchors = {anchor(h) for h in HEADING.findall(goal.read_text())}
        assert fragment in anchors, f"{path.relative_to(ROOT)}: {target}: no such heading"
