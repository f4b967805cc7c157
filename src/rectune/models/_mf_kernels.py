"""Numba kernels for the explicit-feedback models, and the small runtime that drives them.

Why the data is laid out this way: an SGD epoch touches every rating once in a
random order. Reading ``(user, item, rating)`` through a shuffled index makes
three random reads per rating on top of the random reads of the parameter rows,
and that, not the arithmetic, is what makes a plain port slow. So the ratings
live in contiguous int32/int32/float32 columns that are themselves put into the
epoch's order -- Fisher-Yates shuffled in place, which also saves the index
array and the gather a permutation would need -- and the kernel streams through
them. Parameters are float32 and the kernels are compiled with ``fastmath`` so
the factor loops vectorise. Unbiased NMF needs no order at all: it streams a
CSR once per epoch.

Threads: every kernel is ``nogil`` and takes a ``[start, end)`` range, so a
:class:`ChunkRunner` can run contiguous chunks of one epoch in several threads at
once. For SGD this is lock-free "Hogwild" training (Recht et al., 2011): threads
read and write shared parameter rows without locks; it reaches the same quality
but the trajectory depends on thread timing, so it is **not** bit-reproducible.
:func:`resolve_threads` therefore uses one thread unless the caller asked for
more *and* the data is large (``PARALLEL_MIN_RATINGS``). Kernels whose output
rows are owned by one chunk (unbiased NMF, with per-chunk item buffers) stay
deterministic for a given number of threads.

Precision: kernels compute in the dtype of the arrays and scalars they are
given; the models pass float32 arrays *and* float32 scalars (a float64 scalar
would silently promote the inner loops to float64), while the tests and the
parity script replay Surprise in float64 through the same kernels.

Interrupts: Python delivers Ctrl-C between bytecodes, never inside a kernel, and
each epoch mutates the parameters in one kernel call (per thread); the runner
waits for every thread before letting an exception through. An interrupted fit
therefore leaves parameters from a whole number of epochs.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Any, TypeAlias

import numpy as np
from numba import njit

#: a scalar argument of a kernel: its precision decides the loops' (see module docs)
Real: TypeAlias = "float | np.floating[Any]"

#: below this many training ratings a fit always runs on one thread (bit-reproducible)
PARALLEL_MIN_RATINGS = 200_000


# ----------------------------------------------------------------------- data movement
@njit(cache=True, fastmath=True, nogil=True)
def shuffle_ratings(keys: np.ndarray, u: np.ndarray, i: np.ndarray, r: np.ndarray) -> None:
    """Fisher-Yates shuffle of the three rating columns together, in place.

    ``keys`` are raw 64-bit draws of the numpy Generator's bit generator; step
    ``t`` swaps with ``keys[t] mod (t + 1)`` (modulo bias below 1e-13). Shuffling
    the previous epoch's order in place gives a uniform order without the
    index array and the gather a permutation would need.
    """
    for t in range(u.shape[0] - 1, 0, -1):
        j = np.int64(keys[t] % np.uint64(t + 1))
        u[t], u[j] = u[j], u[t]
        i[t], i[j] = i[j], i[t]
        r[t], r[j] = r[j], r[t]


@njit(cache=True, fastmath=True, nogil=True)
def shuffle_segments(keys: np.ndarray, indptr: np.ndarray, i: np.ndarray,
                     r: np.ndarray) -> None:
    """Fisher-Yates shuffle of each CSR row segment ``indptr[u]..indptr[u+1]`` in place."""
    for uu in range(indptr.shape[0] - 1):
        s = indptr[uu]
        for t in range(indptr[uu + 1] - 1, s, -1):
            j = s + np.int64(keys[t] % np.uint64(t - s + 1))
            i[t], i[j] = i[j], i[t]
            r[t], r[j] = r[j], r[t]


@njit(cache=True, fastmath=True, nogil=True)
def pair_dots(a: np.ndarray, ai: np.ndarray, b: np.ndarray, bi: np.ndarray,
              out: np.ndarray) -> None:
    """``out[t] = a[ai[t]] . b[bi[t]]`` without materialising the gathered rows."""
    k = a.shape[1]
    for t in range(ai.shape[0]):
        x = a[ai[t]]
        y = b[bi[t]]
        s = np.float32(0.0)
        for f in range(k):
            s += x[f] * y[f]
        out[t] = s


# ------------------------------------------------------------------------ SGD kernels
@njit(cache=True, fastmath=True, nogil=True)
def bias_sgd_epoch(start: int, end: int, u: np.ndarray, i: np.ndarray, r: np.ndarray,
                   mu: Real, bu: np.ndarray, bi: np.ndarray, lr: Real, reg: float) -> float:
    """Surprise ``baseline_sgd`` over ratings ``[start, end)``; returns the sum of squared errors.

    ``e = r - (mu + b_u + b_i)``; ``b_u += lr (e - reg b_u)``; ``b_i += lr (e - reg b_i)``.
    """
    sse = 0.0
    for t in range(start, end):
        uu = u[t]
        ii = i[t]
        err = r[t] - (mu + bu[uu] + bi[ii])
        sse += err * err
        bu[uu] += lr * (err - reg * bu[uu])
        bi[ii] += lr * (err - reg * bi[ii])
    return sse


@njit(cache=True, fastmath=True, nogil=True)
def svd_epoch(start: int, end: int, u: np.ndarray, i: np.ndarray, r: np.ndarray, mu: Real,
              bu: np.ndarray, bi: np.ndarray, p: np.ndarray, q: np.ndarray, biased: bool,
              lr_bu: Real, lr_bi: Real, lr_pu: Real, lr_qi: Real,
              reg_bu: Real, reg_bi: Real, reg_pu: Real, reg_qi: Real) -> float:
    """One pass of Surprise's SVD SGD over ratings ``[start, end)``; returns the SSE.

    Per rating, exactly Surprise's order: the error with the current parameters,
    then ``b_u``, ``b_i``, then ``p_u`` and ``q_i`` together (``q_i`` uses the old
    ``p_u``, ``p_u`` the old ``q_i``).
    """
    k = p.shape[1]
    sse = 0.0
    for t in range(start, end):
        uu = u[t]
        ii = i[t]
        pu = p[uu]
        qi = q[ii]
        dot = np.float32(0.0)
        for f in range(k):
            dot += pu[f] * qi[f]
        if biased:
            err = r[t] - (mu + bu[uu] + bi[ii] + dot)
            bu[uu] += lr_bu * (err - reg_bu * bu[uu])
            bi[ii] += lr_bi * (err - reg_bi * bi[ii])
        else:
            err = r[t] - dot
        sse += err * err
        for f in range(k):
            pf = pu[f]
            qf = qi[f]
            pu[f] = pf + lr_pu * (err * qf - reg_pu * pf)
            qi[f] = qf + lr_qi * (err * pf - reg_qi * qf)
    return sse


@njit(cache=True, fastmath=True, nogil=True)
def svdpp_epoch(start: int, end: int, user_order: np.ndarray, indptr: np.ndarray,
                i: np.ndarray, r: np.ndarray, mu: Real, bu: np.ndarray, bi: np.ndarray,
                p: np.ndarray, q: np.ndarray, y: np.ndarray, lr_bu: Real, lr_bi: Real,
                lr_pu: Real, lr_qi: Real, lr_yj: Real, reg_bu: Real, reg_bi: Real,
                reg_pu: Real, reg_qi: Real, reg_yj: Real) -> float:
    """SVD++ SGD over users ``user_order[start:end]``; returns the SSE.

    The ratings are in CSR layout (user ``u``'s items and ratings at
    ``indptr[u]..indptr[u+1]``, which is also ``N(u)``), visited user by user.

    Surprise updates, for every rating of user ``u``, all ``y_j`` (``j`` in
    ``N(u)``) by ``y_j <- a y_j + lr_yj g`` with ``a = 1 - lr_yj reg_yj`` and
    ``g = e q_i / sqrt|N(u)|`` -- the same affine map for every ``j`` -- and
    recomputes ``z = |N(u)|^-1/2 sum_j y_j`` at the next rating. Both can be
    carried exactly in O(k) per rating: ``z <- a z + lr_yj e q_i`` and the pending
    map ``y_j <- a^m y_j + acc`` (``acc <- a acc + lr_yj g``), applied to ``N(u)``
    once when the user's block ends. With the ratings grouped by user this is
    Surprise's per-rating schedule, reorganised, in O(|R| k) instead of
    O(sum_u |N(u)|^2 k) per epoch.
    """
    k = p.shape[1]
    scalar = np.empty(1, dtype=p.dtype)  # scalars in the factors' precision
    scalar[0] = 1.0 - lr_yj * reg_yj
    decay = scalar[0]
    z = np.zeros(k, dtype=p.dtype)
    acc = np.zeros(k, dtype=p.dtype)
    sse = 0.0
    for b in range(start, end):
        uu = user_order[b]
        s = indptr[uu]
        e = indptr[uu + 1]
        if e == s:
            continue
        scalar[0] = 1.0 / math.sqrt(e - s)
        inv = scalar[0]
        z[:] = 0.0
        for pos in range(s, e):
            yj = y[i[pos]]
            for f in range(k):
                z[f] += yj[f]
        for f in range(k):
            z[f] *= inv
        acc[:] = 0.0
        scalar[0] = 1.0
        apow = scalar[0]
        pu = p[uu]
        for t in range(s, e):
            ii = i[t]
            qi = q[ii]
            dot = np.float32(0.0)
            for f in range(k):
                dot += qi[f] * (pu[f] + z[f])
            err = r[t] - (mu + bu[uu] + bi[ii] + dot)
            sse += err * err
            bu[uu] += lr_bu * (err - reg_bu * bu[uu])
            bi[ii] += lr_bi * (err - reg_bi * bi[ii])
            for f in range(k):
                pf = pu[f]
                qf = qi[f]
                zf = z[f]
                pu[f] = pf + lr_pu * (err * qf - reg_pu * pf)
                qi[f] = qf + lr_qi * (err * (pf + zf) - reg_qi * qf)
                acc[f] = decay * acc[f] + lr_yj * (err * qf * inv)
                z[f] = decay * zf + lr_yj * err * qf
            apow *= decay
        for pos in range(s, e):
            yj = y[i[pos]]
            for f in range(k):
                yj[f] = apow * yj[f] + acc[f]
    return sse


# ------------------------------------------------------------------------ NMF kernels
@njit(cache=True, fastmath=True, nogil=True)
def nmf_accumulate(start: int, end: int, indptr: np.ndarray, item: np.ndarray, r: np.ndarray,
                   p: np.ndarray, q: np.ndarray, unum: np.ndarray, uden: np.ndarray,
                   inum: np.ndarray, iden: np.ndarray) -> float:
    """Unbiased NMF sums for users ``[start, end)`` of a CSR, in one pass over their ratings.

    ``est = p_u . q_i``; ``num_u = sum_i q_i r_ui``, ``den_u = sum_i q_i est_ui`` (rows
    owned by this range) and the item sums ``num_i = sum_u p_u r_ui``, ``den_i`` into
    ``inum``/``iden``, which are this range's private buffers (zeroed here; the
    caller adds the ranges' buffers). Returns the SSE of the epoch-start factors.
    """
    k = p.shape[1]
    inum[...] = 0.0
    iden[...] = 0.0
    sse = 0.0
    for uu in range(start, end):
        pu = p[uu]
        nu = unum[uu]
        du = uden[uu]
        nu[:] = 0.0
        du[:] = 0.0
        for pos in range(indptr[uu], indptr[uu + 1]):
            ii = item[pos]
            qi = q[ii]
            dot = np.float32(0.0)
            for f in range(k):
                dot += pu[f] * qi[f]
            rr = r[pos]
            err = rr - dot
            sse += err * err
            ni = inum[ii]
            di = iden[ii]
            for f in range(k):
                nu[f] += qi[f] * rr
                du[f] += qi[f] * dot
                ni[f] += pu[f] * rr
                di[f] += pu[f] * dot
    return sse


@njit(cache=True, fastmath=True, nogil=True)
def nmf_biased_epoch(start: int, end: int, u: np.ndarray, i: np.ndarray, r: np.ndarray,
                     mu: Real, bu: np.ndarray, bi: np.ndarray, p: np.ndarray, q: np.ndarray,
                     lr_bu: Real, lr_bi: Real, reg_bu: Real, reg_bi: Real,
                     unum: np.ndarray, uden: np.ndarray, inum: np.ndarray,
                     iden: np.ndarray) -> float:
    """Biased NMF (Surprise): SGD on the biases and the factor sums, in the epoch's order.

    The sums must start at zero; they use the epoch-start factors and the
    current biases (``est = mu + b_u + b_i + p_u . q_i``), as Surprise does.
    """
    k = p.shape[1]
    sse = 0.0
    for t in range(start, end):
        uu = u[t]
        ii = i[t]
        pu = p[uu]
        qi = q[ii]
        dot = np.float32(0.0)
        for f in range(k):
            dot += pu[f] * qi[f]
        est = mu + bu[uu] + bi[ii] + dot
        rr = r[t]
        err = rr - est
        sse += err * err
        bu[uu] += lr_bu * (err - reg_bu * bu[uu])
        bi[ii] += lr_bi * (err - reg_bi * bi[ii])
        for f in range(k):
            unum[uu, f] += qi[f] * rr
            uden[uu, f] += qi[f] * est
            inum[ii, f] += pu[f] * rr
            iden[ii, f] += pu[f] * est
    return sse


@njit(cache=True, fastmath=True, nogil=True)
def nmf_apply(p: np.ndarray, unum: np.ndarray, uden: np.ndarray, ucount: np.ndarray,
              reg_pu: Real, q: np.ndarray, inum: np.ndarray, iden: np.ndarray,
              icount: np.ndarray, reg_qi: Real) -> None:
    """Multiplicative updates of both factor matrices in one call (atomic for Ctrl-C).

    ``p_uf <- p_uf num_uf / (den_uf + |I_u| reg_pu p_uf)``, skipped where ``p_uf = 0``
    (Surprise) or the denominator is not positive (keeps factors non-negative).
    """
    k = p.shape[1]
    for uu in range(p.shape[0]):
        c = ucount[uu]
        for f in range(k):
            v = p[uu, f]
            if v != 0.0:
                d = uden[uu, f] + c * reg_pu * v
                if d > 0.0:
                    p[uu, f] = v * (unum[uu, f] / d)
    for ii in range(q.shape[0]):
        c = icount[ii]
        for f in range(k):
            v = q[ii, f]
            if v != 0.0:
                d = iden[ii, f] + c * reg_qi * v
                if d > 0.0:
                    q[ii, f] = v * (inum[ii, f] / d)


# --------------------------------------------------------------------------- runtime
def resolve_threads(requested: int, n_ratings: int) -> int:
    """Threads for a fit: 1 when asked or when the data is small, else as asked (0 = all cores)."""
    if requested == 1 or n_ratings < PARALLEL_MIN_RATINGS:
        return 1
    if requested <= 0:
        return max(1, os.cpu_count() or 1)
    return int(requested)


def even_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ``[start, end)`` ranges covering ``0..n``."""
    cuts = np.linspace(0, n, max(1, parts) + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in itertools.pairwise(cuts)]


