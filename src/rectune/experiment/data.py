"""Load the experiment's data set (with an honest synthetic fallback) and split it.

Where MovieLens comes from, in order: ``$RECTUNE_DATA/<name>`` (a local copy in
GroupLens' layout), then the loader's own cache, then a checksummed download.
When none works (no network, no copy) and ``fallback = "synthetic"``, the run goes
on with the seeded MovieLens-shaped generator — and says so: the reason is printed,
``data.synthetic`` is true and the label reads "synthetic" in results and report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rectune._errors import DataError, RectuneError
from rectune.data.dataset import Dataset
from rectune.data.interactions import Interactions
from rectune.experiment.config import DataConfig, SplitConfig
from rectune.experiment.manifest import data_files_sha256, interactions_sha256

__all__ = ["LoadedData", "Parts", "load_data", "make_parts"]


@dataclass(eq=False)
class LoadedData:
    """A data set and what the results must say about it."""

    dataset: Dataset
    synthetic: bool
    label: str
    source: str | None
    fallback_reason: str | None = None

    def describe(self) -> dict[str, Any]:
        x = self.dataset.interactions
        files = data_files_sha256(self.source)
        return {
            "name": self.dataset.name, "label": self.label, "synthetic": self.synthetic,
            "source": self.source, "fallback_reason": self.fallback_reason,
            "n_ratings": len(x), "n_users": x.n_users, "n_items": x.n_items, "kind": x.kind,
            "rating_scale": list(x.rating_scale) if x.rating_scale else None,
            "checksums": {"interactions_sha256": interactions_sha256(x),
                          **{f"file:{k}": v for k, v in files.items()}},
            "info": {k: v for k, v in self.dataset.info.items()
                     if isinstance(v, str | int | float | bool) or v is None},
        }


def _synthetic(n: int, seed: int) -> Dataset:
    from rectune.data.synthetic import synthetic

    return synthetic(n, seed=seed)


def _movielens(name: str, path: Path | None) -> Dataset:
    from rectune.data.movielens import load_movielens

    return load_movielens(name, path=path) if path is not None else load_movielens(name)


def load_data(cfg: DataConfig, base_dir: Path | None = None,
              say: Any = None) -> LoadedData:
    """The configured data set, or the labelled synthetic fallback (see module docs).

    ``say`` is a callable for user-facing messages (the runner passes a console print).
    """
    say = say or (lambda msg: None)
    if cfg.synthetic is not None:
        ds = _synthetic(cfg.synthetic, cfg.synthetic_seed)
        return LoadedData(ds, True, f"synthetic ({cfg.synthetic:,} ratings, seed "
                                    f"{cfg.synthetic_seed})", None)
    if cfg.path is not None:
        from rectune.cli import load_source

        p = Path(os.path.expanduser(cfg.path))
        if not p.is_absolute() and base_dir is not None and not p.exists():
            p = base_dir / p
        ds = load_source(str(p))
        return LoadedData(ds, bool(ds.info.get("synthetic", False)), ds.name, str(p))
    name = str(cfg.name)
    if name.startswith("synthetic"):
        n = int(name.split(":", 1)[1]) if ":" in name else cfg.fallback_ratings
        ds = _synthetic(n, cfg.synthetic_seed)
        return LoadedData(ds, True, f"synthetic ({n:,} ratings)", None)
    env = os.environ.get("RECTUNE_DATA")
    local = Path(env) / name if env else None
    try:
        if local is not None and local.exists():
            ds = _movielens(name, local)
            return LoadedData(ds, False, name, str(local))
        ds = _movielens(name, None)
        src = ds.info.get("path") or ds.info.get("source")
        return LoadedData(ds, False, name, str(src) if src else None)
    except (RectuneError, OSError, ImportError) as exc:
        reason = f"{name} could not be loaded ({type(exc).__name__}: {exc})"
        if cfg.fallback != "synthetic":
            raise DataError(f"{reason}; set RECTUNE_DATA to a folder holding {name}/, or "
                            "allow fallback = \"synthetic\" in [data]") from None
    say(f"[bold yellow]data:[/] {reason}.\n      Set RECTUNE_DATA to a folder holding {name}/ "
        f"to use the real data. Falling back to the SYNTHETIC MovieLens-shaped set "
        f"({cfg.fallback_ratings:,} ratings); every result is labelled synthetic.")
    ds = _synthetic(cfg.fallback_ratings, cfg.synthetic_seed)
    return LoadedData(ds, True, f"synthetic ({cfg.fallback_ratings:,} ratings; fallback for "
                                f"{name})", None, reason)


@dataclass(eq=False)
class Parts:
    """The slices an experiment fits and evaluates on.

    ``staged`` splits (temporal, cross-domain) have ``pretrain`` and ``new``; ``train``
    is then their union (all data before the test period). Plain splits only have
    ``train`` and ``test``.
    """

    train: Interactions
    test: Interactions
    pretrain: Interactions | None = None
    new: Interactions | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def staged(self) -> bool:
        return self.pretrain is not None and self.new is not None and len(self.new) > 0


def _json_info(info: dict[str, Any]) -> dict[str, Any]:
    """Scalars of a split's info (row-position arrays are left out: they are long)."""
    out: dict[str, Any] = {}
    for k, v in info.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, str | int | float | bool) or v is None:
            out[k] = v
        elif isinstance(v, list | tuple) and all(isinstance(x, str | int | float) for x in v):
            out[k] = list(v)
    return out


