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

from dataclasses import dataclass
from typing import Any

from rectune._errors import DataError
from rectune.data.dataset import Dataset
from rectune.data.protocols import (
    ML100K_SOURCE_GENRES,
    ML100K_TARGET_GENRES,
    XDomainSplit,
    carve_target,
    ml100k_cold,
    ml100k_temporal,
    ml100k_xdomain,
)
from rectune.data.split import Split, TemporalSplit, cold_user_split, cross_domain_split

__all__ = ["Protocols", "protocols_for"]


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
    xd = cross_domain_split(ds, attribute="domain", source_values=[0], target_values=[1])
    return carve_target(ds, xd, fraction, seed, "synthetic_xdomain")
