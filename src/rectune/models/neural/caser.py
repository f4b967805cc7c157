"""Caser: convolutional sequence embedding for next-item recommendation.

Tang & Wang, "Personalized Top-N Sequential Recommendation via Convolutional
Sequence Embedding" (WSDM 2018). The last ``L`` items of a user form an ``L x d``
"image" ``E`` (one embedding per row, oldest first). Two kinds of filters read it:

* **horizontal** filters of height ``h = 1..L`` and full width ``d`` slide over
  rows, each followed by an activation and max-pooling over time: they detect
  union-level patterns (a few items that together predict the next one), wherever
  they occur in the window;
* **vertical** filters of size ``L x 1`` weight the rows per column: a learned,
  position-aware sum of the embeddings (point-level patterns).

Both outputs are concatenated, dropout-ed and mapped to ``d`` dimensions,
``z = phi(W1 [o_h; o_v] + b1)``, and the score of item ``i`` is
``y_i = W2_i . [z; P_u] + b2_i`` with the user's embedding ``P_u`` (long-term taste).
Training predicts the next ``T`` items of each window: binary cross-entropy on the
targets against sampled negatives (never an item the user chose), as in the paper,
or a full softmax cross-entropy over the catalogue.

Parameter groups (DESIGN.md naming): ``item_embedding`` (``E``), ``user_embedding``
(``P``), ``item_output`` (``W2``), ``item_bias`` (``b2``), ``conv.horizontal.<k>.*``,
``conv.vertical.*`` and ``head.*`` (``W1``, ``b1``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rectune._errors import DataError
from rectune.models.neural.sequence import (
    PAD,
    KnownPairs,
    SequenceRecommender,
    Sequences,
    check_choice,
    check_number,
    sample_negatives,
)
from rectune.models.neural.trainer import BatchFn, LossFn

__all__ = ["Caser", "CaserConv", "CaserModule"]

_ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")


def _activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU(), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(),
            "identity": nn.Identity()}[name]


class CaserConv(nn.Module):
    """The two filter banks: ``vertical`` (``n_v`` filters ``L x 1``, no activation) and
    ``horizontal`` (``n_h`` filters ``h x d`` for each ``h = 1..L``, activation, max-pool
    over time). ``(B, 1, L, d)`` -> ``(B, n_v * d + n_h * L)``."""

    def __init__(self, d: int, max_len: int, n_h: int, n_v: int, activation: str) -> None:
        super().__init__()
        self.vertical = nn.Conv2d(1, n_v, (max_len, 1)) if n_v else None
        self.horizontal = nn.ModuleList(
            [nn.Conv2d(1, n_h, (h, d)) for h in range(1, max_len + 1)] if n_h else [])
        self.act = _activation(activation)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.vertical is not None:
            parts.append(self.vertical(e).flatten(1))  # (B, n_v * d)
        for conv in self.horizontal:
            c = self.act(conv(e).squeeze(3))  # (B, n_h, L - h + 1)
            parts.append(c.max(dim=2).values)  # max-pool over time
        return torch.cat(parts, dim=1)


class CaserModule(nn.Module):
    """The Caser network; :meth:`represent` gives ``[z; P_u]`` for a batch of windows.

    Padding (item -1) is embedded as the zero vector, so ``item_embedding`` keeps
    exactly one row per item. Users unknown to the model (index -1: session-based
    serving) get the mean user embedding.
    """

    def __init__(self, n_users: int, n_items: int, n_factors: int, max_len: int, n_h: int,
                 n_v: int, dropout: float, conv_activation: str, fc_activation: str) -> None:
        super().__init__()
        d = n_factors
        self.max_len = max_len
        self.item_embedding = nn.Embedding(n_items, d)
        self.user_embedding = nn.Embedding(n_users, d)
        self.conv = CaserConv(d, max_len, n_h, n_v, conv_activation)
        self.head = nn.Linear(n_v * d + n_h * max_len, d)
        self.item_output = nn.Embedding(n_items, 2 * d)
        self.item_bias = nn.Embedding(n_items, 1)
        self.dropout = nn.Dropout(dropout)
        self.fc_act = _activation(fc_activation)
        # the reference implementation's initialisation (caser_pytorch)
        nn.init.normal_(self.item_embedding.weight, 0.0, 1.0 / d)
        nn.init.normal_(self.user_embedding.weight, 0.0, 1.0 / d)
        nn.init.normal_(self.item_output.weight, 0.0, 1.0 / (2 * d))
        nn.init.zeros_(self.item_bias.weight)

    def embed_window(self, windows: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` item indices (-1 = padding) -> ``(B, 1, L, d)``, padding = 0."""
        mask = (windows != PAD).unsqueeze(-1).to(self.item_embedding.weight.dtype)
        emb = self.item_embedding(windows.clamp(min=0)) * mask
        return emb.unsqueeze(1)

    def represent(self, users: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """``(B,)`` users (-1 = unknown) and ``(B, L)`` windows -> ``(B, 2d)``."""
        o = self.dropout(self.conv(self.embed_window(windows)))
        z = self.fc_act(self.head(o))
        known = users >= 0
        p = self.user_embedding(users.clamp(min=0))
        if not bool(known.all()):
            mean = self.user_embedding.weight.mean(dim=0, keepdim=True).expand_as(p)
            p = torch.where(known.unsqueeze(1), p, mean)
        return torch.cat([z, p], dim=1)

    def output(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Item output vectors ``W2`` ``(n_items, 2d)`` and biases ``b2`` ``(n_items,)``."""
        return self.item_output.weight, self.item_bias.weight.squeeze(1)

    def score_items(self, rep: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` representations x ``(B, K)`` items -> ``(B, K)`` scores."""
        w = self.item_output(items.clamp(min=0))
        b = self.item_bias(items.clamp(min=0)).squeeze(-1)
        return torch.einsum("bkd,bd->bk", w, rep) + b


class Caser(SequenceRecommender):
    """Caser next-item recommender (Tang & Wang 2018) over PyTorch.

    Parameters
    ----------
    n_factors:
        Embedding size ``d`` (items, users; the item output vectors have ``2d``).
    max_len:
        ``L``, the number of recent items the filters see.
    n_targets:
        ``T``, how many next items each training window predicts ("skip" behaviour).
    n_h, n_v:
        Number of horizontal filters per height ``1..L``, and of vertical filters.
    dropout:
        Dropout on the concatenated convolution outputs.
    conv_activation, fc_activation:
        ``"relu"``, ``"tanh"``, ``"sigmoid"`` or ``"identity"``.
    loss:
        ``"bce"`` (paper: targets vs ``n_negatives`` sampled negatives per window, never
        a known item of the user) or ``"ce"`` (full softmax over the catalogue).
    n_negatives:
        Negatives per window for ``"bce"``.
    epochs, batch_size, lr, weight_decay, patience:
        Training (Adam). With ``fit(..., valid=...)`` training stops after
        ``patience`` epochs without a better validation NDCG@10 and keeps the best
        weights.
    random_state:
        Seed of initialisation, shuffling, negatives and dropout.
    """

    def __init__(self, n_factors: int = 50, max_len: int = 5, n_targets: int = 3, n_h: int = 16,
                 n_v: int = 4, dropout: float = 0.5, conv_activation: str = "relu",
                 fc_activation: str = "relu", loss: str = "bce", n_negatives: int = 3,
                 epochs: int = 30, batch_size: int = 512, lr: float = 1e-3,
                 weight_decay: float = 1e-6, patience: int | None = 5,
                 random_state: int = 0) -> None:
        self.n_factors = n_factors
        self.max_len = max_len
        self.n_targets = n_targets
        self.n_h = n_h
        self.n_v = n_v
        self.dropout = dropout
        self.conv_activation = conv_activation
        self.fc_activation = fc_activation
        self.loss = loss
        self.n_negatives = n_negatives
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.random_state = random_state

    def _validate_params(self) -> None:
        check_number(self, "n_factors", 1, integer=True)
        check_number(self, "max_len", 1, integer=True)
        check_number(self, "n_targets", 1, integer=True)
        check_number(self, "n_h", 0, integer=True)
        check_number(self, "n_v", 0, integer=True)
        if self.n_h == 0 and self.n_v == 0:
            raise DataError("Caser: n_h and n_v cannot both be 0 (no convolution left)")
        check_number(self, "dropout", 0, high=1, high_open=True)
        check_choice(self, "conv_activation", _ACTIVATIONS)
        check_choice(self, "fc_activation", _ACTIVATIONS)
        check_choice(self, "loss", ("bce", "ce"))
        check_number(self, "n_negatives", 1, integer=True)
        self._validate_training_params()

    def _build_module(self) -> nn.Module:
        return CaserModule(self.n_users, self.n_items, int(self.n_factors), int(self.max_len),
                           int(self.n_h), int(self.n_v), float(self.dropout),
                           self.conv_activation, self.fc_activation)

    # ----------------------------------------------------------------- training
    def _training_batches(self, seqs: Sequences, known: KnownPairs
                          ) -> tuple[BatchFn, LossFn, int]:
        """Every event after a user's first is a training window's first target."""
        positions = seqs.target_positions(min_context=1)
        if len(positions) == 0:
            raise DataError("Caser: no user has two or more events; nothing to learn a "
                            "next item from")
        users_of = seqs.user_of_position()
        L, T, bs = int(self.max_len), int(self.n_targets), int(self.batch_size)
        n_neg, use_bce = int(self.n_negatives), self.loss == "bce"

        def batches(rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
            order = positions[rng.permutation(len(positions))]
            for start in range(0, len(order), bs):
                p = order[start:start + bs]
                users = users_of[p]
                batch = {"user": torch.from_numpy(users),
                         "window": torch.from_numpy(seqs.windows_before(p, L)),
                         "target": torch.from_numpy(seqs.targets_from(p, T))}
                if use_bce:
                    neg, ok = sample_negatives(rng, users, n_neg, known)
                    batch["negative"] = torch.from_numpy(neg)
                    batch["negative_ok"] = torch.from_numpy(ok)
                yield batch

        def loss(module: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
            rep = module.represent(b["user"], b["window"])  # type: ignore[operator]
            tgt = b["target"]
            tmask = (tgt != PAD).to(rep.dtype)
            if use_bce:
                pos = module.score_items(rep, tgt)  # type: ignore[operator]
                neg = module.score_items(rep, b["negative"])  # type: ignore[operator]
                nmask = b["negative_ok"].to(rep.dtype)
                pos_l = (F.softplus(-pos) * tmask).sum() / tmask.sum().clamp(min=1)
                neg_l = (F.softplus(neg) * nmask).sum() / nmask.sum().clamp(min=1)
                return pos_l + neg_l
            w, bias = module.output()  # type: ignore[operator]
            logits = rep @ w.T + bias  # (B, n_items)
            logp = torch.log_softmax(logits, dim=1)
            ll = torch.gather(logp, 1, tgt.clamp(min=0)) * tmask
            return -ll.sum() / tmask.sum().clamp(min=1)

        n_batches = (len(positions) + bs - 1) // bs
        return batches, loss, n_batches
