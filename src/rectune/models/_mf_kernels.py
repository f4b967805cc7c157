"""Numba kernels for the explicit-feedback models, and the small runtime that drives them.

Why the data is laid out this way: an SGD epoch touches every rating once in a
random order. Reading ``(user, item, rating)`` through a shuffled index makes
three random reads per rating on top of the random reads of the parameter rows,
and that, not the arithmetic, is what makes a plain port slow. So the ratings
live in contiguous int32/int32/float32 columns that are themselves put into the
epoch's order (:class:`EpochOrder`: a shuffle of the previous epoch's columns
into a second set, drawn from a SplitMix64 stream in registers; from
``BUCKET_MIN_RATINGS`` on, through cache-sized buckets -- all in
:mod:`rectune.models._mf_order`, re-exported here) and the kernel streams
through them. What is left random is the parameter rows a rating names: the SGD
kernels prefetch those of the rating ``PREFETCH_AHEAD`` steps on
(:func:`prefetch_row`), which halves an epoch once the tables outgrow the
cache. Parameters are float32, stored with zero columns up to a vector-friendly
width (:func:`padded_width`), and the kernels are compiled with ``fastmath`` so
the factor loops vectorise. Unbiased NMF needs no order at all: it streams a
CSR once per epoch.

Threads: every kernel is ``nogil`` and takes a ``[start, end)`` range, so a
:class:`ChunkRunner` can run contiguous chunks of one epoch in several threads at
once. For SGD this is lock-free "Hogwild" training (Recht et al., 2011): threads
read and write shared parameter rows without locks; it reaches the same quality
but the trajectory depends on thread timing, so it is **not** bit-reproducible.
:func:`resolve_threads` therefore uses one thread unless the caller asked for
more *and* the data is large (``PARALLEL_MIN_RATINGS``). SVD uses Hogwild then;
Baseline SGD and biased NMF, whose updates are cheap next to the shuffle, keep
the SGD on one thread and use the second to make the next epoch's order
(``EpochOrder(background=True)``), which changes nothing in the result. Kernels
whose output rows are owned by one chunk (unbiased NMF, with per-chunk item
buffers) stay deterministic for a given number of threads.

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
from typing import Any, TypeAlias, cast

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import njit
from numba.core import cgutils
from numba.core import types as nb_types
from numba.extending import intrinsic

# the epoch order lives in its own module; re-exported so existing importers keep working
# (its bucket thresholds are not: patch them in ``_mf_order``, where they are read)
from rectune.models._mf_order import (
    Columns,
    EpochOrder,
    UserBlockOrder,
    draw_seed,
    shuffle_copy,
    shuffle_into,
    shuffle_segments,
)

__all__ = [
    "PARALLEL_MIN_RATINGS",
    "PREFETCH_AHEAD",
    "ChunkRunner",
    "Columns",
    "EpochOrder",
    "EpochProgress",
    "Real",
    "UserBlockOrder",
    "bias_sgd_epoch",
    "draw_seed",
    "even_bounds",
    "nmf_accumulate",
    "nmf_apply",
    "nmf_biased_epoch",
    "padded_width",
    "pair_dots",
    "prefetch_row",
    "resolve_threads",
    "run_epochs",
    "shuffle_copy",
    "shuffle_into",
    "shuffle_segments",
    "svd_epoch",
    "svdpp_epoch",
    "weighted_bounds",
]

#: a scalar argument of a kernel: its precision decides the loops' (see module docs)
Real: TypeAlias = "float | np.floating[Any]"

#: below this many training ratings a fit always runs on one thread (bit-reproducible)
PARALLEL_MIN_RATINGS = 200_000


# -------------------------------------------------------------- prefetch, gathers
@intrinsic
def _prefetch_row(typingctx: Any, arr: Any, row: Any) -> Any:
    """Hint the CPU to fetch every cache line of ``arr[row]`` (a 2-D array) for reading.

    Why: an SGD step reads two parameter rows chosen by the ratings; once the tables
    outgrow the cache each is a chain of misses the arithmetic waits for. The rows
    of a rating a few steps ahead are known, so they can be on their way meanwhile
    (``llvm.prefetch``; a hint, never a fault, whatever the address).
    """
    if not (isinstance(arr, nb_types.Array) and arr.ndim == 2
            and isinstance(row, nb_types.Integer)):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        stride0 = cgutils.unpack_tuple(builder, ary.strides, 2)[0]
        width = cgutils.unpack_tuple(builder, ary.shape, 2)[1]
        idx = context.cast(builder, args[1], sig.args[1], nb_types.intp)
        start = builder.add(builder.ptrtoint(ary.data, cgutils.intp_t), builder.mul(idx, stride0))
        item = context.get_constant(nb_types.intp, context.get_abi_sizeof(
            context.get_data_type(aryty.dtype)))
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0")
        with cgutils.for_range_slice(builder, context.get_constant(nb_types.intp, 0),
                                     builder.mul(width, item),
                                     context.get_constant(nb_types.intp, 64)) as (off, _):
            ptr = builder.inttoptr(builder.add(start, off), i8p)
            builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return nb_types.void(arr, row), codegen


#: ``prefetch_row(arr, row)`` inside a kernel (typed for callers; numba sees the intrinsic)
prefetch_row = cast(Callable[[np.ndarray, Any], None], _prefetch_row)

#: ratings ahead whose parameter rows an SGD kernel prefetches
PREFETCH_AHEAD = 4


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
    ``p_u``, ``p_u`` the old ``q_i``). The factor step is written
    ``p_u <- (1 - lr_pu reg_pu) p_u + (lr_pu e) q_i`` -- Surprise's update, with the
    constant parts taken out of the loop -- and the rows of the rating
    ``PREFETCH_AHEAD`` steps on are prefetched.
    """
    k = p.shape[1]
    scalar = np.empty(2, dtype=p.dtype)  # decays in the factors' precision (module docs)
    scalar[0] = 1.0 - lr_pu * reg_pu
    scalar[1] = 1.0 - lr_qi * reg_qi
    dp = scalar[0]
    dq = scalar[1]
    sse = 0.0
    for t in range(start, end):
        if t + PREFETCH_AHEAD < end:
            prefetch_row(p, u[t + PREFETCH_AHEAD])
            prefetch_row(q, i[t + PREFETCH_AHEAD])
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
        gp = lr_pu * err
        gq = lr_qi * err
        for f in range(k):
            pf = pu[f]
            qf = qi[f]
            pu[f] = dp * pf + gp * qf
            qi[f] = dq * qf + gq * pf
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
        if t + PREFETCH_AHEAD < end:
            prefetch_row(p, u[t + PREFETCH_AHEAD])
            prefetch_row(q, i[t + PREFETCH_AHEAD])
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


def padded_width(k: int) -> int:
    """Columns to store ``k`` factors in: ``k`` rounded up to 16 when that adds few columns.

    Why: the factor loops vectorise 16 float32 lanes at a time, and a ragged tail
    runs lane by lane -- 15 factors (NMF's default) cost more than 16 (measured
    here: ~1.5x per NMF epoch). Zero columns change nothing: a zero factor stays
    zero under the SGD and multiplicative updates, and adds 0 to every dot
    product. Wide tables (>= 64) and tails that would need many zero columns are
    left as they are.
    """
    pad = -k % 16
    return k + pad if k < 64 and pad <= max(2, k // 8) else k


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
