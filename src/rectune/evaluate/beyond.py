"""Beyond-accuracy metrics: coverage, concentration, novelty, diversity, personalization.

All take the same ``top_items`` lists as the ranking metrics (``(n_users, L)``
item indices, ``-1`` = padding) and an optional ``k`` to look at the first k
columns only. Catalogue-level metrics return one float; per-list metrics
(:func:`novelty`, :func:`intra_list_diversity`) return one value per user (NaN
where undefined) so they can be bootstrapped and pair-tested like accuracy;
average them with :func:`rectune.evaluate.mean`.

The pairwise metrics never build pairs. For unit vectors v_1..v_L,
Σ_{i<j} v_i·v_j = (‖Σ_i v_i‖² − Σ_i ‖v_i‖²) / 2, so intra-list diversity is one
sparse product (users x items indicator times the normalised item vectors),
and personalization over *all* pairs of users is exact in O(n_users · k) —
no sampling of users is needed however many there are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from rectune._errors import DataError
from rectune.evaluate._validate import (
    as_float_1d,
    as_top_items,
    check_item_range,
    check_no_duplicates,
)


def _lists(top_items: Any, n_items: int, k: int | None) -> np.ndarray:
    if isinstance(n_items, bool) or not isinstance(n_items, int | np.integer) or n_items <= 0:
        raise DataError(f"n_items must be a positive integer, got {n_items!r}")
    top = as_top_items(top_items, k)
    check_item_range(top, int(n_items))
    check_no_duplicates(top)
    return top


def _indicator(top: np.ndarray, n_items: int) -> sp.csr_array:
    """Users x items 0/1 matrix of the lists (padding dropped)."""
    rows, cols = np.nonzero(top >= 0)
    data = np.ones(rows.size, dtype=np.float64)
    return sp.csr_array((data, (rows, top[rows, cols])), shape=(top.shape[0], n_items))


def catalog_coverage(top_items: Any, n_items: int, *, k: int | None = None) -> float:
    """|union of the lists| / n_items: the share of the catalogue recommended to anyone."""
    top = _lists(top_items, n_items, k)
    return float(np.unique(top[top >= 0]).size / n_items)


def recommendation_counts(top_items: Any, n_items: int, *, k: int | None = None) -> np.ndarray:
    """How many lists contain each item (length n_items): the input of :func:`gini_index`."""
    top = _lists(top_items, n_items, k)
    return np.bincount(top[top >= 0], minlength=n_items)


def gini_index(top_items: Any, n_items: int, *, k: int | None = None) -> float:
    """Gini coefficient of the recommendation counts over the whole catalogue.

    G = Σ_{i=1..n} (2i − n − 1) x_(i) / (n Σ x), x_(i) the counts in ascending
    order including items never recommended. 0: every item recommended equally
    often; close to 1: a few items fill every list. NaN when the lists are empty.
    """
    x = np.sort(recommendation_counts(top_items, n_items, k=k)).astype(np.float64)
    total = x.sum()
    if total == 0:
        return float("nan")
    n = x.size
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(np.sum((2 * i - n - 1) * x) / (n * total))


def novelty(
    top_items: Any, item_popularity: Any, *, n_users: int | None = None, k: int | None = None
) -> np.ndarray:
    """Per-user mean self-information −log2 p(i) of the recommended items (bits).

    ``item_popularity``: per-item interaction counts in the *training* data
    (e.g. ``train.item_counts()``), length n_items. With ``n_users`` given,
    p(i) = count_i / n_users, the share of users who know the item (Zhou et
    al., PNAS 2010); otherwise p(i) = count_i / Σ counts, the item's share of
    interactions. Counts are floored at 1 so an item unseen in training is as
    novel as one seen once instead of infinitely novel. NaN for empty lists.
    """
    pop = as_float_1d(item_popularity, "item_popularity")
    if (pop < 0).any():
        i = int(np.flatnonzero(pop < 0)[0])
        raise DataError(f"item_popularity[{i}] = {pop[i]}; counts must be >= 0")
    top = _lists(top_items, pop.size, k)
    counts = np.maximum(pop, 1.0)
    if n_users is not None:
        if n_users <= 0:
            raise DataError(f"n_users must be positive, got {n_users}")
        if pop.max() > n_users:
            raise DataError(
                f"item_popularity holds {pop.max()} > n_users={n_users}; with n_users, counts "
                "must be numbers of distinct users"
            )
        denom = float(n_users)
    else:
        denom = float(counts.sum())
    info = -np.log2(counts / denom)
    valid = top >= 0
    total = np.where(valid, info[np.where(valid, top, 0)], 0.0).sum(axis=1)
    length = valid.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(length > 0, total / length, np.nan)


def intra_list_diversity(
    top_items: Any, item_vectors: Any, *, k: int | None = None
) -> np.ndarray:
    """Per-user mean pairwise distance 1 − cos(v_i, v_j) over the items of each list.

    ``item_vectors``: ``(n_items, d)`` dense or sparse (genre multi-hot, tags,
    embeddings). An item whose vector is all zeros has cosine 0 to every item
    (it counts as fully dissimilar). NaN for lists with fewer than 2 items.
    Computed without pairs: Σ_{i<j} cos = (‖Σ v̂‖² − Σ ‖v̂‖²) / 2 per list.
    """
    if sp.issparse(item_vectors):
        vec: Any = sp.csr_array(item_vectors, dtype=np.float64)
        if vec.nnz and not np.isfinite(vec.data).all():
            raise DataError("item_vectors holds NaN or inf")
        norms = np.sqrt(np.asarray((vec.multiply(vec)).sum(axis=1)).ravel())
    else:
        vec = np.asarray(item_vectors, dtype=np.float64)
        if vec.ndim != 2:
            raise DataError(f"item_vectors must be 2-D (n_items, d), got shape {vec.shape}")
        if not np.isfinite(vec).all():
            r, c = np.argwhere(~np.isfinite(vec))[0]
            raise DataError(f"item_vectors[{r}, {c}] is {vec[r, c]}; vectors must be finite")
        norms = np.linalg.norm(vec, axis=1)
    n_items = vec.shape[0]
    top = _lists(top_items, n_items, k)
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    a = _indicator(top, n_items)
    if sp.issparse(vec):
        s = a @ (sp.diags_array(inv) @ vec)
        sq = np.asarray(s.multiply(s).sum(axis=1)).ravel()
    else:
        s = a @ (vec * inv[:, None])
        sq = np.einsum("ij,ij->i", s, s)
    self_sim = a @ (norms > 0).astype(np.float64)
    length = (top >= 0).sum(axis=1).astype(np.float64)
    pairs = length * (length - 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_cos = (sq - self_sim) / 2 / pairs
    return np.where(length >= 2, 1.0 - mean_cos, np.nan)


def personalization(top_items: Any, n_items: int, *, k: int | None = None) -> float:
    """1 − mean cosine similarity between the lists of every pair of distinct users.

    Lists are 0/1 item vectors; users with an empty list are left out. 0: every
    user gets the same list; 1: no two lists share an item. Exact over all
    N(N−1)/2 pairs via ‖Σ_u â_u‖² − N = 2 Σ_{u<v} cos(u, v) (â_u = the list's
    unit vector), so it costs one pass over the lists. NaN with fewer than 2 lists.
    """
    top = _lists(top_items, n_items, k)
    length = (top >= 0).sum(axis=1)
    top = top[length > 0]
    length = length[length > 0].astype(np.float64)
    n = top.shape[0]
    if n < 2:
        return float("nan")
    weights = np.broadcast_to((1.0 / np.sqrt(length))[:, None], top.shape)
    valid = top >= 0
    col = np.bincount(top[valid], weights=weights[valid], minlength=n_items)
    pair_sum = (float(col @ col) - n) / 2
    return float(1.0 - pair_sum / (n * (n - 1) / 2))
