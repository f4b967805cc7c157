"""Negative sampling and mini-batch sources for the neural models.

Why exact sampling: a "negative" that is in fact one of the user's known positives
teaches the model the opposite of the data. :class:`NegativeSampler` therefore never
returns an item of the user's row of the seen-items CSR:

* ``"uniform"``: draw ``j`` uniformly in ``0..n_items - deg(u) - 1`` and map it to
  the ``j``-th item the user has *not* seen. With the user's sorted positives
  ``s_0 < s_1 < ...``, the ``j``-th unseen item is ``j + #{t : s_t - t <= j}``; the
  adjusted keys ``s_t - t`` are non-decreasing per row, so one ``searchsorted``
  over all rows answers every draw at once: exact, vectorised, no retry loop.
* ``"popularity"`` (``p(i) ∝ count(i)^alpha``, word2vec-style): rejection
  sampling — draw, test membership with a ``searchsorted`` against the CSR's
  sorted ``(row, item)`` keys, redraw only the rejected draws, for up to
  ``max_rounds`` rounds; draws still rejected then fall back to the exact uniform
  draw over the unseen items (so a positive is still never returned).

A user who has seen every item has no negative: those draws are ``-1`` and the
batch sources drop the rows. Memory is ``O(nnz + batch)``: nothing is dense in
users × items.

Batch sources are callables ``batches(rng) -> iterator of dict of tensors`` with a
``len()`` (the batch count, for the progress bar's ETA), as the
:class:`~rectune.models.neural.trainer.Trainer` expects.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from rectune._errors import DataError

__all__ = ["NegativeSampler", "PairwiseBatches", "PointwiseBatches", "RatingBatches"]

Distribution = Literal["uniform", "popularity"]


class NegativeSampler:
    """Draw items a user has not interacted with, never a known positive.

    Parameters
    ----------
    seen:
        Users × items sparse matrix whose nonzeros are the known positives.
    distribution:
        ``"uniform"`` over the unseen items, or ``"popularity"`` (∝ count^alpha).
    alpha:
        Popularity exponent (0.75 in word2vec); ignored for "uniform".
    max_rounds:
        Rejection rounds for "popularity" before the exact uniform fallback.
    """

    def __init__(self, seen: sp.csr_array | sp.csr_matrix, *,
                 distribution: Distribution = "uniform", alpha: float = 0.75,
                 max_rounds: int = 8) -> None:
        if distribution not in ("uniform", "popularity"):
            raise DataError(f"distribution must be 'uniform' or 'popularity', "
                            f"got {distribution!r}")
        csr = sp.csr_array(seen, copy=True)
        csr.sum_duplicates()  # canonical: sorted, unique column indices per row
        csr.eliminate_zeros()
        self.n_users, self.n_items = (int(x) for x in csr.shape)
        self.distribution = distribution
        self.max_rounds = int(max_rounds)
        self.indptr = csr.indptr.astype(np.int64)
        self.indices = csr.indices.astype(np.int64)
        self.degree = np.diff(self.indptr)
        rows = np.repeat(np.arange(self.n_users, dtype=np.int64), self.degree)
        self._keys = rows * self.n_items + self.indices  # ascending (canonical CSR)
        rank = np.arange(len(self.indices), dtype=np.int64) - self.indptr[rows]
        # adjusted positive s_t - t per row, keyed so rows do not mix
        self._adj = rows * (self.n_items + 1) + (self.indices - rank)
        self._cdf: np.ndarray | None = None
        if distribution == "popularity":
            w = np.bincount(self.indices, minlength=self.n_items).astype(np.float64) ** alpha
            if w.sum() <= 0:
                w = np.ones(self.n_items)
            self._cdf = np.cumsum(w / w.sum())

    def is_seen(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Vectorised membership test of ``(user, item)`` pairs in the seen matrix."""
        if len(self._keys) == 0:
            return np.zeros(np.shape(users), dtype=bool)
        q = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._keys, q), len(self._keys) - 1)
        return self._keys[pos] == q

    def _uniform(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        free = self.n_items - self.degree[users]
        out = np.full(len(users), -1, dtype=np.int64)
        ok = free > 0
        if not ok.any():
            return out
        u = users[ok]
        j = np.floor(rng.random(len(u)) * free[ok]).astype(np.int64)
        j = np.minimum(j, free[ok] - 1)
        below = np.searchsorted(self._adj, u * (self.n_items + 1) + j, side="right")
        out[ok] = j + (below - self.indptr[u])
        return out

    def sample(self, users: np.ndarray, n_neg: int, rng: np.random.Generator) -> np.ndarray:
        """``(len(users), n_neg)`` int64 negatives; ``-1`` where a user has seen everything."""
        users = np.asarray(users, dtype=np.int64)
        if users.size and (users.min() < 0 or users.max() >= self.n_users):
            raise DataError(f"user index outside 0..{self.n_users - 1} in negative sampling")
        flat = np.repeat(users, n_neg)
        if self._cdf is None:
            return self._uniform(flat, rng).reshape(len(users), n_neg)
        out = np.searchsorted(self._cdf, rng.random(len(flat)), side="right")
        out = np.minimum(out, self.n_items - 1).astype(np.int64)
        bad = np.flatnonzero(self.is_seen(flat, out))
        for _ in range(self.max_rounds):
            if len(bad) == 0:
                break
            draw = np.minimum(np.searchsorted(self._cdf, rng.random(len(bad)), side="right"),
                              self.n_items - 1)
            out[bad] = draw
            bad = bad[self.is_seen(flat[bad], draw)]
        if len(bad):
            out[bad] = self._uniform(flat[bad], rng)
        return out.reshape(len(users), n_neg)


def _n_batches(n: int, batch_size: int) -> int:
    return (n + batch_size - 1) // batch_size


def _extra(extra: Mapping[str, np.ndarray] | None, rows: np.ndarray) -> dict[str, torch.Tensor]:
    """Per-row extra columns (e.g. event context) gathered for the batch rows."""
    if not extra:
        return {}
    return {k: torch.from_numpy(np.ascontiguousarray(v[rows])) for k, v in extra.items()}


class RatingBatches:
    """Shuffled ``{"user", "item", "value"}`` batches of observed rows (MSE / click log-loss).

    ``extra`` maps names to per-row arrays (row-aligned with ``user``) added to each
    batch, e.g. encoded event context.
    """

    def __init__(self, user: np.ndarray, item: np.ndarray, value: np.ndarray,
                 batch_size: int, extra: Mapping[str, np.ndarray] | None = None) -> None:
        self.user = np.asarray(user, dtype=np.int64)
        self.item = np.asarray(item, dtype=np.int64)
        self.value = np.asarray(value, dtype=np.float32)
        self.batch_size = int(batch_size)
        self.extra = dict(extra or {})

    def __len__(self) -> int:
        return _n_batches(len(self.user), self.batch_size)

    def __call__(self, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        order = rng.permutation(len(self.user))
        for s in range(0, len(order), self.batch_size):
            r = order[s:s + self.batch_size]
            yield {"user": torch.from_numpy(self.user[r]), "item": torch.from_numpy(self.item[r]),
                   "value": torch.from_numpy(self.value[r]), **_extra(self.extra, r)}


class PointwiseBatches:
    """Positives with ``neg_ratio`` sampled negatives each, labelled 1 / 0 (NCF's BCE).

    ``batch_size`` counts positives; a batch holds up to ``batch_size·(1+neg_ratio)``
    rows (negatives of users who have seen everything are dropped). A negative
    copies its positive's ``extra`` columns (the context of the event it contrasts).
    """

    def __init__(self, user: np.ndarray, item: np.ndarray, sampler: NegativeSampler,
                 neg_ratio: int, batch_size: int,
                 extra: Mapping[str, np.ndarray] | None = None) -> None:
        self.user = np.asarray(user, dtype=np.int64)
        self.item = np.asarray(item, dtype=np.int64)
        self.sampler = sampler
        self.neg_ratio = int(neg_ratio)
        self.batch_size = int(batch_size)
        self.extra = dict(extra or {})

    def __len__(self) -> int:
        return _n_batches(len(self.user), self.batch_size)

    def __call__(self, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        order = rng.permutation(len(self.user))
        r = self.neg_ratio
        for s in range(0, len(order), self.batch_size):
            rows = order[s:s + self.batch_size]
            u = self.user[rows]
            neg = self.sampler.sample(u, r, rng).ravel()
            src = np.concatenate([rows, np.repeat(rows, r)])
            items = np.concatenate([self.item[rows], neg])
            labels = np.concatenate([np.ones(len(rows), np.float32),
                                     np.zeros(len(neg), np.float32)])
            keep = items >= 0
            if not keep.all():
                src, items, labels = src[keep], items[keep], labels[keep]
            yield {"user": torch.from_numpy(self.user[src]), "item": torch.from_numpy(items),
                   "label": torch.from_numpy(labels), **_extra(self.extra, src)}


class PairwiseBatches:
    """``{"user", "pos", "neg"}`` triples for BPR; ``neg`` is ``(n, n_neg)``.

    Rows whose user has no negative left are dropped.
    """

    def __init__(self, user: np.ndarray, item: np.ndarray, sampler: NegativeSampler,
                 n_neg: int, batch_size: int,
                 extra: Mapping[str, np.ndarray] | None = None) -> None:
        self.user = np.asarray(user, dtype=np.int64)
        self.item = np.asarray(item, dtype=np.int64)
        self.sampler = sampler
        self.n_neg = int(n_neg)
        self.batch_size = int(batch_size)
        self.extra = dict(extra or {})

    def __len__(self) -> int:
        return _n_batches(len(self.user), self.batch_size)

    def __call__(self, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        order = rng.permutation(len(self.user))
        for s in range(0, len(order), self.batch_size):
            rows = order[s:s + self.batch_size]
            neg = self.sampler.sample(self.user[rows], self.n_neg, rng)
            keep = (neg >= 0).all(axis=1)
            if not keep.all():
                rows, neg = rows[keep], neg[keep]
            if len(rows) == 0:
                continue
            yield {"user": torch.from_numpy(self.user[rows]),
                   "pos": torch.from_numpy(self.item[rows]), "neg": torch.from_numpy(neg),
                   **_extra(self.extra, rows)}
