"""Recommendation models: baselines, neighbourhood CF, matrix factorisation, neural."""

from __future__ import annotations

from rectune.models.base import FitOptions, Recommender
from rectune.models.popularity import Popularity

__all__ = ["FitOptions", "Popularity", "Recommender"]
