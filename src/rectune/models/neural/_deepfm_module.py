"""The ``nn.Module`` behind :class:`~rectune.models.neural.deepfm.DeepFM`: the network alone.

Why a module of its own: :mod:`rectune.models.neural.deepfm` is about turning ids,
feature tables and context into model inputs (encoders, cold-start rows,
persistence) and the recommender API; this file is the maths those inputs go
through, and reads without them (the "config / ``nn.Module`` / trainer" split of
the neural models). The network takes a batch dict -- ``"user"`` and ``"item"``
indices (-1 = unknown) plus one tensor per field named ``"<side>__<field>"``
(side ``u``, ``i`` or ``c`` for context) -- and returns

    ŷ = b + Σ_f w_f + ½ Σ_d [(Σ_f e_fd)² − Σ_f e_fd²] + hᵀ MLP([e_1; …; e_F])

per row (:meth:`_DeepFMModule.forward`), or for every pair of a user block and an
item block at once, factorised by side (:meth:`_DeepFMModule.block`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rectune.models.neural.ncf import mlp_tower


class _DeepFMModule(nn.Module):
    """Id fields + side/context fields -> bias + linear + FM + deep tower."""

    def __init__(self, n_users: int, n_items: int, k: int, fields: Sequence[Sequence[Any]],
                 layers: Sequence[int], dropout: float, id_dropout: float, bias: float) -> None:
        super().__init__()
        self.fields = [(str(f[0]), str(f[1]), int(f[2])) for f in fields]
        self.id_dropout = float(id_dropout)
        self.user_embedding = nn.Embedding(n_users, k)
        self.item_embedding = nn.Embedding(n_items, k)
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        self.emb = nn.ModuleDict()
        self.lin = nn.ModuleDict()
        for key, kind, dim in self.fields:
            if kind == "dense":
                self.emb[key] = nn.Linear(dim, k, bias=False)
                self.lin[key] = nn.Linear(dim, 1, bias=False)
            else:
                pad = dim if kind == "multi" else None
                n = dim + 1 if kind == "multi" else dim
                self.emb[key] = nn.Embedding(n, k, padding_idx=pad)
                self.lin[key] = nn.Embedding(n, 1, padding_idx=pad)
        for e in (self.user_embedding, self.item_embedding, *self.emb.values()):
            nn.init.normal_(_weight(e), std=0.01)
        for e in (self.user_bias, self.item_bias, *self.lin.values()):
            nn.init.zeros_(_weight(e))
        for e in self.emb.values():
            if isinstance(e, nn.Embedding) and e.padding_idx is not None:
                with torch.no_grad():
                    e.weight[e.padding_idx].zero_()
        self.mlp = mlp_tower((len(self.fields) + 2) * k, layers, dropout)
        self.head = nn.Linear(int(layers[-1]) if layers else (len(self.fields) + 2) * k, 1)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.global_bias = nn.Parameter(torch.tensor([float(bias)]))

    def _id(self, idx: torch.Tensor, table: nn.Embedding, bias: nn.Embedding,
            keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ok = ((idx >= 0) & keep).to(table.weight.dtype)
        i = idx.clamp(min=0)
        return table(i) * ok[:, None], bias(i).squeeze(-1) * ok

    def _field(self, key: str, kind: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embedding (B, k), first-order weight (B,))`` of one side/context field."""
        if kind == "multi":
            pad = int(self.emb[key].padding_idx)  # type: ignore[arg-type]
            cnt = (x != pad).sum(1, keepdim=True).clamp(min=1).to(self.global_bias.dtype)
            return self.emb[key](x).sum(1) / cnt, self.lin[key](x).squeeze(-1).sum(1) / cnt[:, 0]
        return self.emb[key](x), self.lin[key](x).squeeze(-1)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        u, i = batch["user"], batch["item"]
        keep = keep_i = torch.ones_like(u, dtype=torch.bool)
        if self.training and self.id_dropout > 0:
            # user and item ids are hidden independently: a row with the user id hidden
            # but the item id kept trains exactly the path that scores a cold user
            # (user features x item id), and vice versa for cold items
            keep = torch.rand(u.shape, device=u.device) >= self.id_dropout
            keep_i = torch.rand(u.shape, device=u.device) >= self.id_dropout
        eu, bu = self._id(u, self.user_embedding, self.user_bias, keep)
        ei, bi = self._id(i, self.item_embedding, self.item_bias, keep_i)
        embs, lins = [eu, ei], [bu, bi]
        for key, kind, _ in self.fields:
            e, w = self._field(key, kind, batch[key])
            if key.startswith("c__"):  # context blanked with the ids: learn a no-context path
                e, w = e * keep[:, None].to(e.dtype), w * keep.to(w.dtype)
            embs.append(e)
            lins.append(w)
        stack = torch.stack(embs, dim=1)
        fm = 0.5 * (stack.sum(1).pow(2) - stack.pow(2).sum(1)).sum(1)
        deep = self.head(self.mlp(stack.flatten(1))).squeeze(-1)
        out: torch.Tensor = self.global_bias + torch.stack(lins, 1).sum(1) + fm + deep
        return out

    def _side(self, batch: Mapping[str, torch.Tensor], side: str, n: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-row sums of one side's fields (side "u", "i" or "c"): ``S = Σ e_f``,
        ``Q = Σ |e_f|²``, ``L = Σ w_f`` and ``P = Σ W1_f e_f`` (the first deep layer's share)."""
        k = self.user_embedding.embedding_dim
        w1 = _weight(self.mlp[0])
        terms: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        if side in ("u", "i"):
            idx = batch["user" if side == "u" else "item"]
            table, bias = ((self.user_embedding, self.user_bias) if side == "u"
                           else (self.item_embedding, self.item_bias))
            e, w = self._id(idx, table, bias, torch.ones_like(idx, dtype=torch.bool))
            terms.append((0 if side == "u" else 1, e, w))
        for j, (key, kind, _) in enumerate(self.fields):
            if key.startswith(side + "__"):
                e, w = self._field(key, kind, batch[key])
                terms.append((2 + j, e, w))
        dt = self.global_bias.dtype
        S = torch.zeros((n, k), dtype=dt, device=w1.device)
        Q = torch.zeros(n, dtype=dt, device=w1.device)
        L = torch.zeros(n, dtype=dt, device=w1.device)
        P = torch.zeros((n, w1.shape[0]), dtype=dt, device=w1.device)
        for pos, e, w in terms:
            S = S + e
            Q = Q + e.pow(2).sum(1)
            L = L + w
            P = P + F.linear(e, w1[:, pos * k:(pos + 1) * k])
        return S, Q, L, P

    def block(self, users: Mapping[str, torch.Tensor], items: Mapping[str, torch.Tensor],
              ctx: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(n_users, n_items)`` scores of every pair of a user block and an item block
        under one context row, factorised: FM and linear terms split into per-side sums
        (``|S_u + S_i|² = |S_u|² + |S_i|² + 2 S_u·S_i``) and the first deep layer into
        per-side projections, so no field is gathered or embedded per pair."""
        nu, ni = len(users["user"]), len(items["item"])
        su, qu, lu, pu = self._side(users, "u", nu)
        si, qi, li, pi = self._side(items, "i", ni)
        sc, qc, lc, pc = self._side(ctx, "c", 1)
        su = su + sc
        fm = 0.5 * (su.pow(2).sum(1)[:, None] + si.pow(2).sum(1)[None, :] + 2 * su @ si.T
                    - (qu + qc)[:, None] - qi[None, :])
        first = self.mlp[0]
        assert isinstance(first, nn.Linear)
        h = (pu + pc + first.bias)[:, None, :] + pi[None, :, :]
        deep = self.head(self.mlp[1:](h)).squeeze(-1)
        out: torch.Tensor = self.global_bias + (lu + lc)[:, None] + li[None, :] + fm + deep
        return out


def _weight(m: nn.Module) -> torch.Tensor:
    w = m.weight
    assert isinstance(w, torch.Tensor)
    return w
