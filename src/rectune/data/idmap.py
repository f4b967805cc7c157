"""Append-only two-way maps between raw ids and dense indices.

Why append-only: a model trained on map ``M`` must keep reading data encoded
with any extension of ``M`` (fine-tuning grows tables for new users/items by
appending rows). :meth:`IdMap.extend` therefore never renumbers an existing id;
it returns a *new* map whose first ``len(M)`` ids are exactly ``M``'s.

Lookups are vectorised through a :class:`pandas.Index` (a hash table), so
encoding millions of ids costs one call, not a Python loop. Building a map and
encoding the column it came from is one step (:meth:`IdMap.factorize`): integer
ids in a dense range (MovieLens, most exports) take a lookup table instead of a
hash, other ids one hash pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from rectune._errors import DataError, UnknownIdError

Missing = Literal["error", "negative"]


def _as_id_array(ids: Any) -> np.ndarray:
    """Normalise raw ids to one of two dtypes: int64 or object (str).

    Integer-like ids stay integers (ML ids are integers and PROTOCOLS.md orders
    them numerically); anything else becomes str. Mixing the two is refused
    rather than silently stringified, because ``1`` and ``"1"`` would then collide.
    """
    if isinstance(ids, pd.Index | pd.Series):
        arr = ids.to_numpy()
    else:
        arr = np.asarray(ids)
        if arr.dtype.kind == "U" and arr.ndim == 1 and isinstance(ids, list | tuple):
            # numpy's fixed-width strings drop trailing "\0": keep the caller's str objects
            # (other values stay stringified by numpy, as before).
            keep = np.empty(len(arr), dtype=object)
            keep[:] = [x if isinstance(x, str) else s for x, s in zip(ids, arr.tolist(),
                                                                       strict=True)]
            arr = keep
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise DataError(f"ids must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "b":
        raise DataError("boolean ids are not allowed")
    if arr.dtype.kind == "f":
        if len(arr) and not np.all(np.isfinite(arr)):
            raise DataError("ids contain NaN or infinity")
        if len(arr) and not np.all(arr == np.round(arr)):
            raise DataError("float ids must be whole numbers")
        return arr.astype(np.int64)
    if arr.dtype.kind in "UST" or arr.dtype == object:
        out = np.empty(len(arr), dtype=object)
        if len(arr) == 0:
            return out
        obj = arr.astype(object)
        kinds = {type(x) for x in obj[: min(len(obj), 1000)]}
        if any(k is not str and k is not np.str_ for k in kinds):
            # Slow path only for genuinely mixed object arrays.
            bad = [x for x in obj if not isinstance(x, str)]
            if all(isinstance(x, int | np.integer) and not isinstance(x, bool) for x in obj):
                return obj.astype(np.int64)
            if bad:
                raise DataError(
                    f"ids mix strings with {type(bad[0]).__name__} values (e.g. {bad[0]!r}); "
                    "use one type for all ids"
                )
        out[:] = obj
        return out
    # pandas extension arrays (StringDtype, ArrowDtype) arrive here via to_numpy()
    return _as_id_array(np.asarray(arr, dtype=object))


def _show(x: Any) -> str:
    """repr of a raw id without numpy's type wrapper (``9``, not ``np.int64(9)``)."""
    return repr(x.item() if isinstance(x, np.generic) else x)


