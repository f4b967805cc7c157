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
pre-trained model's ``iterations``). Each row is solved exactly (Cholesky/LU) by
default, or by ``cg_steps`` warm-started conjugate-gradient iterations. With
``replay`` (the updated users' earlier events) a user's solve sees their whole
history, as in retraining, at the cost of one solve per updated row.

**EASE.** The fine-tuned item-item matrix minimises
``‖X − XB‖² + λ‖B‖² + μ‖B − B_pre‖²`` subject to ``diag(B) = 0`` over the new
interactions ``X``; with ``P = (XᵀX + (λ + μ)I)⁻¹`` the closed form is
``B = P(XᵀX + μB_pre) − P·diag(γ)``, ``γ_j = [P(XᵀX + μB_pre)]_jj / P_jj``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as la
from numba import njit, prange

from rectune._errors import RectuneError
from rectune.finetune._kernels_als import threads_for
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


@njit(cache=True, fastmath=True)
def _conf_matvec(v: np.ndarray, lo: int, hi: int, indices: np.ndarray, conf: np.ndarray,
                 y: np.ndarray, yty: np.ndarray, lam: float) -> np.ndarray:
    """``(YᵀY + Yᵀ(C_u − I)Y + lam·I) v`` over the row's events ``lo:hi``."""
    k = y.shape[1]
    out = yty @ v + lam * v
    for p in range(lo, hi):
        c = conf[p]
        j = indices[p]
        s = 0.0
        for f in range(k):
            s += y[j, f] * v[f]
        s *= (c if c > 0 else -c) - 1.0
        for f in range(k):
            out[f] += s * y[j, f]
    return out


@njit(cache=True, fastmath=True, parallel=True)
def anchored_als_cg_step(rows: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                         conf: np.ndarray, x: np.ndarray, y: np.ndarray, yty: np.ndarray,
                         reg: np.ndarray, mu: np.ndarray, x0: np.ndarray, steps: int) -> None:
    """:func:`anchored_als_half_step` by ``steps`` conjugate-gradient iterations per row,
    warm-started at the current row (implicit's ``cg_steps``): ``O(k² + n_u k)`` per
    iteration instead of ``O(k³ + n_u k²)`` for forming and factorising the system."""
    k = y.shape[1]
    for t in prange(len(rows)):
        r = rows[t]
        lo, hi = indptr[r], indptr[r + 1]
        w = x[r].astype(np.float64)
        lam = reg[r] + mu[r]

        res = mu[r] * x0[r].astype(np.float64) - _conf_matvec(w, lo, hi, indices, conf, y, yty, lam)
        for p in range(lo, hi):
            c = conf[p]
            if c > 0:
                j = indices[p]
                for f in range(k):
                    res[f] += c * y[j, f]
        d = res.copy()
        rs = float(np.dot(res, res))
        for _ in range(steps):
            if rs < 1e-20:
                break
            ad = _conf_matvec(d, lo, hi, indices, conf, y, yty, lam)
            dad = float(np.dot(d, ad))
            if dad <= 0.0:
                break
            alpha = rs / dad
            w += alpha * d
            res -= alpha * ad
            rs_new = float(np.dot(res, res))
            d = res + (rs_new / rs) * d
            rs = rs_new
        for f in range(k):
            x[r, f] = w[f]


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
    steps = 0 if cfg.cg_steps is None else int(cfg.cg_steps)

    def half(rows: np.ndarray, ind: tuple[np.ndarray, np.ndarray, np.ndarray], a: np.ndarray,
             b: np.ndarray,
             reg: np.ndarray, mu: np.ndarray, a0: np.ndarray) -> None:
        bb = b.astype(np.float64)
        if steps:
            with threads_for(len(ind[1])):
                anchored_als_cg_step(rows, *ind, a, b, bb.T @ bb, reg, mu, a0, steps)
        else:
            anchored_als_half_step(rows, *ind, a, b, bb.T @ bb, reg, mu, a0)

    for _ in range(sweeps):
        if "user_factors" not in frozen:
            half(users, ind, x, y, reg_u, mu_u, x0)
        if "item_factors" not in frozen:
            half(items, ind_t, y, x, reg_i, mu_i, y0)
    model.user_factors_, model.item_factors_ = x, y
    model._gram_cache = None
    job.info.update(method="anchored ALS sweeps over rows in the new data", sweeps=sweeps,
                    solve="exact" if not steps else f"{steps} conjugate-gradient steps",
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
