"""Baseline: global mean plus regularised user and item biases (Surprise ``BaselineOnly``).

The model is ``r_ui = mu + b_u + b_i`` (Koren 2010, section 2.1), the baseline
every rating model is judged against and the bias part of SVD/SVD++/KNNBaseline.
``mu`` is the training mean and is not learned.

Two fitting methods, with Surprise's defaults and semantics:

* ``method="als"`` (default): alternating closed-form updates, items first::

      b_i = sum_{u in U_i} (r_ui - mu - b_u) / (reg_i + |U_i|)
      b_u = sum_{i in I_u} (r_ui - mu - b_i) / (reg_u + |I_u|)

  ``n_epochs=10``, ``reg_u=15``, ``reg_i=10``. Each sweep is two ``bincount``
  calls, so it is exact, deterministic and runs at memory speed.
* ``method="sgd"``: per rating, ``e = r - (mu + b_u + b_i)``,
  ``b_u += lr (e - reg b_u)``, ``b_i += lr (e - reg b_i)``; ``n_epochs=20``,
  ``reg=0.02``, ``learning_rate=0.005``. Surprise visits ratings user by user in
  a fixed order; here each epoch is shuffled (``shuffle=True``, seeded by
  ``random_state``) unless ``shuffle=False`` asks for Surprise's order.

Unknown user: ``mu + b_i``; unknown item: ``mu + b_u``; both: ``mu`` -- as Surprise.
A user or item present in the id map but without a training rating counts as
unknown too (its bias is 0 either way, and :meth:`known` says False).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rectune._errors import DataError
from rectune.data.interactions import Interactions
from rectune.models._mf_kernels import (
    bias_sgd_epoch,
    resolve_threads,
    run_epochs,
)
from rectune.models._mf_order import EpochOrder
from rectune.models.base import FitOptions, Recommender

__all__ = ["Baseline"]

_DEFAULT_EPOCHS = {"als": 10, "sgd": 20}


# ------------------------------------------------------------ hyper-parameter checks
def check_int(owner: object, name: str, value: Any, minimum: int) -> None:
    """Raise DataError unless ``value`` is an int >= ``minimum`` (bool is not an int here)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise DataError(f"{type(owner).__name__}: {name} must be an integer >= {minimum}, "
                        f"got {value!r}")


def check_float(owner: object, name: str, value: Any, *, positive: bool = False) -> None:
    """Raise DataError unless ``value`` is a finite real number (>= 0, or > 0 if ``positive``)."""
    ok = (not isinstance(value, bool) and isinstance(value, int | float | np.number)
          and math.isfinite(float(value)))
    if ok:
        ok = float(value) > 0 if positive else float(value) >= 0
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise DataError(f"{type(owner).__name__}: {name} must be a finite number {bound}, "
                        f"got {value!r}")


def check_bool(owner: object, name: str, value: Any) -> None:
    if not isinstance(value, bool | np.bool_):
        raise DataError(f"{type(owner).__name__}: {name} must be True or False, got {value!r}")


def check_seed(owner: object, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | np.integer)
                              or value < 0):
        raise DataError(f"{type(owner).__name__}: random_state must be a non-negative int or "
                        f"None, got {value!r}")


def check_explicit(owner: object, train: Interactions) -> None:
    """These models regress ratings: refuse implicit events with a pointer to the right models."""
    if train.kind != "explicit":
        raise DataError(f"{type(owner).__name__} fits explicit ratings, but the training data "
                        f"is {train.kind!r}; use a ranking model (ALS, BPR, EASE) for implicit "
                        f"events")


