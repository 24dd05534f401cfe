"""Every shipped experiment config parses, and every victim and attack in it is accepted by
the library (the `divqat train` options, the attack functions' parameters) before any work."""
from pathlib import Path

import pytest

from divqat.experiments import load_experiment_config
from divqat.experiments.pipeline import LibraryPipeline

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.toml"))


def test_configs_are_shipped():
    names = {p.stem for p in CONFIGS}
    assert {"mnist_fmnist", "fmnist_mnist", "adversarial_mnist", "cifar10_cifar100"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_is_valid(path):
    config = load_experiment_config(path)
    assert config.methods and len(config.seeds) >= 1
    LibraryPipeline(config, progress=False)  # raises ValueError on any option the library refuses
