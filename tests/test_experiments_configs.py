"""Every shipped experiment config parses, and every victim and attack in it is accepted by
the library (the `divqat train` options, the attack functions' parameters) before any work;
the files with dataset pairs give every cell the configuration key of the per-pair file they
replaced (tests/pair_config_keys.json, recorded from those files)."""
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from divqat.experiments import load_experiment_configs
from divqat.experiments.cells import grid_cells
from divqat.experiments.pipeline import LibraryPipeline

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "experiments").glob("*.toml"))
PINNED = json.loads((Path(__file__).with_name("pair_config_keys.json")).read_text())["files"]


def test_configs_are_shipped():
    names = {p.stem for p in CONFIGS}
    assert {"mnist_pairs", "mnist_pairs_cpu", "adversarial_mnist", "cifar10_cifar100"} <= names
    assert not any((ROOT / "experiments" / info["was"]).exists()  # replaced, not kept beside
                   for pairs in PINNED.values() for info in pairs.values())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_is_valid(path):
    for config in load_experiment_configs(path):
        assert config.methods and len(config.seeds) >= 1
        LibraryPipeline(config, progress=False)  # raises ValueError on any option the library refuses


def _digest(config, seed):
    keys = [cell.config_key for cell in grid_cells(dataclasses.replace(config, seeds=[seed]))]
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pairs_keep_the_cell_keys_of_the_files_they_replaced(name):
    configs = {c.pair: c for c in load_experiment_configs(ROOT / "experiments" / name)}
    assert sorted(configs) == sorted(PINNED[name])
    for pair, info in PINNED[name].items():
        config = configs[pair]
        # the run records its config as configs/<name>.json: the replaced file's name (the full
        # grids' names were free text, now the pair's)
        assert config.name == (Path(info["was"]).stem if name != "mnist_pairs.toml" else pair)
        assert {str(seed): _digest(config, seed) for seed in config.seeds} == info["seeds"], info["was"]
