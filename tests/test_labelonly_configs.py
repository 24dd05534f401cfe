"""The label-only study's stage configs: the baseline's cells keep their configuration keys
(so later stages adopt them with --reuse-stale and stay paired by seed), and the thieves stage
shares the baseline's victims and expands to the grid it documents."""
import hashlib

import pytest

from divqat.experiments.cells import attack_cells, attacked_victims, victim_cells
from divqat.experiments.config import load_experiment_config
from divqat.experiments.pipeline import LibraryPipeline

PAIRS = ("mnist_fmnist", "fmnist_mnist")
STAGE = "experiments/labelonly_mnist_pairs_full_{stage}.toml"  # one file per stage, both pairs

# config_key of the seed-0 victims (fp, qat, proxy-KL divqat) of each pair of
# experiments/labelonly_mnist_pairs_full_baseline.toml, computed at commit 180c777 from the
# per-pair file it was then (they name the folders the baseline run wrote under
# runs/labelonly_<pair>/victims)
BASELINE_VICTIMS = {
    "mnist_fmnist": ["834f4f08d8ac0c34", "42fbcdd6ad7babad", "a79ae376dcc758e2"],
    "fmnist_mnist": ["3ed35023bddc29db", "9fa481f744eed14d", "7010b2e4651b7b15"],
}
# sha256 (first 16 hex digits) of the newline-joined config_keys of the seed-0 attack cells of
# each pair of the baseline stage in grid order, computed at commit 180c777
# (e.g. QAT, no defense, Copycat at 5,000: 2ae35a02c3b3bc4f for mnist_fmnist)
BASELINE_ATTACKS = {
    "mnist_fmnist": "5fd28899d9c60d2c",
    "fmnist_mnist": "ab61394f58af7818",
}


def _attack_keys(config, seed):
    return [cell.config_key for victim in attacked_victims(config, seed) for cell in attack_cells(config, victim)]


def _digest(keys):
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


@pytest.mark.parametrize("pair", PAIRS)
def test_baseline_cells_keep_their_keys(pair):
    config = load_experiment_config(STAGE.format(stage="baseline"), pair)
    assert [cell.config_key for cell in victim_cells(config, 0)] == BASELINE_VICTIMS[pair]
    assert _digest(_attack_keys(config, 0)) == BASELINE_ATTACKS[pair]


@pytest.mark.parametrize("pair", PAIRS)
def test_thieves_stage_shares_the_baseline_victims(pair):
    baseline = load_experiment_config(STAGE.format(stage="baseline"), pair)
    thieves = load_experiment_config(STAGE.format(stage="thieves"), pair)
    assert thieves.seeds == baseline.seeds == list(range(10))
    for seed in thieves.seeds:
        assert ([c.config_key for c in victim_cells(thieves, seed)]
                == [c.config_key for c in victim_cells(baseline, seed)])
    LibraryPipeline(thieves, progress=False)  # every defense's and attack's parameters check out
    labels = {(cell.defense.label, cell.attack.label) for victim in attacked_victims(thieves, 0)
              for cell in attack_cells(thieves, victim)}
    defenses = {d for d, _ in labels}
    assert defenses == {"none", "dcp(beta=0.5)", "reverse_sigmoid(beta=0.3, gamma=0.2)", "am(nu=1000.0, tau=0.5)"}
    attacks = {a for _, a in labels}
    assert len(attacks) == 9 and len(labels) == 36
    assert "smoothing(aggregate=vote, budget=5000, epochs=20, k=4, momentum=0.9)" in attacks
    assert "copycat(arch=lenet_caffe, budget=5000, epochs=20, momentum=0.9)" in attacks
    assert "mixed(budget=5000, epochs=20, in_share=0.1, momentum=0.9)" in attacks
    assert "knockoff(budget=20000, epochs=20, momentum=0.9)" in attacks


@pytest.mark.parametrize("pair", PAIRS)
def test_formulations_thieves_stage_attacks_the_formulations_victims(pair):
    formulations = load_experiment_config(STAGE.format(stage="formulations"), pair)
    stage = load_experiment_config(STAGE.format(stage="formulations_thieves"), pair)
    thieves = load_experiment_config(STAGE.format(stage="thieves"), pair)
    assert stage.seeds == list(range(10))
    for seed in (0, 9):
        assert ([c.config_key for c in victim_cells(stage, seed)]
                == [c.config_key for c in victim_cells(formulations, seed)])
    LibraryPipeline(stage, progress=False)
    cells = {cell.config_key: cell for victim in attacked_victims(stage, 0) for cell in attack_cells(stage, victim)}
    assert len(cells) == 5 * 11 and {c.defense.label for c in cells.values()} == {"none"}
    attacks = {c.attack.label for c in cells.values()}
    assert "knockoff(budget=5000, epochs=20, momentum=0.9, sharpen=0.5)" in attacks
    assert "knockoff-adaptive(budget=5000, epochs=20, momentum=0.9)" in attacks
    # the thieves stage's undefended QAT and proxy-KL cells are the same cells
    shared = {k for victim in attacked_victims(thieves, 0) for cell in attack_cells(thieves, victim)
              if cell.defense.name == "none" for k in [cell.config_key]}
    assert len(shared) == 2 * 9 and shared <= set(cells)