def weighted_bounds(ptr: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Split rows ``0..len(ptr)-1`` so each range holds about the same ``ptr`` mass.

    ``ptr`` is a CSR-style offset array (rows ``b`` span ``ptr[b]..ptr[b+1]``).
    """
    n_rows = len(ptr) - 1
    if parts <= 1 or n_rows <= 1:
        return [(0, n_rows)]
    targets = np.linspace(0, ptr[-1], parts + 1)[1:-1]
    cuts = np.concatenate([[0], np.searchsorted(ptr, targets), [n_rows]]).astype(np.int64)
    cuts = np.maximum.accumulate(np.clip(cuts, 0, n_rows))
    return [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]


class ChunkRunner:
    """Runs a ``nogil`` kernel ``fn(start, end, *args) -> float`` over ranges in threads.

    The calling thread runs the first range; results are summed. If anything
    (including KeyboardInterrupt) interrupts the caller, every thread is waited
    for before the exception propagates, so no kernel still writes parameters.
    """

    def __init__(self, n_threads: int) -> None:
        self.n_threads = max(1, int(n_threads))
        self._pool = ThreadPoolExecutor(self.n_threads - 1) if self.n_threads > 1 else None

    def __enter__(self) -> ChunkRunner:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def run(self, fn: Callable[..., float], bounds: Sequence[tuple[int, int]],
            *args: Any) -> float:
        """``sum(fn(start, end, *args))`` over ``bounds``, one range per thread."""
        return self.run_each(fn, [(s, e, *args) for s, e in bounds])

    def run_each(self, fn: Callable[..., float], calls: Sequence[tuple[Any, ...]]) -> float:
        """``sum(fn(*call))`` over ``calls`` (per-range arguments), one call per thread."""
        if self._pool is None or len(calls) == 1:
            return float(sum(fn(*c) for c in calls))
        futures: list[Future[float]] = [self._pool.submit(fn, *c) for c in calls[1:]]
        try:
            total = float(fn(*calls[0]))
            return total + float(sum(f.result() for f in futures))
        except BaseException:
            wait(futures)
            raise


class EpochOrder:
    """Each epoch's rating order, held in contiguous int32/int32/float32 columns.

    ``shuffle=True``: the columns are Fisher-Yates shuffled in place every epoch
    with raw draws from the numpy Generator (seeded, so reproducible).
    ``shuffle=False``: user by user (users in index order, each user's ratings in
    data order) -- Surprise's ``all_ratings()`` order -- fixed.
    """

    def __init__(self, user: np.ndarray, item: np.ndarray, value: np.ndarray,
                 rng: np.random.Generator, shuffle: bool) -> None:
        order = np.argsort(user, kind="stable")
        self.u = np.ascontiguousarray(user[order], dtype=np.int32)
        self.i = np.ascontiguousarray(item[order], dtype=np.int32)
        self.r = np.ascontiguousarray(value[order], dtype=np.float32)
        self.rng = rng
        self.shuffle = shuffle

    def __len__(self) -> int:
        return len(self.u)

    def next(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.shuffle:
            shuffle_ratings(self.rng.bit_generator.random_raw(len(self.u)), self.u, self.i,
                            self.r)
        return self.u, self.i, self.r


class UserBlockOrder:
    """Ratings in CSR layout (by user) plus each epoch's order of users (for SVD++).

    ``shuffle=True``: every epoch, users in a fresh random order and each user's
    ratings shuffled in place, from the numpy Generator. ``shuffle=False``: users
    in index order, ratings in data order (Surprise's order).
    """

    def __init__(self, user: np.ndarray, item: np.ndarray, value: np.ndarray, n_users: int,
                 rng: np.random.Generator, shuffle: bool) -> None:
        order = np.argsort(user, kind="stable")
        self.i = np.ascontiguousarray(item[order], dtype=np.int32)
        self.r = np.ascontiguousarray(value[order], dtype=np.float32)
        self.counts = np.bincount(user, minlength=n_users).astype(np.int64)
        self.indptr = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.user_order = np.arange(n_users, dtype=np.int32)
        self.rng = rng
        self.shuffle = shuffle

    def next(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(user_order, indptr, item, rating)`` for this epoch."""
        if self.shuffle:
            self.user_order = self.rng.permutation(len(self.counts)).astype(np.int32)
            shuffle_segments(self.rng.bit_generator.random_raw(len(self.i)), self.indptr,
                             self.i, self.r)
        return self.user_order, self.indptr, self.i, self.r

    def mass(self) -> np.ndarray:
        """Cumulative rating counts along this epoch's user order (for thread bounds)."""
        return np.concatenate([[0], np.cumsum(self.counts[self.user_order])])


class EpochProgress:
    """Per-epoch rich progress bar (epoch m/n, metrics, ETA); a no-op when disabled."""

    def __init__(self, enabled: bool, label: str, n_epochs: int) -> None:
        self.enabled = enabled
        self.label = label
        self.n_epochs = n_epochs
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> EpochProgress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("{task.fields[metrics]}"),
                                      TimeElapsedColumn(), TimeRemainingColumn())
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.n_epochs, metrics="")
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def epoch_done(self, metrics: dict[str, float]) -> None:
        if self._progress is not None:
            text = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            self._progress.update(self._task, advance=1, metrics=text)


