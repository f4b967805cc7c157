"""``finetune(pretrained, new_data, config) -> model``: the family-independent part.

The engine never mutates the pre-trained model. It (1) copies it, (2) grows
the id maps with the users/items first seen in the new data
(:meth:`IdMap.extend`, so old indices never move), (3) carves the validation
slice of the *new* data used for early stopping, (4) optionally mixes in a
replay sample of old data, and (5) hands the prepared job to the handler of
the model's family (MF by SGD, ALS by anchored closed-form solves, KNN by
exact sufficient-statistics updates). The handler records what it did in
``model.meta_["finetune"]`` which is saved with the model.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from numba import njit
from rich.console import Console

from rectune._errors import DataError, RectuneError
from rectune.data.idmap import IdMap
from rectune.data.interactions import Interactions
from rectune.finetune._kernels_als import group_rows
from rectune.finetune.capabilities import check_config
from rectune.finetune.config import FinetuneConfig
from rectune.models.base import Recommender

_console = Console(stderr=True)


@dataclass
class Job:
    """Everything a family handler needs, prepared once by the engine."""

    pretrained: Recommender
    model: Recommender  # deep copy of ``pretrained`` with grown maps and base state
    fit: Interactions  # new data to train on (plus replay rows), in the grown maps
    valid: Interactions | None  # validation slice of the new data (never trained on)
    config: FinetuneConfig
    n_old_users: int
    n_old_items: int
    old_user_rows: np.ndarray  # bool per (grown) user row: existed and had training data
    old_item_rows: np.ndarray
    features: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    def say(self, msg: str) -> None:
        if self.config.verbose:
            _console.print(msg)


Handler = Callable[[Job], None]
_HANDLERS: list[tuple[type, Handler, bool]] = []


def register(cls: type, handler: Handler, *, validation: bool = True) -> None:
    """Route models of ``cls`` (and subclasses) to ``handler``; later registrations win.

    ``validation=False`` for families without epochs (KNN): every new row is
    handed over, in its original order, and no validation slice is held out.
    """
    _HANDLERS.insert(0, (cls, handler, validation))


def _handler_for(model: Recommender) -> tuple[Handler, bool]:
    from rectune.finetune import _families  # noqa: F401  (registers the handlers)

    for cls, handler, validation in _HANDLERS:
        if isinstance(model, cls):
            return handler, validation
    raise RectuneError(f"fine-tuning is not available for {type(model).__name__}; "
                       "see rectune.finetune.capability_table()")


def model_checksum(model: Recommender) -> str:
    """SHA-256 over a model's parameter groups and id maps: names a delta's base."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, arr in sorted(model.parameters().items()):
        a = np.ascontiguousarray(np.asarray(arr))
        h.update(name.encode())
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    h.update(str(model.user_map_.to_json()).encode())
    h.update(str(model.item_map_.to_json()).encode())
    return h.hexdigest()


def _grow_base_state(model: Recommender, umap: IdMap, imap: IdMap, new: Interactions) -> None:
    """New maps, seen pairs = old ∪ new, popularity = old + new counts."""
    old_seen = model.seen_
    n_u, n_i = len(umap), len(imap)
    indptr, indices = _union_rows(np.asarray(old_seen.indptr, dtype=np.int64),
                                  np.asarray(old_seen.indices, dtype=np.int64),
                                  np.asarray(new.user, dtype=np.int64),
                                  np.asarray(new.item, dtype=np.int64), n_u)
    model.seen_ = sp.csr_array((np.ones(len(indices), dtype=np.float32), indices, indptr),
                               shape=(n_u, n_i))
    pop = np.zeros(n_i, dtype=np.float32)
    pop[: len(model.item_popularity_)] = model.item_popularity_
    pop += np.bincount(new.item, minlength=n_i).astype(np.float32)
    model.item_popularity_ = pop
    model.user_map_, model.item_map_ = umap, imap


