"""Compiled fine-tuning epochs for SVD++, NMF and BPR with L2-SP, freezing and new rows.

Every kernel takes, per parameter group, a step (``lrs``), the model's own
weight decay (``regs``), the L2-SP weight (``lams``) and a train flag
(``train``); ``old_u[u]`` / ``old_i[i]`` say whether a row existed (and was
trained) in the pre-trained model. Old rows are pulled towards their anchor
``θ_pre``; rows first seen in the new data get plain L2 (``reg_new``).

**Proximal anchor.** The SGD kernels take the anchor term implicitly
(backward Euler), one row at a time::

    θ ← (θ + lr·(−∂loss/∂θ − reg·θ) + lr·λ·θ_pre) / (1 + lr·λ)

which is exactly a gradient step on ``loss + reg/2‖θ‖² + λ/2‖θ − θ_pre‖²``
with step ``lr / (1 + lr·λ)``: the same direction as the explicit step, equal
to it at ``λ = 0`` (so λ = 0 is plain fine-tuning, bit for bit the model's own
update), and stable for every ``λ`` -- ``λ → ∞`` gives ``θ = θ_pre`` instead of
the divergence an explicit step suffers once ``lr·λ > 2``.

**NMF** keeps its multiplicative updates; the anchor enters as the positive
and negative parts of its gradient (see :func:`l2sp_nmf_apply`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from rectune.models._implicit_kernels import _draw_negative, _shuffle


@njit(cache=True, fastmath=True, nogil=True, inline="always")
def _prox(theta: float, neg_grad: float, lr: float, reg: float, lam: float,
          theta0: float) -> float:
    """Proximal L2-SP step of one scalar (see module docs); ``lam = 0``: plain SGD."""
    if lam == 0.0:
        return theta + lr * (neg_grad - reg * theta)
    return (theta + lr * (neg_grad - reg * theta) + lr * lam * theta0) / (1.0 + lr * lam)


@njit(cache=True, fastmath=True, nogil=True, inline="always")
def _bias_steps(uu: int, ii: int, err: float, mu: np.ndarray, bu: np.ndarray, bi: np.ndarray,
                mu0: float, bu0: np.ndarray, bi0: np.ndarray, old_u: np.ndarray,
                old_i: np.ndarray, lrs: np.ndarray, regs: np.ndarray, lams: np.ndarray,
                reg_new: float, train: np.ndarray) -> None:
    """Steps of ``mu``, ``b_u``, ``b_i`` (groups 0, 1, 2) along the error ``err``."""
    if train[0]:
        mu[0] = _prox(mu[0], err, lrs[0], 0.0, lams[0], mu0)
    if train[1]:
        if old_u[uu]:
            bu[uu] = _prox(bu[uu], err, lrs[1], regs[1], lams[1], bu0[uu])
        else:
            bu[uu] = _prox(bu[uu], err, lrs[1], reg_new, 0.0, 0.0)
    if train[2]:
        if old_i[ii]:
            bi[ii] = _prox(bi[ii], err, lrs[2], regs[2], lams[2], bi0[ii])
        else:
            bi[ii] = _prox(bi[ii], err, lrs[2], reg_new, 0.0, 0.0)


# ------------------------------------------------------------------------------ SVD++
@njit(cache=True, fastmath=True, nogil=True)
def l2sp_svdpp_epoch(user_order: np.ndarray, indptr: np.ndarray, item: np.ndarray,
                     rating: np.ndarray, n_indptr: np.ndarray, n_indices: np.ndarray,
                     mu: np.ndarray, bu: np.ndarray, bi: np.ndarray, p: np.ndarray,
                     q: np.ndarray, y: np.ndarray, mu0: float, bu0: np.ndarray,
                     bi0: np.ndarray, p0: np.ndarray, q0: np.ndarray, y0: np.ndarray,
                     old_u: np.ndarray, old_i: np.ndarray, lrs: np.ndarray, regs: np.ndarray,
                     lams: np.ndarray, reg_new: float, train: np.ndarray) -> float:
    """One SVD++ fine-tuning pass, user block by user block; returns the SSE.

    Groups ``[mu, b_u, b_i, p_u, q_i, y_j]``. The new ratings are in CSR layout
    (``indptr``/``item``/``rating``, visited in ``user_order``); ``N(u)`` -- the
    items whose ``y_j`` form the implicit term -- is row ``u`` of the second CSR
    (``n_indptr``/``n_indices``: the fine-tuned model's seen pairs, old and new).

    Per rating every ``y_j`` (``j ∈ N(u)``) takes the proximal step with
    ``g = e·q_i/√|N(u)|``: an affine map ``y_j ← a y_j + b g + c y_j^pre`` whose
    coefficients depend only on whether row ``j`` is anchored. As in the model's
    own kernel the maps are composed over the user's block and applied once at
    its end, and the implicit sum is carried exactly in two parts (anchored rows
    and new rows, which decay differently), so a pass costs O(|R|·k + Σ|N(u)|·k).
    """
    k = p.shape[1]
    lr_y, reg_y, lam_y = lrs[5], regs[5], lams[5]
    a_o = (1.0 - lr_y * reg_y) / (1.0 + lr_y * lam_y)
    b_o = lr_y / (1.0 + lr_y * lam_y)
    c_o = lr_y * lam_y / (1.0 + lr_y * lam_y)
    a_n = 1.0 - lr_y * reg_new
    b_n = lr_y
    z_old = np.zeros(k)
    z_new = np.zeros(k)
    s0 = np.zeros(k)
    acc_o = np.zeros(k)
    acc_n = np.zeros(k)
    sse = 0.0
    for b in range(user_order.shape[0]):
        uu = user_order[b]
        s = indptr[uu]
        e = indptr[uu + 1]
        if e == s:
            continue
        ns = n_indptr[uu]
        ne = n_indptr[uu + 1]
        n_all = ne - ns
        inv = 1.0 / math.sqrt(n_all) if n_all > 0 else 0.0
        z_old[:] = 0.0
        z_new[:] = 0.0
        s0[:] = 0.0
        n_old = 0
        for pos in range(ns, ne):
            j = n_indices[pos]
            if old_i[j]:
                n_old += 1
                for f in range(k):
                    z_old[f] += y[j, f]
                    s0[f] += y0[j, f]
            else:
                for f in range(k):
                    z_new[f] += y[j, f]
        for f in range(k):
            z_old[f] *= inv
            z_new[f] *= inv
            s0[f] *= inv
        share_o = n_old / n_all if n_all > 0 else 0.0
        share_n = 1.0 - share_o if n_all > 0 else 0.0
        acc_o[:] = 0.0
        acc_n[:] = 0.0
        pow_o = 1.0
        pow_n = 1.0
        c_acc = 0.0
        au = old_u[uu]
        for t in range(s, e):
            ii = item[t]
            ai = old_i[ii]
            dot = 0.0
            for f in range(k):
                dot += q[ii, f] * (p[uu, f] + z_old[f] + z_new[f])
            err = rating[t] - (mu[0] + bu[uu] + bi[ii] + dot)
            sse += err * err
            _bias_steps(uu, ii, err, mu, bu, bi, mu0, bu0, bi0, old_u, old_i, lrs, regs, lams,
                        reg_new, train)
            for f in range(k):
                pf = p[uu, f]
                qf = q[ii, f]
                zf = z_old[f] + z_new[f]
                if train[3]:
                    if au:
                        p[uu, f] = _prox(pf, err * qf, lrs[3], regs[3], lams[3], p0[uu, f])
                    else:
                        p[uu, f] = _prox(pf, err * qf, lrs[3], reg_new, 0.0, 0.0)
                if train[4]:
                    if ai:
                        q[ii, f] = _prox(qf, err * (pf + zf), lrs[4], regs[4], lams[4],
                                         q0[ii, f])
                    else:
                        q[ii, f] = _prox(qf, err * (pf + zf), lrs[4], reg_new, 0.0, 0.0)
                if train[5]:
                    g = err * qf * inv
                    acc_o[f] = a_o * acc_o[f] + b_o * g
                    acc_n[f] = a_n * acc_n[f] + b_n * g
                    z_old[f] = a_o * z_old[f] + b_o * err * qf * share_o + c_o * s0[f]
                    z_new[f] = a_n * z_new[f] + b_n * err * qf * share_n
            if train[5]:
                c_acc = a_o * c_acc + c_o
                pow_o *= a_o
                pow_n *= a_n
        if train[5]:
            for pos in range(ns, ne):
                j = n_indices[pos]
                if old_i[j]:
                    for f in range(k):
                        y[j, f] = pow_o * y[j, f] + acc_o[f] + c_acc * y0[j, f]
                else:
                    for f in range(k):
                        y[j, f] = pow_n * y[j, f] + acc_n[f]
    return sse


# -------------------------------------------------------------------------------- NMF
@njit(cache=True, fastmath=True, nogil=True)
def l2sp_nmf_accumulate(u: np.ndarray, i: np.ndarray, r: np.ndarray, biased: bool,
                        mu: np.ndarray, bu: np.ndarray, bi: np.ndarray, p: np.ndarray,
                        q: np.ndarray, mu0: float, bu0: np.ndarray, bi0: np.ndarray,
                        old_u: np.ndarray, old_i: np.ndarray, lrs: np.ndarray,
                        regs: np.ndarray, lams: np.ndarray, reg_new: float,
                        train: np.ndarray, unum: np.ndarray, uden: np.ndarray,
                        inum: np.ndarray, iden: np.ndarray) -> float:
    """NMF sums over the new ratings (epoch-start factors) and, if biased, bias SGD steps.

    ``num_u += q_i r``, ``den_u += q_i est`` (items likewise over users), with
    ``est = [mu + b_u + b_i] + p_u·q_i``; the sums must start at zero. Biases
    (groups ``[mu, b_u, b_i]``) take proximal L2-SP steps in the order given.
    """
    k = p.shape[1]
    sse = 0.0
    for t in range(r.shape[0]):
        uu = u[t]
        ii = i[t]
        dot = 0.0
        for f in range(k):
            dot += p[uu, f] * q[ii, f]
        est = dot + (mu[0] + bu[uu] + bi[ii] if biased else 0.0)
        rr = r[t]
        err = rr - est
        sse += err * err
        if biased:
            _bias_steps(uu, ii, err, mu, bu, bi, mu0, bu0, bi0, old_u, old_i, lrs, regs, lams,
                        reg_new, train)
        for f in range(k):
            unum[uu, f] += q[ii, f] * rr
            uden[uu, f] += q[ii, f] * est
            inum[ii, f] += p[uu, f] * rr
            iden[ii, f] += p[uu, f] * est
    return sse


@njit(cache=True, fastmath=True, nogil=True)
def l2sp_nmf_apply(rows: np.ndarray, x: np.ndarray, num: np.ndarray, den: np.ndarray,
                   count: np.ndarray, reg: np.ndarray, lam: np.ndarray, x0: np.ndarray) -> None:
    """Anchored multiplicative update of ``rows`` of ``x`` (in place).

    Row ``r`` minimises ``Σ_i (r_ri − x_r·y_i)² + n_r·reg_r‖x_r‖² + n_r·λ_r‖x_r − x_r^pre‖²``
    (``n_r`` its new ratings: the anchor is weighted per rating, like the
    model's own regulariser and like the anchor of the SGD families). Split
    the gradient into its positive part ``den + n_r(reg_r + λ_r)x`` and its
    negative part ``num + n_r λ_r x^pre``; the update is their ratio::

        x_rf ← x_rf (num_rf + n_r λ_r x^pre_rf) / (den_rf + n_r (reg_r + λ_r) x_rf)

    Both parts are non-negative (``x^pre ≥ 0`` for a pre-trained NMF), so ``x``
    stays non-negative; the fixed points are the KKT points of the anchored
    objective; ``λ_r = 0`` is the model's own update and ``λ_r → ∞`` gives
    ``x^pre``. Zero factors stay zero (as in Surprise); a non-positive
    denominator leaves the factor as it is.
    """
    k = x.shape[1]
    for t in range(rows.shape[0]):
        rr = rows[t]
        c = count[rr]
        for f in range(k):
            v = x[rr, f]
            if v != 0.0:
                d = den[rr, f] + c * (reg[rr] + lam[rr]) * v
                if d > 0.0:
                    x[rr, f] = v * ((num[rr, f] + c * lam[rr] * x0[rr, f]) / d)


# -------------------------------------------------------------------------------- BPR
@njit(cache=True, fastmath=True, nogil=True)
def l2sp_bpr_epoch(pos_user: np.ndarray, pos_item: np.ndarray, indptr: np.ndarray,
                   indices: np.ndarray, pool: np.ndarray, order: np.ndarray, uf: np.ndarray,
                   vf: np.ndarray, bias: np.ndarray, uf0: np.ndarray, vf0: np.ndarray,
                   bias0: np.ndarray, old_u: np.ndarray, old_i: np.ndarray, lr: float,
                   reg: float, lams: np.ndarray, reg_new: float, train: np.ndarray,
                   verify: bool, max_tries: int, state: np.ndarray) -> tuple[int, int, float]:
    """One BPR pass over the new pairs in a fresh random order, with sampled negatives.

    Groups ``[user_factors, item_factors, item_bias]``. For each pair (u, i) a
    negative ``j`` is drawn with the model's sampler (``indptr``/``indices``:
    the positives never used as negatives) and every trainable row takes a
    proximal L2-SP step on ``ln σ(x_ui − x_uj)``. Same stream, order and
    arithmetic as the model's single-thread epoch, so ``λ = 0`` with
    ``reg_new = reg`` reproduces it. Returns ``(correct, skipped, log_loss)``.
    """
    _shuffle(order, state)
    n = order.shape[0]
    f = uf.shape[1]
    correct = 0
    skipped = 0
    loss = 0.0
    one = uf.dtype.type(1.0)
    for s in range(n):
        idx = order[s]
        u = pos_user[idx]
        i = pos_item[idx]
        j = _draw_negative(indptr, indices, pool, vf.shape[0], u, verify, max_tries, state, 0)
        if j < 0 or j == i:
            skipped += 1
            continue
        score = bias[i] - bias[j]
        for kk in range(f):
            score += uf[u, kk] * (vf[i, kk] - vf[j, kk])
        z = one / (one + np.exp(score))
        loss += math.log1p(math.exp(-score)) if score > -30.0 else -score
        if z < 0.5:
            correct += 1
        ou, oi, oj = old_u[u], old_i[i], old_i[j]
        for kk in range(f):
            old = uf[u, kk]
            qi = vf[i, kk]
            qj = vf[j, kk]
            if train[0]:
                if ou:
                    uf[u, kk] = _prox(old, z * (qi - qj), lr, reg, lams[0], uf0[u, kk])
                else:
                    uf[u, kk] = _prox(old, z * (qi - qj), lr, reg_new, 0.0, 0.0)
            if train[1]:
                if oi:
                    vf[i, kk] = _prox(qi, z * old, lr, reg, lams[1], vf0[i, kk])
                else:
                    vf[i, kk] = _prox(qi, z * old, lr, reg_new, 0.0, 0.0)
                if oj:
                    vf[j, kk] = _prox(qj, -z * old, lr, reg, lams[1], vf0[j, kk])
                else:
                    vf[j, kk] = _prox(qj, -z * old, lr, reg_new, 0.0, 0.0)
        if train[2]:
            if oi:
                bias[i] = _prox(bias[i], z, lr, reg, lams[2], bias0[i])
            else:
                bias[i] = _prox(bias[i], z, lr, reg_new, 0.0, 0.0)
            if oj:
                bias[j] = _prox(bias[j], -z, lr, reg, lams[2], bias0[j])
            else:
                bias[j] = _prox(bias[j], -z, lr, reg_new, 0.0, 0.0)
    return correct, skipped, loss
