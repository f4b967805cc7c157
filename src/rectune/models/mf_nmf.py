"""NMF: non-negative matrix factorisation of ratings, Surprise's ``NMF``.

Why multiplicative updates: with positive ratings and positive starting
factors, the update ``x <- x * num / den`` (Lee & Seung 2001, regularised as in
Luo et al. 2014) can never make a factor negative, so non-negativity holds
without projection. Here it is *guaranteed*: a factor whose denominator is not
positive is left as it is, so even a biased model whose estimates dip below 0
keeps non-negative factors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rectune._errors import DataError
from rectune.data.interactions import Interactions
from rectune.models._mf_kernels import (
    ChunkRunner,
    nmf_accumulate,
    nmf_apply,
    nmf_biased_epoch,
    resolve_threads,
    weighted_bounds,
)
from rectune.models._mf_order import EpochOrder
from rectune.models.base import FitOptions
from rectune.models.baseline import check_bool, check_explicit, check_float
from rectune.models.mf_svd import FactorModel

__all__ = ["NMF"]


class NMF(FactorModel):
    """Non-negative MF by regularised multiplicative updates (Surprise's ``NMF``).

    ``r_ui = q_i . p_u`` (``biased=True``: ``mu + b_u + b_i + q_i . p_u``). Each
    epoch accumulates, with the epoch-start factors and ``est`` the current
    estimate of each rating, ``num_uf = sum_i q_if r_ui``, ``den_uf = sum_i q_if est_ui``
    (likewise for items over their users), then::

        p_uf <- p_uf num_uf / (den_uf + |I_u| reg_pu p_uf)
        q_if <- q_if num_if / (den_if + |U_i| reg_qi q_if)

    (Surprise skips zero factors; so do we, and also non-positive denominators.)
    When biased, the biases follow SVD's SGD (``lr_bu``, ``reg_bu``, ...) during
    the accumulation pass, in a seeded shuffled order (``shuffle=False``:
    Surprise's user-by-user order). Unbiased, an epoch does not depend on the
    order at all and runs deterministically in any number of threads.

    Factors start uniform in ``[init_low, init_high)``; defaults are Surprise's
    (15 factors, 50 epochs, ``reg_pu = reg_qi = 0.06``, bias ``reg 0.02``,
    ``lr 0.005``). On a rating scale whose lower end is 0 or below, ratings are
    shifted to start at 1 for training (``rating_offset_``) and predictions
    shifted back, as Surprise does.
    """

    _extra_json = ("history_", "rating_offset_")

    def __init__(self, n_factors: int = 15, n_epochs: int = 50, biased: bool = False,
                 reg_pu: float = 0.06, reg_qi: float = 0.06, reg_bu: float = 0.02,
                 reg_bi: float = 0.02, lr_bu: float = 0.005, lr_bi: float = 0.005,
                 init_low: float = 0.0, init_high: float = 1.0, shuffle: bool = True,
                 early_stopping_patience: int | None = None,
                 random_state: int | None = 0) -> None:
        self.n_factors = n_factors
        self.n_epochs = n_epochs
        self.biased = biased
        self.reg_pu = reg_pu
        self.reg_qi = reg_qi
        self.reg_bu = reg_bu
        self.reg_bi = reg_bi
        self.lr_bu = lr_bu
        self.lr_bi = lr_bi
        self.init_low = init_low
        self.init_high = init_high
        self.shuffle = shuffle
        self.early_stopping_patience = early_stopping_patience
        self.random_state = random_state

    def _validate_params(self) -> None:
        self._validate_common()
        check_bool(self, "biased", self.biased)
        for name in ("reg_pu", "reg_qi", "reg_bu", "reg_bi", "lr_bu", "lr_bi", "init_low"):
            check_float(self, name, getattr(self, name))
        check_float(self, "init_high", self.init_high, positive=True)
        if not self.init_high > self.init_low:
            raise DataError(f"NMF: init_high ({self.init_high!r}) must be greater than "
                            f"init_low ({self.init_low!r})")

    def _fit(self, train: Interactions, features: Any, valid: Interactions | None,
             options: FitOptions) -> None:
        check_explicit(self, train)
        low = self.rating_scale_[0] if self.rating_scale_ else float(np.min(train.value))
        self.rating_offset_ = float(1 - low) if low <= 0 else 0.0
        r = train.value.astype(np.float32) + np.float32(self.rating_offset_)
        rng = np.random.default_rng(self.random_state)
        ucount, icount = train.user_counts(), train.item_counts()
        p = self._padded(self._init_uniform(rng, ucount))
        q = self._padded(self._init_uniform(rng, icount))
        self.user_factors_, self.item_factors_ = p[:, :self.n_factors], q[:, :self.n_factors]
        k = p.shape[1]  # the kernels' width: n_factors plus zero padding
        unum = np.zeros((train.n_users, k), dtype=np.float32)
        uden = np.zeros_like(unum)
        inum = np.zeros((train.n_items, k), dtype=np.float32)
        iden = np.zeros_like(inum)
        ucount32, icount32 = ucount.astype(np.float32), icount.astype(np.float32)
        reg_pu, reg_qi = np.float32(self.reg_pu), np.float32(self.reg_qi)
        n_threads = resolve_threads(options.n_threads, len(train))

        if self.biased:
            self.user_bias_ = bu = np.zeros(train.n_users, dtype=np.float32)
            self.item_bias_ = bi = np.zeros(train.n_items, dtype=np.float32)
            self.global_bias_ = np.array([self.global_mean_ + self.rating_offset_])
            mu = np.float32(self.global_bias_[0])
            lr_bu, lr_bi = np.float32(self.lr_bu), np.float32(self.lr_bi)
            reg_bu, reg_bi = np.float32(self.reg_bu), np.float32(self.reg_bi)
            # the sums race under threads, so the biased pass is sequential; a second
            # thread can make the next epoch's order meanwhile (same result)
            order = EpochOrder(train.user, train.item, r, rng, bool(self.shuffle),
                               background=n_threads > 1)

            def step(epoch: int) -> float:
                u, i, rr = order.next()
                for acc in (unum, uden, inum, iden):
                    acc[...] = 0.0
                sse = nmf_biased_epoch(0, len(rr), u, i, rr, mu, bu, bi, p, q, lr_bu, lr_bi,
                                       reg_bu, reg_bi, unum, uden, inum, iden)
                nmf_apply(p, unum, uden, ucount32, reg_pu, q, inum, iden, icount32, reg_qi)
                return float(sse)

            with order:
                self._train(train, valid, options, step, "NMF (biased)")
            return

        # unbiased: one pass over a CSR; user sums are owned by a range, item sums are
        # per-range buffers added afterwards (deterministic for a given thread count)
        by_user = np.argsort(train.user, kind="stable")
        ci = np.ascontiguousarray(train.item[by_user], dtype=np.int32)
        cr = np.ascontiguousarray(r[by_user])
        uptr = np.concatenate([[0], np.cumsum(ucount)]).astype(np.int64)
        bounds = weighted_bounds(uptr, n_threads)
        inum_parts = np.zeros((len(bounds), train.n_items, k), dtype=np.float32)
        iden_parts = np.zeros_like(inum_parts)
        calls = [(s, e, uptr, ci, cr, p, q, unum, uden, inum_parts[c], iden_parts[c])
                 for c, (s, e) in enumerate(bounds)]
        with ChunkRunner(n_threads) as runner:
            def step_unbiased(epoch: int) -> float:
                sse = runner.run_each(nmf_accumulate, calls)
                if len(bounds) == 1:
                    inum[...], iden[...] = inum_parts[0], iden_parts[0]
                else:
                    inum_parts.sum(axis=0, out=inum)
                    iden_parts.sum(axis=0, out=iden)
                nmf_apply(p, unum, uden, ucount32, reg_pu, q, inum, iden, icount32, reg_qi)
                return sse

            self._train(train, valid, options, step_unbiased, "NMF")

    def _init_uniform(self, rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
        """U[init_low, init_high) factors; rows with no training rating are zero."""
        out = rng.uniform(self.init_low, self.init_high,
                          size=(len(counts), self.n_factors)).astype(np.float32)
        out[counts == 0] = 0.0
        return out
