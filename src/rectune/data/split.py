"""Train/test splits of :class:`~rectune.data.Interactions`: hold-out, k-fold, per-user,
leave-last-n, temporal, cold-user and cross-domain.

Every split here follows the same rules, because an evaluation is only as honest
as its split:

* **Index spaces are shared.** Parts are made with :meth:`Interactions.take`, so
  train, test and validation keep the *whole* user and item maps; a model fitted on
  ``train`` reads ``test`` without re-encoding, and users/items seen only in test
  stay addressable (they are simply unknown to the model).
* **Rows keep their original relative order** (file order for a loaded file), and
  each result records the positions it took (``info["train_rows"]`` etc.), so a
  split can be audited or replayed against the raw file.
* **Seeded and leak-free.** The same seed gives the same split on every machine;
  no row is in two parts; time-based splits never put a later event in training.
* **Vectorised.** Per-user logic is one stable ``np.lexsort`` plus group offsets,
  not a Python loop over rows.
* **Loud on nonsense.** Bad fractions, ``k < 2``, ``n`` longer than a user's
  history, or a split with an empty part raise :class:`~rectune.DataError`.

Counting convention: "a fraction ``f`` of ``n`` rows" means ``floor(f * n)`` (after
rounding ``f * n`` to 6 decimals so that ``0.29 * 100`` is 29, not 28); this is the
convention of PROTOCOLS.md (``int(0.2 * 943) = 188`` cold users,
``perm[:20000]`` of 100,000 rows). Per-user hold-outs round half up instead, as
PROTOCOLS.md's top-N recipe does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from rectune._errors import DataError
from rectune.data.interactions import Interactions

if TYPE_CHECKING:
    from rectune.data.dataset import Dataset

__all__ = [
    "CrossDomain",
    "Split",
    "TemporalSplit",
    "cold_user_split",
    "cross_domain_split",
    "kfold",
    "leave_last_n",
    "predefined_folds",
    "random_split",
    "temporal_split",
    "user_holdout",
]

ShortUsers = Literal["error", "train", "drop"]
BothPolicy = Literal["source", "target", "drop"]


# result types ------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Split:
    """A train/test (and optional validation) split over shared id maps.

    Unpacks like a tuple of two: ``train, test = random_split(data)``; the optional
    ``valid`` part is read by name. ``info`` holds what produced the split (seed,
    sizes) and the row positions each part took from the input
    (``train_rows``, ``test_rows``, ``valid_rows``: sorted int64 arrays), plus
    split-specific facts documented by each function.
    """

    train: Interactions
    test: Interactions
    valid: Interactions | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Interactions]:
        """Yield ``train`` then ``test`` so ``train, test = split`` works."""
        yield self.train
        yield self.test


@dataclass(frozen=True, eq=False)
class TemporalSplit:
    """A global time cut in three consecutive slices: ``pretrain``, ``new``, ``test``.

    ``pretrain`` holds the oldest events, ``new`` the next ones (the data a
    pre-trained model is fine-tuned on; empty when ``new_fraction`` is 0) and
    ``test`` the newest. Unpacks as ``pretrain, new, test = split``. Use
    :meth:`to_split` to get a plain :class:`Split`.

    ``info["test_returning"]`` is a boolean mask over the test rows: True where the
    test row's user has an event in ``pretrain`` or ``new`` (a "returning" user).
    """

    pretrain: Interactions
    new: Interactions
    test: Interactions
    info: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Interactions]:
        yield self.pretrain
        yield self.new
        yield self.test

    def to_split(self, *, new_as: Literal["train", "valid"] = "train") -> Split:
        """A :class:`Split`: ``new`` joins the training rows (``"train"``) or becomes ``valid``.

        With ``new_as="train"`` the training rows are those of ``pretrain`` and ``new``
        in the input's row order, like every other split.
        """
        rows = {k: self.info[f"{k}_rows"] for k in ("pretrain", "new", "test")}
        if new_as == "train":
            joined = np.concatenate([rows["pretrain"], rows["new"]])
            back = np.argsort(joined, kind="stable")  # keep the input's row order
            train = _concat_rows(self.pretrain, self.new).take(back)
            return Split(train, self.test, None, {**self.info, "train_rows": joined[back]})
        if new_as == "valid":
            if len(self.new) == 0:
                raise DataError("this temporal split has no 'new' slice to use as validation")
            info = {**self.info, "train_rows": rows["pretrain"], "valid_rows": rows["new"]}
            return Split(self.pretrain, self.test, self.new, info)
        raise DataError(f"new_as must be 'train' or 'valid', not {new_as!r}")


@dataclass(frozen=True, eq=False)
class CrossDomain:
    """Two domains of one data set, split by an item attribute, over shared id maps.

    ``source`` and ``target`` hold disjoint items; users are shared (same maps), so a
    model pre-trained on ``source`` can be transferred to ``target`` user by user.
    ``info`` lists ``source_items``, ``target_items`` and ``left_out_items`` (item
    indices) and the row positions ``source_rows`` / ``target_rows``.
    """

    source: Interactions
    target: Interactions
    info: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Interactions]:
        yield self.source
        yield self.target


# helpers -----------------------------------------------------------------------
def _count(fraction: float, n: int) -> int:
    """``floor(fraction * n)``, robust to binary float error (``0.29 * 100`` -> 29)."""
    return math.floor(round(fraction * n, 6))


def _check_fraction(name: str, value: float, *, zero_ok: bool = False) -> float:
    """A fraction in (0, 1) (or [0, 1) with ``zero_ok``); anything else is a DataError."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be a number in (0, 1), got {value!r}") from None
    lo_ok = f >= 0.0 if zero_ok else f > 0.0
    if not (math.isfinite(f) and lo_ok and f < 1.0):
        interval = "[0, 1)" if zero_ok else "(0, 1)"
        raise DataError(f"{name} must be in {interval}, got {value!r}")
    return f


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise DataError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise DataError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_nonempty(data: Interactions, what: str) -> None:
    if not isinstance(data, Interactions):
        raise DataError(f"{what} needs an Interactions, got {type(data).__name__}")
    if len(data) == 0:
        raise DataError(f"{what}: the data set is empty")