def run_epochs(
    hist: dict[str, Any],
    n_epochs: int,
    step: Callable[[int], float],
    *,
    n_ratings: int,
    label: str,
    progress: bool,
    valid_rmse: Callable[[], float] | None = None,
    patience: int | None = None,
    snapshot: Callable[[], Any] | None = None,
    restore: Callable[[Any], None] | None = None,
) -> None:
    """Drive ``n_epochs`` calls of ``step(epoch) -> SSE`` with progress and early stopping.

    Fills ``hist`` in place (so a caller still has it after a Ctrl-C):
    ``train_rmse`` (running RMSE of the errors each epoch saw), ``valid_rmse`` when
    ``valid_rmse`` is given, ``epochs`` run, ``best_epoch`` (1-based; with early
    stopping the parameters are restored to it), ``seconds`` and, after a
    KeyboardInterrupt (which is re-raised), ``interrupted``. ``patience`` epochs
    without a lower validation RMSE stop training.
    """
    hist.update(train_rmse=[], epochs=0, best_epoch=0, seconds=0.0)
    if valid_rmse is not None:
        hist["valid_rmse"] = []
    best, best_state, since = math.inf, None, 0
    t0 = time.perf_counter()
    try:
        with EpochProgress(progress, label, n_epochs) as bar:
            for epoch in range(n_epochs):
                sse = step(epoch)
                metrics = {"train RMSE": math.sqrt(sse / max(n_ratings, 1))}
                hist["train_rmse"].append(metrics["train RMSE"])
                hist["epochs"] = hist["best_epoch"] = epoch + 1
                if valid_rmse is not None:
                    v = valid_rmse()
                    hist["valid_rmse"].append(v)
                    metrics["valid RMSE"] = v
                bar.epoch_done(metrics)
                if patience is None or valid_rmse is None:
                    continue
                if v < best - 1e-7:
                    best, since = v, 0
                    best_state = snapshot() if snapshot is not None else None
                    hist["best_epoch"] = epoch + 1
                else:
                    since += 1
                    hist["best_epoch"] = epoch + 1 - since
                    if since >= patience:
                        break
        if best_state is not None and restore is not None and hist["best_epoch"] < hist["epochs"]:
            restore(best_state)
    except KeyboardInterrupt:
        hist["interrupted"] = True
        hist["best_epoch"] = hist["epochs"]
        raise
    finally:
        hist["seconds"] = time.perf_counter() - t0
