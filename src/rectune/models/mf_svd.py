"""SVD (Funk/Koren biased MF) and SVD++ trained by SGD with Surprise's exact semantics.

Both minimise the regularised squared error of Surprise's models with the same
defaults and per-rating update rules; only the *visiting order* of ratings is
ours (seeded and by user, reshuffled each epoch, or Surprise's own order with
``shuffle=False``). Prediction, ranking and similarity are vectorised over a
shared :class:`FactorModel` base, which NMF reuses.

Unknown ids follow Surprise: a biased model predicts ``mu`` plus the biases it
has (``mu + b_i`` for an unknown user, ...), the factor term only when both the
user and the item are known; an unbiased model predicts the global mean. Users
and items present in the id maps but without a training rating count as
unknown (their factors are zero, so this holds for ranking too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from rectune._errors import DataError
from rectune.data.interactions import Interactions
from rectune.models._mf_kernels import (
    SVD_LANES,
    ChunkRunner,
    biased_pair_scores,
    draw_seed,
    padded_width,
    pair_dots,
    resolve_threads,
    run_epochs,
    svd_user_kernel,
    svdpp_epoch,
    weighted_bounds,
)
from rectune.models._mf_order import UserBlockOrder
from rectune.models.base import FitOptions, Recommender
from rectune.models.baseline import (
    _rmse_on,
    check_bool,
    check_explicit,
    check_float,
    check_int,
    check_seed,
    present,
)

__all__ = ["SVD", "FactorModel", "SVDpp"]

#: ranges of users per thread and epoch in a Hogwild SVD fit (:meth:`ChunkRunner.run_pulled`)
CHUNKS_PER_THREAD = 4


class FactorModel(Recommender):
    """Shared prediction side of the factor models: ``[mu + b_u + b_i] + p~_u . q_i``.

    ``p~_u`` is :meth:`_user_repr` (``p_u`` for SVD/NMF, ``p_u + |N(u)|^-1/2 sum y_j``
    for SVD++). Learned arrays: ``user_factors_``, ``item_factors_`` (float32) and,
    when biased, ``user_bias_``, ``item_bias_`` (float32) and ``global_bias_``
    (float64, shape (1,)). ``rating_offset_`` (NMF on scales reaching 0 or below)
    is subtracted from every model prediction.
    """

    family = "mf"
    _extra_json: ClassVar[tuple[str, ...]] = ("history_",)
    # hyper-parameters every subclass defines (declared for the shared helpers)
    n_factors: int
    n_epochs: int
    shuffle: bool
    random_state: int | None
    early_stopping_patience: int | None
    init_mean: float
    init_std_dev: float
    lr_all: float
    reg_all: float
    # learned state (set in fit / load)
    user_factors_: np.ndarray
    item_factors_: np.ndarray
    user_bias_: np.ndarray
    item_bias_: np.ndarray
    global_bias_: np.ndarray
    #: learning-rate / regularisation groups a subclass resolves against lr_all / reg_all
    _rate_terms: tuple[str, ...] = ()

    # --------------------------------------------------------------- helpers
    def _biased(self) -> bool:
        return bool(getattr(self, "biased", True))

    def _offset(self) -> float:
        return float(getattr(self, "rating_offset_", 0.0))

    def _mu(self) -> float:
        return float(np.asarray(self.global_bias_).reshape(-1)[0])

    def _rates(self) -> list[float]:
        """``lr_*`` then ``reg_*`` for each term, falling back to ``lr_all`` / ``reg_all``."""
        lrs = [getattr(self, f"lr_{t}") for t in self._rate_terms]
        regs = [getattr(self, f"reg_{t}") for t in self._rate_terms]
        return ([float(self.lr_all if v is None else v) for v in lrs]
                + [float(self.reg_all if v is None else v) for v in regs])

    def _validate_common(self) -> None:
        check_int(self, "n_factors", self.n_factors, 1)
        check_int(self, "n_epochs", self.n_epochs, 0)
        check_bool(self, "shuffle", self.shuffle)
        check_seed(self, self.random_state)
        if self.early_stopping_patience is not None:
            check_int(self, "early_stopping_patience", self.early_stopping_patience, 1)
        for t in self._rate_terms:
            for kind in ("lr", "reg"):
                v = getattr(self, f"{kind}_{t}")
                if v is not None:
                    check_float(self, f"{kind}_{t}", v)

    def _init_normal(self, rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
        """N(init_mean, init_std_dev) factors; rows with no training rating are zero.

        Drawn in float32 directly (the factors' precision): ~1.6x faster than float64
        draws cast down, ~1% of a 1M-rating SVD fit.
        """
        out = rng.standard_normal((len(counts), self.n_factors), dtype=np.float32)
        out *= np.float32(self.init_std_dev)
        out += np.float32(self.init_mean)
        out[counts == 0] = 0.0
        return out

    def _padded(self, factors: np.ndarray) -> np.ndarray:
        """``factors`` stored with zero columns up to :func:`padded_width` (for the kernels).

        The model's ``*_factors_`` are views of the first ``n_factors`` columns while
        it trains (so validation and snapshots see the real factors) and become
        plain arrays in :meth:`_unpad`.
        """
        width = padded_width(factors.shape[1])
        if width == factors.shape[1]:
            return factors
        out = np.zeros((factors.shape[0], width), dtype=factors.dtype)
        out[:, :factors.shape[1]] = factors
        return out

    def _unpad(self) -> None:
        """Make the factor groups contiguous ``(n, n_factors)`` arrays after training."""
        for name in ("user_factors_", "item_factors_", "item_implicit_"):
            x = getattr(self, name, None)
            if x is not None and not x.flags.c_contiguous:
                setattr(self, name, np.ascontiguousarray(x))

    def _train(self, train: Interactions, valid: Interactions | None, options: FitOptions,
               step: Callable[[int], float], label: str) -> None:
        """Epoch loop with progress, validation RMSE and optional early stopping."""
        patience = self.early_stopping_patience
        if patience is not None and valid is None:
            raise DataError(f"{type(self).__name__}: early_stopping_patience={patience} needs "
                            f"validation data: fit(train, valid=...)")
        self.history_: dict[str, Any] = {}
        try:
            run_epochs(self.history_, int(self.n_epochs), step, n_ratings=len(train),
                       label=label, progress=options.progress,
                       valid_rmse=None if valid is None else (lambda: _rmse_on(self, valid)),
                       patience=patience,
                       snapshot=lambda: {k: v.copy() for k, v in self.parameters().items()},
                       restore=self._restore_snapshot)
        finally:
            self._unpad()

    def _restore_snapshot(self, snap: dict[str, np.ndarray]) -> None:
        for k, v in snap.items():
            getattr(self, k + "_")[...] = v

    # -------------------------------------------------------------------- params
    def parameters(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        out = {"user_factors": self.user_factors_, "item_factors": self.item_factors_}
        if self._biased():
            out.update(user_bias=self.user_bias_, item_bias=self.item_bias_,
                       global_bias=self.global_bias_)
        return out

    # ------------------------------------------------------------------- predict
    def _user_repr(self, u: np.ndarray) -> np.ndarray:
        """Effective user vectors (float32) of user indices ``u``."""
        return np.asarray(self.user_factors_)[u]

    def _predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        u = u.astype(np.int64, copy=False)
        i = i.astype(np.int64, copy=False)
        if type(self)._user_repr is FactorModel._user_repr:  # p_u as stored: no per-user work
            users, rows = np.asarray(self.user_factors_), u
        else:  # a computed representation (SVD++): once per distinct user
            uq, inv = np.unique(u, return_inverse=True)
            users, rows = self._user_repr(uq), inv.astype(np.int64).reshape(-1)
        users = np.ascontiguousarray(users, dtype=np.float32)
        items = np.ascontiguousarray(self.item_factors_, dtype=np.float32)
        if self._biased():
            out = np.empty(len(u), dtype=np.float64)
            biased_pair_scores(users, rows, items, i, self.user_bias_, u, self.item_bias_, i,
                               self._mu() - self._offset(), out)
            return out
        dots = np.empty(len(u), dtype=np.float32)
        pair_dots(users, rows, items, i, dots)
        out = dots.astype(np.float64) - self._offset()
        absent = ~(present(np.diff(self.seen_.indptr), u) & present(self.item_popularity_, i))
        out[absent] = self.global_mean_
        return out

    def _predict_unknown(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        if not self._biased():
            return np.full(len(u), self.global_mean_, dtype=np.float64)
        out = np.full(len(u), self._mu() - self._offset(), dtype=np.float64)
        ku, ki = u >= 0, i >= 0
        out[ku] += self.user_bias_[u[ku]]
        out[ki] += self.item_bias_[i[ki]]
        return out

    def _known(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return present(np.diff(self.seen_.indptr), u) & present(self.item_popularity_, i)

    def _score(self, u: np.ndarray) -> np.ndarray:
        items = np.asarray(self.item_factors_, dtype=np.float32)
        block = (self._user_repr(u).astype(np.float32) @ items.T).astype(np.float64)
        if self._biased():
            block += self._mu() + self.user_bias_[u].astype(np.float64)[:, None]
            block += self.item_bias_.astype(np.float64)[None, :]
        block -= self._offset()
        return block

    def _item_vectors(self) -> np.ndarray:
        return np.asarray(self.item_factors_)

    def _user_vectors(self) -> np.ndarray:
        return self._user_repr(np.arange(self.n_users))


class SVD(FactorModel):
    """Biased matrix factorisation by SGD, Surprise's ``SVD`` (Funk 2006; Koren et al. 2009).

    ``r_ui = mu + b_u + b_i + q_i . p_u``, minimising
    ``sum (r_ui - r^_ui)^2 + reg (b_u^2 + b_i^2 + |p_u|^2 + |q_i|^2)`` by SGD. For each
    rating, with ``e`` the error of the current parameters::

        b_u += lr_bu (e - reg_bu b_u);   b_i += lr_bi (e - reg_bi b_i)
        p_u += lr_pu (e q_i - reg_pu p_u);   q_i += lr_qi (e p_u - reg_qi q_i)

    (``q_i`` with the old ``p_u``). Biases start at 0, factors at
    ``N(init_mean, init_std_dev)``; ``mu`` is the training mean. ``biased=False``
    drops ``mu`` and the biases (probabilistic MF). Per-term ``lr_*`` / ``reg_*``
    override ``lr_all`` / ``reg_all`` as in Surprise.

    ``shuffle`` (default True) visits the ratings by user, in a fresh seeded order
    each epoch: users in a random order, each user's ratings shuffled, and
    ``SVD_LANES`` users interleaved one rating at a time (see ``svd_user_kernel``:
    a rating's update then finds ``p_u`` in L1 and no shuffled copy of the ratings
    is made; Surprise too visits its ratings user by user, in a fixed order, and
    SVD++ is shuffled the same way, without the interleaving). ``False`` uses
    Surprise's fixed order: users in index order, each user's ratings as stored.
    ``early_stopping_patience`` (off by default, so results match Surprise) stops
    when the RMSE on ``fit(..., valid=)`` has not improved for that many epochs,
    keeping the best epoch's parameters. With ``FitOptions(n_threads != 1)`` and at least
    ``PARALLEL_MIN_RATINGS`` ratings, epochs run lock-free in several threads
    (Hogwild; each thread takes runs of users, so user rows are never shared): same
    objective and quality, but not bit-reproducible.
    """

    _rate_terms = ("bu", "bi", "pu", "qi")

    def __init__(self, n_factors: int = 100, n_epochs: int = 20, biased: bool = True,
                 init_mean: float = 0.0, init_std_dev: float = 0.1, lr_all: float = 0.005,
                 reg_all: float = 0.02, lr_bu: float | None = None, lr_bi: float | None = None,
                 lr_pu: float | None = None, lr_qi: float | None = None,
                 reg_bu: float | None = None, reg_bi: float | None = None,
                 reg_pu: float | None = None, reg_qi: float | None = None,
                 shuffle: bool = True, early_stopping_patience: int | None = None,
                 random_state: int | None = 0) -> None:
        self.n_factors = n_factors
        self.n_epochs = n_epochs
        self.biased = biased
        self.init_mean = init_mean
        self.init_std_dev = init_std_dev
        self.lr_all = lr_all
        self.reg_all = reg_all
        self.lr_bu = lr_bu
        self.lr_bi = lr_bi
        self.lr_pu = lr_pu
        self.lr_qi = lr_qi
        self.reg_bu = reg_bu
        self.reg_bi = reg_bi
        self.reg_pu = reg_pu
        self.reg_qi = reg_qi
        self.shuffle = shuffle
        self.early_stopping_patience = early_stopping_patience
        self.random_state = random_state

    def _validate_params(self) -> None:
        self._validate_common()
        check_bool(self, "biased", self.biased)
        check_float(self, "lr_all", self.lr_all)
        check_float(self, "reg_all", self.reg_all)
        check_float(self, "init_std_dev", self.init_std_dev)
        if not np.isfinite(float(self.init_mean)):
            raise DataError(f"SVD: init_mean must be finite, got {self.init_mean!r}")

    def _fit(self, train: Interactions, features: Any, valid: Interactions | None,
             options: FitOptions) -> None:
        check_explicit(self, train)
        rng = np.random.default_rng(self.random_state)
        k = int(self.n_factors)
        p = self._padded(self._init_normal(rng, train.user_counts()))
        q = self._padded(self._init_normal(rng, train.item_counts()))
        self.user_factors_, self.item_factors_ = p[:, :k], q[:, :k]
        biased = bool(self.biased)
        if biased:
            self.user_bias_ = np.zeros(train.n_users, dtype=np.float32)
            self.item_bias_ = np.zeros(train.n_items, dtype=np.float32)
            self.global_bias_ = np.array([self.global_mean_], dtype=np.float64)
            bu, bi, mu = self.user_bias_, self.item_bias_, np.float32(self.global_mean_)
        else:  # the kernel never reads these
            bu, bi, mu = np.zeros(1, np.float32), np.zeros(1, np.float32), np.float32(0.0)
        n_threads = resolve_threads(options.n_threads, len(train))
        rates = [np.float32(x) for x in self._rates()]
        shuffle = bool(self.shuffle)
        # by user (see svd_user_kernel): users in a fresh order each epoch, each user's
        # ratings shuffled by the kernel; Hogwild threads take disjoint runs of users
        order = UserBlockOrder(train.user, train.item, train.value, train.n_users, rng,
                               shuffle, segments=False)
        kernel = svd_user_kernel(p.shape[1])
        lanes = SVD_LANES if shuffle else 1
        parts = 1 if n_threads == 1 else n_threads * CHUNKS_PER_THREAD
        with ChunkRunner(n_threads) as runner:
            def step(epoch: int) -> float:
                users, indptr, i, r = order.next()
                seed = draw_seed(rng) if shuffle else np.uint64(0)
                bounds = weighted_bounds(order.mass(), parts)
                return runner.run_pulled(kernel, bounds, users, indptr, i, r, seed, shuffle,
                                         lanes, mu, bu, bi, p, q, biased, *rates)

            self._train(train, valid, options, step, "SVD")


class SVDpp(FactorModel):
    """SVD++ (Koren 2008), Surprise's ``SVDpp``: SVD plus implicit feedback from what was rated.

    ``r_ui = mu + b_u + b_i + q_i . (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j)`` with
    ``N(u)`` the items ``u`` rated in training; ``y_j`` is the group
    ``item_implicit``. Surprise's per-rating SGD updates, with ``z_u`` the implicit
    sum and ``e`` the current error::

        b_u, b_i as SVD;  p_u += lr_pu (e q_i - reg_pu p_u)
        q_i += lr_qi (e (p_u + z_u) - reg_qi q_i)
        y_j += lr_yj (e q_i |N(u)|^-1/2 - reg_yj y_j)   for every j in N(u)

    Update schedule (why it is fast): ratings are visited user by user -- users
    in a random order, each user's ratings in a random order, reshuffled every
    epoch (``shuffle=False``: Surprise's own order, which is also user by user).
    ``z_u`` is summed once when a user's block starts and then carried exactly,
    and the ``y_j`` updates of the block, being one affine map for all ``j``, are
    composed and applied once when it ends (see ``svdpp_epoch``). The result is
    Surprise's sequence of updates for that order, up to float32 rounding, at
    O(k) per rating instead of O(|N(u)| k).

    Defaults as Surprise: 20 factors, 20 epochs, lr 0.007, reg 0.02,
    ``N(0, 0.1)`` initialisation. Threads, shuffle and early stopping as in :class:`SVD`.
    """

    _rate_terms = ("bu", "bi", "pu", "qi", "yj")

    def __init__(self, n_factors: int = 20, n_epochs: int = 20, init_mean: float = 0.0,
                 init_std_dev: float = 0.1, lr_all: float = 0.007, reg_all: float = 0.02,
                 lr_bu: float | None = None, lr_bi: float | None = None,
                 lr_pu: float | None = None, lr_qi: float | None = None,
                 lr_yj: float | None = None, reg_bu: float | None = None,
                 reg_bi: float | None = None, reg_pu: float | None = None,
                 reg_qi: float | None = None, reg_yj: float | None = None,
                 shuffle: bool = True, early_stopping_patience: int | None = None,
                 random_state: int | None = 0) -> None:
        self.n_factors = n_factors
        self.n_epochs = n_epochs
        self.init_mean = init_mean
        self.init_std_dev = init_std_dev
        self.lr_all = lr_all
        self.reg_all = reg_all
        self.lr_bu = lr_bu
        self.lr_bi = lr_bi
        self.lr_pu = lr_pu
        self.lr_qi = lr_qi
        self.lr_yj = lr_yj
        self.reg_bu = reg_bu
        self.reg_bi = reg_bi
        self.reg_pu = reg_pu
        self.reg_qi = reg_qi
        self.reg_yj = reg_yj
        self.shuffle = shuffle
        self.early_stopping_patience = early_stopping_patience
        self.random_state = random_state

    def _validate_params(self) -> None:
        self._validate_common()
        check_float(self, "lr_all", self.lr_all)
        check_float(self, "reg_all", self.reg_all)
        check_float(self, "init_std_dev", self.init_std_dev)
        if not np.isfinite(float(self.init_mean)):
            raise DataError(f"SVDpp: init_mean must be finite, got {self.init_mean!r}")

    def parameters(self) -> dict[str, np.ndarray]:
        out = super().parameters()
        out["item_implicit"] = self.item_implicit_
        return out

    def _user_repr(self, u: np.ndarray) -> np.ndarray:
        """``p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j`` from the training pairs (``seen_``)."""
        rows = self.seen_[np.asarray(u, dtype=np.int64)]
        counts = np.diff(rows.indptr).astype(np.float32)
        scale = np.zeros_like(counts)
        np.divide(1.0, np.sqrt(counts), out=scale, where=counts > 0)
        implicit = np.asarray(rows @ np.asarray(self.item_implicit_, dtype=np.float32))
        return (np.asarray(self.user_factors_)[u] + implicit * scale[:, None]).astype(np.float32)

    def _fit(self, train: Interactions, features: Any, valid: Interactions | None,
             options: FitOptions) -> None:
        check_explicit(self, train)
        rng = np.random.default_rng(self.random_state)
        icounts = train.item_counts()
        p = self._init_normal(rng, train.user_counts())
        q = self._init_normal(rng, icounts)
        y = self._init_normal(rng, icounts)
        self.user_factors_, self.item_factors_, self.item_implicit_ = p, q, y
        self.user_bias_ = bu = np.zeros(train.n_users, dtype=np.float32)
        self.item_bias_ = bi = np.zeros(train.n_items, dtype=np.float32)
        self.global_bias_ = np.array([self.global_mean_], dtype=np.float64)
        mu = np.float32(self.global_mean_)
        order = UserBlockOrder(train.user, train.item, train.value, train.n_users, rng,
                               bool(self.shuffle))
        n_threads = resolve_threads(options.n_threads, len(train))
        rates = [np.float32(x) for x in self._rates()]
        with ChunkRunner(n_threads) as runner:
            def step(epoch: int) -> float:
                users, indptr, i, r = order.next()
                bounds = weighted_bounds(order.mass(), n_threads)
                return runner.run(svdpp_epoch, bounds, users, indptr, i, r, mu, bu, bi, p, q, y,
                                  *rates)

            self._train(train, valid, options, step, "SVD++")
