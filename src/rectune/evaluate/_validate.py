"""Input checks shared by the metric modules.

Every metric is a pure function over arrays, so the only way a caller can go
wrong is by handing it the wrong arrays: raw ids instead of indices, a truth
matrix for other users, NaN predictions. These helpers turn each of those into
a :class:`~rectune.DataError` that says which argument is wrong and why,
instead of a silently wrong number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from rectune._errors import DataError


def check_k(k: Any, name: str = "k") -> int:
    """``k`` as a positive Python int (bool and floats are refused: ``k=10.0`` is a bug)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise DataError(f"{name} must be a positive integer, got {k!r}")
    if k <= 0:
        raise DataError(f"{name} must be a positive integer, got {k}")
    return int(k)


def as_float_1d(x: Any, name: str, *, allow_nan: bool = False) -> np.ndarray:
    """``x`` as a 1-D float64 array; NaN and inf are refused unless ``allow_nan``."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-D, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise DataError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not allow_nan:
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{name}[{i}] is {arr[i]} (position {i}); values must be finite")
    return arr


def same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Refuse two parallel arrays of different lengths (the classic off-by-a-batch bug)."""
    if a.shape[0] != b.shape[0]:
        raise DataError(
            f"{name_a} and {name_b} must have the same length, got {a.shape[0]} and {b.shape[0]}"
        )


def as_binary_labels(y: Any, name: str = "y_true") -> np.ndarray:
    """0/1 (or bool) labels as float64; anything else is refused with its position."""
    arr = as_float_1d(y, name)
    bad = (arr != 0.0) & (arr != 1.0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{name}[{i}] = {arr[i]}: labels must be 0 or 1")
    return arr


def as_top_items(top_items: Any, k: int | None = None, name: str = "top_items") -> np.ndarray:
    """Recommendation lists as an int64 ``(n_users, k)`` array, padded with -1 or truncated.

    Columns past ``k`` are dropped (a metric @k looks at the first k only); when
    the lists are narrower than ``k``, -1 columns are appended, so a short list
    counts as misses at the missing positions, as Precision@k = hits/k requires.
    """
    arr = np.asarray(top_items)
    if arr.ndim != 2:
        raise DataError(
            f"{name} must be 2-D (n_users, k) item indices, got shape {arr.shape}; "
            "pass one row per user (recommend(users, k) returns that shape)"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(
            f"{name} must hold integer item indices, got dtype {arr.dtype}; raw item ids "
            "must be encoded with the item IdMap first"
        )
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < -1:
        r, c = np.argwhere(arr < -1)[0]
        raise DataError(f"{name}[{r}, {c}] = {arr[r, c]}: item indices are >= 0 (-1 = padding)")
    if k is not None:
        k = check_k(k)
        if arr.shape[1] >= k:
            arr = arr[:, :k]
        else:
            pad = np.full((arr.shape[0], k - arr.shape[1]), -1, dtype=np.int64)
            arr = np.concatenate([arr, pad], axis=1)
    return arr


def check_item_range(top: np.ndarray, n_items: int, name: str = "top_items") -> None:
    """Every non-padding index must be < ``n_items``."""
    if top.size and top.max() >= n_items:
        r, c = np.argwhere(top >= n_items)[0]
        raise DataError(
            f"{name}[{r}, {c}] = {top[r, c]} but the catalogue has {n_items} items "
            f"(indices 0..{n_items - 1})"
        )


def check_no_duplicates(top: np.ndarray, name: str = "top_items") -> None:
    """A list that repeats an item would count the same hit twice: refuse it.

    Vectorised: sort each row, and look for two equal neighbours that are not padding.
    """
    if top.shape[1] < 2:
        return
    s = np.sort(top, axis=1)
    dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
    if dup.any():
        r, c = np.argwhere(dup)[0]
        raise DataError(
            f"{name} row {r} lists item {s[r, c + 1]} more than once; a top-k list must "
            "hold distinct items"
        )


def as_csr(m: Any, name: str) -> sp.csr_array:
    """A canonical float64 CSR copy of a sparse matrix: sorted, summed, no explicit zeros."""
    if not sp.issparse(m):
        raise DataError(
            f"{name} must be a scipy sparse matrix (users x items), got {type(m).__name__}"
        )
    if m.ndim != 2:
        raise DataError(f"{name} must be 2-D, got shape {m.shape}")
    out = sp.csr_array(m, dtype=np.float64, copy=True)
    out.sum_duplicates()
    out.eliminate_zeros()
    return out


def as_truth(
    truth: Any, n_rows: int, users: Any = None, name: str = "truth"
) -> sp.csr_array:
    """The relevance matrix, restricted to ``users`` when given, aligned with ``n_rows`` lists.

    Grades must be finite and non-negative: a negative gain has no meaning in
    DCG, and NaN would poison every mean.
    """
    t = as_csr(truth, name)
    if users is not None:
        u = np.asarray(users)
        if u.ndim != 1 or (u.size and not np.issubdtype(u.dtype, np.integer)):
            raise DataError(f"users must be a 1-D array of user indices, got {u.dtype} {u.shape}")
        if u.size and (u.min() < 0 or u.max() >= t.shape[0]):
            bad = u[(u < 0) | (u >= t.shape[0])][0]
            raise DataError(f"user index {bad} is outside {name}'s {t.shape[0]} rows")
        t = t[u.astype(np.int64)]
    if t.shape[0] != n_rows:
        raise DataError(
            f"{name} has {t.shape[0]} rows but there are {n_rows} recommendation lists; "
            "row u of both must be the same user (pass users= to select truth rows)"
        )
    if t.nnz:
        if not np.isfinite(t.data).all():
            raise DataError(f"{name} holds NaN or inf relevance grades")
        if (t.data < 0).any():
            i = int(np.flatnonzero(t.data < 0)[0])
            row = int(np.searchsorted(t.indptr, i, side="right") - 1)
            raise DataError(
                f"{name} row {row}, item {t.indices[i]} has grade {t.data[i]}; relevance grades "
                "must be >= 0 (nonzero = relevant)"
            )
    return t
