"""Sparse sufficient statistics of neighbourhood CF, and similarities derived from them.

Vocabulary (Surprise's): the *entities* ``x`` are what the similarity compares
(items for item-based KNN, users for user-based) and the *raters* ``y`` are the
other axis. ``R`` is the ``n_y x n_x`` CSR of current ratings and every event
``(y, x)`` carries a weight ``w`` (1 when it arrives; each update with decay
``g`` multiplies the weights of all earlier events by ``g``).

For every co-rated pair ``(x, x')`` the statistics hold sums over their common
raters, each term weighted by ``w_yx * w_yx'``::

    count[x,x'] = sum w w'                  dot[x,x']     = sum w w' r_x r_x'
    sq[x,x']    = sum w w' r_x^2            lin[x,x']     = sum w w' r_x
    res_dot     = sum w w' e_x e_x'         res_sq[x,x']  = sum w w' e_x^2

with ``e = r - mu - b_x - b_y`` the baseline residual. ``sq``, ``lin`` and
``res_sq`` are the row entity's side; the other side is the transpose. In
matrix form, with ``W`` the weights and ``V`` the values on R's pattern,
``count = W^T W``, ``dot = (W.V)^T (W.V)``, ``sq = (W.V^2)^T W``,
``lin = (W.V)^T W``: sparse products, never a dense ``n x n`` array. They are
computed by one fused sparse product (:func:`._knn_kernels.pair_accumulate`):
a symbolic pass finds the co-occurrence pattern, a numeric pass accumulates
every moment of a pair at once, so all moments share one symmetric pattern
and no pair is lost to an exact zero.

Why weights multiply: the statistics then equal those of the weighted matrix,
so an update stays *exact*: a sum over raters changes only in the rows of the
raters that got new events, and there by ``dL^T R + L^T dR + dL^T dR`` with
``dL``/``dR`` nonzero only at the new or re-rated events
(:meth:`SufficientStats.update`): the cost grows with the new events times the
length of their raters' histories, and the result is the same, to rounding,
as rebuilding from all events.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from rectune._errors import DataError
from rectune.models._knn_kernels import (
    SIMILARITY_CODES,
    ZERO_VAR,
    pair_accumulate,
    pair_pattern,
    pair_similarity,
    subset_positions,
    topk_rows,
    transpose_perm,
)

SIMILARITIES: tuple[str, ...] = ("cosine", "msd", "jaccard", "pearson", "pearson_baseline")

#: moments each similarity reads ("vector" = full-vector cosine / dot of ImplicitItemKNN)
NEEDS: dict[str, tuple[str, ...]] = {
    "cosine": ("count", "dot", "sq"),
    "msd": ("count", "dot", "sq"),
    "jaccard": ("count",),
    "pearson": ("count", "dot", "sq", "lin"),
    "pearson_baseline": ("count", "res_dot", "res_sq"),
    "vector": ("count", "dot"),
}
#: operands (left, right) of each product; left^T @ right
_PRODUCT: dict[str, tuple[str, str]] = {
    "count": ("w", "w"), "dot": ("wv", "wv"), "sq": ("wv2", "w"), "lin": ("wv", "w"),
    "res_dot": ("we", "we"), "res_sq": ("we2", "w"),
}
_ASYMMETRIC = ("sq", "lin", "res_sq")
_OPS = ("w", "wv", "wv2", "we", "we2")
_ORDER = ("count", "dot", "sq", "lin", "res_dot", "res_sq")
_ZERO_VAR = ZERO_VAR  # shared with the compiled pass


class EventBatch(NamedTuple):
    """New events in the statistics' orientation: rater, entity, value (parallel arrays)."""

    rater: np.ndarray
    entity: np.ndarray
    value: np.ndarray


@dataclass(frozen=True)
class Baselines:
    """``b_xy = mu + x_bias[x] + y_bias[y]``: the centring of ``pearson_baseline``."""

    global_mean: float
    x_bias: np.ndarray
    y_bias: np.ndarray


def moments_for(similarity: str) -> tuple[str, ...]:
    """The moments a similarity needs (raises DataError for an unknown name)."""
    if similarity not in NEEDS:
        raise DataError(f"unknown similarity {similarity!r}; choose one of {SIMILARITIES}")
    return NEEDS[similarity]


