"""The experiment runner's grid, caching, resumption, tables and report, driven by a test double
of the pipeline (the real pipeline is tested end to end in test_experiments_pipeline.py)."""
import csv
import json
import statistics

import pytest

from divqat.experiments.cells import attack_cells, attacked_victims, victim_cells
from divqat.experiments.config import load_experiment_config, parse_config
from divqat.experiments.runner import run_experiment

CONFIG = """
name = "fake"
seeds = [0, 1]
[data]
victim = "digits"
queryset = "digits"
[victim]
arch = "lenet5"
epochs = 1
[quant]
epochs = 1
[[methods]]
name = "qat"
[[methods]]
name = "divqat"
alpha = [0.5, 2.0]
direction = ["forward", "reverse"]
[[defenses]]
name = "none"
[[defenses]]
name = "dcp"
beta = [0.5, 1.0]
[[attacks]]
name = "knockoff"
budget = [100, 400]
"""


class FakePipeline:
    """Deterministic metrics computed from the cell; records every call; can fail on demand."""

    def __init__(self, fail_at=None):
        self.trained, self.loaded, self.attacked, self.evaluated = [], [], [], []
        self.fail_at = fail_at

    def train_victim(self, cell, teacher_dir, out_dir):
        assert (teacher_dir is None) == (cell.teacher is None)
        if teacher_dir is not None:  # the teacher is finished before its students start
            assert (teacher_dir / "model.txt").read_text() == cell.teacher.key
        self.trained.append(cell.key)
        (out_dir / "model.txt").write_text(cell.key)
        alpha = cell.method.kwargs.get("alpha", 0.0)
        return cell.key, {"test_accuracy": 0.95 - 0.01 * alpha, "kl_fp_q": 0.1 * alpha + 0.01 * cell.seed,
                          "l1_fp_q": 0.05 * alpha}

    def load_victim(self, cell, out_dir):
        self.loaded.append(cell.key)
        return (out_dir / "model.txt").read_text()

    def evaluate_victim(self, cell, out_dir, metrics):
        if "robust_fgsm_0.1" in metrics:
            return {}
        self.evaluated.append(cell.key)
        return {"robust_fgsm_0.1": 0.5 - 0.01 * cell.method.kwargs.get("alpha", 0.0)}

    def attack(self, victim, cell, victim_dir):
        assert victim == cell.victim.key
        if self.fail_at is not None and len(self.attacked) == self.fail_at:
            raise RuntimeError("simulated interruption")
        self.attacked.append(cell.key)
        return expected_metrics(cell)


def expected_metrics(cell):
    alpha = cell.victim.method.kwargs.get("alpha", 0.0)
    beta = cell.defense.kwargs.get("beta", 0.0)
    budget = cell.attack.kwargs["budget"]
    err = 0.3 + 0.02 * alpha + 0.1 * beta - budget / 10000 + 0.003 * cell.victim.seed
    return {"adversary_accuracy": 1 - err, "adversary_error": err, "agreement": 0.9 - err / 2,
            "victim_accuracy": 0.95 - 0.01 * alpha - 0.001 * beta, "queries_used": budget,
            "surrogate_robust": {"fgsm": {"0.0": 0.9, "0.1": 0.5 - 0.01 * alpha}}}


@pytest.fixture()
def config(tmp_path):
    path = tmp_path / "fake.toml"
    path.write_text(CONFIG)
    return load_experiment_config(path)


def _n_cells(config):
    return sum(len(attack_cells(config, v)) for s in config.seeds for v in attacked_victims(config, s))


def test_grid_expansion(config):
    assert len(config.methods) == 1 + 4 and len(config.defenses) == 3 and len(config.attacks) == 2
    victims = victim_cells(config, 0)
    assert [v.method.name for v in victims] == ["fp", "qat"] + ["divqat"] * 4
    assert all(v.teacher is victims[0] for v in victims[1:])
    assert _n_cells(config) == 2 * 5 * 3 * 2
    keys = {c.key for s in config.seeds for v in attacked_victims(config, s) for c in attack_cells(config, v)}
    assert len(keys) == 60  # every cell has its own key


def test_run_caches_every_cell_and_second_run_does_no_work(config, tmp_path):
    out = tmp_path / "run"
    fake = FakePipeline()
    counts = run_experiment(config, out, pipeline=fake, progress=False)
    assert counts == {"victims_trained": 12, "cells_run": 60, "cells_cached": 0}
    assert len(set(fake.trained)) == 12 and fake.loaded == []
    again = FakePipeline()
    counts = run_experiment(config, out, pipeline=again, progress=False)
    assert counts == {"victims_trained": 0, "cells_run": 0, "cells_cached": 60}
    assert again.trained == again.loaded == again.attacked == again.evaluated == []
    assert len(fake.evaluated) == 12


def test_interrupted_run_resumes_without_redoing_work(config, tmp_path):
    out = tmp_path / "run"
    first = FakePipeline(fail_at=17)
    with pytest.raises(RuntimeError, match="simulated"):
        run_experiment(config, out, pipeline=first, progress=False)
    assert len(list((out / "cells").glob("*.json"))) == 17
    assert not list((out / "cells").glob(".*tmp"))  # no half-written record
    second = FakePipeline()
    counts = run_experiment(config, out, pipeline=second, progress=False)
    assert counts["cells_run"] == 60 - 17 and counts["cells_cached"] == 17
    assert not set(first.attacked) & set(second.attacked)
    assert not set(first.trained) & set(second.trained)  # no victim trained twice
    assert len(set(first.trained) | set(second.trained)) == 12
    # the victim interrupted mid-way is loaded from its checkpoint, not retrained
    assert second.loaded and set(second.loaded) <= set(first.trained)


