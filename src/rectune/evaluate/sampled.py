"""Sampled-candidate ranking: rank each held-out positive against a few sampled negatives.

Our protocols rank the full catalogue (see :mod:`rectune.evaluate.ranking`).
Sampled metrics (1 positive + 99 or 100 random negatives, as in NCF and many
sequence-model papers) are provided only to compare with papers that report
them. They are *not* interchangeable with full-ranking metrics: Krichene &
Rendle (KDD 2020, "On Sampled Metrics for Item Recommendation") show that they
can even order models differently. Every key this module returns therefore
starts with ``"sampled_"`` and the output records the number of negatives.

Usage: draw negatives with :func:`sample_negatives`, score the positive and the
negatives with the model (``model.predict``), then call :func:`sampled_ranking`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from rectune._errors import DataError
from rectune.evaluate._validate import as_csr, as_float_1d, check_k

Ties = Literal["pessimistic", "optimistic", "average"]

SAMPLED_METRICS: tuple[str, ...] = ("hit_rate", "ndcg", "mrr", "auc")

_CHUNK_CELLS = 1 << 22  # random keys drawn per chunk of users in sample_negatives


def sample_negatives(
    seen: Any, n_negatives: int, *, users: Any = None, seed: int | np.random.Generator = 0
) -> np.ndarray:
    """``(n_users, n_negatives)`` distinct items per user, uniform among items not in ``seen``.

    ``seen``: sparse users x items; nonzero = not a negative (give every known
    positive of the user, train and test, or the negatives may hold positives).
    Exact uniform sampling without replacement: every unseen item gets a random
    key and the n smallest are taken (argpartition), processed in chunks of
    users so memory stays bounded. A user with fewer than ``n_negatives`` unseen
    items raises :class:`~rectune.DataError`.
    """
    n_neg = check_k(n_negatives, "n_negatives")
    s = as_csr(seen, "seen")
    if users is not None:
        u = np.asarray(users, dtype=np.int64)
        if u.ndim != 1 or (u.size and (u.min() < 0 or u.max() >= s.shape[0])):
            raise DataError(f"users must be 1-D indices in 0..{s.shape[0] - 1}")
        s = s[u]
    n, m = s.shape
    free = m - np.diff(s.indptr)
    if n and free.min() < n_neg:
        u0 = int(np.argmin(free))
        raise DataError(
            f"user row {u0} has only {free[u0]} unseen items, fewer than n_negatives={n_neg}"
        )
    rng = np.random.default_rng(seed)
    out = np.empty((n, n_neg), dtype=np.int64)
    step = max(1, _CHUNK_CELLS // max(m, 1))
    for lo in range(0, n, step):  # chunks of users, not one user at a time
        hi = min(n, lo + step)
        keys = rng.random((hi - lo, m))
        block = s[lo:hi]
        keys[np.repeat(np.arange(hi - lo), np.diff(block.indptr)), block.indices] = np.inf
        out[lo:hi] = np.argpartition(keys, n_neg - 1, axis=1)[:, :n_neg]
    return out


def sampled_rank(pos_scores: Any, neg_scores: Any, *, ties: Ties = "pessimistic") -> np.ndarray:
    """1-based rank of each positive among itself and its negatives (float when ties average).

    ``ties="pessimistic"`` (default) puts the positive below every negative with
    the same score, so a model that scores everything equally gets no credit;
    ``"optimistic"`` puts it above them; ``"average"`` takes the mean rank.
    """
    pos = as_float_1d(pos_scores, "pos_scores")
    neg = np.asarray(neg_scores, dtype=np.float64)
    if neg.ndim != 2 or neg.shape[0] != pos.shape[0]:
        raise DataError(
            f"neg_scores must be 2-D (n_cases, n_negatives) with {pos.shape[0]} rows, "
            f"got shape {neg.shape}"
        )
    if not np.isfinite(neg).all():
        r, c = np.argwhere(~np.isfinite(neg))[0]
        raise DataError(f"neg_scores[{r}, {c}] is {neg[r, c]}; scores must be finite")
    above = (neg > pos[:, None]).sum(axis=1)
    equal = (neg == pos[:, None]).sum(axis=1)
    if ties == "pessimistic":
        return (1 + above + equal).astype(np.float64)
    if ties == "optimistic":
        return (1 + above).astype(np.float64)
    if ties == "average":
        return 1.0 + above + equal / 2.0
    raise DataError(f"ties must be 'pessimistic', 'optimistic' or 'average', got {ties!r}")


def sampled_ranking_per_case(
    pos_scores: Any,
    neg_scores: Any,
    k: int = 10,
    metrics: Sequence[str] = SAMPLED_METRICS,
    *,
    ties: Ties = "pessimistic",
) -> dict[str, np.ndarray]:
    """Per-case (one positive each) sampled metrics, keyed ``"sampled_ndcg@10"``...

    With one relevant item at rank r: HitRate@k = [r <= k], NDCG@k =
    [r <= k] / log2(r + 1) (IDCG = 1), MRR@k = [r <= k] / r, and AUC = the
    share of negatives ranked below the positive, (n_neg - (r - 1)) / n_neg.
    """
    k = check_k(k)
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    for m in names:
        if m not in SAMPLED_METRICS:
            raise DataError(f"unknown sampled metric {m!r}; choose from {SAMPLED_METRICS}")
    rank = sampled_rank(pos_scores, neg_scores, ties=ties)
    n_neg = np.asarray(neg_scores).shape[1]
    inside = rank <= k
    out: dict[str, np.ndarray] = {}
    for m in names:
        if m == "hit_rate":
            v = inside.astype(np.float64)
        elif m == "ndcg":
            v = np.where(inside, 1.0 / np.log2(rank + 1.0), 0.0)
        elif m == "mrr":
            v = np.where(inside, 1.0 / rank, 0.0)
        else:
            v = (n_neg - (rank - 1.0)) / n_neg if n_neg else np.full(rank.shape, np.nan)
        out[f"sampled_{m}" if m == "auc" else f"sampled_{m}@{k}"] = v
    return out


def sampled_ranking(
    pos_scores: Any,
    neg_scores: Any,
    k: int = 10,
    metrics: Sequence[str] = SAMPLED_METRICS,
    *,
    ties: Ties = "pessimistic",
) -> dict[str, float]:
    """Means of :func:`sampled_ranking_per_case`, plus ``sampled_n_negatives``/``_n_cases``.

    The output is labelled: every key starts with ``sampled_``, so a sampled
    number can never be mistaken for a full-ranking one in a report.
    """
    per_case = sampled_ranking_per_case(pos_scores, neg_scores, k, metrics, ties=ties)
    out = {name: (float(v.mean()) if v.size else float("nan")) for name, v in per_case.items()}
    neg = np.asarray(neg_scores)
    out["sampled_n_negatives"] = float(neg.shape[1])
    out["sampled_n_cases"] = float(neg.shape[0])
    return out
