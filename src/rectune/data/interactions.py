"""Columnar user-item interactions, the one data type every model reads.

An :class:`Interactions` holds parallel arrays (user index, item index, value,
timestamp, optional context columns) plus the user and item :class:`IdMap`.
Explicit ratings and implicit events are the same type with a ``kind`` flag.

Why validation lives here: building a scipy CSR matrix from COO triplets
silently *sums* duplicate (user, item) pairs, and NaN ratings propagate into
every model. We refuse both at construction, with a message that names the
row (and file line, when a loader tells us the file), and make the duplicate
policy an explicit choice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rectune._errors import DataError
from rectune.data.idmap import IdMap

if TYPE_CHECKING:
    import torch

Kind = Literal["explicit", "implicit"]
DuplicatePolicy = Literal["error", "last", "mean"]


@dataclass(frozen=True)
class RowOrigin:
    """Where row ``i`` of a table came from, so errors can name file and line.

    ``line = first_line + i`` when ``lines`` is None, else ``lines[i]``.
    """

    source: str | None = None
    first_line: int = 0
    lines: np.ndarray | None = None

    def describe(self, row: int) -> str:
        line = int(self.lines[row]) if self.lines is not None else self.first_line + row
        if self.source is None:
            return f"row {row}"
        return f"{self.source} line {line}"


def _encode(raw: pd.Series | np.ndarray, existing: IdMap | None) -> tuple[IdMap, np.ndarray]:
    """The map of a raw id column and its codes.

    A new map and the codes come from one pass (:meth:`IdMap.factorize`); an existing
    map is extended first (its indices never change), then encodes the column.
    """
    if existing is None:
        return IdMap.factorize(raw)
    col = raw.to_numpy() if isinstance(raw, pd.Series) else raw
    m = existing.extend(col)
    return m, m.encode(col)


def _is_plain(col: pd.Series, kinds: str) -> bool:
    """True for a numpy-backed column of one of the dtype ``kinds`` (no missing-value mask)."""
    return isinstance(col.dtype, np.dtype) and col.dtype.kind in kinds


def _timestamps(col: pd.Series, name: str, origin: RowOrigin) -> np.ndarray:
    """Timestamps as int64 seconds since the epoch (datetimes are converted)."""
    if isinstance(col.dtype, np.dtype) and col.dtype.kind == "i":
        # Plain integers cannot be missing: copy them as they are (no float64 round trip,
        # which would also round values above 2**53).
        return np.array(col.to_numpy(), dtype=np.int64, copy=True)
    if pd.api.types.is_datetime64_any_dtype(col):
        if col.isna().any():
            bad = int(np.flatnonzero(col.isna().to_numpy())[0])
            raise DataError(f"{origin.describe(bad)}: field {name!r} is missing (NaT)")
        # pandas 3 may keep non-ns units: normalise through datetime64[s]
        return col.to_numpy(dtype="datetime64[s]").astype(np.int64)
    arr = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad_mask = ~np.isfinite(arr)
    if bad_mask.any():
        bad = int(np.flatnonzero(bad_mask)[0])
        raise DataError(
            f"{origin.describe(bad)}: field {name!r} is not a number: {col.iloc[bad]!r}"
        )
    return arr.astype(np.int64)


@dataclass(frozen=True, eq=False)
class Interactions:
    """Columnar (user, item, value, timestamp, context) table with its id maps.

    Build one with :meth:`from_frame` (validates) or :meth:`from_indices`
    (trusted indices). Instances are immutable; every transformation returns a
    new object that shares the (immutable) id maps.
    """

    user: np.ndarray
    item: np.ndarray
    value: np.ndarray
    user_map: IdMap
    item_map: IdMap
    timestamp: np.ndarray | None = None
    context: Mapping[str, np.ndarray] = field(default_factory=dict)
    kind: Kind = "explicit"
    rating_scale: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        n = len(self.user)
        if len(self.item) != n or len(self.value) != n:
            raise DataError("user, item and value arrays must have the same length")
        if self.timestamp is not None and len(self.timestamp) != n:
            raise DataError("timestamp array length differs from the number of interactions")
        for name, col in self.context.items():
            if len(col) != n:
                raise DataError(f"context column {name!r} has {len(col)} rows, expected {n}")
        if self.kind not in ("explicit", "implicit"):
            raise DataError(f"kind must be 'explicit' or 'implicit', not {self.kind!r}")
        if n:
            if self.user.min() < 0 or self.user.max() >= len(self.user_map):
                raise DataError("user indices fall outside the user map")
            if self.item.min() < 0 or self.item.max() >= len(self.item_map):
                raise DataError("item indices fall outside the item map")
        for arr in (self.user, self.item, self.value, self.timestamp, *self.context.values()):
            if arr is not None and arr.flags.writeable:
                arr.setflags(write=False)

    # construction -------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        user: str = "user",
        item: str = "item",
        value: str | None = "rating",
        timestamp: str | None = "timestamp",
        context: tuple[str, ...] | list[str] = (),
        kind: Kind = "explicit",
        rating_scale: tuple[float, float] | None = None,
        duplicates: DuplicatePolicy = "error",
        user_map: IdMap | None = None,
        item_map: IdMap | None = None,
        origin: RowOrigin | None = None,
    ) -> Interactions:
        """Validate a DataFrame and encode it.

        Parameters
        ----------
        user, item, value, timestamp, context:
            Column names. ``value=None`` makes every row an implicit event of
            weight 1; ``timestamp=None`` means the data has no time.
        rating_scale:
            ``(low, high)``; values outside it raise :class:`DataError`.
        duplicates:
            What to do with repeated (user, item) rows: ``"error"`` (default),
            ``"last"`` (keep the latest by timestamp, ties by row order) or
            ``"mean"`` (average the values, keep the latest timestamp).
        user_map, item_map:
            Existing maps to encode against; ids they lack are appended
            (:meth:`IdMap.extend`), so old indices never change.
        origin:
            File and line information used in error messages.
        """
        origin = origin or RowOrigin()
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
        wanted = [c for c in (user, item, value, timestamp, *context) if c is not None]
        missing_cols = [c for c in wanted if c not in df.columns]
        if missing_cols:
            where = f" in {origin.source}" if origin.source else ""
            raise DataError(
                f"missing column(s) {missing_cols}{where}; available: {list(df.columns)}"
            )
        if len(df) == 0:
            raise DataError(f"empty data set{' in ' + origin.source if origin.source else ''}")

        for c in (user, item):
            if _is_plain(df[c], "iu"):
                continue  # a numpy integer column cannot hold a missing value
            na = df[c].isna().to_numpy()
            if na.any():
                bad = int(np.flatnonzero(na)[0])
                raise DataError(f"{origin.describe(bad)}: field {c!r} is missing")

        if value is None:
            vals = np.ones(len(df), dtype=np.float32)
        else:
            col = df[value]
            raw = (col.to_numpy(dtype=np.float64) if _is_plain(col, "iuf") else
                   pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64,
                                                                na_value=np.nan))
            # One pass answers "all finite and in range" for clean data; the detailed
            # checks below (finite first, then range) only run when it says no.
            if rating_scale is not None:
                lo, hi = rating_scale
                clean = bool(((raw >= lo) & (raw <= hi)).all())
            else:
                clean = bool(np.isfinite(raw).all())
            if not clean:
                bad_mask = ~np.isfinite(raw)
                if bad_mask.any():
                    bad = int(np.flatnonzero(bad_mask)[0])
                    raise DataError(
                        f"{origin.describe(bad)}: field {value!r} is not a finite number: "
                        f"{col.iloc[bad]!r} ({int(bad_mask.sum())} such rows)"
                    )
                if rating_scale is not None:
                    lo, hi = rating_scale
                    out = (raw < lo) | (raw > hi)
                    if out.any():
                        bad = int(np.flatnonzero(out)[0])
                        raise DataError(
                            f"{origin.describe(bad)}: field {value!r} = {raw[bad]:g} is outside "
                            f"the declared rating scale [{lo:g}, {hi:g}] ({int(out.sum())} such "
                            "rows)"
                        )
            vals = raw.astype(np.float32)

        ts = None if timestamp is None else _timestamps(df[timestamp], timestamp, origin)
        ctx = {c: df[c].to_numpy() for c in context}

        umap, u = _encode(df[user], user_map)
        imap, i = _encode(df[item], item_map)
        return cls._assemble(umap, u, imap, i, vals, ts, ctx, kind=kind,
                             rating_scale=rating_scale, duplicates=duplicates, origin=origin,
                             df=df, user=user, item=item)

    @classmethod
    def _assemble(
        cls,
        umap: IdMap,
        u: np.ndarray,
        imap: IdMap,
        i: np.ndarray,
        vals: np.ndarray,
        ts: np.ndarray | None,
        ctx: dict[str, np.ndarray],
        *,
        kind: Kind,
        rating_scale: tuple[float, float] | None,
        duplicates: DuplicatePolicy,
        origin: RowOrigin,
        df: pd.DataFrame | None,
        user: str,
        item: str,
    ) -> Interactions:
        """Apply the duplicate policy to encoded, validated columns and build the table.

        The last step of :meth:`from_frame`, shared with the readers' arrow path,
        which validates and encodes its columns itself. ``df`` (may be None) only
        names raw ids in the duplicate error.
        """
        keep = _dedupe(u, i, vals, ts, len(imap), duplicates, origin, df, user, item)
        if keep is not None:
            order, vals_new = keep
            u, i = u[order], i[order]
            ts = ts[order] if ts is not None else None
            ctx = {k: v[order] for k, v in ctx.items()}
            vals = vals_new
        return cls(u, i, vals, umap, imap, ts, ctx, kind, rating_scale)

    @classmethod
    def from_indices(
        cls,
        user: np.ndarray,
        item: np.ndarray,
        value: np.ndarray | None,
        user_map: IdMap,
        item_map: IdMap,
        *,
        timestamp: np.ndarray | None = None,
        context: Mapping[str, np.ndarray] | None = None,
        kind: Kind = "explicit",
        rating_scale: tuple[float, float] | None = None,
    ) -> Interactions:
        """Wrap already-encoded arrays (no duplicate check: the caller vouches)."""
        u = np.ascontiguousarray(user, dtype=np.int64)
        v = (np.ones(len(u), dtype=np.float32) if value is None
             else np.ascontiguousarray(value, dtype=np.float32))
        ts = None if timestamp is None else np.ascontiguousarray(timestamp, dtype=np.int64)
        return cls(u, np.ascontiguousarray(item, dtype=np.int64), v, user_map, item_map, ts,
                   dict(context or {}), kind, rating_scale)

    # basic facts --------------------------------------------------------
    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        return len(self.item_map)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_users, self.n_items)

    @property
    def density(self) -> float:
        cells = self.n_users * self.n_items
        return len(self) / cells if cells else 0.0

    def __repr__(self) -> str:
        return (f"Interactions(n={len(self)}, users={self.n_users}, items={self.n_items}, "
                f"kind={self.kind}, timestamps={self.timestamp is not None}, "
                f"context={list(self.context)})")

    # views --------------------------------------------------------------
    def coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(user, item, value)`` arrays (read-only, no copy)."""
        return self.user, self.item, self.value

    def csr(self, *, dtype: Any = np.float32) -> sp.csr_array:
        """Users x items CSR matrix, sorted indices. Pairs are unique: nothing is summed."""
        m = sp.csr_array((self.value.astype(dtype, copy=False), (self.user, self.item)),
                         shape=self.shape)
        m.sort_indices()
        return m

    def csc(self, *, dtype: Any = np.float32) -> sp.csc_array:
        """Users x items CSC matrix (columns = items)."""
        m = sp.csc_array((self.value.astype(dtype, copy=False), (self.user, self.item)),
                         shape=self.shape)
        m.sort_indices()
        return m

    def to_torch(self, device: str | None = None) -> dict[str, torch.Tensor]:
        """Tensors ``user``, ``item`` (int64), ``value`` (float32) and ``timestamp`` if present."""
        import torch  # local: torch is heavy and only the neural models need it

        out = {
            "user": torch.from_numpy(self.user.copy()),
            "item": torch.from_numpy(self.item.copy()),
            "value": torch.from_numpy(self.value.copy()),
        }
        if self.timestamp is not None:
            out["timestamp"] = torch.from_numpy(self.timestamp.copy())
        if device is not None:
            out = {k: v.to(device) for k, v in out.items()}
        return out

    def to_frame(self, *, raw_ids: bool = True) -> pd.DataFrame:
        """A DataFrame with columns user, item, rating, [timestamp], [context...]."""
        data: dict[str, Any] = {
            "user": self.user_map.decode(self.user) if raw_ids else self.user,
            "item": self.item_map.decode(self.item) if raw_ids else self.item,
            "rating": self.value,
        }
        if self.timestamp is not None:
            data["timestamp"] = self.timestamp
        data.update(self.context)
        return pd.DataFrame(data)

    # transformations ----------------------------------------------------
    def take(self, rows: np.ndarray) -> Interactions:
        """Rows by position (int array) or boolean mask; maps are kept whole."""
        r = np.asarray(rows)
        if r.dtype == bool:
            if len(r) != len(self):
                raise DataError(f"mask has {len(r)} entries for {len(self)} interactions")
            r = np.flatnonzero(r)
        r = r.astype(np.int64, copy=False)
        return Interactions(
            self.user[r], self.item[r], self.value[r], self.user_map, self.item_map,
            None if self.timestamp is None else self.timestamp[r],
            {k: v[r] for k, v in self.context.items()}, self.kind, self.rating_scale,
        )

    def with_maps(self, user_map: IdMap, item_map: IdMap) -> Interactions:
        """Re-express the same rows against other maps.

        When the new maps extend the current ones, indices are unchanged and
        nothing is copied; otherwise ids are re-encoded (unknown ids raise).
        """
        u = self.user if self.user_map.is_prefix_of(user_map) else \
            user_map.encode(self.user_map.decode(self.user))
        i = self.item if self.item_map.is_prefix_of(item_map) else \
            item_map.encode(self.item_map.decode(self.item))
        return Interactions(u, i, self.value, user_map, item_map, self.timestamp,
                            dict(self.context), self.kind, self.rating_scale)

    def concat(self, other: Interactions, *, duplicates: DuplicatePolicy = "error") -> Interactions:
        """Rows of ``self`` then ``other`` over the union of their maps (self's ids first)."""
        umap = self.user_map.extend(other.user_map.ids)
        imap = self.item_map.extend(other.item_map.ids)
        a, b = self.with_maps(umap, imap), other.with_maps(umap, imap)
        if (a.timestamp is None) != (b.timestamp is None):
            raise DataError("cannot concatenate interactions with and without timestamps")
        if set(a.context) != set(b.context):
            raise DataError(f"context columns differ: {sorted(a.context)} vs {sorted(b.context)}")
        u = np.concatenate([a.user, b.user])
        i = np.concatenate([a.item, b.item])
        v = np.concatenate([a.value, b.value])
        ts = None if a.timestamp is None else np.concatenate([a.timestamp, b.timestamp])
        ctx = {k: np.concatenate([a.context[k], b.context[k]]) for k in a.context}
        keep = _dedupe(u, i, v, ts, len(imap), duplicates, RowOrigin("concatenated data"),
                       None, "user", "item")
        if keep is not None:
            order, v = keep
            u, i = u[order], i[order]
            ts = None if ts is None else ts[order]
            ctx = {k: c[order] for k, c in ctx.items()}
        return Interactions(u, i, v, umap, imap, ts, ctx, self.kind, self.rating_scale)

    def binarize(self, threshold: float) -> Interactions:
        """Implicit events from ratings ``>= threshold`` (value 1); other rows are dropped."""
        out = self.take(self.value >= threshold)
        return Interactions(out.user, out.item, np.ones(len(out), dtype=np.float32),
                            out.user_map, out.item_map, out.timestamp, dict(out.context),
                            "implicit", None)

    def user_counts(self) -> np.ndarray:
        """Number of interactions of each user index (length ``n_users``)."""
        return np.bincount(self.user, minlength=self.n_users)

    def item_counts(self) -> np.ndarray:
        """Number of interactions of each item index (length ``n_items``)."""
        return np.bincount(self.item, minlength=self.n_items)