def _union(a: Interactions, b: Interactions) -> Interactions:
    if a.user_map is b.user_map and a.item_map is b.item_map:
        ts = None if a.timestamp is None or b.timestamp is None \
            else np.r_[a.timestamp, b.timestamp]
        return Interactions.from_indices(
            np.r_[a.user, b.user], np.r_[a.item, b.item], np.r_[a.value, b.value],
            a.user_map, a.item_map, timestamp=ts, kind=a.kind, rating_scale=a.rating_scale)
    return a.concat(b)


def make_parts(cfg: SplitConfig, ds: Dataset) -> Parts:
    """Split the data as configured; the result's ``info`` is JSON-safe."""
    from rectune.data import split as S
    from rectune.data.protocols import PRESETS, XDomainSplit

    x = ds.interactions
    if cfg.protocol is not None:
        name = cfg.protocol
        if name not in PRESETS:
            raise DataError(f"[split] protocol {name!r} is not a preset; presets: "
                            f"{', '.join(sorted(PRESETS))}")
        if name in ("ml100k_5fold", "ml100k_cold"):
            raise DataError(f"[split] protocol {name!r} yields several splits or needs an "
                            "argument; `rectune run` takes one train/test split: use "
                            "rectune.evaluate.protocols.cross_validate / cold_user instead")
        res = PRESETS[name](ds) if name == "ml100k_xdomain" else PRESETS[name](x)
        method = name
    elif cfg.method == "random":
        res, method = S.random_split(x, cfg.test_fraction, seed=cfg.seed), "random"
    elif cfg.method == "user":
        res, method = S.user_holdout(x, cfg.test_fraction, seed=cfg.seed), "user"
    elif cfg.method == "last":
        res, method = S.leave_last_n(x, 1), "last"
    else:
        res = S.temporal_split(x, train_fraction=cfg.train_fraction,
                               new_fraction=cfg.new_fraction,
                               test_fraction=None if cfg.train_fraction else cfg.test_fraction)
        method = "temporal"
    info: dict[str, Any] = {"protocol": cfg.protocol, "method": method}
    if isinstance(res, S.TemporalSplit):
        info.update(_json_info(res.info))
        info["sizes"] = {"pretrain": len(res.pretrain), "new": len(res.new),
                         "test": len(res.test)}
        if len(res.new) == 0:
            return Parts(res.pretrain, res.test, info=info)
        train = res.to_split(new_as="train").train
        return Parts(train, res.test, res.pretrain, res.new, info)
    if isinstance(res, XDomainSplit):
        info.update(_json_info(res.info))
        info["sizes"] = {"pretrain": len(res.source), "new": len(res.target_train),
                         "test": len(res.target_test)}
        return Parts(_union(res.source, res.target_train), res.target_test, res.source,
                     res.target_train, info)
    if isinstance(res, S.Split):
        info.update(_json_info(res.info))
        info["sizes"] = {"train": len(res.train), "test": len(res.test)}
        return Parts(res.train, res.test, info=info)
    raise DataError(f"[split] {method!r} returned {type(res).__name__}, not one train/test split")