def estimate_pairs(rater_degrees: np.ndarray, n_x: int) -> int:
    """Upper bound of the co-occurrence nnz: ``min(n_x^2, sum_y deg(y)^2)``."""
    deg = np.asarray(rater_degrees, dtype=np.float64)
    return int(min(float(n_x) ** 2, float(np.dot(deg, deg))))


def bytes_per_pair(moments: tuple[str, ...]) -> int:
    """Bytes one stored pair costs: a float64 per moment, its column index, and the
    similarity (value + index) derived from it."""
    return 8 * len(moments) + 8 + 16


# ----------------------------------------------------------------------- helpers
def _csr(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
         shape: tuple[int, int]) -> sp.csr_array:
    return sp.csr_array((data, indices, indptr), shape=shape)


def events_csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int],
               *payload: np.ndarray) -> tuple[sp.csr_array, list[np.ndarray]]:
    """A canonical CSR of unique ``(row, col)`` events; payload arrays permuted alike
    (the first payload is the CSR's data; a 2-D payload is permuted along its last axis)."""
    rows = np.asarray(rows, dtype=np.int64)
    perm = np.lexsort((cols, rows))
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    m = _csr(np.asarray(payload[0], dtype=np.float64)[perm],
             np.asarray(cols, dtype=np.int64)[perm], indptr, shape)
    return m, [np.asarray(p)[..., perm] for p in payload[1:]]


def _operands(value: np.ndarray, weight: np.ndarray, rater: np.ndarray, entity: np.ndarray,
              ops: tuple[str, ...], base: Baselines | None) -> np.ndarray:
    """Stacked operand values (one row per name in ``ops``) of events."""
    v = np.asarray(value, dtype=np.float64)
    rows = {"w": weight, "wv": weight * v, "wv2": weight * v * v}
    if "we" in ops or "we2" in ops:
        if base is None:
            raise DataError("pearson_baseline statistics need baselines")
        e = v - base.global_mean - base.x_bias[entity] - base.y_bias[rater]
        rows["we"], rows["we2"] = weight * e, weight * e * e
    return np.stack([rows[o] for o in ops]) if ops else np.zeros((0, len(v)))


def _ops_for(pairs: dict[str, tuple[str, str]]) -> tuple[str, ...]:
    return tuple(o for o in _OPS if any(o in lr for lr in pairs.values()))


