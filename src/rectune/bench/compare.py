"""Paired comparisons between arms on the same test set, resampling test *users*.

A test set's rows are not independent: one user's ratings share that user's taste
and the model's error on them. Every interval here is a bootstrap over test users
(all of a drawn user's rows go in together), paired (both arms are scored on the same
resample), so "fine-tuning beats scratch" means it beats it for this population of
users, not for this particular bag of rows.

* :func:`paired_users` — difference of an aggregate of per-row values (RMSE from
  squared errors, mean log-loss) with its 95% interval, plus the p-value of
  :func:`rectune.evaluate.paired_test` on the per-user means;
* :func:`paired_auc` — difference of global AUC (not additive: recomputed on each
  resample, a loop over replicates, not rows);
* :func:`paired_per_user` — per-user metrics (NDCG@10) through ``paired_test``;
* :func:`pooled_users` — the same over several runs of a task on one test set (e.g. a
  learning curve's fractions × seeds): the mean of the runs' differences, with one
  resample of test users shared by every run;
* :func:`seed_interval` — mean and 95% t-interval over seeds (learning curves).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy import stats as st

from rectune.evaluate.clicks import auc
from rectune.evaluate.stats import paired_test

__all__ = ["paired_auc", "paired_per_user", "paired_users", "pooled_users", "seed_interval",
           "verdict"]

Aggregate = Literal["rmse", "mean"]
_CHUNK = 1 << 22


def _agg(sums: np.ndarray, counts: np.ndarray, how: Aggregate) -> np.ndarray:
    m = sums / np.maximum(counts, 1)
    return np.sqrt(m) if how == "rmse" else m


def paired_users(
    users: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    *,
    how: Aggregate = "rmse",
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """A − B for an aggregate of per-row values (``how="rmse"``: √mean of squared errors).

    The interval resamples users with replacement (vectorised over replicates via
    per-user sums); ``p_value`` comes from the same replicates (share of centred
    replicates at least as far from 0 as the observed delta), so it agrees with the
    interval. ``per_user_test`` adds :func:`rectune.evaluate.paired_test` on per-user
    means (MSE or mean loss per user: each user weighs the same there).
    """
    uniq, inv = np.unique(np.asarray(users), return_inverse=True)
    sa = np.bincount(inv, weights=a, minlength=len(uniq))
    sb = np.bincount(inv, weights=b, minlength=len(uniq))
    n = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
    out = _resample(sa[None], sb[None], n, how=how, n_boot=n_boot, seed=seed)
    out["resampling"] = "test users (paired bootstrap)"
    if len(uniq) >= 2:
        pt = paired_test(sa / n, sb / n, n_boot=n_boot, seed=seed)
        out["per_user_test"] = {"method": "rectune.evaluate.paired_test (bootstrap)",
                                "mean_delta": pt.mean_diff, "ci": [pt.ci_low, pt.ci_high],
                                "p_value": pt.p_value}
    return out


def pooled_users(
    users: np.ndarray,
    runs_a: Sequence[np.ndarray],
    runs_b: Sequence[np.ndarray],
    *,
    how: Aggregate = "rmse",
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean over runs of aggregate(A_r) − aggregate(B_r), all runs on the same test rows.

    A task run over fractions × seeds asks one question per run and, over them all,
    one more: *on this task*, is A worse than B? Each run's difference is taken as in
    :func:`paired_users` and the runs' differences are averaged; the interval
    resamples test users once per replicate for every run together (a user drawn is
    drawn in all runs), so the runs' shared test users are not counted as independent.
    ``runs_a[r]``/``runs_b[r]``: per-row values of run ``r`` aligned with ``users``.
    """
    if len(runs_a) != len(runs_b) or not runs_a:
        raise ValueError(f"need as many A runs as B runs (>= 1), got {len(runs_a)} and "
                         f"{len(runs_b)}")
    uniq, inv = np.unique(np.asarray(users), return_inverse=True)
    nu = len(uniq)
    if any(len(x) != len(inv) for x in (*runs_a, *runs_b)):
        raise ValueError("every run must hold one value per test row")
    sa = np.stack([np.bincount(inv, weights=x, minlength=nu) for x in runs_a])  # runs × users
    sb = np.stack([np.bincount(inv, weights=x, minlength=nu) for x in runs_b])
    n = np.bincount(inv, minlength=nu).astype(np.float64)
    out = _resample(sa, sb, n, how=how, n_boot=n_boot, seed=seed)
    out["resampling"] = "test users (paired bootstrap, one resample for every run)"
    return {**out, "n_runs": len(runs_a)}


