"""Neural collaborative filtering (He et al. 2017): GMF, MLP and NeuMF.

* **GMF**: ``ŷ = hᵀ(p_u ⊙ q_i) + b`` — matrix factorisation with a learned weighting
  of the latent dimensions.
* **MLP**: ``ŷ = hᵀ MLP([p_u; q_i]) + b`` — a tower of ReLU layers over the
  concatenated embeddings, able to model non-linear user–item interactions.
* **NeuMF**: separate GMF and MLP embeddings, ``ŷ = hᵀ[p^G_u ⊙ q^G_i ; MLP([p^M_u; q^M_i])] + b``.

Training objectives (``loss=``): ``"bce"`` (the paper's pointwise log-loss with
``neg_ratio`` sampled negatives per positive; outputs are logits), ``"bpr"``
(pairwise, ``neg_ratio`` negatives per positive) and ``"mse"`` (explicit ratings;
outputs are ratings, the head's bias starts at the global mean). With implicit
losses every training row with a nonzero value is a positive — binarise explicit
ratings first (``Interactions.binarize(4)``). Negatives never include a known
positive (:class:`~rectune.models.neural.sampling.NegativeSampler`).

``fit(train, valid=...)`` early-stops on NDCG@10 (implicit losses; candidates
exclude training items) or on RMSE (``"mse"``) with ``patience`` epochs, and keeps
the best epoch's weights. Parameter groups: ``user_embedding`` / ``item_embedding``
(NeuMF: ``user_gmf_embedding``, ``item_gmf_embedding``, ``user_mlp_embedding``,
``item_mlp_embedding``), ``mlp.*`` and ``head.*``. Unknown users get the
popularity ranking of the base class. Initialisation follows the paper:
embeddings ``N(0, 0.01²)``, layers Xavier-uniform.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rectune._errors import DataError
from rectune.data.interactions import Interactions
from rectune.models.als import _check_nonneg_float, _check_positive_int, _check_seed
from rectune.models.neural.base import NeuralRecommender, ndcg_validator, rmse_validator
from rectune.models.neural.losses import bce_loss, bpr_loss, check_loss, mse_loss
from rectune.models.neural.sampling import (
    NegativeSampler,
    PairwiseBatches,
    PointwiseBatches,
    RatingBatches,
)

__all__ = ["GMF", "MLP", "NeuMF", "mlp_tower"]


def mlp_tower(n_in: int, layers: Sequence[int], dropout: float) -> nn.Sequential:
    """``Linear → ReLU → Dropout`` blocks (Xavier-uniform weights, zero biases)."""
    mods: list[nn.Module] = []
    for width in layers:
        lin = nn.Linear(n_in, int(width))
        nn.init.xavier_uniform_(lin.weight)
        nn.init.zeros_(lin.bias)
        mods += [lin, nn.ReLU()]
        if dropout > 0:
            mods.append(nn.Dropout(dropout))
        n_in = int(width)
    return nn.Sequential(*mods)


def _embedding(n: int, f: int) -> nn.Embedding:
    e = nn.Embedding(n, f)
    nn.init.normal_(e.weight, std=0.01)
    return e


def _head(n_in: int, bias: float) -> nn.Linear:
    h = nn.Linear(n_in, 1)
    nn.init.xavier_uniform_(h.weight)
    nn.init.constant_(h.bias, bias)
    return h


def _mlp_block(mlp: nn.Sequential, f: int, pu: torch.Tensor, qi: torch.Tensor) -> torch.Tensor:
    """``MLP([p_u; q_i])`` for every (user, item) pair of two blocks, ``(nu, ni, out)``.

    The first layer is linear in the concatenation, ``W[p; q] + c = W_u p + W_i q + c``,
    so it is computed once per user and once per item and broadcast: scoring a
    catalogue costs no first-layer multiply per pair.
    """
    lin = mlp[0]
    assert isinstance(lin, nn.Linear)
    a = F.linear(pu, lin.weight[:, :f], lin.bias)
    b = F.linear(qi, lin.weight[:, f:])
    out: torch.Tensor = mlp[1:](a[:, None, :] + b[None, :, :])
    return out


class _GMFModule(nn.Module):
    def __init__(self, n_users: int, n_items: int, f: int, bias: float) -> None:
        super().__init__()
        self.user_embedding = _embedding(n_users, f)
        self.item_embedding = _embedding(n_items, f)
        self.head = _head(f, bias)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return self.head(self.user_embedding(u) * self.item_embedding(i)).squeeze(-1)

    def block(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """``(len(u), len(i))`` scores: ``(p_u ⊙ h) Q^T + b`` as one matrix product."""
        pu = self.user_embedding(u) * self.head.weight[0]
        return pu @ self.item_embedding(i).T + self.head.bias


class _MLPModule(nn.Module):
    def __init__(self, n_users: int, n_items: int, f: int, layers: Sequence[int],
                 dropout: float, bias: float) -> None:
        super().__init__()
        self.user_embedding = _embedding(n_users, f)
        self.item_embedding = _embedding(n_items, f)
        self.mlp = mlp_tower(2 * f, layers, dropout)
        self.head = _head(int(layers[-1]) if layers else 2 * f, bias)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.user_embedding(u), self.item_embedding(i)], dim=-1)
        return self.head(self.mlp(x)).squeeze(-1)

    def block(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor | None:
        if len(self.mlp) == 0:
            return None
        f = self.user_embedding.embedding_dim
        h = _mlp_block(self.mlp, f, self.user_embedding(u), self.item_embedding(i))
        return self.head(h).squeeze(-1)


class _NeuMFModule(nn.Module):
    def __init__(self, n_users: int, n_items: int, f: int, layers: Sequence[int],
                 dropout: float, bias: float) -> None:
        super().__init__()
        self.user_gmf_embedding = _embedding(n_users, f)
        self.item_gmf_embedding = _embedding(n_items, f)
        self.user_mlp_embedding = _embedding(n_users, f)
        self.item_mlp_embedding = _embedding(n_items, f)
        self.mlp = mlp_tower(2 * f, layers, dropout)
        self.head = _head(f + (int(layers[-1]) if layers else 2 * f), bias)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        g = self.user_gmf_embedding(u) * self.item_gmf_embedding(i)
        m = self.mlp(torch.cat([self.user_mlp_embedding(u), self.item_mlp_embedding(i)], -1))
        return self.head(torch.cat([g, m], dim=-1)).squeeze(-1)

    def block(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor | None:
        if len(self.mlp) == 0:
            return None
        f = self.user_gmf_embedding.embedding_dim
        w = self.head.weight[0]
        g = (self.user_gmf_embedding(u) * w[:f]) @ self.item_gmf_embedding(i).T
        h = _mlp_block(self.mlp, f, self.user_mlp_embedding(u), self.item_mlp_embedding(i))
        return g + h @ w[f:] + self.head.bias


class _NCF(NeuralRecommender):
    """Shared fitting logic of GMF / MLP / NeuMF (hyper-parameters: see :class:`NeuMF`)."""

    loss: str
    n_factors: int
    neg_ratio: int
    random_state: int | None

    def _validate_params(self) -> None:
        check_loss(self.loss)
        _check_positive_int("n_factors", self.n_factors)
        _check_positive_int("neg_ratio", self.neg_ratio)
        _check_positive_int("epochs", getattr(self, "epochs", 1), 0)
        _check_positive_int("batch_size", getattr(self, "batch_size", 1))
        _check_nonneg_float("lr", getattr(self, "lr", 1.0), strict=True)
        _check_nonneg_float("weight_decay", getattr(self, "weight_decay", 0.0))
        patience = getattr(self, "patience", None)
        if patience is not None:
            _check_positive_int("patience", patience)
        layers = getattr(self, "layers", (1,))
        if not isinstance(layers, tuple | list) or not all(
                isinstance(w, int | np.integer) and not isinstance(w, bool) and w > 0
                for w in layers):
            raise DataError(f"layers must be a sequence of positive ints, got {layers!r}")
        dropout = getattr(self, "dropout", 0.0)
        if not isinstance(dropout, int | float) or isinstance(dropout, bool) \
                or not 0 <= dropout < 1:
            raise DataError(f"dropout must be in [0, 1), got {dropout!r}")
        _check_seed(self.random_state)

    def _head_bias(self) -> float:
        return float(getattr(self, "global_mean_", 0.0)) if self._is_explicit() else 0.0

    def _pair_scores(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module_(u, i)
        return out

    def _train(self, train: Interactions, features: Any, valid: Interactions | None) -> None:
        bs = int(getattr(self, "batch_size", 256))
        if self.loss == "mse":
            batches: Any = RatingBatches(train.user, train.item, train.value, bs)

            def loss_fn(m: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
                return mse_loss(m(b["user"], b["item"]), b["value"])
        else:
            pos = np.asarray(train.value) != 0
            if not pos.any():
                raise DataError(f"{type(self).__name__}(loss={self.loss!r}): the training "
                                "data has no nonzero (positive) interaction")
            sampler = NegativeSampler(self.seen_)
            u, i = train.user[pos], train.item[pos]
            if self.loss == "bce":
                batches = PointwiseBatches(u, i, sampler, self.neg_ratio, bs)

                def loss_fn(m: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
                    return bce_loss(m(b["user"], b["item"]), b["label"])
            else:
                batches = PairwiseBatches(u, i, sampler, self.neg_ratio, bs)

                def loss_fn(m: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
                    user, neg = b["user"], b["neg"]
                    x_pos = m(user, b["pos"])
                    x_neg = m(user.repeat_interleave(neg.shape[1]), neg.reshape(-1))
                    return bpr_loss(x_pos, x_neg.reshape(neg.shape))
        validate = None
        if valid is not None:
            validate = (rmse_validator(self, valid) if self._is_explicit()
                        else ndcg_validator(self, valid))
        self._run_trainer(loss_fn, batches, validate=validate)

    def _item_vectors(self) -> np.ndarray:
        return self.parameters()[self._item_table]

    def _user_vectors(self) -> np.ndarray:
        return self.parameters()[self._user_table]

    _item_table: ClassVar[str] = "item_embedding"
    _user_table: ClassVar[str] = "user_embedding"


class GMF(_NCF):
    """Generalised matrix factorisation (He et al. 2017, §3.2).

    Parameters
    ----------
    n_factors:
        Embedding size.
    loss:
        ``"bce"`` (sampled negatives), ``"bpr"`` or ``"mse"`` (explicit ratings).
    neg_ratio:
        Negatives per positive for "bce" / "bpr".
    epochs, lr, batch_size, weight_decay:
        Adam's schedule; ``batch_size`` counts positives (rows for "mse").
    patience:
        Early-stopping patience on ``valid`` (None: off).
    clip_grad:
        Gradient-norm clip (None: off).
    random_state:
        Seed of initialisation, shuffles, negatives and dropout.
    """

    def __init__(self, n_factors: int = 32, loss: str = "bce", neg_ratio: int = 4,
                 epochs: int = 20, lr: float = 1e-3, batch_size: int = 256,
                 weight_decay: float = 0.0, patience: int | None = 3,
                 clip_grad: float | None = 5.0, random_state: int | None = 0) -> None:
        self.n_factors = n_factors
        self.loss = loss
        self.neg_ratio = neg_ratio
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.patience = patience
        self.clip_grad = clip_grad
        self.random_state = random_state

    def _build_module(self) -> nn.Module:
        return _GMFModule(self.n_users, self.n_items, int(self.n_factors), self._head_bias())


class _Towered(_NCF):
    """The constructor MLP and NeuMF share: embeddings plus an MLP tower."""

    def __init__(self, n_factors: int = 32, layers: Sequence[int] = (64, 32, 16),
                 dropout: float = 0.0, loss: str = "bce", neg_ratio: int = 4,
                 epochs: int = 20, lr: float = 1e-3, batch_size: int = 256,
                 weight_decay: float = 0.0, patience: int | None = 3,
                 clip_grad: float | None = 5.0, random_state: int | None = 0) -> None:
        self.n_factors = n_factors
        self.layers = tuple(layers)
        self.dropout = dropout
        self.loss = loss
        self.neg_ratio = neg_ratio
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.patience = patience
        self.clip_grad = clip_grad
        self.random_state = random_state


class MLP(_Towered):
    """Multi-layer perceptron over concatenated embeddings (He et al. 2017, §3.3).

    ``layers`` are the hidden widths (the paper's tower halves each layer, e.g.
    ``(64, 32, 16)``); ``dropout`` applies after each hidden layer. Other
    parameters as in :class:`GMF`.
    """

    def _build_module(self) -> nn.Module:
        return _MLPModule(self.n_users, self.n_items, int(self.n_factors), self.layers,
                          float(self.dropout), self._head_bias())


class NeuMF(_Towered):
    """Neural matrix factorisation: GMF and MLP branches fused by one head (He et al. 2017, §3.4).

    ``n_factors`` is the size of each of the four embedding tables; other
    parameters as in :class:`MLP`.
    """

    _item_table: ClassVar[str] = "item_gmf_embedding"
    _user_table: ClassVar[str] = "user_gmf_embedding"

    def _build_module(self) -> nn.Module:
        return _NeuMFModule(self.n_users, self.n_items, int(self.n_factors), self.layers,
                            float(self.dropout), self._head_bias())
