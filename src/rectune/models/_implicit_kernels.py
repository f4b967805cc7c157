"""Numba kernels behind the implicit-feedback models (ALS, BPR).

Why hand-written loops rather than BLAS calls: each user's (or item's) problem
is tiny (a ``factors x factors`` system), so the cost is in touching the
user's few rows of the other side's factors; numba loops over a CSR row with
``fastmath`` vectorise as well as per-row BLAS calls do and avoid their call
overhead. Parallelism is over *blocks* of rows (``prange``), each block with
its own scratch buffers, so no allocation happens per row.

Conventions shared by the ALS kernels (Hu, Koren & Volinsky 2008)
----------------------------------------------------------------
The CSR ``data`` holds a *signed confidence* per observed pair: ``c > 0`` means
preference ``p = 1`` with confidence ``c``; ``c < 0`` means ``p = 0`` with
confidence ``|c|`` (an explicit dislike). Unobserved pairs have ``p = 0``,
``c = 1``. Row ``u`` then solves::

    (YᵀY + λ_u I + Σ_{i ∈ u} (|c_ui| − 1) y_i y_iᵀ) x_u = Σ_{i ∈ u, c_ui > 0} c_ui y_i

where ``A0 = YᵀY`` is computed once per half-step (the "YᵀY trick": the dense
part is shared, only the user's own items add a correction) and ``λ_u`` is the
row's own ridge weight (``row_reg[u]``; constant unless frequency-scaled).

The random stream of BPR is a splitmix64 generator per thread, seeded from the
model's ``random_state``: results are bit-for-bit reproducible with one thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numba
import numpy as np
from numba import njit, prange

# rows per parallel work block: large enough to amortise scratch allocation,
# small enough that static scheduling balances users of very different sizes
_BLOCK = 64

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def max_threads() -> int:
    """Threads numba may use (its launch-time maximum, normally the number of cores)."""
    return int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]


@contextmanager
def thread_scope(n_threads: int) -> Iterator[int]:
    """Run numba parallel kernels on ``n_threads`` threads (0 = all), restoring afterwards."""
    available = max_threads()
    n = available if n_threads <= 0 else min(int(n_threads), available)
    before = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(before)


# ------------------------------------------------------------------------ ALS
@njit(cache=True, fastmath=True, inline="always")
def _dot(a: np.ndarray, b: np.ndarray) -> float:
    s = a.dtype.type(0.0)
    for k in range(a.shape[0]):
        s += a[k] * b[k]
    return s


@njit(cache=True, fastmath=True, inline="always")
def _symv(a: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ x`` for a small dense square matrix."""
    f = x.shape[0]
    for r in range(f):
        s = out.dtype.type(0.0)
        for k in range(f):
            s += a[r, k] * x[k]
        out[r] = s


@njit(cache=True, fastmath=True, parallel=True)
def als_cg_half_step(indptr: np.ndarray, indices: np.ndarray, conf: np.ndarray,
                     x: np.ndarray, y: np.ndarray, a0: np.ndarray, row_reg: np.ndarray,
                     cg_steps: int) -> None:
    """Update every row of ``x`` in place by ``cg_steps`` conjugate-gradient steps.

    Warm-started from the current ``x`` (Takács, Pilászy & Tikk 2011): after the
    first iterations the previous solution is close, so three steps suffice.
    The system matrix is never formed: ``A p = A0 p + λ_u p + Σ (|c| − 1) (y_i·p) y_i``.
    """
    n_rows, f = x.shape
    n_blocks = (n_rows + _BLOCK - 1) // _BLOCK
    for blk in prange(n_blocks):
        r = np.empty(f, dtype=x.dtype)
        p = np.empty(f, dtype=x.dtype)
        ap = np.empty(f, dtype=x.dtype)
        zero = x.dtype.type(0.0)
        one = x.dtype.type(1.0)
        for u in range(blk * _BLOCK, min(n_rows, (blk + 1) * _BLOCK)):
            xu = x[u]
            lam = x.dtype.type(row_reg[u])
            # residual r = b - A x
            _symv(a0, xu, r)
            for k in range(f):
                r[k] = -r[k] - lam * xu[k]
            for idx in range(indptr[u], indptr[u + 1]):
                yi = y[indices[idx]]
                c = conf[idx]
                target = c if c > zero else zero
                w = abs(c) - one
                t = target - w * _dot(yi, xu)
                for k in range(f):
                    r[k] += t * yi[k]
            for k in range(f):
                p[k] = r[k]
            rs_old = _dot(r, r)
            if rs_old < 1e-20:
                continue
            for _ in range(cg_steps):
                _symv(a0, p, ap)
                for k in range(f):
                    ap[k] += lam * p[k]
                for idx in range(indptr[u], indptr[u + 1]):
                    yi = y[indices[idx]]
                    t = (abs(conf[idx]) - one) * _dot(yi, p)
                    for k in range(f):
                        ap[k] += t * yi[k]
                denom = _dot(p, ap)
                if denom <= zero:
                    break
                step = rs_old / denom
                for k in range(f):
                    xu[k] += step * p[k]
                    r[k] -= step * ap[k]
                rs_new = _dot(r, r)
                if rs_new < 1e-20:
                    break
                beta = rs_new / rs_old
                for k in range(f):
                    p[k] = r[k] + beta * p[k]
                rs_old = rs_new