def _dedupe(
    u: np.ndarray,
    i: np.ndarray,
    vals: np.ndarray,
    ts: np.ndarray | None,
    n_items: int,
    policy: str,
    origin: RowOrigin,
    df: pd.DataFrame | None,
    ucol: str,
    icol: str,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Apply the duplicate policy; return ``(rows to keep, values)`` or None if no duplicates.

    Most data has no duplicate pair, so :func:`_has_duplicate_pair` answers that first
    in O(n); only when a duplicate exists does one stable lexsort on (pair key,
    timestamp) find every group.
    """
    if policy not in ("error", "last", "mean"):
        raise DataError(f"duplicates policy must be 'error', 'last' or 'mean', not {policy!r}")
    if len(u) < 2 or not _has_duplicate_pair(u, i, n_items):
        return None
    key = u * np.int64(max(n_items, 1)) + i
    order = np.lexsort((ts, key)) if ts is not None else np.argsort(key, kind="stable")
    sk = key[order]
    same_as_next = sk[1:] == sk[:-1]
    if not same_as_next.any():
        return None
    if policy == "error":
        pos = int(np.flatnonzero(same_as_next)[0])
        r1, r2 = sorted((int(order[pos]), int(order[pos + 1])))
        n_dup = int(same_as_next.sum())
        if df is not None:
            uval, ival = df[ucol].iloc[r1], df[icol].iloc[r1]
            uval = uval.item() if isinstance(uval, np.generic) else uval
            ival = ival.item() if isinstance(ival, np.generic) else ival
            who = f"user={uval!r}, item={ival!r}"
        else:
            who = f"user index {int(u[r1])}, item index {int(i[r1])}"
        where = f"{origin.describe(r1)} and {origin.describe(r2)}"
        raise DataError(
            f"duplicate (user, item) pair {who} at {where} ({n_dup} duplicate rows); "
            "choose duplicates='last' (latest by time) or 'mean'"
        )
    # group boundaries in sorted order; last element of each group is the latest by time
    is_last = np.ones(len(sk), dtype=bool)
    is_last[:-1] = ~same_as_next
    keep_sorted = order[is_last]
    if policy == "last":
        new_vals = vals[keep_sorted]
    else:  # mean
        starts = np.flatnonzero(np.r_[True, ~same_as_next])
        sums = np.add.reduceat(vals[order].astype(np.float64), starts)
        counts = np.diff(np.r_[starts, len(sk)])
        new_vals = (sums / counts).astype(np.float32)
    # restore original row order among kept rows
    back = np.argsort(keep_sorted, kind="stable")
    return keep_sorted[back], new_vals[back]


#: A table of one flag per possible (user, item) pair is used while it costs at most
#: this many bytes per row (plus 1 MiB): ML-100K and ML-1M fit, ML-10M and up do not.
_FLAG_BYTES_PER_ROW = 32
#: From this many rows on, a compiled scan replaces the sort when the flag table is too
#: big. Importing numba and loading the cached kernel cost ~0.9 s once per process, about
#: what sorting 10M keys costs on 2 cores, so small files never pay it.
_KERNEL_MIN_ROWS = 1 << 22


def _has_duplicate_pair(u: np.ndarray, i: np.ndarray, n_items: int) -> bool:
    """Whether any (user, item) index pair occurs twice, without sorting when possible.

    Rows already in (user, item) order are proven duplicate-free by one comparison
    per row. Otherwise, by the size ``n_users * n_items`` of the pair space: a flag per
    pair (scatter, then count the flags set: fewer than rows means a repeat); for large
    spaces and many rows the compiled :func:`_duplicate_pair_scan` (O(n), 4 bytes of
    scratch per row, ~10x faster than sorting 10M keys); else one ``np.sort`` of the keys.
    """
    n = len(u)
    if n < 2:
        return False
    n_users = int(u.max()) + 1
    n_items = max(n_items, 1)
    span = n_users * n_items
    if span > _FLAG_BYTES_PER_ROW * n + (1 << 20) and n >= _KERNEL_MIN_ROWS \
            and n_items < 1 << 30:
        kernel = _scan_kernel()
        if kernel is not None:
            return bool(kernel(np.ascontiguousarray(u, dtype=np.int64),
                               np.ascontiguousarray(i, dtype=np.int64), n_users, n_items,
                               np.empty(n, dtype=np.uint32)))
    key = u * np.int64(n_items) + i
    if bool((key[1:] > key[:-1]).all()):
        return False
    if span <= _FLAG_BYTES_PER_ROW * n + (1 << 20):
        seen = np.zeros(span, dtype=bool)
        seen[key] = True
        return int(np.count_nonzero(seen)) < n
    sk = np.sort(key)
    return bool((sk[1:] == sk[:-1]).any())


def _duplicate_pair_scan(u: np.ndarray, i: np.ndarray, n_users: int, n_items: int,
                         packed: np.ndarray) -> bool:
    """Compiled by numba (see :func:`_scan_kernel`): True if a (u, i) pair repeats.

    Rows in strictly increasing (user, item) order are proven duplicate-free by one
    comparison per row (the scan stops at the first row out of order). Otherwise each
    user's items are checked against a table of ``n_items`` flags that is cleared after
    the user. Rows grouped by user (MovieLens files) are read in place. Other orders
    are bucketed in two cache-friendly counting passes: first by the high bits of the
    user (at most 256 buckets, each written sequentially, as ``local user | item`` in
    32 bits, into ``packed``: ``len(u)`` uint32 allocated by the caller, where numpy
    asks for huge pages -- 4 KiB page faults on 40 MB cost more than the scan), then,
    inside each bucket (small enough for the cache), by user.
    """
    n = len(u)
    ordered = True
    grouped = True
    for r in range(1, n):
        if u[r] < u[r - 1]:
            ordered = False
            grouped = False
            break
        if ordered and u[r] == u[r - 1] and i[r] <= i[r - 1]:
            ordered = False
    if ordered:
        return False
    seen = np.zeros(n_items, dtype=np.bool_)
    if grouped:  # each user's rows are one run: check it, then clear its flags
        s = 0
        for r in range(n):
            if u[r] != u[s]:
                for p in range(s, r):
                    seen[i[p]] = False
                s = r
            if seen[i[r]]:
                return True
            seen[i[r]] = True
        return False
    item_bits = 1
    while (1 << item_bits) < n_items:
        item_bits += 1
    user_bits = 1
    while (1 << user_bits) < n_users:
        user_bits += 1
    shift = max(0, min(32 - item_bits, user_bits - 8))  # users per bucket: 2**shift
    n_buckets = ((n_users - 1) >> shift) + 1
    start = np.zeros(n_buckets + 1, dtype=np.int64)
    for r in range(n):
        start[(u[r] >> shift) + 1] += 1
    for b in range(n_buckets):
        start[b + 1] += start[b]
    fill = start[:-1].copy()
    low = (1 << shift) - 1
    for r in range(n):
        b = u[r] >> shift
        packed[fill[b]] = np.uint32(((u[r] & low) << item_bits) | i[r])
        fill[b] += 1
    width = 1 << shift
    local = np.empty(width + 1, dtype=np.int64)
    biggest = 0
    for b in range(n_buckets):
        biggest = max(biggest, start[b + 1] - start[b])
    items = np.empty(biggest, dtype=np.int32)
    item_mask = (1 << item_bits) - 1
    for b in range(n_buckets):
        local[:] = 0
        for p in range(start[b], start[b + 1]):
            local[(packed[p] >> item_bits) + 1] += 1
        for k in range(width):
            local[k + 1] += local[k]
        at = local[:-1].copy()
        for p in range(start[b], start[b + 1]):
            lu = packed[p] >> item_bits
            items[at[lu]] = packed[p] & item_mask
            at[lu] += 1
        for k in range(width):
            for q in range(local[k], local[k + 1]):
                if seen[items[q]]:
                    return True
                seen[items[q]] = True
            for q in range(local[k], local[k + 1]):
                seen[items[q]] = False
    return False


@functools.cache
def _scan_kernel() -> Callable[[np.ndarray, np.ndarray, int, int, np.ndarray], bool] | None:
    """:func:`_duplicate_pair_scan` compiled (cached on disk by numba), or None without numba.

    Imported lazily: numba costs ~0.5 s to import, which loading a small file need not pay.
    """
    try:
        from numba import njit
    except ImportError:  # pragma: no cover - numba is installed with the models
        return None
    kernel: Callable[[np.ndarray, np.ndarray, int, int, np.ndarray], bool] = njit(
        cache=True, nogil=True)(_duplicate_pair_scan)
    return kernel
