"""Config-driven experiment grids (train -> convert -> black box (+defense) -> attack ->
metrics), cached per cell, with result tables, plots and a Markdown report."""
from .config import ExperimentConfig, load_experiment_config, parse_config
from .report import write_report
from .runner import run_experiment

__all__ = ["ExperimentConfig", "load_experiment_config", "parse_config", "run_experiment", "write_report"]