@njit(cache=True, fastmath=True)
def _cholesky_solve(a: np.ndarray, b: np.ndarray) -> bool:
    """Solve ``a z = b`` in place (``b`` becomes z) for symmetric positive definite ``a``.

    ``a`` is overwritten by its lower Cholesky factor. Returns False when ``a``
    is not numerically positive definite (``b`` is then left unspecified).
    """
    f = b.shape[0]
    for j in range(f):
        s = a[j, j]
        for k in range(j):
            s -= a[j, k] * a[j, k]
        if s <= 0.0:
            return False
        d = np.sqrt(s)
        a[j, j] = d
        for i in range(j + 1, f):
            s = a[i, j]
            for k in range(j):
                s -= a[i, k] * a[j, k]
            a[i, j] = s / d
    for i in range(f):  # forward: L z = b
        s = b[i]
        for k in range(i):
            s -= a[i, k] * b[k]
        b[i] = s / a[i, i]
    for i in range(f - 1, -1, -1):  # backward: Lᵀ x = z
        s = b[i]
        for k in range(i + 1, f):
            s -= a[k, i] * b[k]
        b[i] = s / a[i, i]
    return True


@njit(cache=True, fastmath=True, parallel=True)
def als_cholesky_half_step(indptr: np.ndarray, indices: np.ndarray, conf: np.ndarray,
                           x: np.ndarray, y: np.ndarray, a0: np.ndarray,
                           row_reg: np.ndarray) -> int:
    """Exact update of every row of ``x``: form the row's system and solve by Cholesky.

    Accumulates in float64 whatever the factor dtype. Returns the number of rows
    whose system was not positive definite (left unchanged; cannot happen with
    ``λ > 0`` and confidences >= 1).
    """
    n_rows, f = x.shape
    n_blocks = (n_rows + _BLOCK - 1) // _BLOCK
    failed = np.zeros(n_blocks, dtype=np.int64)
    for blk in prange(n_blocks):
        a = np.empty((f, f), dtype=np.float64)
        b = np.empty(f, dtype=np.float64)
        yi = np.empty(f, dtype=np.float64)
        for u in range(blk * _BLOCK, min(n_rows, (blk + 1) * _BLOCK)):
            for r in range(f):
                b[r] = 0.0
                for k in range(f):
                    a[r, k] = a0[r, k]
                a[r, r] += row_reg[u]
            for idx in range(indptr[u], indptr[u + 1]):
                row = y[indices[idx]]
                for k in range(f):
                    yi[k] = row[k]
                c = np.float64(conf[idx])
                w = abs(c) - 1.0
                if c > 0:
                    for k in range(f):
                        b[k] += c * yi[k]
                if w != 0.0:
                    for r in range(f):  # lower triangle only: the solver reads no more
                        wr = w * yi[r]
                        for k in range(r + 1):
                            a[r, k] += wr * yi[k]
            if _cholesky_solve(a, b):
                for k in range(f):
                    x[u, k] = b[k]
            else:
                failed[blk] += 1
    return int(failed.sum())


# ------------------------------------------------------------------------ BPR
@njit(cache=True, inline="always")
def _next_u64(state: np.ndarray, t: int) -> np.uint64:
    """splitmix64: one 64-bit draw from thread ``t``'s state."""
    z = state[t] + _GOLDEN
    state[t] = z
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _randint(state: np.ndarray, t: int, n: int) -> np.int64:
    """Uniform integer in ``[0, n)`` (modulo bias < 2**-40 for n < 2**24)."""
    return np.int64((_next_u64(state, t) >> np.uint64(11)) % np.uint64(n))


@njit(cache=True, inline="always")
def _is_positive(indptr: np.ndarray, indices: np.ndarray, u: int, item: np.int64) -> bool:
    """Binary search of ``item`` in the sorted CSR row ``u``."""
    lo = indptr[u]
    hi = indptr[u + 1]
    while lo < hi:
        mid = (lo + hi) >> 1
        v = indices[mid]
        if v == item:
            return True
        if v < item:
            lo = mid + 1
        else:
            hi = mid
    return False


@njit(cache=True, inline="always")
def _draw_negative(indptr: np.ndarray, indices: np.ndarray, pool: np.ndarray, n_items: int,
                   u: int, verify: bool, max_tries: int, state: np.ndarray, t: int) -> np.int64:
    """One negative item for user ``u``, or -1 when none was found.

    ``pool`` empty: uniform over the catalogue; otherwise a uniform draw from
    ``pool`` (the item column of the training pairs: popularity-proportional,
    as implicit does). With ``verify``, a draw that is one of ``u``'s positives
    is rejected and redrawn (up to ``max_tries``), so a known positive is
    never returned; a user who has every item gets -1 at once.
    """
    if verify and indptr[u + 1] - indptr[u] >= n_items:
        return np.int64(-1)
    for _ in range(max_tries):
        if pool.shape[0] == 0:
            j = _randint(state, t, n_items)
        else:
            j = np.int64(pool[_randint(state, t, pool.shape[0])])
        if not verify or not _is_positive(indptr, indices, u, j):
            return j
    return np.int64(-1)


