"""Numba kernels for the explicit-feedback models (their runtime: :mod:`._mf_runtime`).

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
CSR once per epoch, and SVD walks a by-user CSR itself (:func:`svd_user_kernel`:
each user's ratings shuffled in L1 as its turn comes, several users interleaved).

Threads: every kernel is ``nogil`` and takes a ``[start, end)`` range, so a
:class:`ChunkRunner` can run contiguous chunks of one epoch in several threads at
once. For SGD this is lock-free "Hogwild" training (Recht et al., 2011): threads
read and write shared parameter rows without locks; it reaches the same quality
but the trajectory depends on thread timing, so it is **not** bit-reproducible.
:func:`resolve_threads` therefore uses one thread unless the caller asked for
more *and* the data is large (``PARALLEL_MIN_RATINGS``). SVD uses Hogwild then
(threads pull runs of users: :meth:`ChunkRunner.run_pulled`);
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

import math
from collections.abc import Callable
from typing import Any, TypeAlias, cast

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import njit
from numba.core import cgutils
from numba.core import types as nb_types
from numba.extending import intrinsic

# the epoch order and the runtime (threads, progress, the epoch loop) live in their own
# modules; re-exported so existing importers keep working (the order's bucket thresholds
# are not: patch them in ``_mf_order``, where they are read)
from rectune.models._mf_order import (
    _GOLDEN,
    Columns,
    EpochOrder,
    UserBlockOrder,
    _below,
    _splitmix,
    draw_seed,
    shuffle_copy,
    shuffle_into,
    shuffle_segments,
)
from rectune.models._mf_runtime import (
    PARALLEL_MIN_RATINGS,
    ChunkRunner,
    EpochProgress,
    even_bounds,
    resolve_threads,
    run_epochs,
    weighted_bounds,
)

__all__ = [
    "PARALLEL_MIN_RATINGS",
    "PREFETCH_AHEAD",
    "SVD_LANES",
    "ChunkRunner",
    "Columns",
    "EpochOrder",
    "EpochProgress",
    "Real",
    "UserBlockOrder",
    "bias_sgd_epoch",
    "biased_pair_scores",
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
    "svd_user_kernel",
    "svdpp_epoch",
    "weighted_bounds",
]

#: a scalar argument of a kernel: its precision decides the loops' (see module docs)
Real: TypeAlias = "float | np.floating[Any]"



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


@njit(cache=True, fastmath=True, nogil=True)
def biased_pair_scores(a: np.ndarray, ai: np.ndarray, b: np.ndarray, bj: np.ndarray,
                       bu: np.ndarray, u: np.ndarray, bi: np.ndarray, i: np.ndarray,
                       base: float, out: np.ndarray) -> None:
    """``out[t] = base + bu[u[t]] + bi[i[t]] + a[ai[t]] . b[bj[t]]`` in one pass.

    The biased factor models' prediction (the dot in the factors' precision, the
    sum in ``out``'s), with no gathered rows or per-term temporaries.
    """
    k = a.shape[1]
    for t in range(ai.shape[0]):
        x = a[ai[t]]
        y = b[bj[t]]
        s = np.float32(0.0)
        for f in range(k):
            s += x[f] * y[f]
        out[t] = base + bu[u[t]] + bi[i[t]] + s


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


# ------------------------------------------------------------ SVD by interleaved users
#: users one SVD thread keeps in flight at once (:func:`svd_user_kernel`; measured here,
#: 2 to 8 lanes run an epoch ~1.15x faster than 1, with little difference among them)
SVD_LANES = 4


@njit(cache=True, nogil=True, inline="always")
def _open_user(lane: int, b: int, end: int, users: np.ndarray, indptr: np.ndarray,
               i: np.ndarray, r: np.ndarray, seed: np.uint64, shuffle: bool, cur: np.ndarray,
               stop: np.ndarray, who: np.ndarray, p: np.ndarray) -> int:
    """Put the next user of ``users[b:end]`` with ratings on ``lane``; returns the new ``b``.

    ``shuffle``: the user's ratings are first Fisher-Yates shuffled in place, seeded
    by ``seed`` and the user (not by the split between threads). No user left:
    the lane is emptied (``who = -1``).
    """
    while b < end:
        uu = users[b]
        b += 1
        a = indptr[uu]
        e = indptr[uu + 1]
        if e == a:
            continue
        if shuffle:
            s = _splitmix(seed ^ (np.uint64(uu) * _GOLDEN))
            for t in range(e - 1, a, -1):
                s += _GOLDEN
                ju = np.uint64(a + _below(_splitmix(s), np.uint64(t - a + 1)))
                tu = np.uint64(t)  # unsigned: no wraparound code
                i[tu], i[ju] = i[ju], i[tu]
                r[tu], r[ju] = r[ju], r[tu]
        prefetch_row(p, uu)
        cur[lane] = a
        stop[lane] = e
        who[lane] = uu
        return b
    cur[lane] = 0
    stop[lane] = 0
    who[lane] = -1
    return b


def _make_svd_user_kernel(width: int) -> Callable[..., float]:
    """:func:`svd_user_kernel` for one width (``width`` is a compile-time constant in it)."""

    @njit(cache=True, fastmath=True, nogil=True)
    def svd_user_epoch(start: int, end: int, users: np.ndarray, indptr: np.ndarray,
                       i: np.ndarray, r: np.ndarray, seed: np.uint64, shuffle: bool,
                       lanes: int, mu: Real, bu: np.ndarray, bi: np.ndarray, p: np.ndarray,
                       q: np.ndarray, biased: bool, lr_bu: Real, lr_bi: Real, lr_pu: Real,
                       lr_qi: Real, reg_bu: Real, reg_bi: Real, reg_pu: Real,
                       reg_qi: Real) -> float:
        if p.shape[1] != width or q.shape[1] != width:
            raise ValueError("svd_user_epoch: factor tables of another width")
        scalar = np.empty(2, dtype=p.dtype)  # decays in the factors' precision (module docs)
        scalar[0] = 1.0 - lr_pu * reg_pu
        scalar[1] = 1.0 - lr_qi * reg_qi
        dp = scalar[0]
        dq = scalar[1]
        cur = np.empty(lanes, np.int64)
        stop = np.empty(lanes, np.int64)
        who = np.empty(lanes, np.int64)
        b = start
        active = 0
        for lane in range(lanes):
            b = _open_user(lane, b, end, users, indptr, i, r, seed, shuffle, cur, stop, who, p)
            if who[lane] >= 0:
                active += 1
        sse = 0.0
        while active > 0:
            for lane in range(lanes):
                t = cur[lane]
                e = stop[lane]
                if t >= e:
                    continue
                # unsigned indices: numba then skips its negative-index wraparound code
                tu = np.uint64(t)
                if t + 1 < e:  # this lane's next item, ``lanes`` ratings on
                    prefetch_row(q, np.uint64(i[tu + np.uint64(1)]))
                uu = np.uint64(who[lane])
                ii = np.uint64(i[tu])
                pu = p[uu]
                qi = q[ii]
                dot = np.float32(0.0)
                for f in range(width):
                    dot += pu[f] * qi[f]
                if biased:
                    err = r[tu] - (mu + bu[uu] + bi[ii] + dot)
                    bu[uu] += lr_bu * (err - reg_bu * bu[uu])
                    bi[ii] += lr_bi * (err - reg_bi * bi[ii])
                else:
                    err = r[tu] - dot
                sse += err * err
                gp = lr_pu * err
                gq = lr_qi * err
                for f in range(width):
                    pf = pu[f]
                    qf = qi[f]
                    pu[f] = dp * pf + gp * qf
                    qi[f] = dq * qf + gq * pf
                cur[lane] = t + 1
                if t + 1 == e:
                    b = _open_user(lane, b, end, users, indptr, i, r, seed, shuffle, cur, stop,
                                   who, p)
                    if who[lane] < 0:
                        active -= 1
        return sse

    return cast(Callable[..., float], svd_user_epoch)


_SVD_USER_KERNELS: dict[int, Callable[..., float]] = {}


def svd_user_kernel(width: int) -> Callable[..., float]:
    """SVD's training kernel for factor tables ``width`` columns wide (compiled once per width).

    ``fn(start, end, users, indptr, i, r, seed, shuffle, lanes, mu, bu, bi, p, q,
    biased, lr_bu, lr_bi, lr_pu, lr_qi, reg_bu, reg_bi, reg_pu, reg_qi) -> SSE`` runs
    Surprise's SVD update (:func:`svd_epoch`, exactly) over the ratings of users
    ``users[start:end]``, held in CSR layout (``indptr``, ``i``, ``r``).

    Why by user, and why ``lanes``: rating after rating of one user keeps ``p_u`` in
    L1 (a fully shuffled order fetches both rows from the outer caches for every
    rating, and needs a shuffled copy of the ratings each epoch), but each update
    then waits for the previous one's ``p_u``. So ``lanes`` users are in flight,
    one rating each in turn: consecutive updates are independent and the CPU
    overlaps them. A lane whose user runs out takes the next user of ``users``.
    ``shuffle`` shuffles each user's ratings in place as its turn starts.
    ``lanes=1`` without ``shuffle`` visits the users in the given order, each
    user's ratings as stored -- with users in index order, Surprise's own order.
    (Measured here at 1M ratings: a fit ~1.4-1.5x faster than with a shuffled copy
    of the ratings per epoch and :func:`svd_epoch`, at the same test RMSE.)

    The width is a compile-time constant of the kernel: the factor loops then
    compile to straight-line vector code with no remainder loop (measured here:
    ~1.2x an epoch at 100 factors). Numba caches each width's kernel on disk.
    """
    fn = _SVD_USER_KERNELS.get(width)
    if fn is None:
        fn = _SVD_USER_KERNELS[width] = _make_svd_user_kernel(int(width))
    return fn


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