class IdMap:
    """Two-way map between raw ids (int or str) and indices ``0..n-1``.

    Parameters
    ----------
    ids:
        The raw ids in index order. They must be unique.

    Examples
    --------
    >>> m = IdMap([10, 20, 30])
    >>> m.encode([30, 10]).tolist()
    [2, 0]
    >>> m2 = m.extend([40, 10])
    >>> m2.ids.tolist()
    [10, 20, 30, 40]
    """

    __slots__ = ("_ids", "_index")

    def __init__(self, ids: Sequence[Any] | np.ndarray | pd.Index = ()) -> None:
        arr = _as_id_array(ids)
        index = pd.Index(arr, dtype=arr.dtype)
        if not index.is_unique:
            dup = index[index.duplicated()][0]
            raise DataError(f"IdMap ids must be unique; {_show(dup)} appears more than once")
        arr.setflags(write=False)
        self._ids = arr
        self._index = index

    @classmethod
    def _trusted(cls, ids: np.ndarray, index: pd.Index | None = None) -> IdMap:
        """A map over ``ids`` that are already normalised (int64 or object str) and unique.

        Skips the uniqueness check of ``__init__`` (one more hash pass over the ids):
        only for callers that built ``ids`` from ``unique``/``factorize`` themselves.
        """
        self = cls.__new__(cls)
        ids.setflags(write=False)
        self._ids = ids
        self._index = index if index is not None else pd.Index(ids, dtype=ids.dtype, copy=False)
        return self

    # construction -------------------------------------------------------
    @classmethod
    def from_values(cls, values: Iterable[Any] | np.ndarray, *, sort: bool = True) -> IdMap:
        """Build a map from (possibly repeated) raw values.

        ``sort=True`` orders ids ascending (numeric order for integer ids), the
        order PROTOCOLS.md fixes; ``sort=False`` keeps order of first appearance.
        """
        arr = _as_id_array(values if isinstance(values, np.ndarray | pd.Index | pd.Series)
                           else list(values))
        if sort:
            uniq = pd.unique(arr)
            uniq = np.sort(uniq) if arr.dtype != object else np.array(sorted(uniq), dtype=object)
        else:
            uniq = pd.unique(arr)
        return cls._trusted(np.asarray(uniq, dtype=arr.dtype))

    @classmethod
    def factorize(cls, values: Iterable[Any] | np.ndarray | pd.Series | pd.Index, *,
                  sort: bool = True) -> tuple[IdMap, np.ndarray]:
        """``(IdMap.from_values(values, sort=sort), its encoding of values)`` in one pass.

        The same map and int64 indices as ``from_values`` followed by ``encode``, which
        hash every value twice (once to find the unique ids, once to look them up).
        Here integer ids whose range is at most twice their number -- MovieLens
        and most exported logs -- are mapped through a dense lookup table (no hashing
        at all); other ids take one hash pass (:func:`pandas.factorize`) whose codes are
        renumbered in the sorted order of the few unique ids.
        """
        if (sort and isinstance(values, pd.Series | pd.Index)
                and isinstance(values.dtype, pd.StringDtype) and not values.hasnans):
            # Arrow-backed strings: hash them where they are, turn only the uniques into
            # Python str (to_numpy() would build one object per row first).
            codes, uniq = pd.factorize(values, sort=False)
            return cls._sorted_codes(np.asarray(uniq, dtype=object),
                                     np.asarray(codes, dtype=np.int64))
        arr = _as_id_array(values if isinstance(values, np.ndarray | pd.Index | pd.Series)
                           else list(values))
        n = len(arr)
        if n == 0:
            return cls._trusted(arr), np.zeros(0, dtype=np.int64)
        if not sort or arr.dtype == object:
            first_codes, first_seen = pd.factorize(arr, sort=False)
            if sort:  # strings: sort the few unique ids, not the column
                return cls._sorted_codes(np.asarray(first_seen, dtype=object),
                                         np.asarray(first_codes, dtype=np.int64))
            return (cls._trusted(np.asarray(first_seen, dtype=arr.dtype)),
                    np.asarray(first_codes, dtype=np.int64))
        return cls._factorize_ints([arr])

    @classmethod
    def _factorize_ints(cls, chunks: Sequence[np.ndarray]) -> tuple[IdMap, np.ndarray]:
        """:meth:`factorize` (sorted) of int64 ids given in pieces, e.g. a parser's blocks.

        Integer ids whose range is at most twice their number are mapped through a
        dense lookup table, piece by piece into one output array: no hashing, and no
        concatenated copy of the raw ids. Others are concatenated and hashed once.
        """
        n = sum(len(c) for c in chunks)
        if n == 0:
            return cls._trusted(np.zeros(0, dtype=np.int64)), np.zeros(0, dtype=np.int64)
        lo = min(int(c.min()) for c in chunks if len(c))
        hi = max(int(c.max()) for c in chunks if len(c))
        limit = max(2 * n, 1 << 16)
        if hi - lo < limit:
            # Mark the ids present, number them by a running count (the table costs at
            # most ~9 bytes per row, like the codes themselves). Small non-negative ids
            # index the table directly, without an offset copy.
            base = 0 if 0 <= lo and hi < limit else lo
            present = np.zeros(hi - base + 1, dtype=bool)
            for c in chunks:
                present[c if base == 0 else c - np.int64(base)] = True
            lut = np.cumsum(present, dtype=np.int64)
            lut -= 1
            codes = np.empty(n, dtype=np.int64)
            pos = 0
            for c in chunks:  # every id indexes the table: mode="clip" skips take's buffer
                np.take(lut, c if base == 0 else c - np.int64(base), out=codes[pos:pos + len(c)],
                        mode="clip")
                pos += len(c)
            uniq = np.flatnonzero(present).astype(np.int64)
            uniq += base
            return cls._trusted(uniq), codes
        # Sparse ids: a hash table over the few unique ids answers the lookups faster
        # than factorize's table over all of them.
        arr = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        uniq = np.sort(pd.unique(arr))
        index = pd.Index(uniq, dtype=np.int64, copy=False)
        codes = index.get_indexer(arr)  # type: ignore[arg-type]  # stubs: Index only
        return cls._trusted(uniq, index), codes.astype(np.int64, copy=False)

    @classmethod
    def _sorted_codes(cls, uniq: np.ndarray, codes: np.ndarray) -> tuple[IdMap, np.ndarray]:
        """Sort first-seen ``uniq`` (str objects) and renumber ``codes`` to match."""
        order = np.argsort(uniq, kind="stable")  # object compare: same order as sorted()
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order), dtype=np.int64)
        return cls._trusted(np.ascontiguousarray(uniq[order])), rank[codes]

    def extend(self, new_ids: Iterable[Any] | np.ndarray) -> IdMap:
        """Return a new map with the ids not yet present appended, in first-seen order.

        Existing ids keep their indices; ``self`` is not modified.
        """
        arr = _as_id_array(new_ids if isinstance(new_ids, np.ndarray | pd.Index | pd.Series)
                           else list(new_ids))
        if len(arr) == 0:
            return self
        self._check_kind(arr)
        fresh = pd.unique(arr[self._index.get_indexer(arr) < 0])
        if len(fresh) == 0:
            return self
        dtype = self._ids.dtype if len(self._ids) else arr.dtype
        return IdMap(np.concatenate([self._ids, np.asarray(fresh, dtype=dtype)]))

    # lookups ------------------------------------------------------------
    def encode(self, raw: Any, *, missing: Missing = "error") -> np.ndarray:
        """Raw ids -> int64 indices.

        ``missing="error"`` raises :class:`UnknownIdError` naming the first
        unknown id; ``missing="negative"`` returns -1 for unknown ids.
        """
        if missing not in ("error", "negative"):
            raise ValueError(f"missing must be 'error' or 'negative', not {missing!r}")
        arr = _as_id_array(raw)
        if len(arr) and len(self._ids) and arr.dtype != self._ids.dtype:
            if missing == "error":
                raise UnknownIdError(
                    f"ids of type {arr.dtype} cannot match this map's {self.kind} ids "
                    f"(e.g. {_show(arr[0])})"
                )
            return np.full(len(arr), -1, dtype=np.int64)
        idx = self._index.get_indexer(arr).astype(np.int64, copy=False)
        if missing == "error":
            bad = np.flatnonzero(idx < 0)
            if len(bad):
                raise UnknownIdError(
                    f"unknown id {_show(arr[bad[0]])} (position {int(bad[0])}); "
                    f"{len(bad)} of {len(arr)} ids are not in the map of {len(self)} ids"
                )
        return idx

    def decode(self, idx: Any) -> np.ndarray:
        """Indices -> raw ids; negative or out-of-range indices raise :class:`UnknownIdError`."""
        ix = np.asarray(idx, dtype=np.int64)
        if ix.size and (ix.min() < 0 or ix.max() >= len(self)):
            bad = ix[(ix < 0) | (ix >= len(self))].flat[0]
            raise UnknownIdError(f"index {int(bad)} is outside 0..{len(self) - 1}")
        return self._ids[ix]

    def _check_kind(self, arr: np.ndarray) -> None:
        if len(self._ids) and arr.dtype != self._ids.dtype:
            raise DataError(
                f"cannot extend a map of {self.kind} ids with {arr.dtype} ids "
                f"(e.g. {_show(arr[0])})"
            )

    # introspection ------------------------------------------------------
    @property
    def ids(self) -> np.ndarray:
        """Raw ids in index order (read-only array)."""
        return self._ids

    @property
    def kind(self) -> str:
        """``"int"`` or ``"str"``."""
        return "str" if self._ids.dtype == object else "int"

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, raw: object) -> bool:
        try:
            return bool(self.encode([raw], missing="negative")[0] >= 0)
        except DataError:
            return False

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdMap):
            return NotImplemented
        return len(self) == len(other) and self.kind == other.kind and bool(
            np.array_equal(self._ids, other._ids)
        )

    __hash__ = None  # type: ignore[assignment]

    def is_prefix_of(self, other: IdMap) -> bool:
        """True when ``other`` is ``self`` or an extension of it (same first ids)."""
        return len(self) <= len(other) and (
            len(self) == 0
            or (self.kind == other.kind
                and bool(np.array_equal(self._ids, other._ids[: len(self)])))
        )

    def __repr__(self) -> str:
        head = ", ".join(repr(x) for x in self._ids[:3])
        more = ", ..." if len(self) > 3 else ""
        return f"IdMap(n={len(self)}, kind={self.kind}, ids=[{head}{more}])"

    # persistence --------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (no pickle): ``{"kind": "int"|"str", "ids": [...]}``."""
        return {"kind": self.kind, "ids": self._ids.tolist()}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> IdMap:
        """Inverse of :meth:`to_json`; validates the stored kind."""
        try:
            kind, ids = obj["kind"], obj["ids"]
        except (KeyError, TypeError) as exc:
            raise DataError(f"not an IdMap JSON object: missing {exc}") from None
        if kind == "int":
            return cls(np.asarray(ids, dtype=np.int64))
        if kind == "str":
            return cls(np.asarray(ids, dtype=object))
        raise DataError(f"IdMap kind must be 'int' or 'str', not {kind!r}")
