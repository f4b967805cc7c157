"""ClickMF: a click-through-rate model, MF body with a logistic head.

``P(click | u, i) = σ(a · s_ui + c)`` with ``s_ui = mu + b_u + b_i + p_u · q_i``
trained with log-loss. It is what a rating model becomes after a task change
(rating -> click for ads, see :mod:`rectune.finetune.task`), and it can be
trained from scratch on click labels for comparison.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from rectune.data.interactions import Interactions
from rectune.models._mf_kernels import run_epochs
from rectune.models._mf_order import EpochOrder
from rectune.models.base import FitOptions, Recommender
from rectune.models.baseline import check_float, check_int, check_seed


def click_labels(data: Interactions, threshold: float) -> np.ndarray:
    """0/1 labels: a binary column as is, otherwise ``value >= threshold``."""
    v = data.value
    if np.all((v == 0) | (v == 1)):
        return v.astype(np.float32)
    return (v >= threshold).astype(np.float32)


def sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z, dtype=np.float64)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


class ClickMF(Recommender):
    """Logistic matrix factorisation for clicks (rows of ``value >= threshold`` are clicks).

    Groups: ``user_factors``, ``item_factors``, ``user_bias``, ``item_bias``,
    ``global_bias`` and the head ``head.weight`` / ``head.bias``.
    """

    family = "mf"
    predicts_ratings = False
    _extra_json: ClassVar[tuple[str, ...]] = ("history_",)

    def __init__(self, n_factors: int = 32, n_epochs: int = 20, learning_rate: float = 0.01,
                 reg: float = 0.01, init_std_dev: float = 0.1, threshold: float = 4.0,
                 random_state: int | None = 0) -> None:
        self.n_factors = n_factors
        self.n_epochs = n_epochs
        self.learning_rate = learning_rate
        self.reg = reg
        self.init_std_dev = init_std_dev
        self.threshold = threshold
        self.random_state = random_state

    def _validate_params(self) -> None:
        check_int(self, "n_factors", self.n_factors, 0)
        check_int(self, "n_epochs", self.n_epochs, 0)
        check_float(self, "learning_rate", self.learning_rate, positive=True)
        check_float(self, "reg", self.reg)
        check_float(self, "init_std_dev", self.init_std_dev)
        check_seed(self, self.random_state)

    def _fit(self, train: Interactions, features: Any, valid: Interactions | None,
             options: FitOptions) -> None:
        from rectune.finetune._kernels import click_mf_epoch

        rng = np.random.default_rng(self.random_state)
        y = click_labels(train, self.threshold)
        rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
        self.user_factors_ = rng.normal(0, self.init_std_dev,
                                        (train.n_users, self.n_factors)).astype(np.float32)
        self.item_factors_ = rng.normal(0, self.init_std_dev,
                                        (train.n_items, self.n_factors)).astype(np.float32)
        self.user_bias_ = np.zeros(train.n_users, dtype=np.float32)
        self.item_bias_ = np.zeros(train.n_items, dtype=np.float32)
        self.global_bias_ = np.array([np.log(rate / (1 - rate))], dtype=np.float64)
        self.head_ = np.array([1.0, 0.0], dtype=np.float64)
        lr = float(self.learning_rate)
        self._train_epochs(train, y, valid, options.progress, rng,
                           lambda u, i, yy: click_mf_epoch(
                               u, i, yy, self.head_, self.global_bias_, self.user_bias_,
                               self.item_bias_, self.user_factors_, self.item_factors_, 0.0,
                               self.user_bias_, self.item_bias_, self.user_factors_,
                               self.item_factors_, np.zeros(train.n_users, np.bool_),
                               np.zeros(train.n_items, np.bool_), True, np.full(5, lr),
                               np.zeros(5), np.zeros(5), float(self.reg),
                               np.ones(5, np.bool_), lr), int(self.n_epochs))

    def _train_epochs(self, train: Interactions, y: np.ndarray, valid: Interactions | None,
                      progress: bool, rng: np.random.Generator, epoch_fn: Any,
                      n_epochs: int, patience: int | None = None) -> None:
        """Shared epoch loop (scratch fit and fine-tuning): log-loss, validation, early stop."""
        order = EpochOrder(train.user, train.item, y, rng, True)

        def step(epoch: int) -> float:
            u, i, yy = order.next()
            return float(epoch_fn(u, i, yy))

        def valid_loss() -> float:
            assert valid is not None
            from rectune.evaluate.clicks import log_loss

            return log_loss(click_labels(valid, self.threshold),
                            self.predict_indices(valid.user, valid.item))

        self.history_: dict[str, Any] = {}
        names = ("user_factors_", "item_factors_", "user_bias_", "item_bias_", "global_bias_",
                 "head_")

        def snapshot() -> dict[str, np.ndarray]:
            return {n: getattr(self, n).copy() for n in names}

        def restore(snap: dict[str, np.ndarray]) -> None:
            for n, v in snap.items():
                getattr(self, n)[...] = v

        run_epochs(self.history_, n_epochs, step, n_ratings=len(train), label="ClickMF",
                   progress=progress, valid_rmse=None if valid is None else valid_loss,
                   patience=patience if valid is not None else None,
                   snapshot=snapshot, restore=restore)
        # run_epochs reports sqrt(sum/n); for log-loss we want the mean loss
        self.history_["train_logloss"] = [x * x for x in self.history_.pop("train_rmse")]
        if "valid_rmse" in self.history_:
            self.history_["valid_logloss"] = self.history_.pop("valid_rmse")

    # ------------------------------------------------------------------ params
    def parameters(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_,
                "user_bias": self.user_bias_, "item_bias": self.item_bias_,
                "global_bias": self.global_bias_, "head.weight": self.head_[:1],
                "head.bias": self.head_[1:]}

    def _set_parameters(self, params: dict[str, np.ndarray]) -> None:
        head = np.array([float(params.pop("head.weight")[0]), float(params.pop("head.bias")[0])])
        super()._set_parameters(params)
        self.head_ = head

    # ----------------------------------------------------------------- predict
    def _raw_score(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        dots = np.einsum("ij,ij->i", self.user_factors_[u].astype(np.float64),
                         self.item_factors_[i].astype(np.float64))
        return dots + float(self.global_bias_[0]) + self.user_bias_[u] + self.item_bias_[i]

    def _predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return sigmoid(self.head_[0] * self._raw_score(u, i) + self.head_[1])

    def _predict_unknown(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        s = np.full(len(u), float(self.global_bias_[0]))
        ku, ki = u >= 0, i >= 0
        s[ku] += self.user_bias_[u[ku]]
        s[ki] += self.item_bias_[i[ki]]
        return sigmoid(self.head_[0] * s + self.head_[1])

    def _score(self, u: np.ndarray) -> np.ndarray:
        s = self.user_factors_[u].astype(np.float64) @ self.item_factors_.T.astype(np.float64)
        s += float(self.global_bias_[0]) + self.user_bias_[u][:, None] + self.item_bias_[None, :]
        return sigmoid(self.head_[0] * s + self.head_[1])

    def _item_vectors(self) -> np.ndarray:
        return np.asarray(self.item_factors_)

    def _user_vectors(self) -> np.ndarray:
        return np.asarray(self.user_factors_)