@dataclass
class _Rows:
    """Event rows (raters x entities, sorted CSR) with stacked operand values."""

    ptr: np.ndarray
    idx: np.ndarray
    vals: np.ndarray  # (len(ops), nnz)
    ops: tuple[str, ...]

    @classmethod
    def build(cls, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int,
              ops: tuple[str, ...]) -> _Rows:
        m, (v,) = events_csr(rows, cols, (n_rows, 1 + int(cols.max(initial=0))),
                             np.zeros(len(rows)), vals)
        return cls(m.indptr.astype(np.int64), m.indices.astype(np.int64),
                   np.ascontiguousarray(v, dtype=np.float64), ops)

    @classmethod
    def full(cls, r: sp.csr_array, w: np.ndarray, ops: tuple[str, ...],
             base: Baselines | None) -> _Rows:
        """Every event of the sorted CSR ``r`` (weights ``w`` aligned with its data)."""
        rows = np.repeat(np.arange(r.shape[0], dtype=np.int64), np.diff(r.indptr))
        vals = _operands(r.data, w, rows, r.indices, ops, base)
        return cls(r.indptr.astype(np.int64), r.indices.astype(np.int64), vals, ops)

    @classmethod
    def vstack(cls, parts: list[_Rows]) -> _Rows:
        """Row blocks one under the other (sums over raters then add up block by block)."""
        offsets = np.cumsum([0] + [len(p.idx) for p in parts])
        ptr = np.concatenate([np.zeros(1, np.int64)]
                             + [p.ptr[1:] + off for p, off in zip(parts, offsets, strict=False)])
        return cls(ptr, np.concatenate([p.idx for p in parts]),
                   np.concatenate([p.vals for p in parts], axis=1), parts[0].ops)

    def transposed(self, n_cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ptr, idx, vals)`` of the entities x raters view."""
        m = _csr(np.arange(1, len(self.idx) + 1, dtype=np.float64), self.idx, self.ptr,
                 (len(self.ptr) - 1, n_cols))
        t = sp.csr_array(m.T)
        perm = np.asarray(t.data, dtype=np.int64) - 1
        return (t.indptr.astype(np.int64), t.indices.astype(np.int64),
                np.ascontiguousarray(self.vals[:, perm]))


Table = tuple[np.ndarray, np.ndarray, np.ndarray]  # (indptr, indices, values[moment, pair])


def _pair_sums(pairs: dict[str, tuple[str, str]], left: _Rows, right: _Rows, n_x: int,
               base: Table | None = None, base_factor: float = 1.0,
               rows: slice | None = None) -> Table:
    """``base_factor * base + left^T right`` for every named operand pair (one row each).

    ``rows`` restricts the output to a block of entity rows (memory-bounded fits).
    When the product reaches no pair outside ``base`` its values are updated in place.
    """
    lo, hi = (0, n_x) if rows is None else (rows.start, rows.stop)
    if base is None:
        base = (np.zeros(hi - lo + 1, dtype=np.int64), np.zeros(0, dtype=np.int64),
                np.zeros((len(pairs), 0)))
    lt_ptr, lt_idx, lt_vals = left.transposed(n_x)
    lt_ptr = lt_ptr[lo:hi + 1]
    ptr, idx = pair_pattern(lt_ptr, lt_idx, right.ptr, right.idx, base[0], base[1], n_x)
    if len(idx) == len(base[1]) and base[2].flags.writeable:
        out = base[2]
        if base_factor != 1.0:
            out *= base_factor
    else:
        out = np.zeros((len(pairs), len(idx)))
        out[:, subset_positions(base[0], base[1], ptr, idx)] = base_factor * base[2]
    left_op = np.array([left.ops.index(lr[0]) for lr in pairs.values()], dtype=np.int64)
    right_op = np.array([right.ops.index(lr[1]) for lr in pairs.values()], dtype=np.int64)
    pair_accumulate(ptr, idx, out, lt_ptr, lt_idx, lt_vals, right.ptr, right.idx, right.vals,
                    left_op, right_op, 1.0, n_x)
    return ptr, idx, out


def similarity_values(kind: str, count: np.ndarray, left: dict[str, np.ndarray],
                      right: dict[str, np.ndarray], self_row: np.ndarray,
                      self_col: np.ndarray, shrinkage: float | None,
                      min_support: float) -> np.ndarray:
    """Similarity of every stored pair from its moments (Surprise's definitions).

    ``left``/``right`` hold each moment as seen from the row / column entity;
    ``self_row``/``self_col`` are the pair's entities' own ``sum w^2`` (Jaccard).
    ``shrinkage=None`` means Surprise's default: 100 for pearson_baseline, else 0.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "cosine":
            den = left["sq"] * right["sq"]
            sim = np.where(den > 0, left["dot"] / np.sqrt(np.where(den > 0, den, 1)), 0.0)
        elif kind == "msd":
            diff = np.maximum(left["sq"] + right["sq"] - 2 * left["dot"], 0.0)
            sim = 1.0 / (diff / np.where(count > 0, count, 1) + 1.0)
        elif kind == "jaccard":
            den = self_row + self_col - count
            sim = np.where(den > 0, count / np.where(den > 0, den, 1), 0.0)
        elif kind == "pearson":
            num = count * left["dot"] - left["lin"] * right["lin"]
            vl = count * left["sq"] - left["lin"] ** 2
            vr = count * right["sq"] - right["lin"] ** 2
            ok = (vl > _ZERO_VAR * count * left["sq"]) & (vr > _ZERO_VAR * count * right["sq"])
            sim = np.where(ok, num / np.sqrt(np.where(ok, vl * vr, 1)), 0.0)
        elif kind == "pearson_baseline":
            den = left["res_sq"] * right["res_sq"]
            sim = np.where(den > 0, left["res_dot"] / np.sqrt(np.where(den > 0, den, 1)), 0.0)
            shrink = 100.0 if shrinkage is None else float(shrinkage)
            sim = sim * (count - 1) / (count - 1 + shrink) if shrink else sim
            min_support = max(2.0, min_support)
        else:
            raise DataError(f"unknown similarity {kind!r}; choose one of {SIMILARITIES}")
    if kind != "pearson_baseline" and shrinkage:
        sim = sim * count / (count + float(shrinkage))
    return np.where(count >= min_support, sim, 0.0)


# ------------------------------------------------------------------- the class
class SufficientStats:
    """Pairwise sparse moments of a ratings matrix, exactly updatable.

    Build with :meth:`from_ratings`; derive similarities with :meth:`similarity`
    or :meth:`vector_similarity`; add events with :meth:`update`. ``ratings``
    (raters x entities), ``weights`` and ``order`` (arrival rank of each event,
    used to break ties between equally similar neighbours as Surprise does) are
    kept, aligned with ``ratings.data``, because a re-rated pair must subtract
    its old contribution.
    """

    def __init__(self, ratings: sp.csr_array, weights: np.ndarray, order: np.ndarray,
                 moments: tuple[str, ...], indptr: np.ndarray, indices: np.ndarray,
                 values: np.ndarray, baselines: Baselines | None) -> None:
        self.ratings = ratings
        self.weights = weights
        self.order = order
        self.moments = moments
        self.indptr = indptr
        self.indices = indices
        self.values = values  # one row per moment, one column per stored pair
        self.baselines = baselines
        self._perm: np.ndarray | None = None

    @property
    def data(self) -> dict[str, np.ndarray]:
        """Each moment's values over the stored pairs (views)."""
        return {m: self.values[j] for j, m in enumerate(self.moments)}

    # ----------------------------------------------------------- construction
    @classmethod
    def from_ratings(cls, ratings: sp.csr_array, *, moments: tuple[str, ...],
                     weights: np.ndarray | None = None, order: np.ndarray | None = None,
                     baselines: Baselines | None = None) -> SufficientStats:
        """Statistics of ``ratings`` (raters x entities, one stored value per event).

        ``weights`` and ``order`` align with ``ratings.data`` as given (defaults:
        1, and the position in that data).
        """
        coo = sp.csr_array(ratings).tocoo()
        return cls.from_events(coo.row, coo.col, coo.data, (coo.shape[0], coo.shape[1]),
                               moments=moments, weights=weights, order=order,
                               baselines=baselines)

    @classmethod
    def from_events(cls, rater: np.ndarray, entity: np.ndarray, value: np.ndarray,
                    shape: tuple[int, int], *, moments: tuple[str, ...],
                    weights: np.ndarray | None = None, order: np.ndarray | None = None,
                    baselines: Baselines | None = None) -> SufficientStats:
        """Statistics of events ``(rater, entity, value)`` (unique pairs) on ``shape``."""
        nnz = len(value)
        rater, entity = np.asarray(rater, np.int64), np.asarray(entity, np.int64)
        w = np.ones(nnz) if weights is None else np.asarray(weights, dtype=np.float64)
        o = np.arange(nnz, dtype=np.int64) if order is None else np.asarray(order, np.int64)
        if not len(rater) == len(entity) == len(w) == len(o) == nnz:
            raise DataError(f"rater ({len(rater)}), entity ({len(entity)}), weights ({len(w)})"
                            f" and order ({len(o)}) must have one entry per value ({nnz})")
        r, (w, o) = events_csr(rater, entity, shape, value, w, o)
        # sorted by (rater, entity): a duplicate pair sits next to its twin
        same = r.indices[1:] == r.indices[:-1]
        if same.any():
            starts = np.zeros(nnz, dtype=bool)
            starts[r.indptr[:-1][np.diff(r.indptr) > 0]] = True
            if (same & ~starts[1:]).any():
                raise DataError("the events hold a duplicate (rater, entity) pair")
        moments = tuple(m for m in _ORDER if m in set(moments) | {"count"})
        bad = set(moments) - set(_PRODUCT)
        if bad:
            raise DataError(f"unknown moments {sorted(bad)}")
        if any(m.startswith("res_") for m in moments):
            cls._check_baselines(baselines, r.shape)
        pairs = {m: _PRODUCT[m] for m in moments}
        rows = _Rows.full(r, w, _ops_for(pairs), baselines)
        return cls(r, w, o, moments, *_pair_sums(pairs, rows, rows, shape[1]), baselines)

    @staticmethod
    def _check_baselines(b: Baselines | None, shape: tuple[int, int]) -> None:
        if b is None:
            raise DataError("residual moments (pearson_baseline) need baselines")
        if len(b.x_bias) != shape[1] or len(b.y_bias) != shape[0]:
            raise DataError(f"baselines cover {len(b.y_bias)} raters x {len(b.x_bias)} entities,"
                            f" the ratings {shape[0]} x {shape[1]}")

    # ------------------------------------------------------------------ facts
    @property
    def n_x(self) -> int:
        return int(self.ratings.shape[1])

    @property
    def n_y(self) -> int:
        return int(self.ratings.shape[0])

    @property
    def nnz(self) -> int:
        """Number of stored co-rated pairs (the diagonal included)."""
        return len(self.indices)

    @property
    def nbytes(self) -> int:
        arrays = [self.indptr, self.indices, self.weights, self.order, self.ratings.data,
                  self.ratings.indices, self.ratings.indptr, self.values]
        return int(sum(a.nbytes for a in arrays))

    def entity_sums(self, w_power: int, v_power: int) -> np.ndarray:
        """``sum_y w^a r^b`` per entity (means, norms, Jaccard's own counts)."""
        v = self.ratings.data.astype(np.float64)
        return np.bincount(self.ratings.indices, self.weights ** w_power * v ** v_power,
                           minlength=self.n_x)

    def _transpose_perm(self) -> np.ndarray:
        """Position of ``(j, i)`` for each stored ``(i, j)`` (the pattern is symmetric)."""
        if self._perm is None:
            self._perm = transpose_perm(np.asarray(self.indptr, dtype=np.int64),
                                        np.asarray(self.indices, dtype=np.int64))
        return self._perm

    # ----------------------------------------------------------- similarities
    def similarity(self, kind: str, shrinkage: float | None = None,
                   min_support: float = 1, *, positive: bool = False) -> sp.csr_array:
        """Signed similarity of every co-rated pair, an ``n_x x n_x`` sparse matrix.

        Definitions follow Surprise over *common* raters (see
        :func:`similarity_values`); the diagonal is 1, pairs under
        ``min_support`` co-raters are dropped, and so are exact zeros --
        and negative values with ``positive`` (the view predictions use).
        Computed pair by pair in one compiled pass (:func:`pair_similarity`).
        """
        missing = set(moments_for(kind)) - set(self.moments)
        if missing:
            raise DataError(f"similarity {kind!r} needs moments {sorted(missing)} that these "
                            f"statistics do not keep (kept: {list(self.moments)})")
        rows = np.array([self.moments.index(m) if m in self.moments else 0 for m in _ORDER],
                        dtype=np.int64)
        if kind == "pearson_baseline":
            shrink = 100.0 if shrinkage is None else float(shrinkage)
            min_support = max(2.0, min_support)
        else:
            shrink = float(shrinkage) if shrinkage else 0.0
        own = self.entity_sums(2, 0) if kind == "jaccard" else np.zeros(0)
        perm = self._transpose_perm() if kind != "jaccard" else np.zeros(0, np.int64)
        sim = pair_similarity(SIMILARITY_CODES[kind], np.asarray(self.indptr, np.int64),
                              np.asarray(self.indices, np.int64), self.values, rows, perm,
                              own, shrink, float(min_support), positive)
        out = _csr(sim, self.indices.copy(), self.indptr.copy(), (self.n_x, self.n_x))
        out.eliminate_zeros()  # in place: hence the copies of the shared pattern
        return out

    def vector_similarity(self, *, normalize: bool = True, alpha: float = 0.5,
                          shrinkage: float = 0.0) -> sp.csr_array:
        """Similarity of the *whole* entity vectors (implicit feedback).

        ``dot / (|x|^(2 alpha) |x'|^(2 (1 - alpha)) + shrinkage)`` with
        ``|x|^2 = dot[x, x]``; ``alpha = 0.5`` is the cosine of implicit's
        CosineRecommender, other values the asymmetric cosine; with
        ``normalize=False`` the raw dot product (implicit's ItemItemRecommender).
        """
        if "dot" not in self.moments:
            raise DataError("vector similarity needs the 'dot' moment")
        sim = self.data["dot"].copy()
        if normalize:
            rows = np.repeat(np.arange(self.n_x), np.diff(self.indptr))
            norm2 = self.entity_sums(2, 2)
            den = norm2[rows] ** alpha * norm2[self.indices] ** (1.0 - alpha) + shrinkage
            with np.errstate(divide="ignore", invalid="ignore"):
                sim = np.where(den > 0, sim / np.where(den > 0, den, 1), 0.0)
        out = _csr(sim, self.indices.copy(), self.indptr.copy(), (self.n_x, self.n_x))
        out.eliminate_zeros()  # in place: hence the copies of the shared pattern
        return out

    # ---------------------------------------------------------------- updates
    def update(self, new_events: EventBatch | tuple[np.ndarray, np.ndarray, np.ndarray],
               decay: float = 1.0, *, new_x_bias: np.ndarray | None = None,
               new_y_bias: np.ndarray | None = None,
               shape: tuple[int, int] | None = None) -> None:
        """Add events exactly (in place); indices past the current axes grow them.

        A ``(rater, entity)`` pair that already has a rating is *re-rated*: the
        new value replaces the old one (its old contribution is subtracted), and
        the event's weight restarts at 1. Within one batch the last occurrence
        of a pair wins. ``decay`` in (0, 1] multiplies the weight of every
        earlier event. Residual moments keep the stored baselines for existing
        ids (use :meth:`rebase` to change them); ``new_x_bias``/``new_y_bias``
        give the biases of the entities/raters this batch adds (default 0).
        ``shape`` (raters, entities) grows the axes further (ids without events yet).
        The result equals :meth:`from_ratings` on the final ratings and weights.
        """
        y, x, v = (np.asarray(a) for a in new_events)
        y, x = y.astype(np.int64), x.astype(np.int64)
        v = v.astype(np.float64)
        if not len(y) == len(x) == len(v):
            raise DataError(f"new events: rater ({len(y)}), entity ({len(x)}) and value "
                            f"({len(v)}) arrays differ in length")
        if not 0.0 < decay <= 1.0:
            raise DataError(f"decay must be in (0, 1], got {decay!r}")
        if len(v) and not np.all(np.isfinite(v)):
            raise DataError(f"new events: value at position "
                            f"{int(np.flatnonzero(~np.isfinite(v))[0])} is not finite")
        if len(y) and min(y.min(), x.min()) < 0:
            raise DataError("new events: negative rater or entity index")
        n_y0, n_x0 = shape if shape is not None else (0, 0)
        n_y = max(self.n_y, int(y.max()) + 1 if len(y) else 0, n_y0)
        n_x = max(self.n_x, int(x.max()) + 1 if len(x) else 0, n_x0)
        base = self._grown_baselines(n_y, n_x, new_x_bias, new_y_bias)
        old = self.ratings.tocoo()
        old_row, old_col = old.row.astype(np.int64), old.col.astype(np.int64)
        # the batch, last occurrence of a pair winning; new events arrive after all others
        key = y * n_x + x
        srt = np.argsort(key, kind="stable")
        keep = srt[np.r_[key[srt][1:] != key[srt][:-1], True]] if len(key) else srt
        start = int(self.order.max()) + 1 if len(self.order) else 0
        y, x, v, o = y[keep], x[keep], v[keep], start + keep.astype(np.int64)
        # old events of the touched raters (decayed) and the batch events they meet
        touched = np.unique(y)
        in_t = np.isin(old_row, touched)
        t_row, t_col = old_row[in_t], old_col[in_t]
        t_val, t_w = old.data[in_t], decay * self.weights[in_t]
        t_key = t_row * n_x + t_col  # sorted: CSR order
        hit = np.searchsorted(t_key, y * n_x + x)
        hit = np.minimum(hit, max(len(t_key) - 1, 0))
        rerated = (t_key[hit] == y * n_x + x) if len(t_key) else np.zeros(len(y), bool)
        # per moment, L^T R over the touched rows changes by dL^T R + L^T dR + dL^T dR:
        # L, R the decayed old rows, dL, dR nonzero only at new or re-rated events
        pairs = {m: _PRODUCT[m] for m in self.moments}
        ops = _ops_for(pairs)
        t_loc = np.searchsorted(touched, t_row)
        old_rows = _Rows.build(t_loc, t_col, _operands(t_val, t_w, t_row, t_col, ops, base),
                               len(touched), ops)
        d_vals = _operands(v, np.ones(len(v)), y, x, ops, base)
        d_vals[:, rerated] -= _operands(t_val[hit[rerated]], t_w[hit[rerated]], y[rerated],
                                        x[rerated], ops, base)
        d_rows = _Rows.build(np.searchsorted(touched, y), x, d_vals, len(touched), ops)
        indptr = np.concatenate([self.indptr, np.full(n_x - self.n_x, self.indptr[-1])])
        # the three terms as one product: [dL; L; dL]^T [R; dR; dR]
        self.indptr, self.indices, self.values = _pair_sums(
            pairs, _Rows.vstack([d_rows, old_rows, d_rows]),
            _Rows.vstack([old_rows, d_rows, d_rows]), n_x,
            (indptr, self.indices, self.values), decay * decay)
        # the full event table: earlier events decay, re-rated ones are replaced
        stay = np.ones(len(old_row), dtype=bool)
        stay[np.flatnonzero(in_t)[hit[rerated]]] = False
        self.ratings, (self.weights, self.order) = events_csr(
            np.concatenate([old_row[stay], y]), np.concatenate([old_col[stay], x]),
            (n_y, n_x), np.concatenate([old.data[stay], v]),
            np.concatenate([decay * self.weights[stay], np.ones(len(v))]),
            np.concatenate([self.order[stay], o]))
        self.baselines = base
        self._perm = None

    def _grown_baselines(self, n_y: int, n_x: int, new_x_bias: np.ndarray | None,
                         new_y_bias: np.ndarray | None) -> Baselines | None:
        if self.baselines is None:
            return None
        b = self.baselines
        parts = []
        for name, old, given, n in (("new_x_bias", b.x_bias, new_x_bias, n_x),
                                    ("new_y_bias", b.y_bias, new_y_bias, n_y)):
            add = np.zeros(n - len(old)) if given is None else np.asarray(given, np.float64)
            if len(add) != n - len(old):
                raise DataError(f"{name} has {len(add)} entries; the update adds "
                                f"{n - len(old)} ids on that axis")
            parts.append(np.concatenate([old, add]))
        return Baselines(b.global_mean, parts[0], parts[1])

    def rebase(self, baselines: Baselines) -> None:
        """Replace the baselines and recompute the residual moments (a full product)."""
        self._check_baselines(baselines, self.ratings.shape)
        self.baselines = baselines
        res = tuple(m for m in self.moments if m.startswith("res_"))
        if not res:
            return
        pairs = {m: _PRODUCT[m] for m in res}
        rows = _Rows.full(self.ratings, self.weights, _ops_for(pairs), baselines)
        _, _, vals = _pair_sums(pairs, rows, rows, self.n_x,
                                (self.indptr, self.indices, np.zeros((len(res), self.nnz))))
        for j, m in enumerate(res):
            self.values[self.moments.index(m)] = vals[j]

    # ------------------------------------------------------------ persistence
    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Component arrays (CSR parts, moments, baselines) for safetensors."""
        out = {f"{prefix}ratings_indptr": self.ratings.indptr.astype(np.int64),
               f"{prefix}ratings_indices": self.ratings.indices.astype(np.int64),
               f"{prefix}ratings_data": self.ratings.data.astype(np.float64),
               f"{prefix}ratings_shape": np.asarray(self.ratings.shape, dtype=np.int64),
               f"{prefix}weights": self.weights, f"{prefix}order": self.order,
               f"{prefix}pairs_indptr": self.indptr, f"{prefix}pairs_indices": self.indices}
        out.update({f"{prefix}moment_{m}": self.data[m] for m in self.moments})
        if self.baselines is not None:
            out[f"{prefix}base_mean"] = np.asarray([self.baselines.global_mean])
            out[f"{prefix}base_x"] = self.baselines.x_bias
            out[f"{prefix}base_y"] = self.baselines.y_bias
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> SufficientStats:
        """Inverse of :meth:`to_arrays`."""
        shape = tuple(int(s) for s in arrays[f"{prefix}ratings_shape"])
        ratings = _csr(arrays[f"{prefix}ratings_data"], arrays[f"{prefix}ratings_indices"],
                       arrays[f"{prefix}ratings_indptr"], (shape[0], shape[1]))
        moments = tuple(m for m in _ORDER if f"{prefix}moment_{m}" in arrays)
        base = None
        if f"{prefix}base_mean" in arrays:
            base = Baselines(float(arrays[f"{prefix}base_mean"][0]), arrays[f"{prefix}base_x"],
                             arrays[f"{prefix}base_y"])
        return cls(ratings, arrays[f"{prefix}weights"], arrays[f"{prefix}order"], moments,
                   arrays[f"{prefix}pairs_indptr"], arrays[f"{prefix}pairs_indices"],
                   np.stack([arrays[f"{prefix}moment_{m}"] for m in moments]), base)


# ------------------------------------------------------- memory-bounded path
def _row_blocks(ratings: sp.csr_array, budget_pairs: int) -> Iterator[slice]:
    """Entity row blocks whose product work stays under ``budget_pairs``."""
    deg_y = np.diff(ratings.indptr).astype(np.float64)
    work = np.bincount(ratings.indices, deg_y[np.repeat(np.arange(ratings.shape[0]),
                                                        np.diff(ratings.indptr))],
                       minlength=ratings.shape[1])
    csum = np.cumsum(work)
    start = 0
    while start < ratings.shape[1]:
        base = csum[start - 1] if start else 0.0
        stop = int(np.searchsorted(csum, base + max(budget_pairs, 1), side="right"))
        stop = min(max(stop, start + 1), ratings.shape[1])
        yield slice(start, stop)
        start = stop


def blockwise_similarity(ratings: sp.csr_array, kind: str, *, shrinkage: float | None,
                         min_support: float, baselines: Baselines | None,
                         budget_pairs: int, prune: int | None) -> sp.csr_array:
    """The similarity without keeping statistics: computed in entity row blocks.

    Peak memory is one block's moments (both sides accumulated directly, no
    transpose needed); with ``prune`` every row keeps only its ``prune``
    largest positive similarities to other entities.
    """
    r = sp.csr_array(ratings, dtype=np.float64)
    r.sort_indices()
    n_x = r.shape[1]
    needed = moments_for(kind)
    pairs = {m: _PRODUCT[m] for m in needed}
    pairs.update({f"{m}_r": (_PRODUCT[m][1], _PRODUCT[m][0])
                  for m in needed if m in _ASYMMETRIC})
    rows_all = _Rows.full(r, np.ones(r.nnz), _ops_for(pairs), baselines)
    own = np.bincount(r.indices, minlength=n_x).astype(np.float64)
    ptrs, idxs, vals = [np.zeros(1, np.int64)], [], []
    for blk in _row_blocks(r, budget_pairs):
        ip, ix, vals_b = _pair_sums(pairs, rows_all, rows_all, n_x, rows=blk)
        d = {m: vals_b[j] for j, m in enumerate(pairs)}
        rows = np.repeat(np.arange(blk.start, blk.stop), np.diff(ip))
        right = {m: d.get(f"{m}_r", d[m]) for m in needed}
        sim = similarity_values(kind, d["count"], d, right, own[rows], own[ix],
                                shrinkage, min_support)
        sim[rows == ix] = 1.0
        if prune is not None:  # the model adds the diagonal back
            ip, ix, sim = topk_rows(ip, ix, sim, prune, np.arange(blk.start, blk.stop), True)
        ptrs.append(ip[1:] + ptrs[-1][-1])
        idxs.append(ix)
        vals.append(sim)
    out = _csr(np.concatenate(vals), np.concatenate(idxs), np.concatenate(ptrs), (n_x, n_x))
    out.eliminate_zeros()
    return out


# ------------------------------------------------------------------ baselines
def als_biases(user: np.ndarray, item: np.ndarray, value: np.ndarray, weight: np.ndarray,
               n_users: int, n_items: int, global_mean: float, *, reg_user: float = 15.0,
               reg_item: float = 10.0, n_epochs: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Surprise's ``baseline_als`` (items then users each epoch), vectorised and weighted.

    ``b_i = sum w (r - mu - b_u) / (reg_i + sum w)`` then the same for users;
    with unit weights it is Surprise's BaselineOnly ALS step for step.
    """
    dev = value.astype(np.float64) - global_mean
    w = weight.astype(np.float64)
    den_i = reg_item + np.bincount(item, w, minlength=n_items)
    den_u = reg_user + np.bincount(user, w, minlength=n_users)
    bu = np.zeros(n_users)
    bi = np.zeros(n_items)
    for _ in range(n_epochs):
        bi = np.bincount(item, w * (dev - bu[user]), minlength=n_items) / den_i
        bu = np.bincount(user, w * (dev - bi[item]), minlength=n_users) / den_u
    return bu, bi
