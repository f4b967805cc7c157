"""Recommendation models: baselines, neighbourhood CF, matrix factorisation, neural.

Every model follows :class:`~rectune.models.base.Recommender` (DESIGN.md, "Model").
"""

from __future__ import annotations

from typing import Any

from rectune.models.als import ALS
from rectune.models.base import FitOptions, Recommender
from rectune.models.baseline import Baseline
from rectune.models.bpr import BPR
from rectune.models.click import ClickMF
from rectune.models.ease import EASE
from rectune.models.knn import ImplicitItemKNN, ItemKNN, UserKNN
from rectune.models.mf import NMF, SVD, SVDpp
from rectune.models.popularity import Popularity
from rectune.models.rp3beta import RP3beta

#: PyTorch models, imported on first use so ``import rectune.models`` stays torch-free
_NEURAL = {"GMF": "ncf", "MLP": "ncf", "NeuMF": "ncf", "DeepFM": "deepfm",
           "Caser": "caser", "GRU4Rec": "gru4rec"}


def __getattr__(name: str) -> Any:
    if name in _NEURAL:
        import importlib

        return getattr(importlib.import_module(f"rectune.models.neural.{_NEURAL[name]}"), name)
    raise AttributeError(f"module 'rectune.models' has no attribute {name!r}")


__all__ = [
    "ALS",
    "BPR",
    "EASE",
    "GMF",
    "MLP",
    "NMF",
    "SVD",
    "Baseline",
    "Caser",
    "ClickMF",
    "DeepFM",
    "FitOptions",
    "GRU4Rec",
    "ImplicitItemKNN",
    "ItemKNN",
    "NeuMF",
    "Popularity",
    "RP3beta",
    "Recommender",
    "SVDpp",
    "UserKNN",
]
