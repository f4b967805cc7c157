"""Recommendation models: baselines, neighbourhood CF, matrix factorisation, neural.

Every model follows :class:`~rectune.models.base.Recommender` (DESIGN.md, "Model").
"""

from __future__ import annotations

from rectune.models.base import FitOptions, Recommender
from rectune.models.baseline import Baseline
from rectune.models.click import ClickMF
from rectune.models.knn import ImplicitItemKNN, ItemKNN, UserKNN
from rectune.models.mf import NMF, SVD, SVDpp
from rectune.models.popularity import Popularity

__all__ = [
    "NMF",
    "SVD",
    "Baseline",
    "ClickMF",
    "FitOptions",
    "ImplicitItemKNN",
    "ItemKNN",
    "Popularity",
    "Recommender",
    "SVDpp",
    "UserKNN",
]
