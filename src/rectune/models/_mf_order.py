"""Each SGD epoch's rating order: seeded shuffles of contiguous columns, and their holders.

Why a module of its own: the order an epoch visits the ratings in is a concern
apart from the update rules in :mod:`rectune.models._mf_kernels` -- it decides
the memory traffic (the kernels stream through columns already in the epoch's
order, so the only random reads left are parameter rows) and, through the
seeds, the reproducibility of a fit, while the update arithmetic is the same in
any order. The shuffles draw from a SplitMix64 stream kept in registers
(no buffer of draws is written and read back) and, from ``BUCKET_MIN_RATINGS``
ratings on, go through cache-sized Rao-Sandelius buckets. :class:`EpochOrder`
holds the shuffled (user, item, rating) columns for the pointwise SGD models,
optionally making the next epoch's order in a background thread;
:class:`UserBlockOrder` holds the by-user (CSR) layout SVD++ needs.

Every name here is re-exported by :mod:`rectune.models._mf_kernels`, except the
bucket thresholds: patch those here (``rectune.models._mf_order.BUCKET_MIN_RATINGS``),
where :class:`EpochOrder` reads them.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import TypeAlias

import numpy as np
from numba import njit

__all__ = [
    "BUCKET_MIN_RATINGS",
    "BUCKET_SIZE",
    "MAX_BUCKETS",
    "Columns",
    "EpochOrder",
    "UserBlockOrder",
    "draw_seed",
    "shuffle_copy",
    "shuffle_into",
    "shuffle_segments",
]

#: from this many ratings an epoch's shuffle goes through cache-sized buckets
#: (:func:`shuffle_into`): measured here, a plain Fisher-Yates copy is faster at 0.8M
#: ratings (its 12 bytes a rating stay in the L3 cache), even at 2.4M, and ~1.3x
#: slower at 8M
BUCKET_MIN_RATINGS = 4_000_000
#: target ratings per bucket (~200 KB of columns: one core's L2) and the most buckets
BUCKET_SIZE = 16_384
MAX_BUCKETS = 1024


# ------------------------------------------------------------- random draws, shuffles
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)
_S27, _S30, _S31, _S32 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(32)


@njit(cache=True, inline="always")
def _splitmix(state: np.uint64) -> np.uint64:
    """SplitMix64's output function (Steele et al., 2014) of a Weyl-sequence state."""
    z = (state ^ (state >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def _below(x: np.uint64, m: np.uint64) -> np.int64:
    """``floor(x m / 2^64)`` for ``m < 2^32``: a draw in ``[0, m)``, bias below ``m / 2^64``.

    Lemire's multiply-shift, computed exactly in 64-bit halves: no division in the loop.
    """
    return np.int64(((x >> _S32) * m + (((x & _LOW32) * m) >> _S32)) >> _S32)


@njit(cache=True, nogil=True)
def shuffle_copy(seed: np.uint64, su: np.ndarray, si: np.ndarray, sr: np.ndarray,
                 du: np.ndarray, di: np.ndarray, dr: np.ndarray) -> None:
    """Uniform shuffle of ``(su, si, sr)`` into ``(du, di, dr)``: "inside-out" Fisher-Yates.

    Step ``t`` draws ``j`` uniform in ``[0, t]`` from a SplitMix64 stream started at
    ``seed`` (generated in registers: no buffer of draws is written and read
    back), moves ``d[j]`` to ``d[t]`` and puts rating ``t`` at ``j``. The source is
    only read, so an SGD pass can read it at the same time.
    """
    s = np.uint64(seed)
    for t in range(su.shape[0]):
        s += _GOLDEN
        j = _below(_splitmix(s), np.uint64(t + 1))
        du[t] = du[j]
        di[t] = di[j]
        dr[t] = dr[j]
        du[j] = su[t]
        di[j] = si[t]
        dr[j] = sr[t]


@njit(cache=True, nogil=True)
def shuffle_into(seed: np.uint64, su: np.ndarray, si: np.ndarray, sr: np.ndarray, du: np.ndarray,
                 di: np.ndarray, dr: np.ndarray, bucket: np.ndarray, n_buckets: int) -> None:
    """Uniform shuffle of ``(su, si, sr)`` into ``(du, di, dr)`` by Rao-Sandelius buckets.

    Every rating goes to one of ``n_buckets`` buckets drawn uniformly and
    independently, the buckets are laid out one after the other, and each is
    Fisher-Yates shuffled. The result is a uniform permutation (Sandelius 1962:
    the procedure is invariant under relabelling the ratings) built from
    sequential reads, ``n_buckets`` sequential write streams and shuffles of
    cache-sized pieces -- where a Fisher-Yates of the whole table makes three
    cache misses per rating once it outgrows the cache.
    """
    n = su.shape[0]
    s = np.uint64(seed)
    nb = np.uint64(n_buckets)
    start = np.zeros(n_buckets + 1, dtype=np.int64)
    for t in range(n):
        s += _GOLDEN
        drawn = _below(_splitmix(s), nb)
        bucket[t] = drawn
        start[drawn + 1] += 1
    for b in range(n_buckets):
        start[b + 1] += start[b]
    pos = start[:-1].copy()
    for t in range(n):
        into = bucket[t]
        k = pos[into]
        du[k] = su[t]
        di[k] = si[t]
        dr[k] = sr[t]
        pos[into] = k + 1
    for b in range(n_buckets):
        a = start[b]
        for t in range(start[b + 1] - 1, a, -1):
            s += _GOLDEN
            j = a + _below(_splitmix(s), np.uint64(t - a + 1))
            du[t], du[j] = du[j], du[t]
            di[t], di[j] = di[j], di[t]
            dr[t], dr[j] = dr[j], dr[t]


@njit(cache=True, nogil=True)
def shuffle_segments(seed: np.uint64, indptr: np.ndarray, i: np.ndarray, r: np.ndarray) -> None:
    """Fisher-Yates shuffle of each CSR row segment ``indptr[u]..indptr[u+1]`` in place."""
    s = np.uint64(seed)
    for uu in range(indptr.shape[0] - 1):
        a = indptr[uu]
        for t in range(indptr[uu + 1] - 1, a, -1):
            s += _GOLDEN
            j = a + _below(_splitmix(s), np.uint64(t - a + 1))
            i[t], i[j] = i[j], i[t]
            r[t], r[j] = r[j], r[t]


# ----------------------------------------------------------------- epoch orders
#: (user, item, rating) columns of an epoch order
Columns: TypeAlias = tuple[np.ndarray, np.ndarray, np.ndarray]


def draw_seed(rng: np.random.Generator) -> np.uint64:
    """A 64-bit seed for a kernel's own random stream, drawn from the model's Generator."""
    return np.uint64(rng.bit_generator.random_raw())


class EpochOrder:
    """Each epoch's rating order, held in contiguous int32/int32/float32 columns.

    ``shuffle=True``: a fresh uniform order every epoch, the shuffle of the
    previous one, seeded from the numpy Generator (one draw per epoch, so
    reproducible). Two sets of columns take turns: the shuffle reads one and
    writes the other -- :func:`shuffle_copy`, or from ``BUCKET_MIN_RATINGS`` on
    the cache-friendlier :func:`shuffle_into`. ``background=True`` makes the next
    epoch's order in a second thread while the caller trains on this one (both
    only read this epoch's columns), which takes the shuffle off the critical
    path on a second core and changes nothing in the result: the seeds are drawn
    in the same order (plus one unused draw at the end). Close it (or use it as
    a context manager) to wait for that thread.

    ``shuffle=False``: user by user (users in index order, each user's ratings in
    data order) -- Surprise's ``all_ratings()`` order -- fixed.
    """

    def __init__(self, user: np.ndarray, item: np.ndarray, value: np.ndarray,
                 rng: np.random.Generator, shuffle: bool, background: bool = False) -> None:
        # a shuffled run needs no initial order: the first epoch draws one
        # (copies: the two sets of columns are written in turn)
        order = slice(None) if shuffle else np.argsort(user, kind="stable")
        self.u = np.array(user[order], dtype=np.int32)
        self.i = np.array(item[order], dtype=np.int32)
        self.r = np.array(value[order], dtype=np.float32)
        self.rng = rng
        self.shuffle = shuffle
        n = len(self.u)
        self._spare: Columns | None = (np.empty_like(self.u), np.empty_like(self.i),
                                       np.empty_like(self.r)) if shuffle else None
        self._bucket = np.empty(n if shuffle and n >= BUCKET_MIN_RATINGS else 0, np.uint16)
        self._n_buckets = int(min(MAX_BUCKETS, max(1, n // BUCKET_SIZE)))
        self._pool = ThreadPoolExecutor(1) if shuffle and background else None
        self._pending: Future[None] | None = None

    def __len__(self) -> int:
        return len(self.u)

    def __enter__(self) -> EpochOrder:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Wait for a shuffle still running in the background and stop its thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
            self._pending = None

    def _shuffle(self, seed: np.uint64, src: Columns, dst: Columns) -> None:
        (su, si, sr), (du, di, dr) = src, dst
        if len(self._bucket):
            shuffle_into(seed, su, si, sr, du, di, dr, self._bucket, self._n_buckets)
        else:
            shuffle_copy(seed, su, si, sr, du, di, dr)

    def next(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(user, item, rating)`` columns in this epoch's order (valid until the next call)."""
        if self._spare is None:
            return self.u, self.i, self.r
        cur = (self.u, self.i, self.r)
        if self._pending is not None:
            self._pending.result()  # the next order, made from ``cur`` in the background
            self._pending = None
        else:
            self._shuffle(draw_seed(self.rng), cur, self._spare)
        self.u, self.i, self.r = self._spare
        self._spare = cur
        if self._pool is not None:
            self._pending = self._pool.submit(self._shuffle, draw_seed(self.rng),
                                              (self.u, self.i, self.r), self._spare)
        return self.u, self.i, self.r


class UserBlockOrder:
    """Ratings in CSR layout (by user) plus each epoch's order of users (SVD++, SVD).

    ``shuffle=True``: every epoch, users in a fresh random order and -- unless
    ``segments=False``, for a kernel that shuffles each user's ratings itself as it
    reaches them (SVD's, where they are then in L1) -- each user's ratings
    shuffled in place, from the numpy Generator. ``shuffle=False``: users in index
    order, ratings in data order (Surprise's order).
    """

    def __init__(self, user: np.ndarray, item: np.ndarray, value: np.ndarray, n_users: int,
                 rng: np.random.Generator, shuffle: bool, segments: bool = True) -> None:
        # copies either way: the shuffles write into them
        order = slice(None) if np.all(user[1:] >= user[:-1]) else np.argsort(user, kind="stable")
        self.i = np.array(item[order], dtype=np.int32)
        self.r = np.array(value[order], dtype=np.float32)
        self.counts = np.bincount(user, minlength=n_users).astype(np.int64)
        self.indptr = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.user_order = np.arange(n_users, dtype=np.int32)
        self.rng = rng
        self.shuffle = shuffle
        self.segments = segments

    def next(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(user_order, indptr, item, rating)`` for this epoch."""
        if self.shuffle:
            self.user_order = self.rng.permutation(len(self.counts)).astype(np.int32)
            if self.segments:
                shuffle_segments(draw_seed(self.rng), self.indptr, self.i, self.r)
        return self.user_order, self.indptr, self.i, self.r

    def mass(self) -> np.ndarray:
        """Cumulative rating counts along this epoch's user order (for thread bounds)."""
        return np.concatenate([[0], np.cumsum(self.counts[self.user_order])])