def _need_timestamps(data: Interactions, what: str) -> np.ndarray:
    if data.timestamp is None:
        raise DataError(f"{what} orders events by time, but these interactions have no "
                        "timestamps; load them with a timestamp column")
    return data.timestamp


def _group_ranks(sorted_groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a sorted group-id array: (rank within group, group start per row, group size per row)."""
    n = len(sorted_groups)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    new_group = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]
    starts = np.flatnonzero(new_group)
    sizes = np.diff(np.r_[starts, n])
    start_of = np.repeat(starts, sizes)
    return np.arange(n, dtype=np.int64) - start_of, start_of, np.repeat(sizes, sizes)


def _rows(mask_or_rows: np.ndarray) -> np.ndarray:
    arr = np.asarray(mask_or_rows)
    out = np.flatnonzero(arr) if arr.dtype == bool else np.sort(arr.astype(np.int64))
    return out.astype(np.int64, copy=False)


def _unknown_in_test(data: Interactions, train_rows: np.ndarray, test_rows: np.ndarray) -> int:
    """Test rows whose user or item never occurs in the training rows."""
    seen_u = np.bincount(data.user[train_rows], minlength=data.n_users) > 0
    seen_i = np.bincount(data.item[train_rows], minlength=data.n_items) > 0
    return int((~seen_u[data.user[test_rows]] | ~seen_i[data.item[test_rows]]).sum())


def _make_split(
    data: Interactions,
    train: np.ndarray,
    test: np.ndarray,
    valid: np.ndarray | None,
    what: str,
    info: dict[str, Any],
) -> Split:
    """Build a :class:`Split` from masks/positions, refusing empty train or test parts."""
    tr, te = _rows(train), _rows(test)
    va = None if valid is None else _rows(valid)
    if len(tr) == 0:
        raise DataError(f"{what}: the training part is empty ({len(data)} interactions)")
    if len(te) == 0:
        raise DataError(f"{what}: the test part is empty ({len(data)} interactions)")
    if va is not None and len(va) == 0:
        raise DataError(f"{what}: the validation part is empty ({len(data)} interactions)")
    full = {
        **info,
        "n_train": len(tr),
        "n_test": len(te),
        "test_unknown_user_or_item": _unknown_in_test(data, tr, te),
        "train_rows": tr,
        "test_rows": te,
    }
    if va is not None:
        full["n_valid"] = len(va)
        full["valid_rows"] = va
    return Split(data.take(tr), data.take(te), None if va is None else data.take(va), full)


def _concat_rows(a: Interactions, b: Interactions) -> Interactions:
    """Rows of ``a`` then ``b`` (same maps, disjoint rows: no duplicate check needed)."""
    ts = None if a.timestamp is None or b.timestamp is None else np.r_[a.timestamp, b.timestamp]
    return Interactions.from_indices(
        np.r_[a.user, b.user], np.r_[a.item, b.item], np.r_[a.value, b.value],
        a.user_map, a.item_map, timestamp=ts,
        context={k: np.concatenate([a.context[k], b.context[k]]) for k in a.context},
        kind=a.kind, rating_scale=a.rating_scale,
    )


def _raw_user(data: Interactions, u: int) -> Any:
    raw = data.user_map.decode([u])[0]
    return raw.item() if isinstance(raw, np.generic) else raw


# row-level splits --------------------------------------------------------------
def random_split(
    data: Interactions, test_fraction: float = 0.2, *, seed: int = 0, valid_fraction: float = 0.0
) -> Split:
    """Hold out random rows: ``perm = default_rng(seed).permutation(n)``.

    ``test = perm[:floor(test_fraction * n)]``, ``valid`` the next
    ``floor(valid_fraction * n)`` positions of ``perm`` (absent when 0), ``train`` the
    rest. With ``seed=0, test_fraction=0.2`` this is PROTOCOLS.md's fixed 80/20.
    ``info["test_unknown_user_or_item"]`` counts test rows whose user or item has
    no training row (a model can only fall back on those).
    """
    _check_nonempty(data, "random_split")
    tf = _check_fraction("test_fraction", test_fraction)
    vf = _check_fraction("valid_fraction", valid_fraction, zero_ok=True)
    if tf + vf >= 1.0:
        raise DataError(f"test_fraction + valid_fraction must be < 1, got {tf} + {vf}")
    n = len(data)
    n_test, n_valid = _count(tf, n), _count(vf, n)
    perm = np.random.default_rng(seed).permutation(n)
    valid = perm[n_test:n_test + n_valid] if vf > 0 else None
    return _make_split(data, perm[n_test + n_valid:], perm[:n_test], valid, "random_split",
                       {"split": "random", "seed": seed, "test_fraction": tf,
                        "valid_fraction": vf})


def kfold(data: Interactions, k: int = 5, *, seed: int = 0, shuffle: bool = True) -> list[Split]:
    """``k`` folds of rows; fold ``i`` is the test part of split ``i``.

    The recipe is Surprise's ``KFold(n_splits=k, random_state=seed)`` exactly:
    ``indices = arange(n)``; ``numpy.random.RandomState(seed).shuffle(indices)`` (when
    ``shuffle``); fold ``i`` is the next contiguous run of ``n // k`` indices, plus
    one for the first ``n % k`` folds. Surprise's published 5-fold tables on
    ML-100K therefore use exactly these test sets.
    """
    _check_nonempty(data, "kfold")
    k = _check_int("k", k, 2)
    n = len(data)
    if k > n:
        raise DataError(f"k = {k} folds need at least {k} interactions, got {n}")
    indices = np.arange(n, dtype=np.int64)
    if shuffle:
        # Legacy RandomState on purpose: it is what Surprise's get_rng(int) returns.
        np.random.RandomState(seed).shuffle(indices)
    sizes = np.full(k, n // k, dtype=np.int64)
    sizes[: n % k] += 1
    bounds = np.r_[0, np.cumsum(sizes)]
    out = []
    for i in range(k):  # one iteration per fold, not per row
        test = indices[bounds[i]:bounds[i + 1]]
        train = np.r_[indices[: bounds[i]], indices[bounds[i + 1]:]]
        out.append(_make_split(data, train, test, None, f"kfold fold {i}",
                               {"split": "kfold", "fold": i, "k": k, "seed": seed,
                                "shuffle": shuffle}))
    return out


def predefined_folds(
    dataset: Dataset, names: Sequence[str] = ("u1", "u2", "u3", "u4", "u5")
) -> list[Split]:
    """The data set's shipped folds (``Dataset.folds``: row positions), as :class:`Split` s.

    Each fold is checked: positions in range and train/test disjoint (a fold file
    that repeats a test row in training would leak).
    """
    data = dataset.interactions
    if isinstance(names, str):
        names = (names,)
    out = []
    for name in names:
        if name not in dataset.folds:
            raise DataError(f"data set {dataset.name!r} has no fold {name!r}; "
                            f"available: {sorted(dataset.folds)}")
        tr, te = (np.asarray(a, dtype=np.int64) for a in dataset.folds[name])
        for part, rows in (("train", tr), ("test", te)):
            if len(rows) and (rows.min() < 0 or rows.max() >= len(data)):
                raise DataError(f"fold {name!r} {part} positions fall outside 0..{len(data) - 1}")
        both = np.intersect1d(tr, te)
        if len(both):
            raise DataError(f"fold {name!r} puts {len(both)} rows in both train and test "
                            f"(e.g. row {int(both[0])})")
        out.append(_make_split(data, tr, te, None, f"fold {name!r}",
                               {"split": "predefined", "fold": name}))
    return out


# per-user splits ---------------------------------------------------------------
def _per_user_test_count(n_u: np.ndarray, fraction: float, min_train: int) -> np.ndarray:
    """``0`` if ``n_u <= min_train`` else ``min(n_u - min_train, max(1, floor(f n_u + 1/2)))``.

    With ``min_train=1`` this is PROTOCOLS.md's top-N rule
    ``0 if n < 2 else min(n - 1, max(1, floor(0.2 n + 0.5)))``.
    """
    want = np.maximum(1, np.floor(fraction * n_u + 0.5).astype(np.int64))
    return np.where(n_u <= min_train, 0, np.minimum(n_u - min_train, want))


def user_holdout(
    data: Interactions, test_fraction: float = 0.2, *, seed: int = 0, min_train: int = 1
) -> Split:
    """Hold out a fraction of *each user's* rows, so every user is seen in training.

    User ``u`` with ``n_u`` rows gives ``n_test = 0`` if ``n_u <= min_train`` else
    ``min(n_u - min_train, max(1, floor(test_fraction * n_u + 0.5)))`` random rows
    to test (at least ``min_train`` stay in train). Rows are chosen by one vector of
    uniform keys from ``default_rng(seed)``, sorted within each user.
    ``info["evaluated_users"]`` is the number of users with a test row.
    """
    _check_nonempty(data, "user_holdout")
    tf = _check_fraction("test_fraction", test_fraction)
    min_train = _check_int("min_train", min_train, 0)
    keys = np.random.default_rng(seed).random(len(data))
    order = np.lexsort((keys, data.user))
    rank, _, size = _group_ranks(data.user[order])
    n_test = _per_user_test_count(size, tf, min_train)
    test = np.zeros(len(data), dtype=bool)
    test[order] = rank < n_test
    if not test.any():
        raise DataError(f"user_holdout: no user has more than min_train={min_train} "
                        "interactions, so the test part would be empty")
    return _make_split(data, ~test, test, None, "user_holdout",
                       {"split": "user_holdout", "seed": seed, "test_fraction": tf,
                        "min_train": min_train,
                        "evaluated_users": len(np.unique(data.user[test]))})


def leave_last_n(
    data: Interactions,
    n: int = 1,
    *,
    valid_n: int = 0,
    min_train: int = 1,
    short_users: ShortUsers = "error",
) -> Split:
    """Each user's last ``n`` events are test, the ``valid_n`` before them validation.

    Events are ordered per user by timestamp, ties broken by row (file) order, so the
    result is deterministic even when a user rated several items in one second.
    Users need ``n + valid_n + min_train`` events; shorter histories raise
    (``short_users="error"``), go entirely to train (``"train"``) or are dropped
    (``"drop"``). ``info["tied_at_cut"]`` counts users whose first test event shares
    its timestamp with the event just before it (the order there comes from the file).
    """
    _check_nonempty(data, "leave_last_n")
    ts = _need_timestamps(data, "leave_last_n")
    n = _check_int("n", n, 1)
    valid_n = _check_int("valid_n", valid_n, 0)
    min_train = _check_int("min_train", min_train, 0)
    if short_users not in ("error", "train", "drop"):
        raise DataError(f"short_users must be 'error', 'train' or 'drop', not {short_users!r}")
    need = n + valid_n + min_train
    order = np.lexsort((np.arange(len(data)), ts, data.user))
    rank, _, size = _group_ranks(data.user[order])
    from_end = size - 1 - rank
    short = size < need
    if short.any() and short_users == "error":
        first = int(np.flatnonzero(short)[0])
        n_short = len(np.unique(data.user[order][short]))
        raise DataError(
            f"leave_last_n: user {_raw_user(data, int(data.user[order][first]))!r} has "
            f"{int(size[first])} interactions but n={n} + valid_n={valid_n} + "
            f"min_train={min_train} = {need} are needed ({n_short} such users); pass "
            "short_users='train' or 'drop', or lower n"
        )
    role = np.zeros(len(data), dtype=np.int8)  # 0 train, 1 valid, 2 test, 3 dropped
    role_sorted = np.where(from_end < n, 2, np.where(from_end < n + valid_n, 1, 0))
    role_sorted = np.where(short, 0 if short_users == "train" else 3, role_sorted)
    role[order] = role_sorted
    # ties: first test event (from_end == n-1) vs the event before it (from_end == n)
    sorted_ts = ts[order]
    first_test = np.flatnonzero((from_end == n - 1) & ~short & (rank > 0))
    tied = int((sorted_ts[first_test] == sorted_ts[first_test - 1]).sum())
    return _make_split(
        data, role == 0, role == 2, (role == 1) if valid_n else None, "leave_last_n",
        {"split": "leave_last_n", "n": n, "valid_n": valid_n, "min_train": min_train,
         "short_users": short_users, "n_short_users": len(np.unique(data.user[order][short])),
         "evaluated_users": len(np.unique(data.user[role == 2])), "tied_at_cut": tied},
    )


def temporal_split(
    data: Interactions,
    *,
    train_fraction: float | None = None,
    new_fraction: float = 0.0,
    test_fraction: float | None = None,
) -> TemporalSplit:
    """One global time cut: the oldest rows pre-train, then ``new``, the newest test.

    Rows are sorted by timestamp, ties in row (file) order (a stable sort), and cut
    at ``floor(train_fraction * n)`` and ``floor((train_fraction + new_fraction) * n)``.
    Give ``train_fraction`` or ``test_fraction`` (the other is the rest; with neither,
    ``test_fraction = 0.2``); if both are given they must sum with ``new_fraction``
    to 1. Every pre-train timestamp is <= every ``new`` timestamp <= every test one.

    ``info``: ``test_returning`` (mask over test rows: the user has an earlier event),
    ``returning_fraction`` (of test rows), ``pretrain_end`` / ``test_start``
    (timestamps at the cuts).
    """
    _check_nonempty(data, "temporal_split")
    ts = _need_timestamps(data, "temporal_split")
    nf = _check_fraction("new_fraction", new_fraction, zero_ok=True)
    if train_fraction is None and test_fraction is None:
        test_fraction = 0.2
    if train_fraction is None:
        test_f = _check_fraction("test_fraction", test_fraction)  # type: ignore[arg-type]
        train_f = 1.0 - nf - test_f
        if train_f <= 0:
            raise DataError(f"new_fraction + test_fraction must be < 1, got {nf} + {test_f}")
    else:
        train_f = _check_fraction("train_fraction", train_fraction)
        if train_f + nf >= 1.0:
            raise DataError(f"train_fraction + new_fraction must be < 1, got {train_f} + {nf}")
        if test_fraction is not None:
            test_f = _check_fraction("test_fraction", test_fraction)
            if not math.isclose(train_f + nf + test_f, 1.0, abs_tol=1e-9):
                raise DataError(f"train_fraction + new_fraction + test_fraction must be 1, got "
                                f"{train_f} + {nf} + {test_f}")
    n = len(data)
    order = np.argsort(ts, kind="stable")
    c1, c2 = _count(train_f, n), _count(train_f + nf, n)
    parts = {"pretrain": np.sort(order[:c1]), "new": np.sort(order[c1:c2]),
             "test": np.sort(order[c2:])}
    for name, rows in parts.items():
        if len(rows) == 0 and (name != "new" or nf > 0):
            raise DataError(f"temporal_split: the {name} slice of {n} interactions is empty; "
                            "use more data or larger fractions")
    before = np.bincount(data.user[order[:c2]], minlength=data.n_users) > 0
    returning = before[data.user[parts["test"]]]
    info: dict[str, Any] = {
        "split": "temporal", "train_fraction": train_f, "new_fraction": nf,
        "n_pretrain": c1, "n_new": c2 - c1, "n_test": n - c2,
        "pretrain_end": int(ts[order[c1 - 1]]), "test_start": int(ts[order[c2]]),
        "test_returning": returning, "returning_fraction": float(returning.mean()),
        "test_unknown_user_or_item": _unknown_in_test(data, order[:c2], parts["test"]),
        **{f"{k}_rows": v for k, v in parts.items()},
    }
    return TemporalSplit(data.take(parts["pretrain"]), data.take(parts["new"]),
                         data.take(parts["test"]), info)


def cold_user_split(
    data: Interactions,
    *,
    cold_fraction: float = 0.2,
    n_support: int = 0,
    seed: int = 0,
    query_start: int | None = None,
    rotation: int = 0,
) -> Split:
    """Simulate new users: cold users keep only ``n_support`` training ratings.

    1. Users with interactions, in ascending index, are permuted by
       ``default_rng(seed).permutation``; with ``n = floor(cold_fraction * U)``, the
       users at positions ``[rotation * n, (rotation + 1) * n)`` are cold (rotation 0:
       the first ``n``), the rest warm (all their rows go to train). Rotations
       ``0, 1, ...`` of one seed have disjoint cold users: several stand-in cold sets
       that together cover up to every user once.
    2. A second, fresh ``default_rng(seed)`` puts each cold user's rows (taken in
       row order) in random order, one ``permutation`` call per cold user in
       ascending user index.
    3. Positions ``< n_support`` are the support (train); positions
       ``>= query_start`` (default ``n_support``) are the query (test); rows in
       between are unused. Fixing ``query_start`` (e.g. 5) keeps the test set
       identical while ``n_support`` varies, which is what a K-shot curve needs.

    ``info``: ``cold_users`` (indices), ``n_cold_users``, ``cold_without_query``.
    """
    _check_nonempty(data, "cold_user_split")
    cf = _check_fraction("cold_fraction", cold_fraction)
    n_support = _check_int("n_support", n_support, 0)
    qs = n_support if query_start is None else _check_int("query_start", query_start, 0)
    rotation = _check_int("rotation", rotation, 0)
    if qs < n_support:
        raise DataError(f"query_start={qs} must be >= n_support={n_support}")
    users = np.unique(data.user)
    n_cold = _count(cf, len(users))
    if n_cold == 0:
        raise DataError(f"cold_fraction={cf} of {len(users)} users selects no cold user")
    if (rotation + 1) * n_cold > len(users):
        raise DataError(f"rotation={rotation} of {n_cold} cold users needs "
                        f"{(rotation + 1) * n_cold} users; the data have {len(users)}")
    order = np.random.default_rng(seed).permutation(len(users))
    cold = np.sort(users[order[rotation * n_cold:(rotation + 1) * n_cold]])
    is_cold = np.zeros(data.n_users, dtype=bool)
    is_cold[cold] = True
    cold_rows = np.flatnonzero(is_cold[data.user])
    cold_rows = cold_rows[np.argsort(data.user[cold_rows], kind="stable")]
    counts = np.bincount(data.user[cold_rows], minlength=data.n_users)[cold]
    rng = np.random.default_rng(seed)
    perms = np.concatenate([rng.permutation(int(c)) for c in counts])  # one call per cold user
    starts = np.repeat(np.r_[0, np.cumsum(counts)[:-1]], counts)
    position = np.full(len(data), -1, dtype=np.int64)  # random rank of each cold row
    position[cold_rows[starts + perms]] = np.arange(len(cold_rows)) - starts
    train = ~is_cold[data.user]
    test = np.zeros(len(data), dtype=bool)
    train[cold_rows] = position[cold_rows] < n_support
    test[cold_rows] = position[cold_rows] >= qs
    return _make_split(data, train, test, None, "cold_user_split",
                       {"split": "cold_user", "seed": seed, "rotation": rotation,
                        "cold_fraction": cf,
                        "n_support": n_support, "query_start": qs, "cold_users": cold,
                        "n_cold_users": n_cold,
                        "cold_without_query": int((counts <= qs).sum())})


def cross_domain_split(
    dataset: Dataset,
    *,
    attribute: str = "genres",
    source_values: Sequence[Any],
    target_values: Sequence[Any],
    both: BothPolicy = "source",
) -> CrossDomain:
    """Split items into a source and a target domain by a (multi-valued) item attribute.

    Source items have any of ``source_values``; target items have any of
    ``target_values``. An item with values of both groups goes to the source
    (``both="source"``, PROTOCOLS.md's rule), the target (``"target"``) or is left
    out (``"drop"``). Items with neither, or without a feature row, are left out.
    The attribute column of ``dataset.item_features`` (indexed by raw item id) may
    hold lists (genres) or scalars.
    """
    data = dataset.interactions
    _check_nonempty(data, "cross_domain_split")
    feats = dataset.item_features
    if feats is None:
        raise DataError(f"data set {dataset.name!r} has no item features to split domains by")
    if attribute not in feats.columns:
        raise DataError(f"item features of {dataset.name!r} have no column {attribute!r}; "
                        f"available: {list(feats.columns)}")
    if both not in ("source", "target", "drop"):
        raise DataError(f"both must be 'source', 'target' or 'drop', not {both!r}")
    src_vals, tgt_vals = list(source_values), list(target_values)
    if not src_vals or not tgt_vals:
        raise DataError("source_values and target_values must each name at least one value")
    common = set(src_vals) & set(tgt_vals)
    if common:
        raise DataError(f"values {sorted(map(str, common))} are in both source_values and "
                        "target_values")
    if not feats.index.is_unique:
        dup = feats.index[feats.index.duplicated()][0]
        dup = dup.item() if isinstance(dup, np.generic) else dup
        raise DataError(f"item features index repeats item {dup!r}")
    values = pd.Series(feats[attribute].to_numpy(), index=np.arange(len(feats))).explode()
    pos = values.index.to_numpy(dtype=np.int64)
    has_src = np.zeros(len(feats), dtype=bool)
    has_tgt = np.zeros(len(feats), dtype=bool)
    has_src[pos[values.isin(src_vals).to_numpy()]] = True
    has_tgt[pos[values.isin(tgt_vals).to_numpy()]] = True
    idx = data.item_map.encode(feats.index.to_numpy(), missing="negative")
    known = idx >= 0
    if not known.any():
        raise DataError(f"no item-feature row of {dataset.name!r} matches an item id of the "
                        f"interactions (feature ids like {feats.index[0]!r}, item ids like "
                        f"{data.item_map.ids[0]!r}); index the features by raw item id")
    src_item = np.zeros(data.n_items, dtype=bool)
    tgt_item = np.zeros(data.n_items, dtype=bool)
    mixed = has_src & has_tgt
    in_src = has_src & ~mixed if both != "source" else has_src
    in_tgt = has_tgt & ~mixed if both != "target" else has_tgt
    src_item[idx[known]] = in_src[known]
    tgt_item[idx[known]] = in_tgt[known]
    src_rows, tgt_rows = np.flatnonzero(src_item[data.item]), np.flatnonzero(tgt_item[data.item])
    for name, rows in (("source", src_rows), ("target", tgt_rows)):
        if len(rows) == 0:
            vals = src_vals if name == "source" else tgt_vals
            raise DataError(f"cross_domain_split: the {name} domain has no interactions "
                            f"(attribute {attribute!r}, values {vals})")
    rated = data.item_counts() > 0
    info = {
        "split": "cross_domain", "attribute": attribute, "source_values": src_vals,
        "target_values": tgt_vals, "both": both,
        "source_items": np.flatnonzero(src_item & rated),
        "target_items": np.flatnonzero(tgt_item & rated),
        "left_out_items": np.flatnonzero(~src_item & ~tgt_item & rated),
        "n_source": len(src_rows), "n_target": len(tgt_rows),
        "shared_users": len(np.intersect1d(data.user[src_rows], data.user[tgt_rows])),
        "source_rows": src_rows, "target_rows": tgt_rows,
    }
    return CrossDomain(data.take(src_rows), data.take(tgt_rows), info)
