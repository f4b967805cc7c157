"""Numba kernels of the neighbourhood models, and their low-level sparse helpers (private).

Everything here works on CSR component arrays (``indptr``, ``indices``,
``data``) with sorted column indices, so callers pass ``scipy.sparse`` parts
without copies. Ties are always broken towards the lower column index, which
makes every result deterministic and independent of thread scheduling.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from numba import njit, prange

if TYPE_CHECKING:
    from rectune.data.interactions import Interactions


@njit(cache=True, inline="always")
def _lookup(row_idx: np.ndarray, row_val: np.ndarray, cand: np.ndarray,
            out: np.ndarray) -> None:
    """``out[t]`` = value of the sorted sparse row at column ``cand[t]`` (0 where absent).

    Binary search from the shorter side, merge walk when both are similar in size.
    """
    n_r, n_c = len(row_idx), len(cand)
    out[:n_c] = 0.0
    if n_r == 0 or n_c == 0:
        return
    if n_c * 8 < n_r:
        lo = 0
        for t in range(n_c):
            hi = n_r
            c = cand[t]
            while lo < hi:
                mid = (lo + hi) >> 1
                if row_idx[mid] < c:
                    lo = mid + 1
                else:
                    hi = mid
            if lo == n_r:
                break
            if row_idx[lo] == c:
                out[t] = row_val[lo]
    else:
        p = 0
        q = 0
        while p < n_r and q < n_c:
            a = row_idx[p]
            c = cand[q]
            if a == c:
                out[q] = row_val[p]
                p += 1
                q += 1
            elif a < c:
                p += 1
            else:
                q += 1


@njit(cache=True)
def _select_k(sim: np.ndarray, order: np.ndarray, cand: np.ndarray, n: int, k: int,
              hs: np.ndarray, ho: np.ndarray, hp: np.ndarray) -> int:
    """The ``k`` best of ``cand[:n]`` (indices into ``sim``/``order``) into ``hp[:k]``.

    Best = larger similarity, ties to the smaller ``order`` (earlier arrival):
    a strict total order, so the chosen set is unique. A binary heap of the k
    best so far (similarity ``hs``, arrival ``ho``, candidate ``hp``; the worst
    at the root) meets each candidate once; one that beats the root replaces
    it. O(n + k log k log(n/k)), no allocation; the set comes back in heap order.
    """
    size = 0
    for t in range(n):
        c = cand[t]
        s = sim[c]
        o = order[c]
        if size < k:  # sift up: parents that rank below the newcomer move down
            j = size
            size += 1
            while j > 0:
                par = (j - 1) >> 1
                if s < hs[par] or (s == hs[par] and o > ho[par]):
                    hs[j] = hs[par]
                    ho[j] = ho[par]
                    hp[j] = hp[par]
                    j = par
                else:
                    break
        elif s > hs[0] or (s == hs[0] and o < ho[0]):  # beats the worst: sift down
            j = 0
            while True:
                ch = 2 * j + 1
                if ch >= k:
                    break
                if ch + 1 < k and (hs[ch + 1] < hs[ch]
                                   or (hs[ch + 1] == hs[ch] and ho[ch + 1] > ho[ch])):
                    ch += 1
                if hs[ch] < s or (hs[ch] == s and ho[ch] > o):
                    hs[j] = hs[ch]
                    ho[j] = ho[ch]
                    hp[j] = hp[ch]
                    j = ch
                else:
                    break
        else:
            continue
        hs[j] = s
        ho[j] = o
        hp[j] = c
    return size


@njit(cache=True, fastmath=True)
def _aggregate_chunk(lo: int, hi: int, by_x: np.ndarray, x: np.ndarray, y: np.ndarray,
                     r_indptr: np.ndarray, r_indices: np.ndarray, r_data: np.ndarray,
                     r_order: np.ndarray, s_indptr: np.ndarray, s_indices: np.ndarray,
                     s_data: np.ndarray, k: int, nb_offset: np.ndarray, nb_scale: np.ndarray,
                     y_offset: np.ndarray, agg: np.ndarray, actual: np.ndarray) -> None:
    """Pairs ``by_x[lo:hi]`` of :func:`knn_aggregate` (sorted by target, see there)."""
    dense = np.zeros(len(s_indptr) - 1, dtype=np.float64)  # S[x, :] scattered: O(1) lookups
    cur = -1
    sims = np.empty(0, dtype=np.float64)
    pos = np.empty(0, dtype=np.int64)
    flag = np.zeros(0, dtype=np.bool_)
    heap = np.empty(max(k, 1), dtype=np.int64)
    hs = np.empty(max(k, 1), dtype=np.float64)
    ho = np.empty(max(k, 1), dtype=np.int64)
    for q in range(lo, hi):
        p = by_x[q]
        xi = x[p]
        yi = y[p]
        if xi != cur:
            if cur >= 0:
                for t in range(s_indptr[cur], s_indptr[cur + 1]):
                    dense[s_indices[t]] = 0.0
            for t in range(s_indptr[xi], s_indptr[xi + 1]):
                dense[s_indices[t]] = s_data[t]
            cur = xi
        a, b = r_indptr[yi], r_indptr[yi + 1]
        if b == a:
            continue
        if len(sims) < b - a:
            sims = np.empty(2 * (b - a), dtype=np.float64)
            pos = np.empty(2 * (b - a), dtype=np.int64)
            flag = np.zeros(2 * (b - a), dtype=np.bool_)
        m = 0
        for t in range(b - a):
            sims[t] = dense[r_indices[a + t]]
            if sims[t] > 0.0:
                pos[m] = t
                m += 1
        if m == 0:
            continue
        if m > k:  # keep the k best, then visit them in candidate order (as all m)
            m = _select_k(sims, r_order[a:b], pos, m, k, hs, ho, heap)
            for j in range(m):
                flag[heap[j]] = True
            j = 0
            for t in range(b - a):
                if flag[t]:
                    flag[t] = False
                    pos[j] = t
                    j += 1
        num = 0.0
        den = 0.0
        yo = y_offset[yi]
        for j in range(m):
            t = pos[j]
            s = sims[t]
            x2 = r_indices[a + t]
            num += s * (r_data[a + t] - nb_offset[x2] - yo) / nb_scale[x2]
            den += s
        agg[p] = num / den
        actual[p] = m


@njit(cache=True, parallel=True)
def _aggregate_parallel(n_chunks: int, by_x: np.ndarray, x: np.ndarray, y: np.ndarray,
                        r_indptr: np.ndarray, r_indices: np.ndarray, r_data: np.ndarray,
                        r_order: np.ndarray, s_indptr: np.ndarray, s_indices: np.ndarray,
                        s_data: np.ndarray, k: int, nb_offset: np.ndarray,
                        nb_scale: np.ndarray, y_offset: np.ndarray, agg: np.ndarray,
                        actual: np.ndarray) -> None:
    n = len(x)
    for c in prange(n_chunks):
        _aggregate_chunk(c * n // n_chunks, (c + 1) * n // n_chunks, by_x, x, y, r_indptr,
                         r_indices, r_data, r_order, s_indptr, s_indices, s_data, k,
                         nb_offset, nb_scale, y_offset, agg, actual)


#: below this many candidate lookups a kernel runs on the calling thread: waking a
#: thread pool costs more than the work (and much more on a busy machine)
PARALLEL_WORK = 200_000


def knn_aggregate(x: np.ndarray, y: np.ndarray, ratings: sp.csr_array, order: np.ndarray,
                  sim: sp.csr_array, k: int, nb_offset: np.ndarray, nb_scale: np.ndarray,
                  y_offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Surprise's neighbour aggregate for many ``(x, y)`` pairs at once.

    For pair ``p`` the candidates are the entities ``x2`` that rated ``y``
    (row ``y`` of the raters x entities ``ratings``), each with similarity
    ``sim[x, x2]``. The ``k`` candidates of largest similarity are kept (ties:
    the rating that arrived first, ``order``, as Surprise's stable
    ``heapq.nlargest`` over its rating lists) and those with a positive
    similarity contribute::

        agg = sum_s s * (r - nb_offset[x2] - y_offset[y]) / nb_scale[x2] / sum_s s

    Non-positive similarities never contribute and rank below every positive
    one, so dropping them before the top-k is exactly Surprise's
    ``heapq.nlargest`` followed by its ``sim > 0`` filter. Pairs are processed
    grouped by target so each ``sim`` row is scattered once per group.
    Returns ``(agg, actual_k)``; ``agg`` is 0 where ``actual_k`` is 0.
    """
    x = np.ascontiguousarray(x, dtype=np.int64)
    y = np.ascontiguousarray(y, dtype=np.int64)
    n = len(x)
    agg = np.zeros(n, dtype=np.float64)
    actual = np.zeros(n, dtype=np.int64)
    if n == 0:
        return agg, actual
    by_x = np.argsort(x, kind="stable")
    # index arrays as scipy keeps them (int32 when they fit): no copies, half the bytes
    args = (by_x, x, y, ratings.indptr, ratings.indices,
            np.asarray(ratings.data, dtype=np.float64), np.asarray(order, dtype=np.int64),
            sim.indptr, sim.indices,
            np.asarray(sim.data, dtype=np.float64), int(k),
            np.ascontiguousarray(nb_offset, dtype=np.float64),
            np.ascontiguousarray(nb_scale, dtype=np.float64),
            np.ascontiguousarray(y_offset, dtype=np.float64), agg, actual)
    work = int(np.diff(ratings.indptr)[y].sum())
    if work < PARALLEL_WORK:
        _aggregate_chunk(0, n, *args)
    else:
        _aggregate_parallel(min(n, 512), *args)
    return agg, actual


