"""A loaded data set: interactions plus side-feature tables and named folds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rectune.data.interactions import Interactions


@dataclass(frozen=True, eq=False)
class Dataset:
    """Interactions with the user/item feature tables that describe them.

    ``user_features`` / ``item_features`` are DataFrames indexed by *raw* id
    (the same ids as the interactions' maps); multi-valued fields such as
    genres are columns of Python lists. ``folds`` holds predefined splits as
    ``name -> (train_rows, test_rows)`` positions into ``interactions`` (e.g.
    ML-100K's ``u1``..``u5``, ``ua``, ``ub``). ``info`` records provenance
    (name, source path or URL, checksums, whether the data is synthetic).
    """

    name: str
    interactions: Interactions
    user_features: pd.DataFrame | None = None
    item_features: pd.DataFrame | None = None
    folds: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        return bool(self.info.get("synthetic", False))

    def fold(self, name: str) -> tuple[Interactions, Interactions]:
        """``(train, test)`` of a predefined fold."""
        if name not in self.folds:
            from rectune._errors import DataError

            raise DataError(f"data set {self.name!r} has no fold {name!r}; "
                            f"available: {sorted(self.folds)}")
        tr, te = self.folds[name]
        return self.interactions.take(tr), self.interactions.take(te)

    def __repr__(self) -> str:
        uf = None if self.user_features is None else list(self.user_features.columns)
        itf = None if self.item_features is None else list(self.item_features.columns)
        return (f"Dataset({self.name!r}, {self.interactions!r}, user_features={uf}, "
                f"item_features={itf}, folds={sorted(self.folds)})")
