"""Compiled SGD epoch for fine-tuning biased MF with L2-SP, freezing and new rows.

One pass over the (already shuffled) new ratings. For every rating the
error uses the current parameters; each trainable group then takes the step
of its own loss term plus its regulariser:

- rows that existed (and were trained) in the pre-trained model:
  ``reg·θ + λ_g·(θ − θ_pre)``  (the model's weight decay plus L2-SP);
- rows first seen in the new data: ``reg_new·θ`` (plain L2).

``λ_g = 0`` everywhere is plain fine-tuning. The global bias ``mu`` is
pulled to its pre-trained value by ``λ_mu``. Frozen groups are not touched.

:func:`feature_mf_epoch` adds the feature prior of
:mod:`rectune.finetune.features`: a row with a weight ``w > 0`` in ``lfu``/``lfi``
(no pre-training data, a feature row) also takes ``w·(θ − t)`` towards its target
``t = W f + c``. The caller sets ``w = λ_f / n_row`` (``n_row`` = the row's ratings in
the epoch), so one epoch's steps sum to the gradient of ``½ λ_f ‖θ − t‖²`` once per
row: the prior counts once per user, like a ridge fold-in's, not once per rating.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, fastmath=True, nogil=True)
def l2sp_mf_epoch(u: np.ndarray, i: np.ndarray, r: np.ndarray, mu: np.ndarray,
                  bu: np.ndarray, bi: np.ndarray, p: np.ndarray, q: np.ndarray,
                  mu0: float, bu0: np.ndarray, bi0: np.ndarray, p0: np.ndarray, q0: np.ndarray,
                  old_u: np.ndarray, old_i: np.ndarray, biased: bool,
                  lrs: np.ndarray, regs: np.ndarray, lams: np.ndarray, reg_new: float,
                  train: np.ndarray) -> float:
    """SGD pass; returns the sum of squared errors seen.

    ``lrs``/``regs``/``lams``: per group ``[mu, bu, bi, pu, qi]``; ``train``: the
    same order, 1 = trainable. ``old_u[u]``/``old_i[i]`` flag anchored rows.
    """
    none1 = np.zeros(0, dtype=np.float64)
    none2 = np.zeros((0, 0), dtype=np.float64)
    return feature_mf_epoch(u, i, r, mu, bu, bi, p, q, mu0, bu0, bi0, p0, q0, old_u, old_i,
                            biased, lrs, regs, lams, reg_new, train, none1, none1, none2,
                            none2, none1, none1)


@njit(cache=True, fastmath=True, nogil=True, inline="always")
def _anchored_step(uu: int, ii: int, g: float, mu: np.ndarray, bu: np.ndarray, bi: np.ndarray,
                   p: np.ndarray, q: np.ndarray, mu0: float, bu0: np.ndarray,
                   bi0: np.ndarray, p0: np.ndarray, q0: np.ndarray, old_u: np.ndarray,
                   old_i: np.ndarray, biased: bool, lrs: np.ndarray, regs: np.ndarray,
                   lams: np.ndarray, reg_new: float, train: np.ndarray, tbu: np.ndarray,
                   tbi: np.ndarray, tp: np.ndarray, tq: np.ndarray, lfu: np.ndarray,
                   lfi: np.ndarray) -> None:
    """One step of every trainable group along the score gradient ``g`` (minus dloss/ds).

    Rows with pre-training data take ``reg·θ + λ_g·(θ − θ_pre)``, new rows ``reg_new·θ``;
    rows with a feature-prior weight ``w > 0`` add ``w·(θ − t)``. ``lfu``/``lfi``: per-row
    prior weights (empty = no prior); ``tbu``/``tp`` (``tbi``/``tq``) the bias and factor
    targets of user (item) rows.
    """
    wu = lfu[uu] if len(lfu) else 0.0
    wi = lfi[ii] if len(lfi) else 0.0
    fuu = wu > 0
    fii = wi > 0
    if biased:
        if train[0]:
            mu[0] += lrs[0] * (g - lams[0] * (mu[0] - mu0))
        if train[1]:
            b = bu[uu]
            pen = regs[1] * b + lams[1] * (b - bu0[uu]) if old_u[uu] else reg_new * b
            if fuu:
                pen += wu * (b - tbu[uu])
            bu[uu] = b + lrs[1] * (g - pen)
        if train[2]:
            b = bi[ii]
            pen = regs[2] * b + lams[2] * (b - bi0[ii]) if old_i[ii] else reg_new * b
            if fii:
                pen += wi * (b - tbi[ii])
            bi[ii] = b + lrs[2] * (g - pen)
    au = old_u[uu]
    ai = old_i[ii]
    for f in range(p.shape[1]):
        pf = p[uu, f]
        qf = q[ii, f]
        if train[3]:
            pen = regs[3] * pf + lams[3] * (pf - p0[uu, f]) if au else reg_new * pf
            if fuu:
                pen += wu * (pf - tp[uu, f])
            p[uu, f] = pf + lrs[3] * (g * qf - pen)
        if train[4]:
            pen = regs[4] * qf + lams[4] * (qf - q0[ii, f]) if ai else reg_new * qf
            if fii:
                pen += wi * (qf - tq[ii, f])
            q[ii, f] = qf + lrs[4] * (g * pf - pen)


@njit(cache=True, fastmath=True, nogil=True)
def feature_mf_epoch(u: np.ndarray, i: np.ndarray, r: np.ndarray, mu: np.ndarray,
                     bu: np.ndarray, bi: np.ndarray, p: np.ndarray, q: np.ndarray,
                     mu0: float, bu0: np.ndarray, bi0: np.ndarray, p0: np.ndarray,
                     q0: np.ndarray, old_u: np.ndarray, old_i: np.ndarray, biased: bool,
                     lrs: np.ndarray, regs: np.ndarray, lams: np.ndarray, reg_new: float,
                     train: np.ndarray, tbu: np.ndarray, tbi: np.ndarray, tp: np.ndarray,
                     tq: np.ndarray, lfu: np.ndarray, lfi: np.ndarray) -> float:
    """:func:`l2sp_mf_epoch` with the feature prior; returns the sum of squared errors."""
    k = p.shape[1]
    sse = 0.0
    for t in range(len(r)):
        uu = u[t]
        ii = i[t]
        dot = 0.0
        for f in range(k):
            dot += p[uu, f] * q[ii, f]
        if biased:
            err = r[t] - (mu[0] + bu[uu] + bi[ii] + dot)
        else:
            err = r[t] - dot
        sse += err * err
        _anchored_step(uu, ii, err, mu, bu, bi, p, q, mu0, bu0, bi0, p0, q0, old_u, old_i,
                       biased, lrs, regs, lams, reg_new, train, tbu, tbi, tp, tq, lfu, lfi)
    return sse


@njit(cache=True, fastmath=True, nogil=True)
def click_mf_epoch(u: np.ndarray, i: np.ndarray, y: np.ndarray, head: np.ndarray,
                   mu: np.ndarray, bu: np.ndarray, bi: np.ndarray, p: np.ndarray, q: np.ndarray,
                   mu0: float, bu0: np.ndarray, bi0: np.ndarray, p0: np.ndarray, q0: np.ndarray,
                   old_u: np.ndarray, old_i: np.ndarray, biased: bool,
                   lrs: np.ndarray, regs: np.ndarray, lams: np.ndarray, reg_new: float,
                   train: np.ndarray, lr_head: float) -> float:
    """Log-loss SGD pass of a click head ``σ(a·s + c)`` on the MF score ``s``.

    ``head = [a, c]`` is always trained; the body follows ``train``/``lams`` as in
    :func:`l2sp_mf_epoch`. Returns the summed log-loss.
    """
    none1 = np.zeros(0, dtype=np.float64)  # no feature prior
    none2 = np.zeros((0, 0), dtype=np.float64)
    k = p.shape[1]
    loss = 0.0
    for t in range(len(y)):
        uu = u[t]
        ii = i[t]
        dot = 0.0
        for f in range(k):
            dot += p[uu, f] * q[ii, f]
        s = dot + (mu[0] + bu[uu] + bi[ii] if biased else 0.0)
        z = head[0] * s + head[1]
        if z >= 0:
            prob = 1.0 / (1.0 + np.exp(-z))
        else:
            ez = np.exp(z)
            prob = ez / (1.0 + ez)
        pc = min(max(prob, 1e-12), 1 - 1e-12)
        loss -= y[t] * np.log(pc) + (1 - y[t]) * np.log(1 - pc)
        g = y[t] - prob  # minus dloss/dz
        gs = g * head[0]  # minus dloss/ds
        head[0] += lr_head * g * s
        head[1] += lr_head * g
        _anchored_step(uu, ii, gs, mu, bu, bi, p, q, mu0, bu0, bi0, p0, q0, old_u, old_i,
                       biased, lrs, regs, lams, reg_new, train, none1, none1, none2, none2,
                       none1, none1)
    return loss