def present(counts: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Mask of indices ``>= 0`` that had at least one training rating."""
    ok = (idx >= 0) & (idx < len(counts))
    ok[ok] = counts[idx[ok]] > 0
    return ok


class Baseline(Recommender):
    """``mu + b_u + b_i`` fitted by ALS or SGD exactly like Surprise's ``BaselineOnly``.

    Parameters
    ----------
    method:
        ``"als"`` (alternating closed-form sweeps) or ``"sgd"``.
    n_epochs:
        Sweeps; ``None`` means Surprise's default for the method (ALS 10, SGD 20).
    reg_u, reg_i:
        ALS shrinkage of user and item biases (Surprise 15 and 10).
    reg, learning_rate:
        SGD regularisation and step (Surprise 0.02 and 0.005).
    shuffle:
        SGD only: a fresh random rating order each epoch (``False``: Surprise's
        fixed user-by-user order).
    random_state:
        Seed of the SGD shuffles (ALS uses no randomness).
    """

    family = "baseline"
    _extra_json = ("history_",)

    def __init__(self, method: str = "als", n_epochs: int | None = None, reg_u: float = 15.0,
                 reg_i: float = 10.0, reg: float = 0.02, learning_rate: float = 0.005,
                 shuffle: bool = True, random_state: int | None = 0) -> None:
        self.method = method
        self.n_epochs = n_epochs
        self.reg_u = reg_u
        self.reg_i = reg_i
        self.reg = reg
        self.learning_rate = learning_rate
        self.shuffle = shuffle
        self.random_state = random_state

    def _validate_params(self) -> None:
        if self.method not in ("als", "sgd"):
            raise DataError(f"Baseline: method must be 'als' or 'sgd', got {self.method!r}")
        if self.n_epochs is not None:
            check_int(self, "n_epochs", self.n_epochs, 1)
        for name in ("reg_u", "reg_i", "reg"):
            check_float(self, name, getattr(self, name))
        check_float(self, "learning_rate", self.learning_rate, positive=True)
        check_bool(self, "shuffle", self.shuffle)
        check_seed(self, self.random_state)

    # ----------------------------------------------------------------------- fit
    def _fit(self, train: Interactions, features: Any, valid: Interactions | None,
             options: FitOptions) -> None:
        check_explicit(self, train)
        n_epochs = self.n_epochs if self.n_epochs is not None else _DEFAULT_EPOCHS[self.method]
        mu = self.global_mean_
        self.global_bias_ = np.array([mu], dtype=np.float64)
        self.user_bias_ = np.zeros(train.n_users, dtype=np.float64)
        self.item_bias_ = np.zeros(train.n_items, dtype=np.float64)
        self.history_: dict[str, Any] = {}
        valid_rmse = None if valid is None else (lambda: _rmse_on(self, valid))
        if self.method == "als":
            step = self._als_step(train)
            run_epochs(self.history_, n_epochs, step, n_ratings=len(train),
                       label="Baseline (ALS)", progress=options.progress,
                       valid_rmse=valid_rmse)
            return
        # SGD on one thread, so the result is reproducible; a second thread, when the
        # options allow one, makes the next epoch's order meanwhile (the shuffle costs
        # more than this model's updates)
        background = resolve_threads(options.n_threads, len(train)) > 1
        with EpochOrder(train.user, train.item, train.value,
                        np.random.default_rng(self.random_state), self.shuffle,
                        background=background) as order:
            def sgd_step(epoch: int) -> float:
                u, i, r = order.next()
                return bias_sgd_epoch(0, len(u), u, i, r, mu, self.user_bias_, self.item_bias_,
                                      float(self.learning_rate), float(self.reg))

            run_epochs(self.history_, n_epochs, sgd_step, n_ratings=len(train),
                       label="Baseline (SGD)", progress=options.progress,
                       valid_rmse=valid_rmse)

    def _als_step(self, train: Interactions) -> Any:
        """One ALS sweep (items, then users) as a closure returning the post-sweep SSE."""
        u, i = train.user, train.item
        r = train.value.astype(np.float64) - self.global_mean_
        n_u = np.bincount(u, minlength=train.n_users).astype(np.float64)
        n_i = np.bincount(i, minlength=train.n_items).astype(np.float64)
        reg_u, reg_i = float(self.reg_u), float(self.reg_i)

        def step(epoch: int) -> float:
            # assign whole arrays at once: a Ctrl-C leaves a consistent coordinate-descent state
            dev_i = np.bincount(i, weights=r - self.user_bias_[u], minlength=len(n_i))
            self.item_bias_ = _safe_divide(dev_i, reg_i + n_i)
            dev_u = np.bincount(u, weights=r - self.item_bias_[i], minlength=len(n_u))
            self.user_bias_ = _safe_divide(dev_u, reg_u + n_u)
            res = r - self.user_bias_[u] - self.item_bias_[i]
            return float(np.einsum("i,i->", res, res))  # not BLAS: its threads cost more here

        return step

    # -------------------------------------------------------------------- params
    def parameters(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        return {"user_bias": self.user_bias_, "item_bias": self.item_bias_,
                "global_bias": self.global_bias_}

    # ------------------------------------------------------------------- predict
    def _mu(self) -> float:
        return float(np.asarray(self.global_bias_).reshape(-1)[0])

    def _predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return self._mu() + self.user_bias_[u].astype(np.float64) + self.item_bias_[i]

    def _predict_unknown(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        out = np.full(len(u), self._mu(), dtype=np.float64)
        ku, ki = u >= 0, i >= 0
        out[ku] += self.user_bias_[u[ku]]
        out[ki] += self.item_bias_[i[ki]]
        return out

    def _known(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return present(np.diff(self.seen_.indptr), u) & present(self.item_popularity_, i)

    def _score(self, u: np.ndarray) -> np.ndarray:
        return (self._mu() + self.user_bias_[u].astype(np.float64)[:, None]
                + self.item_bias_.astype(np.float64)[None, :])


# ---------------------------------------------------------------------- helpers
def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (a zero regulariser and no rating)."""
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _rmse_on(model: Recommender, data: Interactions) -> float:
    """RMSE of ``model`` on ``data`` (same id maps), predictions clipped to the rating scale."""
    pred = model.predict_indices(data.user, data.item)
    err = pred - data.value
    return float(np.sqrt(np.mean(err * err)))