def _union_rows(indptr: np.ndarray, indices: np.ndarray, users: np.ndarray,
                items: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (sorted, unique column indices) of the old rows ∪ the new ``(user, item)`` pairs.

    The new pairs grouped by user (one counting sort, :func:`group_rows`), then a merge
    per row: ``O(nnz + m log d)`` (``d``: a user's new pairs), where scipy's
    ``old + new > 0`` sorts and compares the whole matrix — the biggest fixed cost of a
    small fine-tuning call.
    """
    new_ptr, new_items, _, _ = group_rows(users, items, np.zeros(len(users)), n_rows)
    return _merge_rows(indptr, indices, new_ptr, new_items, n_rows)


@njit(cache=True)
def _merge_rows(indptr: np.ndarray, indices: np.ndarray, new_ptr: np.ndarray,
                new_items: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Row by row, the sorted union of the old row's columns and the new ones."""
    n_old = len(indptr) - 1
    out_ptr = np.zeros(n_rows + 1, dtype=np.int64)
    out = np.empty(len(indices) + len(new_items), dtype=np.int64)
    w = 0
    for r in range(n_rows):
        new_r = np.sort(new_items[new_ptr[r]:new_ptr[r + 1]])
        a = indptr[r] if r < n_old else 0
        a_end = indptr[r + 1] if r < n_old else 0
        b, b_end = 0, len(new_r)
        last = -1
        while a < a_end or b < b_end:
            if b >= b_end or (a < a_end and indices[a] <= new_r[b]):
                v = indices[a]
                a += 1
            else:
                v = new_r[b]
                b += 1
            if v != last:
                out[w] = v
                w += 1
                last = v
        out_ptr[r + 1] = w
    return out_ptr, out[:w].copy()


def _present(idx: np.ndarray) -> np.ndarray:
    """The distinct indices in ``idx``, sorted (a bincount: indices are dense row numbers)."""
    return np.flatnonzero(np.bincount(idx)) if len(idx) else np.zeros(0, dtype=np.int64)


def _validation(data: Interactions, cfg: FinetuneConfig) -> tuple[Interactions,
                                                                   Interactions | None]:
    if not cfg.early_stopping or cfg.valid_fraction == 0 or cfg.epochs == 0:
        return data, None
    from rectune.data.protocols import temporal_validation_slice, validation_slice

    if len(data) < 10:
        return data, None
    if cfg.valid_mode == "temporal":
        if data.timestamp is None:
            raise DataError("valid_mode='temporal' needs timestamps in the new data")
        s = temporal_validation_slice(data, cfg.valid_fraction)
    else:
        s = validation_slice(data, cfg.valid_fraction, seed=cfg.valid_seed)
    return s.train, s.test


def _replay(fit: Interactions, old: Interactions | None, cfg: FinetuneConfig) -> Interactions:
    if cfg.replay == 0:
        return fit
    if old is None:
        raise RectuneError("replay > 0 needs the old training data: finetune(..., old_data=...)")
    n = min(len(old), round(cfg.replay * len(fit)))
    rows = (np.arange(n) if n == len(old) else  # all of it: no draw needed
            np.sort(np.random.default_rng(cfg.replay_seed).choice(len(old), n, replace=False)))
    o = old.take(rows).with_maps(fit.user_map, fit.item_map)
    ts = None if fit.timestamp is None or o.timestamp is None else \
        np.r_[fit.timestamp, o.timestamp]
    return Interactions.from_indices(np.r_[fit.user, o.user], np.r_[fit.item, o.item],
                                     np.r_[fit.value, o.value], fit.user_map, fit.item_map,
                                     timestamp=ts, kind=fit.kind,
                                     rating_scale=fit.rating_scale)


def finetune(
    pretrained: Recommender,
    new_data: Interactions,
    config: FinetuneConfig | dict[str, Any] | None = None,
    *,
    old_data: Interactions | None = None,
    features: Any = None,
) -> Recommender:
    """Adapt a pre-trained model to ``new_data``; returns a new model.

    Parameters
    ----------
    pretrained:
        A fitted rectune model; it is not modified.
    new_data:
        The new task's interactions. Ids may be new: their rows are appended.
    config:
        A :class:`FinetuneConfig` (or a dict of its fields).
    old_data:
        The pre-training data, needed only for ``replay`` (and used to report
        forgetting by callers).
    features:
        Side features for ``new_rows="features"`` / ``feature_reg`` (a
        ``UserFeatures``-style object, see the fine-tuning docs).
    """
    cfg = config if isinstance(config, FinetuneConfig) else FinetuneConfig(**(config or {}))
    pretrained._check_fitted()
    if not isinstance(new_data, Interactions):
        raise DataError(f"new_data must be Interactions, got {type(new_data).__name__}")
    if len(new_data) == 0:
        raise DataError("new_data is empty: nothing to fine-tune on")
    handler, uses_validation = _handler_for(pretrained)
    check_config(pretrained, cfg)

    umap = pretrained.user_map_.extend(new_data.user_map.decode(_present(new_data.user)))
    imap = pretrained.item_map_.extend(new_data.item_map.decode(_present(new_data.item)))
    data = new_data.with_maps(umap.extend(new_data.user_map.ids),
                              imap.extend(new_data.item_map.ids))
    # rows of ids only present in new_data's maps (not in its rows) are not grown
    data = Interactions.from_indices(data.user, data.item, data.value, umap, imap,
                                     timestamp=data.timestamp, kind=data.kind,
                                     rating_scale=data.rating_scale or pretrained.rating_scale_)
    fit, valid = _validation(data, cfg) if uses_validation else (data, None)
    fit = _replay(fit, old_data, cfg)

    model = copy.deepcopy(pretrained)
    n_old_u, n_old_i = pretrained.n_users, pretrained.n_items
    old_u = np.zeros(len(umap), dtype=bool)
    old_u[:n_old_u] = np.diff(pretrained.seen_.indptr) > 0
    old_i = np.zeros(len(imap), dtype=bool)
    old_i[:n_old_i] = pretrained.item_popularity_ > 0
    _grow_base_state(model, umap, imap, fit)
    job = Job(pretrained, model, fit, valid, cfg, n_old_u, n_old_i, old_u, old_i, features)
    fresh_users = int((~old_u[_present(fit.user)]).sum())
    fresh_items = int((~old_i[_present(fit.item)]).sum())
    job.info.update(fresh_users=fresh_users, fresh_items=fresh_items)
    job.say(f"fine-tuning {type(pretrained).__name__}: {len(fit):,} rows "
            f"({fresh_users} users and {fresh_items} items without pre-training data, "
            f"{len(umap) - n_old_u} new ids of users, {len(imap) - n_old_i} of items)"
            + (f", {len(valid):,} validation rows" if valid is not None else ""))
    handler(job)
    model = job.model  # a task change may have replaced it with a model of another class
    meta = dict(getattr(model, "meta_", {}) or {})
    meta["finetune"] = {
        "config": cfg.model_dump(mode="json"),
        "base_class": f"{type(pretrained).__module__}.{type(pretrained).__qualname__}",
        "base_checksum": model_checksum(pretrained),
        "n_new_rows": len(fit),
        "n_valid_rows": 0 if valid is None else len(valid),
        "new_users": len(umap) - n_old_u,
        "new_items": len(imap) - n_old_i,
        **job.info,
    }
    model.meta_ = meta
    return model
