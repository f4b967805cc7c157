"""Which split each task uses: PROTOCOLS.md's presets on MovieLens, the same recipes elsewhere.

On MovieLens (item genres present) the tasks use the named presets of
:mod:`rectune.data.protocols` (``ml100k_temporal``, ``ml100k_xdomain``, ``ml100k_cold``),
so the figures are comparable with everything else quoted on ML-100K. On a
synthetic set with two item domains the cross-domain task splits by the
generator's ``domain`` column with the same carving (20% target test with seed 0,
nested target-train subsets per seed); the other tasks use the generic splits the
presets are built from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rectune._errors import DataError
from rectune.data.dataset import Dataset
from rectune.data.protocols import (
    ML100K_SOURCE_GENRES,
    ML100K_TARGET_GENRES,
    XDomainSplit,
    ml100k_cold,
    ml100k_temporal,
    ml100k_xdomain,
)
from rectune.data.split import Split, TemporalSplit, cold_user_split, cross_domain_split

__all__ = ["Protocols", "protocols_for"]


def _floor(fraction: float, n: int) -> int:
    """``floor(fraction * n)`` robust to binary float error (the splits' convention)."""
    return math.floor(round(fraction * n, 6))


@dataclass(frozen=True)
class Protocols:
    """The split recipes of one data set: ``"movielens"``, ``"synthetic"`` or ``"generic"``."""

    kind: str
    names: dict[str, str]

    def temporal(self, ds: Dataset) -> TemporalSplit:
        """Oldest 70% pre-train, next 15% new, newest 15% test (stable time sort)."""
        return ml100k_temporal(ds)

    def xdomain(self, ds: Dataset, fraction: float, seed: int) -> XDomainSplit:
        """Source / target-train (``fraction`` of the non-test target rows) / target-test."""
        if self.kind == "movielens":
            return ml100k_xdomain(ds, fraction, seed)
        if self.kind == "synthetic":
            return _domain_xdomain(ds, fraction, seed)
        raise DataError(f"data set {ds.name!r} has neither item genres nor domains: the "
                        "cross-domain task cannot split it")

    def cold(self, ds: Dataset, k: int) -> Split:
        """20% of users cold with ``k`` support ratings; query = their ratings 6 onward."""
        if self.kind == "movielens":
            return ml100k_cold(ds, k)
        return cold_user_split(ds.interactions, cold_fraction=0.2, n_support=k, seed=0,
                               query_start=5)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.names}


def protocols_for(ds: Dataset) -> Protocols:
    """MovieLens presets when items carry genres; the generator's recipes on synthetic data."""
    feats = ds.item_features
    if ds.synthetic:
        return Protocols("synthetic", {
            "temporal": "temporal_split(train 0.70, new 0.15) (= ml100k_temporal's recipe)",
            "xdomain": "item domain 0 -> domain 1; target test 20% (seed 0), nested "
                       "target-train fractions per seed (= ml100k_xdomain's carving)",
            "cold": "cold_user_split(cold 0.2, seed 0, query from rating 6) "
                    "(= ml100k_cold's recipe)"})
    if feats is not None and "genres" in feats.columns:
        return Protocols("movielens", {
            "temporal": "ml100k_temporal", "xdomain": "ml100k_xdomain (source "
            + "/".join(ML100K_SOURCE_GENRES) + ", target " + "/".join(ML100K_TARGET_GENRES)
            + ")", "cold": "ml100k_cold"})
    return Protocols("generic", {
        "temporal": "temporal_split(train 0.70, new 0.15)",
        "xdomain": "n/a (no item genres or domains to split by)",
        "cold": "cold_user_split(cold 0.2, seed 0, query from rating 6)"})


def _domain_xdomain(ds: Dataset, fraction: float, seed: int) -> XDomainSplit:
    """``ml100k_xdomain``'s carving over the synthetic generator's item domains (0 -> 1)."""
    if not 0.0 < float(fraction) <= 1.0:
        raise DataError(f"target fraction must be in (0, 1], got {fraction!r}")
    xd = cross_domain_split(ds, attribute="domain", source_values=[0], target_values=[1])
    target_rows = xd.info["target_rows"]
    n = len(target_rows)
    perm = np.random.default_rng(0).permutation(n)
    n_test = _floor(0.2, n)
    test_rows = np.sort(target_rows[perm[:n_test]])
    rest = np.sort(target_rows[perm[n_test:]])
    m = len(rest) if fraction >= 1.0 else _floor(fraction, len(rest))
    if m == 0 or n_test == 0:
        raise DataError(f"target fraction {fraction} of {len(rest)} target ratings leaves no "
                        "training rows")
    train_rows = np.sort(rest[np.random.default_rng(seed).permutation(len(rest))[:m]])
    data = ds.interactions
    info = {**xd.info, "protocol": "synthetic_xdomain", "target_fraction": float(fraction),
            "seed": seed, "n_target_test": len(test_rows), "n_target_train": m}
    return XDomainSplit(xd.source, data.take(train_rows), data.take(test_rows), info)
