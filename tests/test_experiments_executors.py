"""What every executor relies on, without Ray: the per-cell claim (real flock, real processes),
two drivers on one output directory, the grid's progress bar, and the `divqat experiment`
command's exit status and failure summary (real cells on sklearn digits)."""
import json
import subprocess
import sys
import threading
import time

import pytest
from test_experiments_runner import CONFIG, FakePipeline

from divqat.cli import main
from divqat.experiments.cell_lock import claim
from divqat.experiments.config import load_experiment_config
from divqat.experiments.runner import ExperimentFailed, run_experiment


def _claim_in_thread(root, key, record):
    """Start a thread that takes the claim and returns; ``acquired`` is set once it holds it."""
    acquired = threading.Event()

    def take():
        with claim(root, key, record):
            acquired.set()

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    return thread, acquired


def test_a_held_claim_makes_others_wait(tmp_path):
    record = tmp_path / "cells" / "k.json"
    with claim(tmp_path, "k", record):
        thread, acquired = _claim_in_thread(tmp_path, "k", record)
        assert not acquired.wait(0.5)  # still ours
        other, other_acquired = _claim_in_thread(tmp_path, "other", record)
        assert other_acquired.wait(30)  # another cell's claim is free
    thread.join(30)
    assert acquired.is_set()


def test_a_killed_holder_releases_its_claim_and_its_temporary_files_go(tmp_path):
    record = tmp_path / "cells" / "k.json"
    record.parent.mkdir(parents=True)
    stale = record.parent / ".k.json.abc123.tmp"
    stale.write_text('{"half')
    keep = record.parent / ".other.json.abc123.tmp"
    keep.write_text('{"half')
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from divqat.experiments.cell_lock import claim\n"
         f"with claim({str(tmp_path)!r}, 'k', {str(record)!r}):\n    print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        thread, acquired = _claim_in_thread(tmp_path, "k", record)
        assert not acquired.wait(0.5)
        stale.write_text('{"half')  # the holder's half-written record, as a kill mid-write leaves it
        holder.kill()
        thread.join(30)
        assert acquired.is_set()
    finally:
        holder.kill()
        holder.wait()
    assert not stale.exists() and keep.exists()  # only this cell's leftovers are removed


class SlowFake(FakePipeline):
    """The runner tests' fake with cells long enough for two drivers to overlap."""

    def attack(self, victim, cell, victim_dir):
        time.sleep(0.005)
        return super().attack(victim, cell, victim_dir)


def test_two_drivers_on_one_directory_compute_each_cell_once(tmp_path):
    path = tmp_path / "fake.toml"
    path.write_text(CONFIG)
    config = load_experiment_config(path)
    out = tmp_path / "run"
    fakes, counts = [SlowFake(), SlowFake()], [None, None]

    def drive(i):
        counts[i] = run_experiment(config, out, pipeline=fakes[i], progress=False, report=False)

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert counts[0]["cells_run"] + counts[1]["cells_run"] == 60
    assert counts[0]["victims_trained"] + counts[1]["victims_trained"] == 12
    assert not set(fakes[0].attacked) & set(fakes[1].attacked)
    assert len(set(fakes[0].attacked) | set(fakes[1].attacked)) == 60
    assert not set(fakes[0].trained) & set(fakes[1].trained)


def test_one_progress_bar_counts_cells_and_names_the_running_ones(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DIVQAT_PROGRESS_INTERVAL", "0")  # a plain line at every change (stderr is no terminal)
    path = tmp_path / "fake.toml"
    path.write_text(CONFIG)
    run_experiment(load_experiment_config(path), tmp_path / "run", pipeline=FakePipeline(), report=False)
    err = capsys.readouterr().err
    assert "experiment fake: 72/72 cells (100%)" in err  # 12 victims + 60 attack cells
    assert "running: seed 1 divqat(alpha=2.0, direction=reverse) | dcp(beta=1.0) | knockoff(budget=100)" in err


def test_failures_are_recorded_until_their_cells_succeed(tmp_path):
    path = tmp_path / "fake.toml"
    path.write_text(CONFIG)
    out = tmp_path / "run"
    with pytest.raises(ExperimentFailed) as failed:
        run_experiment(load_experiment_config(path), out, pipeline=FakePipeline(fail_at=17), progress=False, report=False)
    assert failed.value.counts == {"victims_trained": 12, "cells_run": 17, "cells_cached": 0}
    assert len(failed.value.failures) == len(list((out / "failures").glob("*.json"))) == 60 - 17
    assert run_experiment(load_experiment_config(path), out, pipeline=FakePipeline(), progress=False, report=False) == {
        "victims_trained": 0, "cells_run": 60 - 17, "cells_cached": 17}
    assert not list((out / "failures").glob("*"))


TINY = """
name = "tiny"
seeds = [0]
[data]
victim = "digits"
queryset = "digits"
train_limit = 128
test_limit = 64
[victim]
arch = "smallcnn"
epochs = 1
batch_size = 64
[[methods]]
name = "fp"
[[attacks]]
name = "knockoff"
budget = [64, 100000]
epochs = 1
"""


def test_command_names_failed_cells_and_exits_nonzero(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    out = tmp_path / "run"
    argv = ["experiment", str(path), "--out", str(out), "--no-progress", "--no-report", "--cpus-per-cell", "1"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "1 cells failed, 0 skipped" in captured.err
    assert "seed 0 fp | none | knockoff(budget=100000, epochs=1): failed: ValueError: budget 100000 exceeds" in captured.err
    assert "tiny: 1 victims trained, 1 cells run, 0 cached" in captured.out
    [record] = [json.loads(p.read_text()) for p in (out / "failures").glob("*.json")]
    assert record["label"] == "seed 0 fp | none | knockoff(budget=100000, epochs=1)"
    assert record["error"].startswith("ValueError: budget 100000") and "Traceback" in record["traceback"]
    # the rerun retries only the failed cell
    assert main(argv) == 1
    assert "tiny: 0 victims trained, 0 cells run, 1 cached" in capsys.readouterr().out


@pytest.mark.parametrize("extra, match", [
    (["--address", "127.0.0.1:6379"], "--address needs --executor ray"),
    (["--gpus-per-cell", "1"], "--gpus-per-cell needs --executor ray"),
    (["--cpus-per-cell", "0"], "--cpus-per-cell must be an int >= 1"),
    (["--executor", "ray", "--cpus-per-cell", "0"], "--cpus-per-cell must be an int >= 1"),
    (["--executor", "ray", "--gpus-per-cell", "-1"], "--gpus-per-cell must be >= 0"),
])
def test_bad_executor_options_exit_2(tmp_path, capsys, extra, match):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    assert main(["experiment", str(path), "--out", str(tmp_path / "run"), *extra]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # rejected before any work
