"""Top-N ranking metrics over full-ranking recommendation lists.

Inputs
------
``top_items``: int array ``(n_users, L)``, row u = the items recommended to user
u, best first; ``-1`` pads lists shorter than L. Metrics @k look at the first k
columns; when ``k > L`` the missing positions count as misses (a short list is
not rewarded: Precision@k is hits/k).

``truth``: scipy sparse ``(n_users, n_items)``, row u = the held-out relevant items
of user u (nonzero = relevant; the value is the grade used by graded NDCG).
Row u of ``truth`` must be the same user as row u of ``top_items``; pass
``users=`` to pick the truth rows of a batch.

Definitions (PROTOCOLS.md, "ML-100K top-N ranking"), with
``hit_r`` = 1 if the item at rank r is relevant and ``n_u = |test_u|``:

- Precision@k = Σ hit_r / k
- Recall@k = Σ hit_r / n_u
- NDCG@k = DCG / IDCG, DCG = Σ_r rel_r / log2(r + 1), IDCG = the DCG of the best
  possible list over min(k, n_u) positions (binary: rel = hit; graded: the user's
  grades sorted descending)
- MAP@k = (1 / min(k, n_u)) Σ_r hit_r · Precision@r
- MRR@k = 1 / (rank of the first hit), 0 without a hit in the top k
- HitRate@k = 1 if any hit in the top k

Users with no relevant item (n_u = 0) get NaN: Recall and NDCG are undefined
for them, and counting them as 0 would make a metric depend on how many such
users a split happens to contain. :func:`mean` skips them (the default of
:func:`ranking_metrics`; ``empty="zero"`` counts them as 0 instead).

Ties are the model's business: the lists are given. :func:`topk_from_scores`
turns a dense score block into lists with a documented, deterministic tie
rule (lower item index first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from rectune._errors import DataError
from rectune.evaluate._validate import (
    as_csr,
    as_top_items,
    as_truth,
    check_item_range,
    check_k,
    check_no_duplicates,
)

Relevance = Literal["binary", "graded"]
Empty = Literal["exclude", "zero"]

PER_USER_METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")
"""Names accepted by :func:`ranking_metrics_per_user` (and :func:`ranking_metrics`)."""

GLOBAL_METRICS: tuple[str, ...] = ("coverage",)
"""Extra names accepted by :func:`ranking_metrics` (one number for all users)."""


def _discounts(k: int) -> np.ndarray:
    """``1 / log2(r + 1)`` for ranks r = 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


@dataclass(frozen=True)
class _Judged:
    """The lists joined with the truth once, shared by every metric of one call.

    ``grade[u, r]`` is the relevance grade of the item at rank r+1 of user u
    (0 when not relevant or padding); ``n_rel[u]`` = |test_u|.
    """

    grade: np.ndarray
    n_rel: np.ndarray
    truth: sp.csr_array

    @property
    def hit(self) -> np.ndarray:
        return self.grade > 0

    @property
    def k(self) -> int:
        return int(self.grade.shape[1])


def _judge(top_items: Any, truth: Any, k: int, users: Any = None) -> _Judged:
    """Validate inputs and look every recommended item up in the truth matrix.

    The lookup is one ``searchsorted`` over flattened (row, item) keys of the
    canonical CSR truth: O((nnz + n·k) log nnz), no loop over users.
    """
    top = as_top_items(top_items, k)
    t = as_truth(truth, top.shape[0], users)
    n_users, n_items = t.shape
    check_item_range(top, n_items)
    check_no_duplicates(top)
    n_rel = np.diff(t.indptr).astype(np.int64)
    grade = np.zeros(top.shape, dtype=np.float64)
    if t.nnz and top.size:
        rows = np.repeat(np.arange(n_users, dtype=np.int64), n_rel)
        keys = rows * n_items + t.indices.astype(np.int64)  # ascending: canonical CSR
        valid = top >= 0
        q = np.arange(n_users, dtype=np.int64)[:, None] * n_items + top
        pos = np.minimum(np.searchsorted(keys, q), keys.size - 1)
        found = valid & (keys[pos] == q)
        grade = np.where(found, t.data[pos], 0.0)
    return _Judged(grade=grade, n_rel=n_rel, truth=t)


