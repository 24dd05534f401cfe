"""Adaptive misinformation (Kariyappa and Qureshi, CVPR 2020) as a defense of the experiment
runner: the misinformation model is trained once per seed on the victim's training data, cached,
reused by every AM cell of that seed, and the defended answers are the published blend
y = (1 - a) p + a softmax(f_mis(x)), a = sigmoid(nu (tau - max_k p_k)), computed here by hand."""
import json

import pytest
import torch
import torch.nn.functional as F

from divqat.cli import main
from divqat.data import load_dataset
from divqat.experiments import parse_config, run_experiment
from divqat.experiments.cells import CellCache, attack_cells, misinformation_cell, victim_cells
from divqat.experiments.frontier import main as frontier_main
from divqat.experiments.pipeline import LibraryPipeline
from divqat.results.frontier import frontier_rows
from divqat.train import load_config, load_victim
from divqat.utils import dataset_tensors

pytestmark = pytest.mark.usefixtures("one_thread")

RAW = {
    "name": "am", "seeds": [0],
    "data": {"victim": "digits", "queryset": "digits", "train_limit": 256, "test_limit": 96},
    "victim": {"arch": "smallcnn", "epochs": 6, "batch_size": 32},  # confident enough for tau to matter
    "quant": {"epochs": 1, "batch_size": 32},
    "methods": [{"name": "qat"}],
    "defenses": [{"name": "none"}, {"name": "am", "tau": [0.3, 0.8], "nu": 1000}],
    "attacks": [{"name": "knockoff", "budget": 32, "epochs": 1}],
}


def _by_hand(victim, misinformation, x, tau, nu):
    """The defended answers, from the two models' logits (float64)."""
    with torch.no_grad():
        p = F.softmax(victim(x).double(), dim=1)
        p_mis = F.softmax(misinformation(x).double(), dim=1)
    a = 1.0 / (1.0 + torch.exp(nu * (p.amax(dim=1, keepdim=True) - tau)))
    return p, (1 - a) * p + a * p_mis


def test_am_cells_train_one_misinformation_model_and_answer_with_it(tmp_path):
    out = tmp_path / "run"
    config = parse_config(RAW)
    counts = run_experiment(config, out, progress=False, report=False)
    assert counts == {"victims_trained": 2, "misinformation_models_trained": 1, "cells_run": 3, "cells_cached": 0}
    folders = list((out / "misinformation").glob("*/misinformation.json"))
    assert len(folders) == 1  # one model for the seed, shared by both tau settings
    mis_dir = folders[0].parent
    record = json.loads(folders[0].read_text())
    mis = misinformation_cell(config, 0)
    assert record["key"] == mis.key and mis_dir.name == f"seed0-{mis.key}"
    # the victim's data and architecture, the documented defaults, the victim's seed
    assert record["spec"] == {"data": {"victim": "digits", "train_limit": 256}, "arch": "smallcnn", "seed": 0,
                              "training": {"epochs": 5, "batch_size": 128, "lr": 1e-3, "optimizer": "adam"}}
    run = load_config(mis_dir)
    assert (run["method"], run["dataset"], run["arch"], run["seed"]) == ("misinformation", "digits", "smallcnn", 0)
    assert len((mis_dir / "log.jsonl").read_text().splitlines()) == 5  # five epochs

    victim_cell = victim_cells(config, 0)[1]  # the int8 QAT victim, as deployed
    victim = load_victim(CellCache(out).victim_dir(victim_cell.key), kind="auto")
    misinformation = load_victim(mis_dir, kind="float", victim_only=False)
    x, y = dataset_tensors(load_dataset("digits", "test", limit=96))
    cells = {c.defense.kwargs.get("tau"): c for c in attack_cells(config, victim_cell)}
    pipeline = LibraryPipeline(config, progress=False)
    l1 = {}
    for tau in (0.3, 0.8):
        cell = cells[tau]
        assert cell.misinformation == mis and cell.spec["misinformation"] == mis.config_key
        p, expected = _by_hand(victim, misinformation, x, tau, 1000.0)
        # the runner's defense, built from the cached folder, on the same queries
        defense = pipeline.build_defense(cell, CellCache(out).victim_dir(victim_cell.key), mis_dir)
        torch.testing.assert_close(defense(p.float(), x).double(), expected, atol=1e-6, rtol=1e-5)
        # what the attack cell recorded: mean L1 between clean and defended answers on the test set
        metrics = json.loads((out / "cells" / f"{cell.key}.json").read_text())["metrics"]
        l1[tau] = (expected - p).abs().sum(dim=1).mean().item()
        assert metrics["defense_l1"] == pytest.approx(l1[tau], rel=1e-4, abs=1e-6)
        assert metrics["victim_accuracy"] == pytest.approx((expected.argmax(dim=1) == y).double().mean().item())
    assert l1[0.8] > l1[0.3] > 0  # a higher threshold misinforms more queries

    # the cell record is plain JSON naming the setting, not the model; the frontier names it so
    for path in (out / "cells").glob("*.json"):
        assert "misinformation_model" not in path.read_text() and str(mis_dir) not in path.read_text()
    settings = {(r["defense"], r["setting"]) for r in frontier_rows([out])}
    assert settings == {("qat", ""), ("am", "nu=1000 tau=0.3"), ("am", "nu=1000 tau=0.8")}
    assert frontier_main(["table", str(out), "--out", str(tmp_path / "frontier"), "--no-plots"]) == 0
    assert "| am | nu=1000 tau=0.8 | 1 |" in (tmp_path / "frontier" / "frontier.md").read_text()

    mtime = folders[0].stat().st_mtime_ns
    assert run_experiment(parse_config(RAW), out, progress=False, report=False) == {
        "victims_trained": 0, "cells_run": 0, "cells_cached": 3}
    assert folders[0].stat().st_mtime_ns == mtime

    # a new tau setting reuses the cached model; a changed train_limit trains another one
    more = {**RAW, "defenses": [{"name": "adaptive_misinformation", "tau": 0.7}]}
    assert run_experiment(parse_config(more), out, progress=False, report=False) == {
        "victims_trained": 0, "cells_run": 1, "cells_cached": 0}
    assert len(list((out / "misinformation").glob("*/misinformation.json"))) == 1
    assert folders[0].stat().st_mtime_ns == mtime
    other = parse_config({**RAW, "data": {**RAW["data"], "train_limit": 128}})
    assert misinformation_cell(other, 0).key != mis.key