def test_changed_option_reruns_only_the_affected_cells(config, tmp_path):
    out = tmp_path / "run"
    run_experiment(config, out, pipeline=FakePipeline(), progress=False, report=False)
    raw = dict(config.raw, attacks=[{"name": "knockoff", "budget": [100, 400, 800]}])
    fake = FakePipeline()
    counts = run_experiment(parse_config(raw), out, pipeline=fake, progress=False, report=False)
    assert counts == {"victims_trained": 0, "cells_run": 30, "cells_cached": 60}


def test_tables_and_report(config, tmp_path):
    out = tmp_path / "run"
    run_experiment(config, out, pipeline=FakePipeline(), progress=False)
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 60
    results = json.loads((out / "results.json").read_text())
    assert len(results["victims"]) == 12
    # mean ± std over the two seeds of one cell, against the formula the fake used
    cell = next(r for r in results["cells_summary"] if r["method"] == "divqat" and r["alpha"] == 2.0
                and r["direction"] == "reverse" and r["defense_label"] == "dcp(beta=1.0)" and r["budget"] == 400)
    errs = [0.3 + 0.04 + 0.1 - 0.04 + 0.003 * s for s in (0, 1)]
    assert cell["n"] == 2
    assert cell["adversary_error_mean"] == pytest.approx(statistics.mean(errs))
    assert cell["adversary_error_std"] == pytest.approx(statistics.stdev(errs))
    qat = next(r for r in results["cells_summary"] if r["method"] == "qat" and r["defense"] == "none"
               and r["budget"] == 100)
    assert qat["alpha"] == 0.0
    report = (out / "report.md").read_text()
    for png in ("error_vs_alpha.png", "kl_vs_alpha.png", "budget.png", "defense_tradeoff.png", "robustness.png"):
        assert (out / png).stat().st_size > 1000
        assert f"]({png})" in report
    # paired DivQAT - QAT delta: 0.02 * alpha = 4 points of adversary error in both seeds
    line = next(ln for ln in report.splitlines() if ln.startswith(
        "| divqat(alpha=2.0, direction=forward) | qat | none | knockoff | 100 | adversary_error | 2 | +4.00 |"))
    assert "2 of 2 seeds higher | established (higher) | +4.00 +4.00 |" in line


def test_report_command_rewrites_from_cells(config, tmp_path, capsys):
    import argparse

    from divqat.results import report_command

    parser = argparse.ArgumentParser()
    report_command.add_arguments(parser)
    out = tmp_path / "run"
    run_experiment(config, out, pipeline=FakePipeline(), progress=False, report=False)
    assert not (out / "report.md").exists()
    assert report_command.run(parser.parse_args([str(out)])) == 0
    assert (out / "report.md").is_file() and (out / "budget.png").is_file()
    printed = capsys.readouterr().out
    assert ("divqat(alpha=2.0, direction=forward) vs qat, knockoff@100, none: adversary_error +4.00 points "
            "(n = 2, 95 % CI +4.00 to +4.00; 2 of 2 seeds higher): established (higher).") in printed
    with pytest.raises(FileNotFoundError, match="not an experiment directory"):
        report_command.run(parser.parse_args([str(tmp_path / "nothing")]))
    # --no-plots: the same tables and report, with no plot drawn or linked
    tables_report = (out / "report.md").read_text().split("## Plots")[0]
    for png in out.glob("*.png"):
        png.unlink()
    assert report_command.run(parser.parse_args([str(out), "--no-plots"])) == 0
    assert not list(out.glob("*.png")) and ".png" not in (out / "report.md").read_text()
    assert (out / "report.md").read_text().startswith(tables_report)
    for argv, match in ((["--update", "docs", "--no-plots"], "--update: takes no"),
                        ([str(out / "results.csv"), "--out", str(tmp_path / "c.csv"), "--no-plots"], "--no-plots")):
        with pytest.raises(ValueError, match=match):
            report_command.run(parser.parse_args(argv))


@pytest.mark.parametrize("patch, match", [
    ({"methods": [{"name": "sgd"}]}, "unknown method"),
    ({"methods": [{"name": "divqat"}]}, "alpha"),
    ({"methods": [{"name": "divqat", "alpha": -1.0}]}, "alpha must be >= 0"),
    ({"methods": [{"name": "divqat", "alpha": 1.0, "direction": "sideways"}]}, "direction"),
    ({"methods": [{"name": "adv-fgsm"}]}, "eps"),
    ({"attacks": [{"name": "knockoff", "budget": 0}]}, "budget"),
    ({"attacks": [{"name": "knockoff", "budget": []}]}, "empty list"),
    ({"seeds": []}, "seeds"),
    ({"victim": {}}, "arch"),
    ({"colour": "red"}, "unknown top-level"),
])
def test_bad_configs(config, patch, match):
    with pytest.raises(ValueError, match=match):
        parse_config({**config.raw, **patch})


def test_missing_or_invalid_config_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_experiment_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = ")
    with pytest.raises(ValueError, match="invalid TOML"):
        load_experiment_config(bad)


def test_summary_of_single_seed_has_no_std():
    from divqat.results.aggregate import summarize
    from divqat.results.tables import fmt

    rows = [{"key": "a", "seed": 0, "method": "qat", "x": 0.5}, {"key": "b", "seed": 0, "method": "fp", "x": 1.0}]
    out = summarize(rows, ["x"])
    assert [(r["method"], r["x_mean"], r["x_std"], r["n"]) for r in out] == [("qat", 0.5, None, 1), ("fp", 1.0, None, 1)]
    assert fmt(out[0]["x_mean"], out[0]["x_std"], 100) == "50.00"  # never "± 0.00" for one seed
