"""Parameter groups by name: matching patterns, growing tables, counting what trains.

DESIGN.md's naming rule makes a pattern mean the same thing in every family:
``user_*`` are tables with one row per user, ``item_*`` one row per item, the
rest (``global_bias``, ``mlp.*``, ``head.*``) are shared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Literal

import numpy as np

from rectune._errors import RectuneError

Axis = Literal["user", "item"] | None


def axis_of(name: str) -> Axis:
    """Which id axis a group's first dimension follows (by DESIGN.md's prefix rule)."""
    if name.startswith("user_"):
        return "user"
    if name.startswith("item_"):
        return "item"
    return None


def matching(names: Iterable[str], patterns: Iterable[str] | None) -> set[str]:
    """Names matched by any fnmatch pattern; ``None`` matches all."""
    names = list(names)
    if patterns is None:
        return set(names)
    pats = list(patterns)
    return {n for n in names if any(fnmatchcase(n, p) for p in pats)}


def check_patterns(names: Iterable[str], patterns: Iterable[str] | None, what: str) -> None:
    """Refuse a pattern that matches no group: a typo must not silently do nothing."""
    if patterns is None:
        return
    names = list(names)
    for p in patterns:
        if not any(fnmatchcase(n, p) for n in names):
            raise RectuneError(f"{what} pattern {p!r} matches no parameter group; "
                               f"groups: {', '.join(sorted(names))}")


def grow(table: np.ndarray, n_rows: int, policy: str, *,
         from_features: np.ndarray | None = None) -> np.ndarray:
    """Append rows to ``table`` until it has ``n_rows`` rows, initialised by ``policy``.

    ``zero``: zeros; ``mean``: the mean of existing rows (for factors a mean
    user/item; for biases the mean bias); ``features``: rows given in
    ``from_features`` (computed by a learned projection of side features).
    """
    n_old = table.shape[0]
    if n_rows < n_old:
        raise RectuneError(f"cannot shrink a table from {n_old} to {n_rows} rows")
    if n_rows == n_old:
        return table.copy()
    extra_shape = (n_rows - n_old, *table.shape[1:])
    if policy == "zero" or n_old == 0:
        extra = np.zeros(extra_shape, dtype=table.dtype)
    elif policy == "mean":
        extra = np.broadcast_to(table.mean(axis=0), extra_shape).astype(table.dtype)
    elif policy == "features":
        if from_features is None or from_features.shape != extra_shape:
            raise RectuneError("new_rows='features' needs side features for every new row")
        extra = from_features.astype(table.dtype)
    else:
        raise RectuneError(f"unknown new-row policy {policy!r}")
    return np.concatenate([table, extra], axis=0)


def count_parameters(params: Mapping[str, np.ndarray], frozen: set[str]) -> tuple[int, int]:
    """(trainable, total) scalar counts."""
    total = sum(int(np.asarray(v).size) for v in params.values())
    trainable = sum(int(np.asarray(v).size) for k, v in params.items() if k not in frozen)
    return trainable, total


def trainable_summary(params: Mapping[str, np.ndarray], frozen: set[str]) -> str:
    """peft-style one-liner: trainable params, all params and the trainable share."""
    trainable, total = count_parameters(params, frozen)
    share = 100.0 * trainable / total if total else 0.0
    return f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {share:.4f}"
