"""Click metrics: ROC AUC (global and per user) and log loss.

AUC is computed from ranks (the Mann-Whitney U statistic): with average ranks
for tied scores, a positive-negative pair with equal scores counts 1/2, which is
exactly what ``sklearn.metrics.roc_auc_score``'s trapezoidal rule gives.

GAUC (group AUC, Zhou et al., "Deep Interest Network", KDD 2018) averages the
per-user AUCs weighted by impressions: a global AUC rewards a model for
ranking *users* (active users click more), which a recommender never has to do.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy.stats import rankdata

from rectune._errors import DataError
from rectune.evaluate._validate import as_binary_labels, as_float_1d, same_length

Weighting = Literal["impressions", "clicks", "uniform"]


def auc(y_true: Any, y_score: Any) -> float:
    """ROC AUC = P(score of a random positive > score of a random negative), ties count 1/2.

    U = Σ ranks of positives − n_pos (n_pos + 1) / 2, AUC = U / (n_pos n_neg),
    with average ranks for ties. Needs both classes (else :class:`~rectune.DataError`).
    """
    y = as_binary_labels(y_true)
    s = as_float_1d(y_score, "y_score")
    same_length(y, s, "y_true", "y_score")
    n_pos = float(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise DataError(
            f"AUC needs both classes; y_true has {int(n_pos)} positives and {int(n_neg)} negatives"
        )
    r = rankdata(s, method="average")
    u = float(r[y == 1].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def auc_per_user(
    y_true: Any, y_score: Any, users: Any, *, n_users: int | None = None
) -> np.ndarray:
    """AUC of each user's own impressions, array of length ``n_users`` (default max(users)+1).

    NaN for users without rows or with only one class (AUC undefined there).
    Vectorised: one lexsort by (user, score); tied (user, score) runs get their
    average rank inside the user's block.
    """
    y = as_binary_labels(y_true)
    s = as_float_1d(y_score, "y_score")
    g = np.asarray(users)
    if g.ndim != 1 or (g.size and not np.issubdtype(g.dtype, np.integer)):
        raise DataError("users must be a 1-D array of user indices (ints)")
    same_length(y, s, "y_true", "y_score")
    same_length(y, g, "y_true", "users")
    g = g.astype(np.int64)
    if g.size and g.min() < 0:
        raise DataError(f"users holds a negative index {g.min()}")
    n = int(g.max()) + 1 if g.size else 0
    if n_users is not None:
        if g.size and n_users < n:
            raise DataError(f"n_users={n_users} but users holds index {n - 1}")
        n = int(n_users)
    if g.size == 0:
        return np.full(n, np.nan)
    order = np.lexsort((s, g))
    gs, ss, ys = g[order], s[order], y[order]
    m = gs.size
    new_run = np.ones(m, dtype=bool)
    new_run[1:] = (gs[1:] != gs[:-1]) | (ss[1:] != ss[:-1])
    run_id = np.cumsum(new_run) - 1
    run_start = np.flatnonzero(new_run)
    run_end = np.append(run_start[1:], m)  # exclusive
    new_group = np.ones(m, dtype=bool)
    new_group[1:] = gs[1:] != gs[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(m), 0))
    # average of 1-based ranks start+1 .. end inside the group
    rank = (run_start[run_id] + run_end[run_id] + 1) / 2.0 - group_start
    n_pos = np.bincount(gs, weights=ys, minlength=n)
    n_all = np.bincount(gs, minlength=n).astype(np.float64)
    n_neg = n_all - n_pos
    rank_pos = np.bincount(gs, weights=rank * ys, minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (rank_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    out[(n_pos == 0) | (n_neg == 0)] = np.nan
    return out


def gauc(
    y_true: Any, y_score: Any, users: Any, *, weighting: Weighting = "impressions"
) -> float:
    """Group AUC: Σ_u w_u AUC_u / Σ_u w_u over users with both classes.

    ``weighting``: ``"impressions"`` (w_u = rows of u, the DIN definition),
    ``"clicks"`` (positives of u) or ``"uniform"`` (w_u = 1).
    """
    per_user = auc_per_user(y_true, y_score, users)
    g = np.asarray(users, dtype=np.int64)
    n = per_user.size
    w: np.ndarray
    if weighting == "impressions":
        w = np.bincount(g, minlength=n).astype(np.float64)
    elif weighting == "clicks":
        w = np.bincount(g, weights=as_binary_labels(y_true), minlength=n)
    elif weighting == "uniform":
        w = np.ones(n)
    else:
        raise DataError(
            f"weighting must be 'impressions', 'clicks' or 'uniform', got {weighting!r}"
        )
    ok = ~np.isnan(per_user)
    if not ok.any():
        raise DataError("GAUC needs at least one user with both a positive and a negative")
    return float(np.sum(w[ok] * per_user[ok]) / np.sum(w[ok]))


def log_loss(y_true: Any, p: Any, *, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy −[y log p + (1−y) log(1−p)], p clipped to [eps, 1−eps].

    ``y_true`` may be 0/1 or soft labels in [0, 1]; ``p`` must be probabilities
    (apply a sigmoid to logits first). Clipping keeps one confident mistake
    from making the loss infinite.
    """
    y = as_float_1d(y_true, "y_true")
    q = as_float_1d(p, "p")
    same_length(y, q, "y_true", "p")
    if y.size == 0:
        raise DataError("y_true and p are empty")
    if not 0.0 < eps < 0.5:
        raise DataError(f"eps must be in (0, 0.5), got {eps}")
    for arr, name in ((y, "y_true"), (q, "p")):
        bad = (arr < 0) | (arr > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{name}[{i}] = {arr[i]} is outside [0, 1]")
    q = np.clip(q, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q)))
