"""Popularity: the ranking baseline every model must beat."""

from __future__ import annotations

from typing import Any

import numpy as np

from rectune._errors import DataError
from rectune.data.interactions import Interactions
from rectune.models.base import FitOptions, Recommender


class Popularity(Recommender):
    """Ranks items by how many training users interacted with them.

    ``predict`` returns the item's popularity (count, or share of users when
    ``normalize=True``), so it can be used as a score in click/ranking metrics.
    """

    family = "baseline"
    predicts_ratings = False

    def __init__(self, normalize: bool = False) -> None:
        self.normalize = normalize

    def _validate_params(self) -> None:
        if not isinstance(self.normalize, bool):
            raise DataError(f"normalize must be a bool, got {self.normalize!r}")

    def _fit(self, train: Interactions, features: Any, valid: Interactions | None,
             options: FitOptions) -> None:
        counts = train.item_counts().astype(np.float64)
        if self.normalize:
            counts /= max(train.n_users, 1)
        self.item_score_ = counts

    def parameters(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        return {"item_score": self.item_score_}

    def _predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return self.item_score_[i]

    def _predict_unknown(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        out = np.zeros(len(u))
        ok = i >= 0
        out[ok] = self.item_score_[i[ok]]
        return out

    def _score(self, u: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_score_, (len(u), self.n_items))

    def _score_unknown_user(self, n: int) -> np.ndarray:
        return self._score(np.zeros(n, dtype=np.int64))
