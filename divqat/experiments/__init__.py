"""Config-driven experiment grids (train -> convert -> black box (+defense) -> attack ->
metrics), cached per cell; their tables, plots and report are :mod:`divqat.results`.

``run_experiment`` is imported on first use: the runner writes its tables through
:mod:`divqat.results`, which reads the cell cache of this package, so importing the runner
here would make ``import divqat.results`` import itself half-initialised."""
from .config import ExperimentConfig, load_experiment_config, load_experiment_configs, parse_config, parse_configs

__all__ = ["ExperimentConfig", "load_experiment_config", "load_experiment_configs", "parse_config", "parse_configs",
           "run_experiment"]


def __getattr__(name):
    if name == "run_experiment":
        from .runner import run_experiment

        return run_experiment
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
