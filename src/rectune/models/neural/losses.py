"""Losses of the neural models, with the formulas that decide their gradients.

* **MSE** (explicit ratings): ``L = mean((ŷ - y)²)``; ``∂L/∂ŷ = 2(ŷ - y)/n``.
* **BCE** on logits (implicit feedback with sampled negatives, and clicks / log-loss):
  ``L = mean(w · [softplus(x) - y·x])`` = ``-mean(w·[y log σ(x) + (1-y) log(1-σ(x))])``;
  ``∂L/∂x = w(σ(x) - y)/n``. Computed from logits (``softplus``) so a saturated
  sigmoid never yields ``log(0)``.
* **BPR** (Rendle et al. 2009): ``L = -mean(log σ(x⁺ - x⁻))`` over (positive,
  negative) pairs; ``∂L/∂x⁺ = -(1 - σ(x⁺ - x⁻))/n`` and ``∂L/∂x⁻ = +(1 - σ(x⁺ - x⁻))/n``.
  With several negatives per positive (``neg`` of shape ``(n, m)``) the mean runs
  over all ``n·m`` pairs.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from rectune._errors import DataError

__all__ = ["LOSSES", "LossName", "bce_loss", "bpr_loss", "check_loss", "mse_loss"]

LossName = Literal["bce", "bpr", "mse"]
LOSSES: tuple[str, ...] = ("bce", "bpr", "mse")


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of predicted ratings."""
    return torch.mean((pred - target.to(pred.dtype)) ** 2)


def bce_loss(logits: torch.Tensor, labels: torch.Tensor,
             weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy (log-loss) on logits, optionally weighted per row."""
    y = labels.to(logits.dtype)
    per = F.softplus(logits) - y * logits
    if weight is not None:
        per = per * weight.to(logits.dtype)
    return torch.mean(per)


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """``-mean(log σ(pos - neg))``; ``neg`` is ``(n,)`` or ``(n, m)`` (m negatives each)."""
    if neg.dim() == pos.dim() + 1:
        pos = pos.unsqueeze(-1)
    return -torch.mean(F.logsigmoid(pos - neg))


def check_loss(loss: object, allowed: tuple[str, ...] = LOSSES) -> None:
    """Raise :class:`DataError` unless ``loss`` names one of ``allowed``."""
    if loss not in allowed:
        raise DataError(f"loss must be one of {list(allowed)}, got {loss!r}")