@njit(cache=True)
def draw_negatives(indptr: np.ndarray, indices: np.ndarray, pool: np.ndarray, n_items: int,
                   users: np.ndarray, verify: bool, max_tries: int, seed: int) -> np.ndarray:
    """Negatives for each of ``users`` with the training sampler (exposed for tests)."""
    state = np.array([np.uint64(seed)], dtype=np.uint64)
    out = np.empty(users.shape[0], dtype=np.int64)
    for n in range(users.shape[0]):
        out[n] = _draw_negative(indptr, indices, pool, n_items, users[n], verify, max_tries,
                                state, 0)
    return out


@njit(cache=True)
def _shuffle(order: np.ndarray, state: np.ndarray) -> None:
    """Fisher–Yates shuffle in place with thread 0's stream."""
    for i in range(order.shape[0] - 1, 0, -1):
        j = _randint(state, 0, i + 1)
        tmp = order[i]
        order[i] = order[j]
        order[j] = tmp


@njit(cache=True, fastmath=True, parallel=True)
def bpr_epoch(pos_user: np.ndarray, pos_item: np.ndarray, indptr: np.ndarray,
              indices: np.ndarray, pool: np.ndarray, order: np.ndarray, uf: np.ndarray,
              vf: np.ndarray, bias: np.ndarray, learning_rate: float, reg: float,
              verify: bool, max_tries: int, state: np.ndarray) -> tuple[int, int]:
    """One BPR epoch: every training pair once, in a fresh random order.

    For each pair (u, i) a negative j is drawn and one SGD step taken on
    ``ln σ(x_ui − x_uj) − reg·‖θ‖²`` with ``x_ui = u·v_i + b_i``. With more
    than one stream in ``state`` the shuffled order is cut into that many
    contiguous slices processed concurrently without locks (Hogwild, Recht et
    al. 2011): races are rare because rows are sparse in each step.
    Returns ``(correct, skipped)``: pairs already ranked right, pairs without
    a usable negative.
    """
    _shuffle(order, state)
    n = order.shape[0]
    n_threads = state.shape[0]
    f = uf.shape[1]
    correct = np.zeros(n_threads, dtype=np.int64)
    skipped = np.zeros(n_threads, dtype=np.int64)
    lr = uf.dtype.type(learning_rate)
    rg = uf.dtype.type(reg)
    for t in prange(n_threads):
        # thread-local stream and counters: neighbouring threads' slots share a cache
        # line, and writing them at every step would serialise the threads (false sharing)
        local = np.empty(1, dtype=np.uint64)
        local[0] = state[t]
        n_correct = 0
        n_skipped = 0
        lo = t * n // n_threads
        hi = (t + 1) * n // n_threads
        for s in range(lo, hi):
            idx = order[s]
            u = pos_user[idx]
            i = pos_item[idx]
            j = _draw_negative(indptr, indices, pool, vf.shape[0], u, verify, max_tries,
                               local, 0)
            if j < 0 or j == i:
                n_skipped += 1
                continue
            pu = uf[u]
            qi = vf[i]
            qj = vf[j]
            score = bias[i] - bias[j]
            for k in range(f):
                score += pu[k] * (qi[k] - qj[k])
            z = uf.dtype.type(1.0) / (uf.dtype.type(1.0) + np.exp(score))
            if z < 0.5:
                n_correct += 1
            for k in range(f):
                old = pu[k]
                pu[k] += lr * (z * (qi[k] - qj[k]) - rg * old)
                qi[k] += lr * (z * old - rg * qi[k])
                qj[k] += lr * (-z * old - rg * qj[k])
            bias[i] += lr * (z - rg * bias[i])
            bias[j] += lr * (-z - rg * bias[j])
        state[t] = local[0]
        correct[t] = n_correct
        skipped[t] = n_skipped
    return int(correct.sum()), int(skipped.sum())


# -------------------------------------------------------------- python helpers
def _no_progress(status: str = "") -> None:
    """The ``advance`` of a hidden progress bar."""


@contextmanager
def epoch_progress(enabled: bool, total: int, label: str) -> Iterator[Callable[[str], None]]:
    """A rich progress bar over epochs when ``enabled``; yields ``advance(status_text)``."""
    if not enabled:
        yield _no_progress
        return
    from rich.progress import Progress  # local: only needed when progress is shown

    with Progress() as bar:
        task = bar.add_task(label, total=total)

        def advance(status: str = "") -> None:
            bar.update(task, advance=1, description=f"{label} {status}".rstrip())

        yield advance
