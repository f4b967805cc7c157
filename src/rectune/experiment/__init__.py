"""Experiments from a TOML file: data, split, models and arms, metrics, report.

``rectune run EXPERIMENT.toml --out DIR`` and :func:`run_experiment` are the entry
points; :mod:`rectune.experiment.config` documents the file format.
"""

from __future__ import annotations

from rectune.experiment.config import (
    ExperimentConfig,
    load_config,
    parse_config,
    resolve_model_class,
)
from rectune.experiment.runner import RESULTS_FORMAT, popularity_deciles, run_experiment

__all__ = [
    "RESULTS_FORMAT",
    "ExperimentConfig",
    "load_config",
    "parse_config",
    "popularity_deciles",
    "resolve_model_class",
    "run_experiment",
]
