"""One rule for every `divqat` command that writes: --out never replaces an input of the command,
another command's results, or its own finished results without --overwrite; refused before any
work, with one line naming --out, exit 2. Two processes never share one output directory."""
import hashlib
import os
import subprocess
import sys
import time

import pytest

from divqat.checks import check_out, claim_output_dir, output_kind
from divqat.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = ["train", "--dataset", "digits", "--arch", "smallcnn", "--limit", "256", "--test-limit", "64",
         "--batch-size", "64", "--epochs", "1", "--no-progress", "--device", "cpu"]
PTQ = [a for a in TRAIN if a not in ("--epochs", "1")]  # ptq calibrates: it takes no --epochs
ATTACK = ["attack", "--attack", "knockoff", "--queryset", "digits", "--budget", "64", "--epochs", "1",
          "--no-progress", "--device", "cpu"]


def _digest(directory):
    """{file name: sha256} of every file in ``directory``: the oracle that nothing was replaced."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def _refused(capsys, argv, *words):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    for word in ("--out", *words):
        assert str(word) in err[0], (word, err[0])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished fp run, a ptq run of it, and a finished attack on the fp run."""
    root = tmp_path_factory.mktemp("runs")
    assert main(TRAIN + ["--method", "fp", "--out", str(root / "fp")]) == 0
    assert main(PTQ + ["--method", "ptq", "--teacher", str(root / "fp"), "--out", str(root / "ptq")]) == 0
    assert main(ATTACK + ["--victim", str(root / "fp"), "--out", str(root / "attack")]) == 0
    return root


def test_output_kind_recognises_each_command(runs, tmp_path):
    assert output_kind(runs / "fp") == ("train", True) and output_kind(runs / "attack") == ("attack", True)
    assert output_kind(tmp_path) is None and output_kind(tmp_path / "missing") is None
    (tmp_path / "config.json").write_text('{"method": "misinformation"}')
    assert output_kind(tmp_path) == ("train-misinformation", False)
    grid = tmp_path / "grid"
    (grid / "cells").mkdir(parents=True)
    assert output_kind(grid) is None  # a folder named cells alone is no experiment
    (grid / "victims").mkdir()
    assert output_kind(grid) == ("experiment", False)
    (grid / "results.csv").write_text("")
    assert output_kind(grid) == ("experiment", True)


def test_inputs_and_other_results_refused_before_any_work(runs, tmp_path, capsys):
    fp, ptq, attack = runs / "fp", runs / "ptq", runs / "attack"
    before = {d: _digest(d) for d in (fp, ptq, attack)}
    _refused(capsys, ["evaluate", "--victim", fp, "--out", fp / "config.json"], "input")
    _refused(capsys, ["evaluate", "--victim", fp, "--out", attack / "metrics.json", "--overwrite"], "attack")
    _refused(capsys, ["export", "--victim", ptq, "--out", ptq / "model_int8.onnx", "--overwrite"], "input")
    _refused(capsys, [*ATTACK, "--victim", ptq, "--out", fp, "--overwrite"], "divqat train")
    _refused(capsys, [*ATTACK, "--victim", fp, "--out", attack], "--overwrite")
    _refused(capsys, [*ATTACK, "--victim", fp, "--out", fp], "input")
    _refused(capsys, ["train-misinformation", "--victim", fp, "--epochs", "1", "--out", ptq, "--overwrite"],
             "divqat train")
    _refused(capsys, [*TRAIN, "--method", "fp", "--out", attack, "--overwrite"], "divqat attack")
    _refused(capsys, [*PTQ, "--method", "ptq", "--teacher", fp, "--out", fp, "--overwrite"], "input")
    assert {d: _digest(d) for d in (fp, ptq, attack)} == before
    csv = tmp_path / "results.csv"
    csv.write_text("a,b\n1,2\n")
    _refused(capsys, ["report", csv, "--out", csv, "--overwrite"], "input")
    assert csv.read_text() == "a,b\n1,2\n"


def test_existing_file_needs_overwrite(runs, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--victim", str(runs / "fp"), "--test-limit", "32", "--out", str(out)]) == 0
    first = out.read_text()
    out.write_text("mine")
    _refused(capsys, ["evaluate", "--victim", runs / "fp", "--test-limit", "32", "--out", out], "--overwrite")
    assert out.read_text() == "mine"
    assert main(["evaluate", "--victim", str(runs / "fp"), "--test-limit", "32", "--out", str(out),
                 "--overwrite"]) == 0
    assert out.read_text() == first


def test_finished_attack_replaced_with_overwrite(runs, tmp_path):
    out = tmp_path / "attack"
    assert main(ATTACK + ["--victim", str(runs / "fp"), "--out", str(out)]) == 0
    (out / "metrics.json").write_text("{}")
    assert main(ATTACK + ["--victim", str(runs / "fp"), "--out", str(out), "--overwrite"]) == 0
    assert (out / "metrics.json").read_text() != "{}"


def test_check_out_library_rules(tmp_path):
    check_out("--out", tmp_path / "new", "attack")
    check_out("--out", tmp_path, "experiment", inputs={"CONFIG": tmp_path / "grid.toml"}, resumable=True)
    with pytest.raises(ValueError, match="--out .* would overwrite --surrogate-weights"):
        check_out("--out", tmp_path, "attack", inputs={"--surrogate-weights": tmp_path / "surrogate.pt"})


_HOLD = "import sys; from divqat.checks import claim_output_dir; claim_output_dir('--out', sys.argv[1], 'train'); " \
        "print('held', flush=True); sys.stdin.read()"


def test_a_claimed_directory_is_refused_to_another_process(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        _refused(capsys, [*TRAIN, "--method", "fp", "--out", out], "in use by another divqat process")
        assert list(out.iterdir()) == []  # nothing was written
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    claim_output_dir("--out", out, "train")  # the lock died with its process


def test_two_train_processes_never_share_an_out(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "divqat.cli", *TRAIN[:-5], "--epochs", "200", "--no-progress",
            "--device", "cpu", "--method", "fp", "--out", str(out)]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "config.json").exists():  # the first has claimed the directory and started
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.2)
        second = subprocess.run(argv[:-1] + [str(out)], env=env, capture_output=True, text=True, timeout=120)
        assert first.poll() is None  # still training: the refusal is the lock's, not a finished run's
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert second.stderr.strip() == (f"divqat train: error: --out {out} is in use by another divqat process: "
                                     "wait for it or choose another --out")
