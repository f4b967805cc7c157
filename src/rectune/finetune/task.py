"""Task change: a rating model fine-tuned into a click (CTR) model.

The pre-trained body (biases and factors, grown for new ids) is kept; a new
logistic head ``σ(a·s + c)`` on the body's score ``s`` is first fitted alone
(body fixed: a two-parameter logistic regression, solved by Newton steps),
then body and head train together on log-loss with the configured L2-SP,
freezing and early stopping on the validation slice's log-loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rectune.finetune._kernels import click_mf_epoch
from rectune.finetune.engine import Job
from rectune.finetune.mf import prepare
from rectune.models.click import ClickMF, click_labels, sigmoid


def fit_head(s: np.ndarray, y: np.ndarray, *, ridge: float = 1e-6,
             n_iter: int = 25) -> tuple[float, float]:
    """Logistic regression ``y ~ σ(a·s + c)`` by Newton's method (2 parameters)."""
    x = np.column_stack([s, np.ones_like(s)]).astype(np.float64)
    w = np.array([0.0, 0.0])
    for _ in range(n_iter):
        p = sigmoid(x @ w)
        grad = x.T @ (p - y) + ridge * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return float(w[0]), float(w[1])


def finetune_click(job: Job) -> None:
    """Turn the job's rating model into a :class:`ClickMF` and fine-tune it on click labels."""
    cfg = job.config
    assert cfg.task is not None
    rng = np.random.default_rng(cfg.seed)
    pp = prepare(job, rng)
    src = job.model
    cur = pp.cur
    m = ClickMF(n_factors=int(cur["user_factors"].shape[1]), n_epochs=cfg.epochs,
                learning_rate=float(pp.lrs.max()), reg=pp.reg_new,
                threshold=cfg.task.threshold, random_state=cfg.seed)
    for name in ("user_map_", "item_map_", "seen_", "global_mean_", "item_popularity_",
                 "rating_scale_", "kind_"):
        setattr(m, name, getattr(src, name))
    m.user_factors_ = np.ascontiguousarray(cur["user_factors"], dtype=np.float32)
    m.item_factors_ = np.ascontiguousarray(cur["item_factors"], dtype=np.float32)
    m.user_bias_ = np.ascontiguousarray(cur["user_bias"], dtype=np.float32)
    m.item_bias_ = np.ascontiguousarray(cur["item_bias"], dtype=np.float32)
    m.global_bias_ = np.ascontiguousarray(cur["global_bias"], dtype=np.float64).reshape(1)
    fit = job.fit
    y = click_labels(fit, cfg.task.threshold)
    a, c = fit_head(m._raw_score(fit.user, fit.item), y.astype(np.float64))
    m.head_ = np.array([a, c])
    job.say(f"click head fitted on the frozen body: a={a:.3f}, c={c:.3f}")
    an = pp.anchors
    mu0 = pp.mu0
    old_u, old_i = job.old_user_rows.copy(), job.old_item_rows.copy()
    lr_head = float(cfg.learning_rate or 0.01)

    def epoch(u: np.ndarray, i: np.ndarray, yy: np.ndarray) -> Any:
        return click_mf_epoch(u, i, yy, m.head_, m.global_bias_, m.user_bias_, m.item_bias_,
                              m.user_factors_, m.item_factors_, mu0,
                              an["user_bias"].astype(np.float32),
                              an["item_bias"].astype(np.float32),
                              an["user_factors"], an["item_factors"], old_u, old_i, True,
                              pp.lrs, pp.regs, pp.lams, pp.reg_new, pp.train, lr_head)

    m._train_epochs(fit, y, job.valid, cfg.verbose, rng, epoch, cfg.epochs,
                    patience=cfg.patience if cfg.early_stopping else None)
    job.model = m
    job.info.update(task="click", head={"weight": float(m.head_[0]), "bias": float(m.head_[1])},
                    history=m.history_, trainable=pp.summary, frozen=sorted(pp.frozen),
                    transferred=sorted(pp.transfer), l2sp=pp.lams.tolist())
