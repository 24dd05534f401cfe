"""The experiment runner on a real local Ray instance (one per module, 2 CPUs) against the
sequential executor: the same grid of real cells (sklearn digits, smallcnn, 1 epoch) gives the
same tables cell for cell; a worker killed mid-cell is retried and the cache stays intact; a
failing cell is recorded, skips the cells that need it, and the rest of the grid finishes."""
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import tomllib

import pytest

from divqat.cli import main
from divqat.experiments import parse_config
from divqat.experiments.cells import attack_cells, attacked_victims
from divqat.experiments.executors import RayExecutor, SequentialExecutor
from divqat.experiments.pipeline import LibraryPipeline
from divqat.experiments.runner import ExperimentFailed, run_experiment
from divqat.utils import atomic_write

ray = pytest.importorskip("ray")

# 2 seeds x (fp teacher + qat victim) + 2 seeds x 2 defenses x 2 budgets = 4 victims + 8 attack cells
TOML = """
name = "raygrid"
seeds = [0, 1]
[data]
victim = "digits"
queryset = "digits"
train_limit = 256
test_limit = 100
[victim]
arch = "smallcnn"
epochs = 1
batch_size = 64
[quant]
epochs = 1
batch_size = 64
[[methods]]
name = "qat"
[[defenses]]
name = "none"
[[defenses]]
name = "dcp"
beta = 0.5
[[attacks]]
name = "knockoff"
budget = [64, 128]
epochs = 1
"""
RAW = tomllib.loads(TOML)
N_ATTACK_CELLS = 8


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance with 2 CPUs, bound to 127.0.0.1, its files under a short temporary
    directory (Unix socket paths are limited to 107 characters), shut down at the end of the
    module, also when a test or the start fails. The test pipelines below travel to the workers
    by value (this module is not importable there)."""
    tmp = tempfile.mkdtemp(prefix="ray")
    try:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, _node_ip_address="127.0.0.1",
                 logging_level="warning")
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def _timeless(rows):
    """Rows without wall-clock measurements (time_s, latency), keyed by cell key."""
    return {r["key"]: {k: v for k, v in r.items() if k != "time_s" and "latency" not in k} for r in rows}


def _tables(out):
    results = json.loads((out / "results.json").read_text())
    return _timeless(results["victims"]), _timeless(results["cells"])


@pytest.fixture(scope="module")
def sequential_run(tmp_path_factory):
    """The reference: the grid run in this process, one torch thread per cell."""
    out = tmp_path_factory.mktemp("sequential")
    counts = run_experiment(parse_config(RAW), out, progress=False, report=False,
                            executor=SequentialExecutor(threads=1))
    assert counts == {"victims_trained": 4, "cells_run": N_ATTACK_CELLS, "cells_cached": 0}
    return out


def test_ray_grid_matches_sequential_cell_for_cell(ray_instance, sequential_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DIVQAT_PROGRESS_INTERVAL", "0")  # a plain line at every change (stderr is no terminal)
    out = tmp_path / "ray"
    counts = run_experiment(parse_config(RAW), out, report=False, executor=RayExecutor(cpus=1))
    assert counts == {"victims_trained": 4, "cells_run": N_ATTACK_CELLS, "cells_cached": 0}
    victims, cells = _tables(out)
    ref_victims, ref_cells = _tables(sequential_run)
    assert len(cells) == N_ATTACK_CELLS and len(victims) == 4
    assert victims == ref_victims
    assert cells == ref_cells
    # the smaller budget waited for the larger one and reused its transfer set, as in sequence
    assert sorted(c["fresh_queries"] for c in cells.values()) == [0] * 4 + [128] * 4
    # one bar, the cells Ray runs named as they start
    err = capsys.readouterr().err
    assert "12/12 cells (100%)" in err and re.search(r"running: seed [01] qat \| (none|dcp\(beta=0.5\)) \| knockoff\(budget", err)
    # a second driver, from the command line, on the finished directory computes nothing
    path = tmp_path / "raygrid.toml"
    path.write_text(TOML)
    assert main(["experiment", str(path), "--out", str(out), "--executor", "ray", "--no-progress", "--no-report"]) == 0
    assert f"raygrid: 0 victims trained, 0 cells run, {N_ATTACK_CELLS} cached" in capsys.readouterr().out


class KilledOnce:
    """The library pipeline, except that the first attempt at attack cell ``target`` kills its
    own process (SIGKILL) in the middle of writing the cell's record, as a node failure would;
    every attempt appends its pid to ``marker``."""

    def __init__(self, config, target, marker):
        self.config, self.target, self.marker = config, target, marker
        self._library = None

    def __getstate__(self):
        return {**self.__dict__, "_library": None}

    @property
    def library(self):
        if self._library is None:
            self._library = LibraryPipeline(self.config, progress=False)
        return self._library

    def train_victim(self, cell, teacher_dir, out_dir):
        return self.library.train_victim(cell, teacher_dir, out_dir)

    def load_victim(self, cell, out_dir):
        return self.library.load_victim(cell, out_dir)

    def evaluate_victim(self, cell, out_dir, metrics):
        return self.library.evaluate_victim(cell, out_dir, metrics)

    def attack(self, victim, cell, victim_dir):
        if cell.key == self.target:
            first = not self.marker.exists()
            with open(self.marker, "a") as f:
                f.write(f"{os.getpid()}\n")
            if first:
                def write_then_die(f):
                    f.write(b'{"key": "' + cell.key.encode() + b'", "metr')
                    f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)

                atomic_write(victim_dir.parent.parent / "cells" / f"{cell.key}.json", write_then_die)
        return self.library.attack(victim, cell, victim_dir)


def test_worker_killed_mid_cell_is_retried_and_the_cache_stays_intact(ray_instance, sequential_run, tmp_path):
    config = parse_config(RAW)
    cells = [c for s in config.seeds for v in attacked_victims(config, s) for c in attack_cells(config, v)]
    target = cells[-1].key
    marker = tmp_path / "attempts.txt"
    out = tmp_path / "ray"
    counts = run_experiment(config, out, pipeline=KilledOnce(config, target, marker), progress=False,
                            report=False, executor=RayExecutor(cpus=1))
    assert counts == {"victims_trained": 4, "cells_run": N_ATTACK_CELLS, "cells_cached": 0}
    killed, retried = marker.read_text().split()
    assert killed != retried  # the retry ran in another worker process
    assert not list((out / "cells").glob(".*"))  # the killed write left nothing behind
    assert not (out / "failures").exists() or not list((out / "failures").iterdir())
    victims, cells = _tables(out)
    assert (victims, cells) == _tables(sequential_run)


class FailingQat(KilledOnce):
    """The library pipeline whose qat victims fail to train."""

    def train_victim(self, cell, teacher_dir, out_dir):
        if cell.method.name == "qat":
            raise RuntimeError(f"no qat for seed {cell.seed}")
        return super().train_victim(cell, teacher_dir, out_dir)


@pytest.mark.parametrize("executor", ["sequential", "ray"])
def test_failed_cells_are_recorded_and_the_rest_goes_on(ray_instance, tmp_path, executor):
    raw = {**RAW, "methods": [{"name": "fp"}, {"name": "qat"}], "defenses": [{"name": "none"}],
           "attacks": [{"name": "knockoff", "budget": 64, "epochs": 1}]}
    config = parse_config(raw)
    pipeline = FailingQat(config, target=None, marker=tmp_path / "unused")
    chosen = SequentialExecutor(threads=1) if executor == "sequential" else RayExecutor(cpus=1)
    with pytest.raises(ExperimentFailed) as failed:
        run_experiment(config, tmp_path / "run", pipeline=pipeline, progress=False, report=False, executor=chosen)
    # per seed: fp trained and attacked; the qat victim failed; its attack cell skipped
    assert failed.value.counts == {"victims_trained": 2, "cells_run": 2, "cells_cached": 0}
    statuses = sorted((label, o.status) for label, o in failed.value.failures)
    assert statuses == [("seed 0 qat", "failed"), ("seed 0 qat | none | knockoff(budget=64, epochs=1)", "skipped"),
                        ("seed 1 qat", "failed"), ("seed 1 qat | none | knockoff(budget=64, epochs=1)", "skipped")]
    assert "RuntimeError: no qat for seed 1" in str(failed.value)
    records = [json.loads(p.read_text()) for p in (tmp_path / "run" / "failures").glob("*.json")]
    assert sorted(r["error"] for r in records) == ["RuntimeError: no qat for seed 0", "RuntimeError: no qat for seed 1"]
    assert len(json.loads((tmp_path / "run" / "results.json").read_text())["cells"]) == 2
