"""Anchored block solves for fine-tuning biased MF by alternating least squares.

The SGD fine-tuning epoch (:mod:`rectune.finetune._kernels`) takes, per rating,
``reg·θ + λ·(θ − θ_pre)`` for rows with pre-training data and ``reg_new·θ`` for
new rows; summed over a row's ``n`` ratings its stationary point solves, for a
user row ``w = [b_u, p_u]`` with the item side fixed,

    (Σ_j z_j z_jᵀ + n·D) w = Σ_j z_j (r_j − o_j) + n·Λ w_pre (+ n·ω t)

with ``z_j = [1, q_j]``, ``o_j = μ + b_j``, ``D = diag(reg + λ)`` (new rows:
``reg_new``), ``Λ = diag(λ)`` and the optional feature prior ``ω (θ − t)``.
Solving that ridge system row by row, users then items, minimises the *same*
L2-SP objective as SGD one block at a time (block coordinate descent), so λ
keeps its meaning across solvers. A block solve costs one pass over the row's
ratings, converges in a few sweeps rather than tens of epochs, and is exact in
each block (``cg_steps=0``: Cholesky) or a warm-started conjugate-gradient
approximation (``cg_steps`` iterations, ``2·n·d`` flops each, the approach of
implicit's ALS), which is what makes refreshing returning users with their
whole history cheap enough for an online update.

Groups are solved only where trainable: ``solve_b``/``solve_x`` off keeps the
bias/factors at their current value (bit for bit) and moves their contribution
into the offset ``o_j``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np
from numba import njit, prange

from rectune.models._mf_runtime import PARALLEL_MIN_RATINGS


@njit(cache=True, fastmath=True, inline="always")
def _z(jb: int, Y: np.ndarray, solve_b: bool, solve_x: bool, out: np.ndarray) -> None:
    """The design row of rating ``j`` (other side's row ``jb``): ``[1?, Y[jb]?]``."""
    o = 0
    if solve_b:
        out[0] = 1.0
        o = 1
    if solve_x:
        for f in range(Y.shape[1]):
            out[o + f] = Y[jb, f]


@njit(cache=True, fastmath=True)
def _cholesky_solve(a: np.ndarray, b: np.ndarray) -> None:
    """Solve ``a x = b`` in place (``b`` becomes ``x``) for a symmetric positive definite ``a``."""
    d = a.shape[0]
    for j in range(d):
        s = a[j, j]
        for m in range(j):
            s -= a[j, m] * a[j, m]
        s = np.sqrt(max(s, 1e-300))
        a[j, j] = s
        for i in range(j + 1, d):
            t = a[i, j]
            for m in range(j):
                t -= a[i, m] * a[j, m]
            a[i, j] = t / s
    for i in range(d):  # L y = b
        t = b[i]
        for m in range(i):
            t -= a[i, m] * b[m]
        b[i] = t / a[i, i]
    for i in range(d - 1, -1, -1):  # Lᵀ x = y
        t = b[i]
        for m in range(i + 1, d):
            t -= a[m, i] * b[m]
        b[i] = t / a[i, i]


@njit(cache=True, fastmath=True, parallel=True)
def _block(indptr: np.ndarray, other: np.ndarray, vals: np.ndarray, rows: np.ndarray,
           X: np.ndarray, bx: np.ndarray, Y: np.ndarray, by: np.ndarray, mu: float,
           X0: np.ndarray, bx0: np.ndarray, old: np.ndarray, solve_b: bool, solve_x: bool,
           reg_b: float, reg_x: float, lam_b: float, lam_x: float, reg_new: float,
           tb: np.ndarray, tx: np.ndarray, wf: np.ndarray, cg_steps: int) -> None:
    """The compiled body of :func:`anchored_block` (rows split over numba's threads)."""
    k = X.shape[1]
    d = (1 if solve_b else 0) + (k if solve_x else 0)
    if d == 0:
        return
    ob = 1 if solve_b else 0
    has_prior = len(wf) > 0
    for t in prange(len(rows)):
        a = rows[t]
        lo, hi = indptr[a], indptr[a + 1]
        n = hi - lo
        if n == 0:
            continue
        # per-component penalty (diagonal) and the anchor / prior pull on the right side
        diag = np.empty(d)
        pull = np.zeros(d)
        nf = float(n)
        w_pr = wf[a] * nf if has_prior else 0.0
        if solve_b:
            if old[a]:
                diag[0] = nf * (reg_b + lam_b)
                pull[0] = nf * lam_b * bx0[a]
            else:
                diag[0] = nf * reg_new
            if w_pr > 0:
                diag[0] += w_pr
                pull[0] += w_pr * tb[a]
        if solve_x:
            for f in range(k):
                if old[a]:
                    diag[ob + f] = nf * (reg_x + lam_x)
                    pull[ob + f] = nf * lam_x * X0[a, f]
                else:
                    diag[ob + f] = nf * reg_new
                if w_pr > 0:
                    diag[ob + f] += w_pr
                    pull[ob + f] += w_pr * tx[a, f]
        w = np.empty(d)
        if solve_b:
            w[0] = bx[a]
        if solve_x:
            for f in range(k):
                w[ob + f] = X[a, f]
        if cg_steps == 0:
            _exact(lo, hi, other, vals, Y, by, mu, X, bx, a, solve_b, solve_x, diag, pull, w)
        else:
            _cg(lo, hi, other, vals, Y, by, mu, X, bx, a, solve_b, solve_x, diag, pull, w,
                cg_steps)
        if solve_b:
            bx[a] = w[0]
        if solve_x:
            for f in range(k):
                X[a, f] = w[ob + f]


def anchored_block(indptr: np.ndarray, other: np.ndarray, vals: np.ndarray, rows: np.ndarray,
                   X: np.ndarray, bx: np.ndarray, Y: np.ndarray, by: np.ndarray, mu: float,
                   X0: np.ndarray, bx0: np.ndarray, old: np.ndarray, solve_b: bool,
                   solve_x: bool, reg_b: float, reg_x: float, lam_b: float, lam_x: float,
                   reg_new: float, tb: np.ndarray, tx: np.ndarray, wf: np.ndarray,
                   cg_steps: int) -> None:
    """Solve the rows ``rows`` of one side (``X``, ``bx``) against the fixed other side.

    ``indptr``/``other``/``vals``: the training ratings grouped by this side's row
    (CSR: the other side's row and the rating). ``X0``/``bx0``: anchors (θ_pre) of rows
    flagged in ``old``; ``tb``/``tx``/``wf``: feature-prior targets and per-rating
    weights (``wf`` empty = no prior). ``cg_steps = 0``: exact Cholesky solve; otherwise
    that many conjugate-gradient iterations warm-started at the current row. Rows are
    split over threads from ``PARALLEL_MIN_RATINGS`` ratings on (the MF fits' threshold):
    below it a parallel region's start-up, and on a busy 2-core machine the wait for the
    second thread, cost more than the split saves (measured on ML-100K's temporal replay,
    31k ratings: 3.5 ms serial against 16 ms parallel per sweep).
    """
    with threads_for(len(other)):
        _block(indptr, other, vals, rows, X, bx, Y, by, mu, X0, bx0, old, solve_b, solve_x,
               reg_b, reg_x, lam_b, lam_x, reg_new, tb, tx, wf, cg_steps)


@contextmanager
def threads_for(n_ratings: int) -> Iterator[None]:
    """numba's threads for a parallel solve over ``n_ratings`` ratings: one below
    ``PARALLEL_MIN_RATINGS`` (see :func:`anchored_block`), restored on exit."""
    threads = numba.get_num_threads()
    if n_ratings < PARALLEL_MIN_RATINGS:
        numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(threads)


@njit(cache=True, fastmath=True)
def _matvec(lo: int, hi: int, other: np.ndarray, Y: np.ndarray, solve_b: bool, solve_x: bool,
            diag: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
    """``out = (Σ_j z_j z_jᵀ + diag) v`` without forming the matrix."""
    d = len(v)
    k = Y.shape[1]
    ob = 1 if solve_b else 0
    for m in range(d):
        out[m] = diag[m] * v[m]
    v0 = v[0] if solve_b else 0.0
    for j in range(lo, hi):
        jb = other[j]
        s = v0
        if solve_x:
            for f in range(k):
                s += Y[jb, f] * v[ob + f]
            for f in range(k):
                out[ob + f] += Y[jb, f] * s
        if solve_b:
            out[0] += s


@njit(cache=True, fastmath=True, inline="always")
def _offset(jb: int, a: int, mu: float, by: np.ndarray, X: np.ndarray, bx: np.ndarray,
            Y: np.ndarray, solve_b: bool, solve_x: bool) -> float:
    """The part of rating ``j``'s prediction that this solve holds fixed."""
    off = mu + by[jb]
    if not solve_b:
        off += bx[a]
    if not solve_x:
        for f in range(Y.shape[1]):
            off += X[a, f] * Y[jb, f]
    return off


@njit(cache=True, fastmath=True)
def _exact(lo: int, hi: int, other: np.ndarray, vals: np.ndarray, Y: np.ndarray,
           by: np.ndarray, mu: float, X: np.ndarray, bx: np.ndarray, a: int, solve_b: bool,
           solve_x: bool, diag: np.ndarray, pull: np.ndarray, w: np.ndarray) -> None:
    """Form ``Σ z zᵀ + diag`` and ``Σ z y + pull`` and solve by Cholesky into ``w``."""
    d = len(w)
    A = np.zeros((d, d))
    rhs = pull.copy()
    z = np.empty(d)
    for j in range(lo, hi):
        jb = other[j]
        y = vals[j] - _offset(jb, a, mu, by, X, bx, Y, solve_b, solve_x)
        _z(jb, Y, solve_b, solve_x, z)
        for m in range(d):
            zm = z[m]
            rhs[m] += zm * y
            for c in range(m + 1):
                A[m, c] += zm * z[c]
    for m in range(d):
        A[m, m] += diag[m]
        for c in range(m):
            A[c, m] = A[m, c]
    _cholesky_solve(A, rhs)
    w[:] = rhs


@njit(cache=True, fastmath=True)
def _cg(lo: int, hi: int, other: np.ndarray, vals: np.ndarray, Y: np.ndarray, by: np.ndarray,
        mu: float, X: np.ndarray, bx: np.ndarray, a: int, solve_b: bool, solve_x: bool,
        diag: np.ndarray, pull: np.ndarray, w: np.ndarray, steps: int) -> None:
    """Conjugate gradient on the row's system, warm-started at ``w`` (updated in place).

    The first residual ``Σ z (y − z·w) + pull − diag·w`` takes one pass over the ratings;
    each iteration one more (a product with ``Σ z zᵀ + diag`` without forming it).
    """
    d = len(w)
    k = Y.shape[1]
    ob = 1 if solve_b else 0
    r = pull - diag * w
    w0 = w[0] if solve_b else 0.0
    for j in range(lo, hi):
        jb = other[j]
        e = vals[j] - _offset(jb, a, mu, by, X, bx, Y, solve_b, solve_x) - w0
        if solve_x:
            for f in range(k):
                e -= Y[jb, f] * w[ob + f]
            for f in range(k):
                r[ob + f] += Y[jb, f] * e
        if solve_b:
            r[0] += e
    p = r.copy()
    ap = np.empty(d)
    rs = 0.0
    for m in range(d):
        rs += r[m] * r[m]
    for _ in range(steps):
        if rs < 1e-20:
            break
        _matvec(lo, hi, other, Y, solve_b, solve_x, diag, p, ap)
        pap = 0.0
        for m in range(d):
            pap += p[m] * ap[m]
        if pap <= 0.0:
            break
        alpha = rs / pap
        rs_new = 0.0
        for m in range(d):
            w[m] += alpha * p[m]
            r[m] -= alpha * ap[m]
            rs_new += r[m] * r[m]
        beta = rs_new / rs
        for m in range(d):
            p[m] = r[m] + beta * p[m]
        rs = rs_new


@njit(cache=True, fastmath=True)
def squared_errors(u: np.ndarray, i: np.ndarray, r: np.ndarray, mu: float, bu: np.ndarray,
                   bi: np.ndarray, P: np.ndarray, Q: np.ndarray) -> float:
    """Σ (r − μ − b_u − b_i − p_u·q_i)² over the given ratings."""
    s = 0.0
    k = P.shape[1]
    for t in range(len(r)):
        uu, ii = u[t], i[t]
        e = r[t] - mu - bu[uu] - bi[ii]
        for f in range(k):
            e -= P[uu, f] * Q[ii, f]
        s += e * e
    return s


@njit(cache=True)
def _counting_sort(key: np.ndarray, other: np.ndarray, vals: np.ndarray, n: int,
                   indptr: np.ndarray, o_out: np.ndarray, v_out: np.ndarray) -> None:
    for t in range(len(key)):
        indptr[key[t] + 1] += 1
    for a in range(n):
        indptr[a + 1] += indptr[a]
    pos = indptr[:-1].copy()
    for t in range(len(key)):
        a = key[t]
        o_out[pos[a]] = other[t]
        v_out[pos[a]] = vals[t]
        pos[a] += 1


def group_rows(key: np.ndarray, other: np.ndarray, vals: np.ndarray,
               n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CSR grouping of ratings by ``key`` (a stable counting sort, O(n)):
    ``indptr, other, vals, rows_with_data``."""
    indptr = np.zeros(n + 1, dtype=np.int64)
    o_out = np.empty(len(key), dtype=np.int64)
    v_out = np.empty(len(key), dtype=np.float64)
    _counting_sort(np.asarray(key, dtype=np.int64), np.asarray(other, dtype=np.int64),
                   np.asarray(vals, dtype=np.float64), n, indptr, o_out, v_out)
    return indptr, o_out, v_out, np.flatnonzero(np.diff(indptr)).astype(np.int64)