def _cut(j: _Judged, k: int) -> _Judged:
    """The same judgement seen @k (k <= j.k): lets one lookup serve several cut-offs."""
    return _Judged(grade=j.grade[:, :k], n_rel=j.n_rel, truth=j.truth)


def _nan_empty(values: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    out = values.astype(np.float64, copy=True)
    out[n_rel == 0] = np.nan
    return out


def _precision(j: _Judged, relevance: Relevance) -> np.ndarray:
    return _nan_empty(j.hit.sum(axis=1) / j.k, j.n_rel)


def _recall(j: _Judged, relevance: Relevance) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return _nan_empty(j.hit.sum(axis=1) / j.n_rel, j.n_rel)


def _ideal_graded_dcg(truth: sp.csr_array, k: int) -> np.ndarray:
    """IDCG with grades: each user's grades sorted descending, over the first k positions.

    Vectorised: one lexsort by (row, -grade) groups every row's grades in
    descending order; the position inside the row indexes the discount.
    """
    n = truth.shape[0]
    if truth.nnz == 0:
        return np.zeros(n)
    counts = np.diff(truth.indptr)
    rows = np.repeat(np.arange(n), counts)
    order = np.lexsort((-truth.data, rows))
    data = truth.data[order]
    pos = np.arange(truth.nnz) - truth.indptr[rows]  # rows are already grouped in order
    keep = pos < k
    return np.bincount(rows[keep], weights=data[keep] * _discounts(k)[pos[keep]], minlength=n)


def _ndcg(j: _Judged, relevance: Relevance) -> np.ndarray:
    disc = _discounts(j.k)
    if relevance == "binary":
        dcg = j.hit.astype(np.float64) @ disc
        ideal_cum = np.concatenate([[0.0], np.cumsum(disc)])
        idcg = ideal_cum[np.minimum(j.n_rel, j.k)]
    elif relevance == "graded":
        dcg = j.grade @ disc
        idcg = _ideal_graded_dcg(j.truth, j.k)
    else:
        raise DataError(f"relevance must be 'binary' or 'graded', got {relevance!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return _nan_empty(dcg / idcg, j.n_rel)


def _map(j: _Judged, relevance: Relevance) -> np.ndarray:
    hit = j.hit.astype(np.float64)
    prec_at_r = np.cumsum(hit, axis=1) / np.arange(1, j.k + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ap = (hit * prec_at_r).sum(axis=1) / np.minimum(j.n_rel, j.k)
    return _nan_empty(ap, j.n_rel)


def _mrr(j: _Judged, relevance: Relevance) -> np.ndarray:
    hit = j.hit
    any_hit = hit.any(axis=1)
    first = np.argmax(hit, axis=1)  # 0 when no hit; masked below
    return _nan_empty(np.where(any_hit, 1.0 / (first + 1.0), 0.0), j.n_rel)


def _hit_rate(j: _Judged, relevance: Relevance) -> np.ndarray:
    return _nan_empty(np.asarray(j.hit.any(axis=1), dtype=np.float64), j.n_rel)


_PER_USER: dict[str, Callable[[_Judged, Relevance], np.ndarray]] = {
    "precision": _precision,
    "recall": _recall,
    "ndcg": _ndcg,
    "map": _map,
    "mrr": _mrr,
    "hit_rate": _hit_rate,
}


def _one(name: str, top_items: Any, truth: Any, k: int, users: Any,
         relevance: Relevance = "binary") -> np.ndarray:
    k = check_k(k)
    return _PER_USER[name](_judge(top_items, truth, k, users), relevance)


def precision_at_k(top_items: Any, truth: Any, k: int = 10, *, users: Any = None) -> np.ndarray:
    """Per-user Precision@k = hits in the first k / k (NaN for users without relevant items)."""
    return _one("precision", top_items, truth, k, users)


def recall_at_k(top_items: Any, truth: Any, k: int = 10, *, users: Any = None) -> np.ndarray:
    """Per-user Recall@k = hits in the first k / |test_u| (NaN when |test_u| = 0).

    The denominator is |test_u|, not min(k, |test_u|): a user with 30 relevant
    items cannot reach recall 1 at k = 10, as PROTOCOLS.md defines it.
    """
    return _one("recall", top_items, truth, k, users)


def ndcg_at_k(
    top_items: Any, truth: Any, k: int = 10, *, users: Any = None,
    relevance: Relevance = "binary",
) -> np.ndarray:
    """Per-user NDCG@k with linear gains: DCG = Σ_r rel_r / log2(r+1), over IDCG@min(k, |test_u|).

    ``relevance="binary"`` uses rel = 1 for every nonzero truth entry;
    ``"graded"`` uses the truth values as gains, and IDCG places the user's
    largest grades first.
    """
    return _one("ndcg", top_items, truth, k, users, relevance)


def map_at_k(top_items: Any, truth: Any, k: int = 10, *, users: Any = None) -> np.ndarray:
    """Per-user average precision @k: (1/min(k, |test_u|)) Σ_r hit_r · Precision@r."""
    return _one("map", top_items, truth, k, users)


def mrr_at_k(top_items: Any, truth: Any, k: int = 10, *, users: Any = None) -> np.ndarray:
    """Per-user reciprocal rank of the first relevant item in the top k (0 if none)."""
    return _one("mrr", top_items, truth, k, users)


def hit_rate_at_k(top_items: Any, truth: Any, k: int = 10, *, users: Any = None) -> np.ndarray:
    """Per-user 1.0 if any of the first k items is relevant, else 0.0."""
    return _one("hit_rate", top_items, truth, k, users)


def mean(values: Any) -> float:
    """Mean over users, skipping NaN (users without relevant items); NaN if none is left.

    Unlike ``np.nanmean`` it does not warn on an all-NaN input: an empty
    evaluation is a legitimate outcome for a tiny batch.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def _ks(k: int | Sequence[int]) -> list[int]:
    ks = [k] if isinstance(k, int | np.integer) else list(k)
    if not ks:
        raise DataError("k must be a positive integer or a non-empty sequence of them")
    return [check_k(x) for x in ks]


def _check_names(metrics: Sequence[str], allowed: tuple[str, ...]) -> list[str]:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    for m in names:
        if m not in allowed:
            raise DataError(f"unknown ranking metric {m!r}; choose from {', '.join(allowed)}")
    return names


def ranking_metrics_per_user(
    top_items: Any,
    truth: Any,
    k: int | Sequence[int] = 10,
    metrics: Sequence[str] = PER_USER_METRICS,
    *,
    users: Any = None,
    relevance: Relevance = "binary",
    empty: Empty = "exclude",
) -> dict[str, np.ndarray]:
    """Per-user values of several metrics at one or more cut-offs, keyed ``"ndcg@10"``.

    The truth lookup is done once for the largest k and shared. With
    ``empty="exclude"`` (default) users without relevant items are NaN; with
    ``"zero"`` they score 0 (some papers do this; it is not our protocol).
    """
    names = _check_names(metrics, PER_USER_METRICS)
    ks = _ks(k)
    if empty not in ("exclude", "zero"):
        raise DataError(f"empty must be 'exclude' or 'zero', got {empty!r}")
    judged = _judge(top_items, truth, max(ks), users)
    out: dict[str, np.ndarray] = {}
    for kk in ks:
        j = _cut(judged, kk)
        for m in names:
            v = _PER_USER[m](j, relevance)
            out[f"{m}@{kk}"] = np.nan_to_num(v, nan=0.0) if empty == "zero" else v
    return out


def ranking_metrics(
    top_items: Any,
    truth: Any,
    k: int | Sequence[int] = 10,
    metrics: Sequence[str] = (*PER_USER_METRICS, "coverage"),
    *,
    users: Any = None,
    relevance: Relevance = "binary",
    empty: Empty = "exclude",
) -> dict[str, float]:
    """Mean of each metric over evaluated users, keyed ``"precision@10"``, ``"coverage@10"``...

    ``coverage`` is catalogue coverage, |union of the top-k lists| / n_items,
    with n_items = ``truth.shape[1]``; it counts every list given, including
    those of users without relevant items.
    """
    names = _check_names(metrics, PER_USER_METRICS + GLOBAL_METRICS)
    per_user_names = [m for m in names if m in PER_USER_METRICS]
    per_user = ranking_metrics_per_user(
        top_items, truth, k, per_user_names, users=users, relevance=relevance, empty=empty
    )
    out: dict[str, float] = {}
    n_items = truth.shape[1] if sp.issparse(truth) else 0
    for kk in _ks(k):
        for m in names:
            if m == "coverage":
                top = as_top_items(top_items, kk)
                check_item_range(top, n_items)
                items = top[top >= 0]
                out[f"coverage@{kk}"] = float(np.unique(items).size / n_items)
            else:
                out[f"{m}@{kk}"] = mean(per_user[f"{m}@{kk}"])
    return out


def topk_from_scores(
    scores: Any, k: int, *, exclude: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item indices and scores of each row of a dense score block, ties to lower index.

    ``scores``: ``(n_users, n_items)`` float array; ``exclude``: optional sparse
    matrix of the same shape whose nonzero entries may not be recommended
    (the user's training items). Items scored ``-inf`` are not recommendable
    either. Rows with fewer than k recommendable items are padded with item
    ``-1`` and score ``-inf``. NaN scores raise :class:`~rectune.DataError`.

    Determinism: ``np.argpartition`` finds the k-th largest score t of each row;
    every item above t is taken, and the items equal to t are taken in
    ascending index order until k are chosen; a stable sort by descending
    score of the index-ordered picks then breaks the remaining ties by lower
    item index. The result never depends on argpartition's internal order.
    """
    k = check_k(k)
    s = np.array(scores, dtype=np.float64, copy=True)
    if s.ndim != 2:
        raise DataError(f"scores must be 2-D (n_users, n_items), got shape {s.shape}")
    if np.isnan(s).any():
        r, c = np.argwhere(np.isnan(s))[0]
        raise DataError(f"scores[{r}, {c}] is NaN (user row {r}, item {c}); a model must not "
                        "return NaN scores")
    n, m = s.shape
    if exclude is not None:
        ex = as_csr(exclude, "exclude")
        if ex.shape != s.shape:
            raise DataError(f"exclude has shape {ex.shape} but scores have shape {s.shape}")
        counts = np.diff(ex.indptr)
        s[np.repeat(np.arange(n), counts), ex.indices] = -np.inf
    kk = min(k, m)
    items = np.full((n, k), -1, dtype=np.int64)
    top_scores = np.full((n, k), -np.inf)
    if n == 0 or kk == 0:
        return items, top_scores
    rows = np.arange(n)[:, None]
    part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
    thresh = s[rows, part].min(axis=1, keepdims=True)  # the k-th largest score of each row
    above = s > thresh
    need = kk - above.sum(axis=1, keepdims=True)
    tied = s == thresh
    chosen = above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= need))
    idx = np.nonzero(chosen)[1].reshape(n, kk)  # exactly kk per row, ascending item index
    vals = s[rows, idx]
    order = np.argsort(-vals, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    pad = np.isneginf(vals)
    items[:, :kk] = np.where(pad, -1, idx)
    top_scores[:, :kk] = vals
    return items, top_scores
