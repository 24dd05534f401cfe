"""`divqat experiment --plan`: what a run would compute, checked against what the runner then
computes, with estimates checked against times written by hand into the cache; nothing written."""
import argparse
import json

import pytest
from test_experiments_runner import FakePipeline, config  # noqa: F401 (config: the fixture)

from divqat.experiments import cells, command
from divqat.experiments.cells import CellCache, grid_cells
from divqat.experiments.config import parse_config
from divqat.experiments.plan import plan_grid, plan_table
from divqat.experiments.runner import run_experiment


class FakeMisinformationPipeline(FakePipeline):
    """The fake pipeline with adaptive misinformation: its model is trained on demand."""

    def __init__(self):
        super().__init__()
        self.misinformation_trained = 0

    def train_misinformation(self, cell, out_dir):
        self.misinformation_trained += 1
        return {}

    def attack(self, victim, cell, victim_dir, misinformation_dir=None):
        return super().attack(victim, cell, victim_dir)


def _totals(plans):
    return {name: (sum(getattr(p, name).todo for p in plans), sum(getattr(p, name).total for p in plans))
            for name in ("victims", "misinformation", "attacks")}


def _tree(root):
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_plan_of_a_new_directory_is_the_whole_grid_and_creates_nothing(config, tmp_path):
    out = tmp_path / "new"
    plans = plan_grid(config, out)
    assert not out.exists()
    assert [p.seed for p in plans] == [0, 1]
    assert _totals(plans) == {"victims": (12, 12), "misinformation": (0, 0), "attacks": (60, 60)}
    assert all(p.seconds == 0 and p.untimed == 6 + 30 for p in plans)  # nothing finished to time them by
    counts = run_experiment(config, out, pipeline=FakePipeline(), progress=False, report=False)
    assert (counts["victims_trained"], counts["cells_run"]) == (12, 60)


def test_plan_of_an_interrupted_run_is_what_the_resumed_run_computes(config, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated"):
        run_experiment(config, out, pipeline=FakePipeline(fail_at=37), progress=False, report=False)
    before = _tree(out)
    plans = plan_grid(config, out)
    assert _tree(out) == before
    assert [p.attacks.todo for p in plans] == [0, 60 - 37]  # the failing cell and those after it
    resumed = run_experiment(config, out, pipeline=FakePipeline(), progress=False, report=False)
    totals = _totals(plans)
    assert totals["attacks"] == (resumed["cells_run"], 60) and totals["victims"][0] == resumed["victims_trained"]
    assert _totals(plan_grid(config, out)) == {"victims": (0, 12), "misinformation": (0, 0), "attacks": (0, 60)}


def test_estimate_is_the_median_time_of_finished_cells_like_it(config, tmp_path):
    out = tmp_path / "run"
    config.seeds = [0]
    run_experiment(config, out, pipeline=FakePipeline(), progress=False, report=False)
    # times by hand: every attack cell takes as many seconds as its budget, every victim 7 s,
    # and one 400-query cell an outlier that a median ignores
    records = sorted((out / "cells").glob("*.json"))
    outlier = next(p for p in records if json.loads(p.read_text())["attack"]["budget"] == 400)
    for path in records + sorted((out / "victims").glob("*/victim.json")):
        record = json.loads(path.read_text())
        budget = record.get("attack", {}).get("budget")
        record["time_s"] = 10_000.0 if path == outlier else float(budget) if budget else 7.0
        path.write_text(json.dumps(record))
    config.seeds = [0, 1]
    seed0, seed1 = plan_grid(config, out)
    assert (seed0.attacks.todo, seed0.victims.todo, seed0.seconds) == (0, 0, 0)
    # seed 1: 5 victims x 3 defenses at each budget, 6 victims
    assert (seed1.seconds, seed1.untimed) == (15 * 100 + 15 * 400 + 6 * 7, 0)
    # another budget has no finished cell like it: untimed, not guessed
    raw = dict(config.raw, attacks=[{"name": "knockoff", "budget": [100, 800]}])
    seed0, _ = plan_grid(parse_config(raw), out)
    assert (seed0.attacks.todo, seed0.untimed, seed0.seconds) == (15, 15, 0)
    table = plan_table(plan_grid(config, out))  # 7,542 s: 125.7 min
    assert "| 1 | 6 of 6 | 0 of 0 | 30 of 30 | 2 h 06 min | 0 |" in table
    assert "| all | 6 of 12 | 0 of 0 | 30 of 60 | 2 h 06 min | 0 |" in table


def test_reuse_stale_counts_what_adoption_would_reuse(config, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(cells, "current_code", lambda: "v1")
    run_experiment(config, out, pipeline=FakePipeline(), progress=False, report=False)
    monkeypatch.setattr(cells, "current_code", lambda: "v2")
    assert _totals(plan_grid(config, out))["attacks"] == (60, 60)  # other code's cells are recomputed
    plans = plan_grid(config, out, reuse_stale=True)
    assert _totals(plans)["attacks"] == (0, 60) and _totals(plans)["victims"] == (0, 12)
    assert sum(p.reused for p in plans) == CellCache(out).adopt_stale(grid_cells(config)) == 72
    assert sum(p.reused for p in plan_grid(config, out, reuse_stale=True)) == 0  # adopted: their own now


def test_misinformation_model_is_planned_only_for_cells_that_need_it(config, tmp_path):
    raw = dict(config.raw, defenses=[{"name": "none"}, {"name": "am", "tau": 0.5}])
    config = parse_config(raw)
    out = tmp_path / "run"
    plans = plan_grid(config, out)
    assert _totals(plans)["misinformation"] == (2, 2)
    fake = FakeMisinformationPipeline()
    counts = run_experiment(config, out, pipeline=fake, progress=False, report=False)
    assert fake.misinformation_trained == 2 and counts["cells_run"] == _totals(plans)["attacks"][0] == 40
    config.seeds = [0]
    raw_more = dict(raw, attacks=[{"name": "knockoff", "budget": [100, 400, 800]}], defenses=[{"name": "none"}])
    plans = plan_grid(parse_config(raw_more), out)
    assert _totals(plans)["misinformation"] == (0, 0) and _totals(plans)["attacks"] == (10, 20 + 10)


def test_plan_flag_prints_each_pair_and_writes_nothing(config, tmp_path, capsys):
    out = tmp_path / "run"
    run_experiment(config, out, pipeline=FakePipeline(), progress=False, report=False)
    before = _tree(out)
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "fake.toml"), "--out", str(out), "--plan", "--seeds", "1"])
    assert command.run(args) == 0
    printed = capsys.readouterr().out
    assert f"fake -> {out} (--plan: nothing is computed)" in printed
    assert "| 1 | 0 of 6 | 0 of 0 | 0 of 30 |" in printed and "| all |" not in printed
    assert _tree(out) == before