TOML = """
[data]
victim = "digits"
queryset = "digits"
train_limit = 64
[victim]
arch = "smallcnn"
epochs = 1
[[methods]]
name = "qat"
[[defenses]]
name = "am"
{defense}
[[attacks]]
name = "knockoff"
budget = 16
"""


@pytest.mark.parametrize("defense, words", [
    ("tau = [0.5, 1.5]", ("tau", "1.5")),
    ("tau = 0.5\ntua = 0.3", ("tua",)),
    ("nu = 10.0", ("needs tau",)),
    ("tau = 0.5\nmodel = 'runs/misinfo'", ("model", "trains the misinformation model")),
])
def test_bad_am_settings_refused_before_any_training(tmp_path, capsys, defense, words):
    config = tmp_path / "grid.toml"
    config.write_text(TOML.format(defense=defense))
    assert main(["experiment", str(config), "--out", str(tmp_path / "grid"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    for word in words:
        assert word in err[0]
    assert not list((tmp_path / "grid").glob("victims/*/*")) and not (tmp_path / "grid" / "misinformation").exists()


def test_reuse_stale_adopts_the_misinformation_model(tmp_path, monkeypatch):
    """Cells computed by other code are adopted whole: the victims, the attack cells and the
    misinformation model they answer through, so nothing is trained again and a later stage's
    AM cells answer through the very model of the earlier stage."""
    from divqat.experiments import cells
    from divqat.experiments.cells import grid_cells

    out = tmp_path / "run"
    config = parse_config(RAW)
    run_experiment(config, out, progress=False, report=False)
    monkeypatch.setattr(cells, "current_code", lambda: "other code")
    assert CellCache(out).adopt_stale(grid_cells(config)) == 2 + 1 + 3
    mis = misinformation_cell(config, 0)
    assert (out / "misinformation" / mis.key).is_symlink() and CellCache(out).misinformation_record(mis.key)
    counts = run_experiment(config, out, progress=False, report=False)
    assert counts == {"victims_trained": 0, "cells_run": 0, "cells_cached": 3}