@njit(cache=True)
def _eligible(idx: np.ndarray, val: np.ndarray, skip: int, positive_only: bool) -> np.ndarray:
    keep = np.ones(len(idx), dtype=np.bool_)
    for t in range(len(idx)):
        if idx[t] == skip or (positive_only and not val[t] > 0.0):
            keep[t] = False
    return keep


@njit(cache=True)
def topk_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    k: int,
    self_col: np.ndarray,
    positive_only: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prune every CSR row to its ``k`` largest values (a new sorted CSR).

    ``self_col[r]`` is a column dropped from row ``r`` (the entity itself; -1
    for none); with ``positive_only`` non-positive values are dropped too.
    Ties keep the lower column index. A partition finds each row's k-th value
    in linear time.
    """
    n = len(indptr) - 1
    counts = np.zeros(n + 1, dtype=np.int64)
    for r in range(n):
        a, b = indptr[r], indptr[r + 1]
        counts[r + 1] = min(k, _eligible(indices[a:b], data[a:b], self_col[r],
                                         positive_only).sum())
    out_ptr = np.cumsum(counts)
    out_idx = np.empty(out_ptr[-1], dtype=np.int64)
    out_val = np.empty(out_ptr[-1], dtype=np.float64)
    for r in range(n):
        a, b = indptr[r], indptr[r + 1]
        keep = _eligible(indices[a:b], data[a:b], self_col[r], positive_only)
        n_keep = keep.sum()
        thr = -np.inf
        n_tie = 0
        if n_keep > k:
            vals = data[a:b][keep]
            thr = np.partition(vals, n_keep - k)[n_keep - k]  # the k-th largest value
            n_tie = k - (vals > thr).sum()  # ties at the threshold to take, lowest index first
        o = out_ptr[r]
        for t in range(b - a):
            v = data[a + t]
            if keep[t] and (n_keep <= k or v > thr or (v == thr and n_tie > 0)):
                if n_keep > k and v == thr:
                    n_tie -= 1
                out_idx[o] = indices[a + t]
                out_val[o] = v
                o += 1
    return out_ptr, out_idx, out_val


@njit(cache=True, fastmath=True)
def sparse_pair_dot(
    u: np.ndarray,
    i: np.ndarray,
    a_indptr: np.ndarray,
    a_indices: np.ndarray,
    a_data: np.ndarray,
    b_indptr: np.ndarray,
    b_indices: np.ndarray,
    b_data: np.ndarray,
) -> np.ndarray:
    """``out[p] = A[u[p]] . B[i[p]]`` for sorted CSR rows (one score per pair)."""
    n = len(u)
    out = np.zeros(n, dtype=np.float64)
    for p in range(n):
        a0, a1 = a_indptr[u[p]], a_indptr[u[p] + 1]
        b0, b1 = b_indptr[i[p]], b_indptr[i[p] + 1]
        if a1 == a0 or b1 == b0:
            continue
        vals = np.empty(a1 - a0, dtype=np.float64)
        _lookup(b_indices[b0:b1], b_data[b0:b1], a_indices[a0:a1], vals)
        acc = 0.0
        for t in range(a1 - a0):
            acc += a_data[a0 + t] * vals[t]
        out[p] = acc
    return out


#: similarity name -> code of :func:`pair_similarity`
SIMILARITY_CODES = {"cosine": 0, "msd": 1, "jaccard": 2, "pearson": 3, "pearson_baseline": 4}
#: relative size under which a variance counts as exactly zero (rounding noise)
ZERO_VAR = 1e-12


@njit(cache=True)
def pair_similarity(code: int, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray,
                    rows: np.ndarray, perm: np.ndarray, own: np.ndarray, shrink: float,
                    min_support: float, positive_only: bool) -> np.ndarray:
    """Similarity of every stored pair from its moments, in one pass (no temporaries).

    ``values[rows[j]]`` is moment ``j`` of (count, dot, sq, lin, res_dot, res_sq)
    over the pairs (row entity's side); ``perm`` gives each pair's transposed
    position, where the column entity's side of the asymmetric moments lies;
    ``own`` is each entity's own ``sum w^2`` (Jaccard). The formulas, and their
    order of floating-point operations, are those of
    :func:`rectune.models._knn_stats.similarity_values` (Surprise's definitions);
    ``shrink`` is the resolved shrinkage (0: none). The diagonal is 1; pairs
    under ``min_support`` are 0, and so are negative values with ``positive_only``.
    """
    out = np.empty(len(indices), dtype=np.float64)
    cnt = values[rows[0]]
    for x in range(len(indptr) - 1):
        for t in range(indptr[x], indptr[x + 1]):
            c = cnt[t]
            col = indices[t]
            tp = perm[t] if code != 2 else t  # (Jaccard reads no transposed moment)
            sim = 0.0
            if code == 0 or code == 1:
                dot = values[rows[1], t]
                lsq = values[rows[2], t]
                rsq = values[rows[2], tp]
                if code == 0:
                    den = lsq * rsq
                    if den > 0:
                        sim = dot / math.sqrt(den)
                else:
                    diff = max(lsq + rsq - 2 * dot, 0.0)
                    sim = 1.0 / (diff / (c if c > 0 else 1.0) + 1.0)
            elif code == 2:
                den = own[x] + own[col] - c
                if den > 0:
                    sim = c / den
            elif code == 3:
                dot = values[rows[1], t]
                lsq = values[rows[2], t]
                rsq = values[rows[2], tp]
                ll = values[rows[3], t]
                rl = values[rows[3], tp]
                num = c * dot - ll * rl
                vl = c * lsq - ll * ll
                vr = c * rsq - rl * rl
                if vl > ZERO_VAR * c * lsq and vr > ZERO_VAR * c * rsq:
                    sim = num / math.sqrt(vl * vr)
            else:
                lr = values[rows[5], t]
                rr = values[rows[5], tp]
                den = lr * rr
                if den > 0:
                    sim = values[rows[4], t] / math.sqrt(den)
                if shrink:
                    sim = sim * (c - 1) / (c - 1 + shrink)
            if code != 4 and shrink:
                sim = sim * c / (c + shrink)
            if not c >= min_support:
                sim = 0.0
            if col == x:
                sim = 1.0
            if positive_only and sim < 0.0:
                sim = 0.0
            out[t] = sim
    return out


@njit(cache=True)
def pair_pattern(lt_ptr: np.ndarray, lt_idx: np.ndarray, r_ptr: np.ndarray, r_idx: np.ndarray,
                 base_ptr: np.ndarray, base_idx: np.ndarray,
                 n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted CSR pattern of ``base | pattern(Lt @ R)`` (a symbolic sparse product).

    ``Lt`` is entities x raters (the transposed left factor), ``R`` raters x
    entities; the pattern is structural, so no pair is ever lost to an exact
    zero. ``base`` (same rows as ``Lt``) must have sorted rows. ``lt_ptr`` may
    be a slice of a larger pointer array (a block of entity rows).

    One pass over the product (the output grows by doubling); a row's columns
    come out sorted by a scan of the marks when the row is dense (cheaper than
    sorting them: co-rating patterns of the popular entities often are).
    """
    n = len(lt_ptr) - 1
    mark = np.full(n_cols, -1, dtype=np.int64)
    row = np.empty(n_cols, dtype=np.int64)
    ptr = np.zeros(n + 1, dtype=np.int64)
    idx = np.empty(max(1024, 2 * len(base_idx)), dtype=np.int64)
    for x in range(n):
        c = 0
        for t in range(base_ptr[x], base_ptr[x + 1]):
            mark[base_idx[t]] = x
            row[c] = base_idx[t]
            c += 1
        for a in range(lt_ptr[x], lt_ptr[x + 1]):
            y = lt_idx[a]
            for b in range(r_ptr[y], r_ptr[y + 1]):
                col = r_idx[b]
                if mark[col] != x:
                    mark[col] = x
                    row[c] = col
                    c += 1
        o = ptr[x]
        if o + c > len(idx):
            grown = np.empty(max(o + c, 2 * len(idx)), dtype=np.int64)
            grown[:o] = idx[:o]
            idx = grown
        if c * 16 > n_cols:
            for col in range(n_cols):
                if mark[col] == x:
                    idx[o] = col
                    o += 1
        else:
            idx[o:o + c] = np.sort(row[:c])
        ptr[x + 1] = ptr[x] + c
    if 4 * len(idx) > 5 * ptr[n]:  # give back a buffer mostly unused
        return ptr, idx[:ptr[n]].copy()
    return ptr, idx[:ptr[n]]


@njit(cache=True, fastmath=True)
def _accumulate_rows(lo: int, hi: int, ptr: np.ndarray, idx: np.ndarray, out: np.ndarray,
                     lt_ptr: np.ndarray, lt_idx: np.ndarray, lt_data: np.ndarray,
                     r_ptr: np.ndarray, r_idx: np.ndarray, r_data: np.ndarray,
                     left_op: np.ndarray, right_op: np.ndarray, factor: float,
                     n_cols: int) -> None:
    where = np.empty(n_cols, dtype=np.int64)
    n_m = len(left_op)
    lv = np.empty(n_m, dtype=np.float64)
    for x in range(lo, hi):
        if lt_ptr[x + 1] == lt_ptr[x]:
            continue
        for t in range(ptr[x], ptr[x + 1]):
            where[idx[t]] = t
        for a in range(lt_ptr[x], lt_ptr[x + 1]):
            y = lt_idx[a]
            for m in range(n_m):  # the left operands are constant along the rater's row
                lv[m] = factor * lt_data[left_op[m], a]
            if n_m == 3:  # count/dot/sq (cosine, msd) or count/res_dot/res_sq: unrolled
                l0, l1, l2 = lv[0], lv[1], lv[2]
                r0 = r_data[right_op[0]]
                r1 = r_data[right_op[1]]
                r2 = r_data[right_op[2]]
                o0 = out[0]
                o1 = out[1]
                o2 = out[2]
                for b in range(r_ptr[y], r_ptr[y + 1]):
                    pos = where[r_idx[b]]
                    o0[pos] += l0 * r0[b]
                    o1[pos] += l1 * r1[b]
                    o2[pos] += l2 * r2[b]
                continue
            for b in range(r_ptr[y], r_ptr[y + 1]):
                pos = where[r_idx[b]]
                for m in range(n_m):
                    out[m, pos] += lv[m] * r_data[right_op[m], b]


@njit(cache=True, parallel=True)
def _accumulate_parallel(n_chunks: int, ptr: np.ndarray, idx: np.ndarray, out: np.ndarray,
                         lt_ptr: np.ndarray, lt_idx: np.ndarray, lt_data: np.ndarray,
                         r_ptr: np.ndarray, r_idx: np.ndarray, r_data: np.ndarray,
                         left_op: np.ndarray, right_op: np.ndarray, factor: float,
                         n_cols: int) -> None:
    n = len(ptr) - 1
    for c in prange(n_chunks):  # entity rows are independent: no two chunks write one row
        _accumulate_rows(c * n // n_chunks, (c + 1) * n // n_chunks, ptr, idx, out, lt_ptr,
                         lt_idx, lt_data, r_ptr, r_idx, r_data, left_op, right_op, factor,
                         n_cols)


def pair_accumulate(ptr: np.ndarray, idx: np.ndarray, out: np.ndarray, lt_ptr: np.ndarray,
                    lt_idx: np.ndarray, lt_data: np.ndarray, r_ptr: np.ndarray,
                    r_idx: np.ndarray, r_data: np.ndarray, left_op: np.ndarray,
                    right_op: np.ndarray, factor: float, n_cols: int) -> None:
    """``out[m] += factor * (Lt[left_op[m]] @ R[right_op[m]])`` on the pattern (ptr, idx).

    A fused sparse product (Gustavson, row by row): every moment of a pair is
    accumulated in one pass, straight into its slot of the output pattern,
    which must hold every pair the product reaches (:func:`pair_pattern`).
    ``lt_data``/``r_data`` stack one row of values per operand.
    """
    deg_r = np.diff(r_ptr)
    used = lt_idx[lt_ptr[0]:lt_ptr[-1]]
    flops = int(np.dot(np.bincount(used, minlength=len(deg_r)), deg_r)) if len(used) else 0
    args = (ptr, idx, out, lt_ptr, lt_idx, lt_data, r_ptr, r_idx, r_data, left_op, right_op,
            float(factor), int(n_cols))
    if flops * len(left_op) < 10 * PARALLEL_WORK:
        _accumulate_rows(0, len(ptr) - 1, *args)
    else:
        _accumulate_parallel(min(len(ptr) - 1, 256), *args)


@njit(cache=True)
def subset_positions(sub_ptr: np.ndarray, sub_idx: np.ndarray, ptr: np.ndarray,
                     idx: np.ndarray) -> np.ndarray:
    """Position in (ptr, idx) of every entry of the sub-pattern (both sorted per row)."""
    out = np.empty(len(sub_idx), dtype=np.int64)
    for r in range(len(ptr) - 1):
        q = ptr[r]
        for t in range(sub_ptr[r], sub_ptr[r + 1]):
            while idx[q] != sub_idx[t]:
                q += 1
            out[t] = q
    return out


@njit(cache=True)
def transpose_perm(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """For a sorted CSR with a symmetric pattern: the position of ``(j, i)`` for each ``(i, j)``."""
    n = len(indptr) - 1
    cursor = indptr[:n].copy()
    perm = np.empty(len(indices), dtype=np.int64)
    for i in range(n):  # rows ascending: row j meets its entries (j, i) in ascending i
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            perm[p] = cursor[j]
            cursor[j] += 1
    return perm


# --------------------------------------------------------- thin numpy wrappers
def prune_rows(sim: sp.csr_array, k: int, drop_self: bool) -> sp.csr_array:
    """Each row's ``k`` largest positive values (a pruned neighbour view, sorted CSR)."""
    n = sim.shape[0]
    self_col = np.arange(n, dtype=np.int64) if drop_self else np.full(n, -1, dtype=np.int64)
    ip, ix, v = topk_rows(sim.indptr, sim.indices,
                          np.asarray(sim.data, dtype=np.float64), int(k), self_col, True)
    return sp.csr_array((v, ix, ip), shape=sim.shape)


def ranked_rows(sim: sp.csr_array, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` positive columns of rows ``idx`` (self excluded), best first (ties: lower
    index), padded with -1 / NaN: the ``similar_items`` lists."""
    rows = sp.csr_array(sim[idx])
    rows.sort_indices()
    ip, ix, v = topk_rows(rows.indptr, rows.indices,
                          np.asarray(rows.data, dtype=np.float64), int(k),
                          np.asarray(idx, dtype=np.int64), True)
    r = np.repeat(np.arange(len(idx)), np.diff(ip))
    order = np.lexsort((ix, -v, r))
    pos = np.arange(len(ix)) - ip[r]
    out_i = np.full((len(idx), k), -1, dtype=np.int64)
    out_s = np.full((len(idx), k), np.nan)
    out_i[r, pos] = ix[order]
    out_s[r, pos] = v[order]
    return out_i, out_s


def csr_parts(m: sp.csr_array, prefix: str) -> dict[str, np.ndarray]:
    """A CSR matrix as named component arrays (safetensors holds no sparse type)."""
    return {f"{prefix}indptr": m.indptr.astype(np.int64),
            f"{prefix}indices": m.indices.astype(np.int64),
            f"{prefix}data": np.asarray(m.data, dtype=np.float64),
            f"{prefix}shape": np.asarray(m.shape, dtype=np.int64)}


def csr_from(arrays: dict[str, np.ndarray], prefix: str) -> sp.csr_array:
    """Inverse of :func:`csr_parts`."""
    shape = arrays[f"{prefix}shape"]
    return sp.csr_array((arrays[f"{prefix}data"], arrays[f"{prefix}indices"],
                         arrays[f"{prefix}indptr"]), shape=(int(shape[0]), int(shape[1])))


def merge_events(old: sp.csr_array, old_order: np.ndarray, new: Interactions,
                 user_rows: bool) -> tuple[np.ndarray, ...]:
    """``(user, item, value, order)`` of old + new events, a re-rated pair taking the new value.

    ``old`` is the model's event table (users x items when ``user_rows``, else
    items x users) with arrival ranks ``old_order``; new events arrive after them.
    """
    coo = old.tocoo()
    ou, oi = (coo.row, coo.col) if user_rows else (coo.col, coo.row)
    start = int(old_order.max()) + 1 if len(old_order) else 0
    u = np.concatenate([ou, new.user]).astype(np.int64)
    i = np.concatenate([oi, new.item]).astype(np.int64)
    v = np.concatenate([coo.data, new.value]).astype(np.float64)
    o = np.concatenate([old_order, start + np.arange(len(new), dtype=np.int64)])
    key = u * new.n_items + i
    srt = np.argsort(key, kind="stable")
    keep = srt[np.r_[key[srt][1:] != key[srt][:-1], True]]
    return u[keep], i[keep], v[keep], o[keep]


def implicit_weighting(r_ui: sp.csr_array, weighting: str, k1: float,
                       b: float) -> sp.csr_array:
    """implicit's ``tfidf_weight`` / ``bm25_weight`` on the items x users view.

    Items are the documents and users the terms: ``idf[u] = log(n_items) -
    log1p(#items of u)``; BM25 normalises by each item's total weight.
    """
    if weighting == "none":
        return r_ui
    coo = r_ui.tocoo()
    n_items = r_ui.shape[1]
    idf = np.log(n_items) - np.log1p(np.bincount(coo.row, minlength=r_ui.shape[0]))
    v = coo.data.astype(np.float64)
    if weighting == "tfidf":
        w = np.sqrt(v) * idf[coo.row]
    else:
        sums = np.bincount(coo.col, v, minlength=n_items)
        norm = (1.0 - b) + b * sums / sums.mean()
        w = v * (k1 + 1.0) / (k1 * norm[coo.col] + v) * idf[coo.row]
    out = sp.csr_array((w, (coo.row, coo.col)), shape=r_ui.shape)
    out.sort_indices()
    return out
