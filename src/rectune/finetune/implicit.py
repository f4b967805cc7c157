"""Fine-tuning the closed-form implicit models: ALS and EASE with L2-SP.

**ALS.** Each sweep solves, for every user (then item) that appears in the new
data, the exact anchored normal equations

    (YᵀY + Yᵀ(C_u − I)Y + (λ_u + μ_u) I) x_u = YᵀC_u p_u + μ_u x_u^pre

where ``μ_u`` is the L2-SP weight for rows that existed (and were trained) in
the pre-trained model and 0 for new rows. Rows absent from the new data keep
their pre-trained values: on new data alone every unobserved cell is a
"negative", which would otherwise shrink them towards zero — the incremental
ALS of implicit's ``partial_fit_users``, with an anchor. Frozen sides are not
solved. The number of sweeps is ``FinetuneConfig.epochs`` (capped at the
pre-trained model's ``iterations``).

**EASE.** The fine-tuned item-item matrix minimises
``‖X − XB‖² + λ‖B‖² + μ‖B − B_pre‖²`` subject to ``diag(B) = 0`` over the new
interactions ``X``; with ``P = (XᵀX + (λ + μ)I)⁻¹`` the closed form is
``B = P(XᵀX + μB_pre) − P·diag(γ)``, ``γ_j = [P(XᵀX + μB_pre)]_jj / P_jj``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as la
from numba import njit

from rectune._errors import RectuneError
from rectune.finetune.engine import Job
from rectune.finetune.groups import check_patterns, grow, matching, trainable_summary


@njit(cache=True)
def anchored_als_half_step(rows: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                           conf: np.ndarray, x: np.ndarray, y: np.ndarray, yty: np.ndarray,
                           reg: np.ndarray, mu: np.ndarray, x0: np.ndarray) -> None:
    """Exact solve of the anchored normal equations for ``rows`` of ``x`` (in place)."""
    k = y.shape[1]
    for t in range(len(rows)):
        r = rows[t]
        a = yty.copy()
        for f in range(k):
            a[f, f] += reg[r] + mu[r]
        b = mu[r] * x0[r].astype(np.float64)
        for p in range(indptr[r], indptr[r + 1]):
            yi = y[indices[p]].astype(np.float64)
            c = conf[p]
            w = (c if c > 0 else -c) - 1.0
            for f in range(k):
                for g in range(k):
                    a[f, g] += w * yi[f] * yi[g]
            if c > 0:
                b += c * yi
        x[r] = np.linalg.solve(a, b).astype(x.dtype)


def _rows_mu(n: int, old: np.ndarray, lam: float) -> np.ndarray:
    return np.where(old[:n], lam, 0.0)


def finetune_als(job: Job) -> None:
    """Handler for :class:`rectune.models.ALS`."""
    from rectune.models.als import confidence_matrix

    cfg = job.config
    pre: Any = job.pretrained  # ALS / EASE attributes are read by name
    model: Any = job.model
    present = ["user_factors", "item_factors"]
    check_patterns(present, cfg.freeze, "freeze")
    check_patterns(present, cfg.transfer, "transfer")
    frozen = matching(present, cfg.freeze)
    if matching(present, cfg.transfer) != set(present):
        raise RectuneError("ALS fine-tuning transfers both factor tables (transfer=None)")
    n_u, n_i = len(model.user_map_), len(model.item_map_)
    x = np.ascontiguousarray(grow(np.asarray(pre.user_factors_), n_u, cfg.new_rows))
    y = np.ascontiguousarray(grow(np.asarray(pre.item_factors_), n_i, cfg.new_rows))
    x0 = grow(np.asarray(pre.user_factors_, dtype=np.float64), n_u, "zero")
    y0 = grow(np.asarray(pre.item_factors_, dtype=np.float64), n_i, "zero")
    cui = confidence_matrix(job.fit, float(pre.alpha), np.float64)
    ciu = cui.T.tocsr()
    ciu.sort_indices()
    reg_u = np.full(n_u, float(pre.regularization))
    reg_i = np.full(n_i, float(pre.regularization))
    if cfg.new_row_reg is not None:
        reg_u[~job.old_user_rows] = cfg.new_row_reg
        reg_i[~job.old_item_rows] = cfg.new_row_reg
    mu_u = _rows_mu(n_u, job.old_user_rows, cfg.l2sp * cfg.group_weights.get("user_factors", 1))
    mu_i = _rows_mu(n_i, job.old_item_rows, cfg.l2sp * cfg.group_weights.get("item_factors", 1))
    users = np.unique(job.fit.user)
    items = np.unique(job.fit.item)
    sweeps = max(1, min(int(cfg.epochs), int(pre.iterations)))
    summary = trainable_summary({"user_factors": x, "item_factors": y}, frozen)
    job.say(summary)
    ind = (cui.indptr.astype(np.int64), cui.indices.astype(np.int64), cui.data)
    ind_t = (ciu.indptr.astype(np.int64), ciu.indices.astype(np.int64), ciu.data)
    for _ in range(sweeps):
        if "user_factors" not in frozen:
            yy = y.astype(np.float64)
            anchored_als_half_step(users, *ind, x, y, yy.T @ yy, reg_u, mu_u, x0)
        if "item_factors" not in frozen:
            xx = x.astype(np.float64)
            anchored_als_half_step(items, *ind_t, y, x, xx.T @ xx, reg_i, mu_i, y0)
    model.user_factors_, model.item_factors_ = x, y
    model._gram_cache = None
    job.info.update(method="anchored ALS sweeps over rows in the new data", sweeps=sweeps,
                    rows_updated={"users": len(users), "items": len(items)},
                    trainable=summary, frozen=sorted(frozen), l2sp=cfg.l2sp)


def finetune_ease(job: Job) -> None:
    """Handler for :class:`rectune.models.EASE` (closed form with an L2-SP anchor)."""
    cfg = job.config
    pre: Any = job.pretrained
    if cfg.freeze:
        raise RectuneError("EASE has one group (item_weights): freezing it leaves nothing to "
                           "fine-tune")
    model: Any = job.model
    n_i = len(model.item_map_)
    b0 = np.zeros((n_i, n_i))
    n_old = pre.item_weights_.shape[0]
    b0[:n_old, :n_old] = pre.item_weights_
    xm = job.fit.csr(dtype=np.float64)
    xm.data[:] = 1.0
    g = np.asarray((xm.T @ xm).toarray())
    lam, mu = float(pre.regularization), float(cfg.l2sp)
    p = g.copy()
    p[np.diag_indices(n_i)] += lam + mu
    p = la.inv(p, overwrite_a=True, check_finite=False)
    rhs = g + mu * b0
    b = p @ rhs
    gamma = np.diag(b) / np.diag(p)
    b -= p * gamma[None, :]
    np.fill_diagonal(b, 0.0)
    model.item_weights_ = b
    job.info.update(method="closed form with L2-SP anchor", l2sp=mu,
                    trainable=trainable_summary({"item_weights": b}, set()))


def register_handlers() -> None:
    from rectune.finetune.engine import register
    from rectune.models.als import ALS
    from rectune.models.ease import EASE

    register(ALS, finetune_als, validation=False)
    register(EASE, finetune_ease, validation=False)
