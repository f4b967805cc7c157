"""RP3beta: item-item transition probabilities of a 3-step random walk, popularity-penalised.

Christoffel et al. (2015) score items by the probability that a random walk on the
user-item graph starting at user ``u`` lands on item ``j`` after three steps
(user → item → user → item); Paudel et al. (2017) divide by the target item's
popularity raised to ``β`` so the walk stops drifting to blockbusters. Dacrema et
al. (2019, "Are we really making much progress?") found this among the strongest
simple baselines for top-N recommendation.

With ``X`` the binary users x items matrix, ``|I_u|`` a user's number of items and
``|U_i|`` an item's number of users, the one-step transitions are the row-normalised
matrices raised element-wise to the power ``α``::

    P_ui = (X_ui / |I_u|)^α           P_iu = (X_ui / |U_i|)^α

and the item-item weights (the last two steps of the walk) are::

    W_ij = (P_iu P_ui)_ij / |U_j|^β  =  |U_i|^-α · Σ_{u ∈ U_i ∩ U_j} |I_u|^-α · |U_j|^-β

``α = 1, β = 0`` is the plain walk P3; ``α < 1`` flattens the transitions (P3α),
``β > 0`` penalises popular targets. Self-transitions ``W_ii`` are dropped (an
item already in a history is never recommended, and a self-loop would take one of
the ``k`` neighbour slots); each row then optionally keeps its ``k`` largest
weights and is optionally rescaled to sum to 1 (``normalize``). A user's scores
are ``x_u W``: the first step ``P_ui`` only scales a user's whole row, so it does
not change that user's ranking and is left out.

Memory: ``W`` is built in row blocks of at most ``_BLOCK_ENTRIES`` dense values.
Dense (``k=None``) it is ``n_items² · 8`` bytes like EASE's matrix, checked against
``max_items`` and the available memory; pruned it is about ``16 · k`` bytes per item.

Data: every training row is an interaction (values are ignored, ``X`` is the
model's binary ``seen`` matrix); pass explicit ratings through
``Interactions.binarize(4)`` first, or low ratings count as likes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from rectune._errors import DataError
from rectune.data.interactions import Interactions
from rectune.models.als import _check_nonneg_float, _check_positive_int
from rectune.models.base import FitOptions, Recommender, _decode_padded, _topk
from rectune.models.ease import _available_memory, _size

#: dense float64 values per row block while ``W`` is built (64 MB)
_BLOCK_ENTRIES = 8_000_000


def _inverse_power(counts: np.ndarray, power: float) -> np.ndarray:
    """``counts ** -power`` where ``counts > 0``, 0 elsewhere (isolated users/items)."""
    out = np.zeros(len(counts), dtype=np.float64)
    pos = counts > 0
    out[pos] = np.power(counts[pos].astype(np.float64), -power)
    return out


def _block_rows(n_items: int) -> int:
    return max(1, min(n_items, _BLOCK_ENTRIES // max(n_items, 1)))


def rp3beta_weights(x: sp.csr_array | np.ndarray, alpha: float, beta: float,
                    k: int | None = None, normalize: bool = False
                    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The RP3beta item-item weights for a users x items matrix ``x`` (nonzeros = interactions).

    Returns the dense ``(n_items, n_items)`` float64 matrix ``W`` (zero diagonal) when
    ``k`` is None; otherwise ``(neighbours, weights)``, each ``(n_items, min(k, n_items))``:
    every item's largest positive weights, best first (ties: lower item index), padded
    with index -1 and weight 0. ``normalize`` rescales each (pruned) row to sum to 1.
    """
    xs = sp.csr_array(x, dtype=np.float64)
    xs.sum_duplicates()
    xs.data[:] = 1.0
    xs.eliminate_zeros()
    n_items = xs.shape[1]
    user_deg = np.diff(xs.indptr)
    item_deg = np.bincount(xs.indices, minlength=n_items)
    # P_iu = D_I^-α Xᵀ (items x users);  P_ui D_I^-β = D_U^-α X D_I^-β (users x items)
    left = sp.csr_array(sp.diags_array(_inverse_power(item_deg, alpha)) @ xs.T)
    right = sp.csr_array(sp.diags_array(_inverse_power(user_deg, alpha)) @ xs
                         @ sp.diags_array(_inverse_power(item_deg, beta)))
    k_eff = None if k is None else min(int(k), n_items)
    dense = np.zeros((n_items, n_items)) if k_eff is None else None
    nbr = np.full((n_items, k_eff or 0), -1, dtype=np.int64)
    wts = np.zeros((n_items, k_eff or 0), dtype=np.float64)
    step = _block_rows(n_items)
    for s in range(0, n_items, step):
        e = min(n_items, s + step)
        blk = np.asarray(sp.csr_array(left[s:e] @ right).toarray(), dtype=np.float64)
        blk[np.arange(e - s), np.arange(s, e)] = 0.0
        if dense is not None:
            if normalize:
                blk /= np.maximum(blk.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
            dense[s:e] = blk
            continue
        assert k_eff is not None
        top, val = _topk(np.where(blk > 0, blk, -np.inf), k_eff)
        ok = np.isfinite(val)
        val = np.where(ok, val, 0.0)
        if normalize:
            val /= np.maximum(val.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
        nbr[s:e] = np.where(ok, top, -1)
        wts[s:e] = val
    return dense if dense is not None else (nbr, wts)


def _neighbour_csr(nbr: np.ndarray, wts: np.ndarray) -> sp.csr_array:
    """The padded neighbour lists as a sorted items x items CSR (padding dropped)."""
    n = nbr.shape[0]
    keep = nbr >= 0
    rows = np.repeat(np.arange(n), keep.sum(axis=1))
    m = sp.csr_array((wts[keep], (rows, nbr[keep])), shape=(n, n))
    m.sort_indices()
    return m


class RP3beta(Recommender):
    """Graph-based item-item recommender (Christoffel et al. 2015; Paudel et al. 2017).

    Parameters
    ----------
    alpha:
        Power ``α >= 0`` applied to the one-step transition probabilities; below 1
        it flattens them (a heavy user's items count more). ``α = 0`` gives raw
        co-occurrence counts.
    beta:
        Popularity penalty: the weight of target item ``j`` is divided by
        ``|U_j|^β``. 0 is the plain walk; negative values favour popular items.
    k:
        Neighbours kept per item (its ``k`` largest positive weights); None keeps the
        whole dense matrix.
    normalize:
        Rescale each (pruned) row of ``W`` to sum to 1, so every history item casts
        one vote of the same total weight.
    max_items:
        Refuse a dense (``k=None``) model over more items than this (``n_items² · 8``
        bytes).

    Defaults (``α = 0.75, β = 0.5, k = 200, normalize=True``): on ML-100K's per-user
    80/20 of ratings >= 4, a validation slice of the training rows
    (``benchmarks/bench_models.py --sections tuned``, 120 settings) picks the dense
    ``α = 0.5, β = 0.6, k = None`` (valid NDCG@10 0.165, test 0.297); these defaults
    score within 0.002 of it on validation (test 0.292) while keeping memory linear
    in the catalogue. Both stay below EASE (0.317) and ALS (0.327) there.
    """

    family: ClassVar[str] = "knn"
    predicts_ratings: ClassVar[bool] = False

    def __init__(self, alpha: float = 0.75, beta: float = 0.5, k: int | None = 200,
                 normalize: bool = True, max_items: int = 20_000) -> None:
        self.alpha = alpha
        self.beta = beta
        self.k = k
        self.normalize = normalize
        self.max_items = max_items

    def _validate_params(self) -> None:
        _check_nonneg_float("alpha", self.alpha)
        b = self.beta
        if isinstance(b, bool) or not isinstance(b, int | float | np.floating) \
                or not np.isfinite(b):
            raise DataError(f"beta must be a finite number, got {b!r}")
        if self.k is not None:
            _check_positive_int("k", self.k)
        if not isinstance(self.normalize, bool | np.bool_):
            raise DataError(f"normalize must be True or False, got {self.normalize!r}")
        _check_positive_int("max_items", self.max_items)

    # --------------------------------------------------------------------- fit
    def _fit(self, train: Interactions, features: Any, valid: Interactions | None,
             options: FitOptions) -> None:
        n = train.n_items
        block = 8 * _block_rows(n) * n
        if self.k is None:
            if n > self.max_items:
                raise DataError(
                    f"RP3beta with k=None needs a dense {n} x {n} item-item matrix "
                    f"({_size(n * n * 8)} in float64) but max_items={self.max_items}; set k "
                    "(neighbours per item) or raise max_items if the machine has the memory")
            need = n * n * 8 + 2 * block
        else:
            need = n * min(int(self.k), n) * 16 * 2 + 2 * block
        avail = _available_memory()
        if avail is not None and need > avail:
            raise DataError(
                f"RP3beta on {n} items with k={self.k} needs about {_size(need)} while "
                f"fitting but only {_size(avail)} of memory is available; use a smaller k")
        w = rp3beta_weights(self.seen_, float(self.alpha), float(self.beta),
                            None if self.k is None else int(self.k), bool(self.normalize))
        if isinstance(w, tuple):
            self.item_neighbours_, self.item_neighbour_weights_ = w
        else:
            self.item_weights_ = w
        self._install()

    def _install(self) -> None:
        """Build the scoring matrix (dense ``W`` or its CSR) from the parameter groups."""
        if self.k is None:
            self._weights: np.ndarray | sp.csr_array = self.item_weights_
        else:
            self._weights = _neighbour_csr(np.asarray(self.item_neighbours_, dtype=np.int64),
                                           np.asarray(self.item_neighbour_weights_))

    def _after_load(self) -> None:
        self._install()

    # -------------------------------------------------------------- parameters
    def parameters(self) -> dict[str, np.ndarray]:
        """``item_weights`` (dense ``W``) when ``k`` is None; otherwise the pruned rows as
        ``item_neighbours`` (indices, -1 padded, best first) and ``item_neighbour_weights``."""
        self._check_fitted()
        if self.k is None:
            return {"item_weights": self.item_weights_}
        return {"item_neighbours": self.item_neighbours_,
                "item_neighbour_weights": self.item_neighbour_weights_}

    def item_weight_matrix(self) -> np.ndarray | sp.csr_array:
        """``W`` as used for scoring: dense, or a CSR when pruned (read-only view)."""
        self._check_fitted()
        return self._weights

    # ----------------------------------------------------------------- scoring
    def _predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """``x_u · W[:, i]`` per pair, over the users' history entries only (no dense rows)."""
        hist = sp.coo_array(self.seen_[u])
        w = np.asarray(self._weights[hist.col, i[hist.row]], dtype=np.float64).ravel()
        return np.bincount(hist.row, weights=w, minlength=len(u)).astype(np.float64)

    def _predict_unknown(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Unknown user or item: 0, the score of a user with no history."""
        return np.zeros(len(u), dtype=np.float64)

    def _score(self, u: np.ndarray) -> np.ndarray:
        out = self.seen_[u] @ self._weights
        if sp.issparse(out):
            return np.asarray(sp.csr_array(out).toarray(), dtype=np.float64)
        return np.asarray(out, dtype=np.float64)

    def score_history(self, items: Any) -> np.ndarray:
        """Scores of every item for an ad-hoc history of raw item ids (unknown ids skipped).

        No fold-in is needed: a new or updated user is scored from their items
        directly, ``Σ_{i ∈ history} W[i]``.
        """
        self._check_fitted()
        raw = np.atleast_1d(np.asarray(items, dtype=object) if self.item_map_.kind == "str"
                            else np.asarray(items))
        idx = self.item_map_.encode(raw, missing="negative")
        idx = np.unique(idx[idx >= 0])
        rows = self._weights[idx]
        if sp.issparse(rows):
            return np.asarray(rows.sum(axis=0), dtype=np.float64).ravel()
        return np.asarray(rows, dtype=np.float64).sum(axis=0)

    def similar_items(self, items: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Items the walk most likely reaches from each item (largest ``W[i, j]``), self
        excluded, padded with -1 / NaN where fewer than ``k`` have a positive weight."""
        self._check_fitted()
        if not isinstance(k, int | np.integer) or k <= 0:
            raise DataError(f"k must be a positive integer, got {k!r}")
        idx = self.item_map_.encode(np.atleast_1d(items))
        rows = self._weights[idx]
        block = np.asarray(sp.csr_array(rows).toarray() if sp.issparse(rows) else rows,
                           dtype=np.float64).copy()
        block[np.arange(len(idx)), idx] = 0.0
        k_eff = min(int(k), self.n_items)
        top, val = _topk(np.where(block > 0, block, -np.inf), k_eff)
        out_i = np.full((len(idx), k), -1, dtype=np.int64)
        out_s = np.full((len(idx), k), np.nan)
        ok = np.isfinite(val)
        out_i[:, :k_eff] = np.where(ok, top, -1)
        out_s[:, :k_eff] = np.where(ok, val, np.nan)
        return _decode_padded(self.item_map_, out_i), out_s

    def _item_vectors(self) -> np.ndarray | sp.csr_array:
        return self._weights

    def _user_vectors(self) -> sp.csr_array:
        return self.seen_
