"""Recommendation models: baselines, neighbourhood CF, matrix factorisation, neural.

Every model follows :class:`~rectune.models.base.Recommender` (DESIGN.md, "Model").
"""

from __future__ import annotations

from rectune.models.als import ALS
from rectune.models.base import FitOptions, Recommender
from rectune.models.baseline import Baseline
from rectune.models.bpr import BPR
from rectune.models.click import ClickMF
from rectune.models.ease import EASE
from rectune.models.knn import ImplicitItemKNN, ItemKNN, UserKNN
from rectune.models.mf import NMF, SVD, SVDpp
from rectune.models.popularity import Popularity

__all__ = [
    "ALS",
    "BPR",
    "EASE",
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