def _resample(sa: np.ndarray, sb: np.ndarray, n: np.ndarray, *, how: Aggregate, n_boot: int,
              seed: int) -> dict[str, Any]:
    """Mean over runs of aggregate(A_r) − aggregate(B_r) from per-user sums (runs × users),
    with the percentile interval and p-value of one user resample shared by every run."""
    nu = len(n)
    tot = np.array([n.sum()])
    point = float(np.mean(_agg(sa.sum(axis=1), tot, how) - _agg(sb.sum(axis=1), tot, how)))
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    step = max(1, _CHUNK // max(nu * len(sa), 1))
    for lo in range(0, n_boot, step):  # blocks of replicates, never a loop over rows
        hi = min(n_boot, lo + step)
        idx = rng.integers(0, nu, size=(hi - lo, nu))
        nn = n[idx].sum(axis=1)
        da = _agg(sa[:, idx].sum(axis=2), nn, how) - _agg(sb[:, idx].sum(axis=2), nn, how)
        diffs[lo:hi] = da.mean(axis=0)
    ci_lo, ci_hi = np.quantile(diffs, [0.025, 0.975])
    tol = 1e-12 * max(1.0, abs(point))
    p = (1.0 + float(np.sum(np.abs(diffs - point) >= abs(point) - tol))) / (n_boot + 1.0)
    return {"delta": point, "ci": [float(ci_lo), float(ci_hi)], "p_value": min(1.0, p),
            "n_users": nu, "n_rows": int(n.sum()), "n_boot": n_boot}


def paired_auc(
    users: np.ndarray,
    y: np.ndarray,
    score_a: np.ndarray,
    score_b: np.ndarray,
    *,
    n_boot: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """AUC(A) − AUC(B) with a paired bootstrap over users; p from the centred replicates."""
    y = np.asarray(y, dtype=np.float64)
    point = auc(y, score_a) - auc(y, score_b)
    order = np.argsort(users, kind="stable")
    uu = np.asarray(users)[order]
    starts = np.flatnonzero(np.r_[True, uu[1:] != uu[:-1]])
    sizes = np.diff(np.r_[starts, len(uu)])
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):  # AUC is not additive over users: recompute per replicate
        pick = rng.integers(0, len(starts), size=len(starts))
        lens = sizes[pick]
        rows = order[np.repeat(starts[pick] - np.r_[0, np.cumsum(lens)[:-1]], lens)
                     + np.arange(lens.sum())]
        yy = y[rows]
        if yy.min() == yy.max():
            continue
        diffs.append(auc(yy, score_a[rows]) - auc(yy, score_b[rows]))
    d = np.asarray(diffs)
    lo, hi = np.quantile(d, [0.025, 0.975])
    p = (1.0 + float(np.sum(np.abs(d - point) >= abs(point)))) / (len(d) + 1.0)
    return {"delta": float(point), "ci": [float(lo), float(hi)], "p_value": min(1.0, p),
            "n_users": len(starts), "n_rows": len(y),
            "resampling": "test users (paired bootstrap)", "n_boot": len(d)}


def paired_per_user(a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000,
                    seed: int = 0) -> dict[str, Any]:
    """Mean per-user A − B (NaN users dropped) by :func:`rectune.evaluate.paired_test`."""
    pt = paired_test(a, b, n_boot=n_boot, seed=seed)
    return {"delta": pt.mean_diff, "ci": [pt.ci_low, pt.ci_high], "p_value": pt.p_value,
            "n_users": pt.n, "resampling": "test users (paired bootstrap)", "n_boot": n_boot}


def seed_interval(values: Any) -> dict[str, Any]:
    """Mean and 95% t-interval over seeds (the learning curves' band); one seed: no band."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    m = float(x.mean())
    if x.size < 2:
        return {"mean": m, "lo": m, "hi": m, "n": 1}
    half = float(st.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return {"mean": m, "lo": m - half, "hi": m + half, "n": int(x.size)}


def verdict(ci: list[float] | tuple[float, float], *, lower_is_better: bool) -> str:
    """``"better"``, ``"worse"`` or ``"no significant difference"`` for A − B's interval."""
    lo, hi = float(ci[0]), float(ci[1])
    if hi < 0:
        return "better" if lower_is_better else "worse"
    if lo > 0:
        return "worse" if lower_is_better else "better"
    return "no significant difference"
