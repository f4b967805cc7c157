"""Per-user fold-in: a user's parameters solved from their history, no training run.

For biased MF (SVD) the user's bias and factors minimise, with item
parameters fixed,

    Σ_i (r_ui − μ − b_i − b_u − p_u·q_i)² + n_u·(reg_bu·b_u² + reg_pu·‖p_u‖²)

(the SGD objective's per-rating regularisation summed over the user's
``n_u`` ratings), a ridge regression in ``[b_u, p_u]`` solved in closed form.
For :class:`Baseline` only ``b_u`` is solved (its ALS shrinkage ``reg_u``).
Implicit ALS has its own exact confidence-weighted solve
(:meth:`rectune.models.ALS.fold_in`). Serving uses this for users who arrive
after training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rectune._errors import DataError, RectuneError
from rectune.models.base import Recommender, _topk


@dataclass(frozen=True)
class FoldedUser:
    """A folded-in user: bias (0 when the model has none) and factor vector."""

    bias: float
    factors: np.ndarray
    n_items: int


def _history(model: Recommender, items: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
    idx = model.item_map_.encode(np.atleast_1d(np.asarray(items)), missing="negative")
    vals = (np.ones(len(idx)) if values is None
            else np.atleast_1d(np.asarray(values, dtype=np.float64)))
    if len(vals) != len(idx):
        raise DataError(f"fold_in: {len(idx)} items but {len(vals)} values")
    if not np.all(np.isfinite(vals)):
        raise DataError("fold_in: values contain NaN or infinity")
    keep = idx >= 0  # items unknown to the model carry no information for it
    return idx[keep], vals[keep]


def fold_in(model: Recommender, items: Any, values: Any = None) -> FoldedUser:
    """Solve one user's parameters from raw item ids (and ratings) against fixed items."""
    from rectune.models.baseline import Baseline
    from rectune.models.mf_svd import SVD

    model._check_fitted()
    idx, vals = _history(model, items, values)
    n = len(idx)
    if isinstance(model, Baseline):
        mu = float(np.asarray(model.global_bias_).reshape(-1)[0])
        bu = float(np.sum(vals - mu - model.item_bias_[idx]) / (float(model.reg_u) + n)) \
            if n else 0.0
        return FoldedUser(bu, np.zeros(0, dtype=np.float32), n)
    if type(model) is SVD:
        lr_bu, lr_bi, lr_pu, lr_qi, reg_bu, reg_bi, reg_pu, reg_qi = model._rates()
        del lr_bu, lr_bi, lr_pu, lr_qi, reg_bi, reg_qi
        q = np.asarray(model.item_factors_, dtype=np.float64)[idx]
        k = q.shape[1]
        if n == 0:
            return FoldedUser(0.0, np.zeros(k, dtype=np.float32), 0)
        if model.biased:
            mu = float(np.asarray(model.global_bias_).reshape(-1)[0])
            x = np.column_stack([np.ones(n), q])
            y = vals - mu - np.asarray(model.item_bias_, dtype=np.float64)[idx]
            lam = n * np.r_[reg_bu, np.full(k, reg_pu)]
        else:
            x, y, lam = q, vals, n * np.full(k, reg_pu)
        w = np.linalg.solve(x.T @ x + np.diag(lam), x.T @ y)
        if model.biased:
            return FoldedUser(float(w[0]), w[1:].astype(np.float32), n)
        return FoldedUser(0.0, w.astype(np.float32), n)
    if hasattr(model, "fold_in"):
        return FoldedUser(0.0, np.asarray(model.fold_in(items, values), dtype=np.float32), n)
    raise RectuneError(f"fold-in is not available for {type(model).__name__}; "
                       "see rectune.finetune.capability_table()")


def recommend_history(model: Recommender, items: Any, values: Any = None, k: int = 10, *,
                      exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Top-k raw item ids and scores for a user known only by a history (fold-in)."""
    user = fold_in(model, items, values)
    q = np.asarray(getattr(model, "item_factors_", np.zeros((model.n_items, 0))),
                   dtype=np.float64)
    scores = q @ user.factors.astype(np.float64) if q.shape[1] else np.zeros(model.n_items)
    if hasattr(model, "item_bias_"):
        scores = scores + np.asarray(model.item_bias_, dtype=np.float64)
    block = scores[None, :].copy()
    if exclude_seen:
        idx, _ = _history(model, items, values)
        block[0, idx] = -np.inf
    top, s = _topk(block, min(k, model.n_items))
    ok = np.isfinite(s[0])
    return model.item_map_.decode(top[0][ok]), s[0][ok]
