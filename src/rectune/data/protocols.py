"""Named evaluation protocols: the exact splits behind the figures in PROTOCOLS.md.

A figure "measured here" on MovieLens 100K names one of these presets, so ours and
the peers' numbers are comparable. Each preset reproduces its recipe to the rng
call: which generator, created when, called in which order. They assume the
interactions were built from ``u.data`` **in file order** with ids mapped in
ascending numeric order (``Interactions.from_frame`` does that); row positions
then equal file lines, and the figures quoted in the docstrings hold.

Where PROTOCOLS.md leaves a detail open, the docstring states the reading taken.
Some presets loop once per *user*, never per row: their recipe calls the
generator once per user, and the stream cannot be reproduced otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from rectune._errors import DataError
from rectune.data.dataset import Dataset
from rectune.data.interactions import Interactions
from rectune.data.split import (
    CrossDomain,
    Split,
    TemporalSplit,
    _count,
    _group_ranks,
    _make_split,
    _need_timestamps,
    _per_user_test_count,
    cold_user_split,
    cross_domain_split,
    kfold,
    leave_last_n,
    random_split,
    temporal_split,
)

__all__ = [
    "ML100K_SOURCE_GENRES",
    "ML100K_TARGET_GENRES",
    "PRESETS",
    "XDomainSplit",
    "ml100k_5fold",
    "ml100k_cold",
    "ml100k_fixed_8020",
    "ml100k_last_one",
    "ml100k_temporal",
    "ml100k_user_8020",
    "ml100k_xdomain",
    "temporal_validation_slice",
    "validation_slice",
]

ML100K_SOURCE_GENRES: tuple[str, ...] = ("Drama", "Romance", "Comedy")
ML100K_TARGET_GENRES: tuple[str, ...] = ("Action", "Sci-Fi", "Thriller", "Adventure", "Horror")


@dataclass(frozen=True, eq=False)
class XDomainSplit:
    """A transfer task: pre-train on ``source``, fine-tune on ``target_train``, test on
    ``target_test``. All three share the data set's id maps; unpacks in that order.
    """

    source: Interactions
    target_train: Interactions
    target_test: Interactions
    info: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Interactions]:
        yield self.source
        yield self.target_train
        yield self.target_test


T = TypeVar("T")


def _from_dataset(fn: Callable[..., T]) -> Callable[..., T]:
    """Let a preset take a :class:`Dataset` as well as its ``Interactions``."""

    @functools.wraps(fn)
    def wrapper(data: Interactions | Dataset, *args: Any, **kwargs: Any) -> T:
        return fn(data.interactions if isinstance(data, Dataset) else data, *args, **kwargs)

    return wrapper


def _tag(split: Split, protocol: str) -> Split:
    split.info["protocol"] = protocol
    return split


@_from_dataset
def ml100k_fixed_8020(data: Interactions) -> Split:
    """Fixed 80/20 of rows: ``perm = default_rng(0).permutation(n)``, ``test = perm[:20000]``.

    On ML-100K: 20,000 test rows, 40 of them with a user or item absent from train
    (``info["test_unknown_user_or_item"]``). Metrics: RMSE/MAE over all test rows.
    """
    return _tag(random_split(data, 0.2, seed=0), "ml100k_fixed_8020")


@_from_dataset
def ml100k_5fold(data: Interactions) -> list[Split]:
    """Surprise's ``KFold(n_splits=5, random_state=0)`` folds, reproduced exactly.

    Surprise's ``get_rng(0)`` is ``numpy.random.RandomState(0)``; it shuffles
    ``arange(n)`` in place and cuts contiguous folds of ``n // 5`` rows (+1 for the
    first ``n % 5``), which is what :func:`~rectune.data.split.kfold` does. These are
    the folds of Surprise's published table (SVD RMSE 0.9344 ± 0.0064), not the
    shipped ``u1``..``u5`` files (see :func:`~rectune.data.split.predefined_folds`).
    """
    folds = kfold(data, 5, seed=0, shuffle=True)
    for f in folds:
        f.info["protocol"] = "ml100k_5fold"
    return folds


@_from_dataset
def ml100k_user_8020(data: Interactions) -> Split:
    """Per-user 80/20 of positives for top-N ranking (implicit train and test).

    Positives are ratings >= 4; lower ratings are dropped from both parts. The maps
    are kept whole, so the catalogue is every item of ``u.data`` (1,682) and lower-
    rated items stay candidates. ``rng = default_rng(0)`` is created once; for each
    user with a positive, in ascending user index, ``items_u`` are the positives in
    ascending item index, ``perm = rng.permutation(len(items_u))``, and
    ``items_u[perm[:n_test]]`` is test with
    ``n_test = 0 if n < 2 else min(n - 1, max(1, floor(0.2 n + 0.5)))``.
    ``info["evaluated_users"]``: users with a test positive (942 on ML-100K).
    """
    pos = data.binarize(4.0)
    if len(pos) == 0:
        raise DataError("ml100k_user_8020: no rating >= 4, so there are no positives")
    order = np.lexsort((pos.item, pos.user))
    _, start_of, size = _group_ranks(pos.user[order])
    counts = np.bincount(pos.user, minlength=pos.n_users)
    counts = counts[counts > 0]  # ascending user index
    rng = np.random.default_rng(0)
    perms = np.concatenate([rng.permutation(int(c)) for c in counts])  # once per user
    # perm[j] names the j-th drawn position of the user's sorted items: rank j
    drawn = np.empty(len(pos), dtype=np.int64)
    drawn[start_of + perms] = np.arange(len(pos)) - start_of
    test = np.zeros(len(pos), dtype=bool)
    test[order] = drawn < _per_user_test_count(size, 0.2, 1)
    split = _make_split(pos, ~test, test, None, "ml100k_user_8020",
                        {"split": "user_holdout", "seed": 0, "test_fraction": 0.2,
                         "positive_threshold": 4.0, "n_items": pos.n_items,
                         "evaluated_users": len(np.unique(pos.user[test]))})
    return _tag(split, "ml100k_user_8020")


@_from_dataset
def ml100k_temporal(data: Interactions) -> TemporalSplit:
    """Oldest 70% pre-train, next 15% new data, newest 15% test (stable sort by time).

    ``info["test_returning"]`` flags test rows whose user rated in the first 85%;
    on ML-100K about 83% of test ratings come from the *other* users
    (``1 - info["returning_fraction"]`` = 0.8324).
    """
    split = temporal_split(data, train_fraction=0.7, new_fraction=0.15)
    split.info["protocol"] = "ml100k_temporal"
    return split


def ml100k_xdomain(
    dataset: Dataset, target_fraction: float = 1.0, seed: int = 0
) -> XDomainSplit:
    """Genre transfer: source = Drama/Romance/Comedy, target = action-like genres only.

    Target = movies with Action, Sci-Fi, Thriller, Adventure or Horror and none of
    the source genres (350 movies, 25,337 ratings on ML-100K); 129 rated movies are
    in neither group and left out. Target test: ``default_rng(0).permutation`` of the
    target rows (file order), the first ``floor(0.2 n)``, the same for every
    ``seed``. Target train: the other rows, in file order, permuted by a fresh
    ``default_rng(seed)``, first ``floor(target_fraction * m)``; for one seed, a
    smaller fraction's subset is a prefix of a larger one's (nested learning curves).
    """
    if not (0.0 < float(target_fraction) <= 1.0):
        raise DataError(f"target_fraction must be in (0, 1], got {target_fraction!r}")
    xd: CrossDomain = cross_domain_split(
        dataset, attribute="genres", source_values=list(ML100K_SOURCE_GENRES),
        target_values=list(ML100K_TARGET_GENRES), both="source",
    )
    return carve_target(dataset, xd, target_fraction, seed, "ml100k_xdomain")


def carve_target(dataset: Dataset, xd: CrossDomain, target_fraction: float, seed: int,
                 protocol: str) -> XDomainSplit:
    """The target carving of :func:`ml100k_xdomain` over any cross-domain split.

    Test: the first ``floor(0.2 n)`` of ``default_rng(0).permutation`` of the target rows
    (file order), the same for every ``seed``; train: the other rows permuted by
    ``default_rng(seed)``, first ``floor(target_fraction * m)`` (nested for one seed).
    """
    if not (0.0 < float(target_fraction) <= 1.0):
        raise DataError(f"target_fraction must be in (0, 1], got {target_fraction!r}")
    target_rows = xd.info["target_rows"]
    n = len(target_rows)
    perm = np.random.default_rng(0).permutation(n)
    n_test = _count(0.2, n)
    test_rows = np.sort(target_rows[perm[:n_test]])
    rest = np.sort(target_rows[perm[n_test:]])
    m = len(rest) if target_fraction >= 1.0 else _count(target_fraction, len(rest))
    if m == 0 or n_test == 0:
        raise DataError(f"{protocol}: target_fraction={target_fraction} of {len(rest)} "
                        "target ratings leaves no training rows")
    train_rows = np.sort(rest[np.random.default_rng(seed).permutation(len(rest))[:m]])
    data = dataset.interactions
    info = {
        **xd.info, "protocol": protocol, "target_fraction": float(target_fraction),
        "seed": seed, "n_target_test": len(test_rows), "n_target_train": m,
        "target_test_rows": test_rows, "target_train_rows": train_rows,
    }
    return XDomainSplit(xd.source, data.take(train_rows), data.take(test_rows), info)


@_from_dataset
def ml100k_cold(data: Interactions, k: int) -> Split:
    """Cold-start users with ``k`` support ratings (``k`` in 0..5; PROTOCOLS.md uses 0,1,3,5).

    Cold users: the first 20% of ``default_rng(0).permutation(943)`` (188 users,
    by user index); the 755 others keep all their ratings in train. Reading taken of
    "each cold user's ratings are put in a random order (``default_rng(0)``)": ONE
    fresh ``default_rng(0)`` is created after the user draw and called once per
    cold user, in ascending user index, on that user's ratings in file order (the
    same convention as :func:`ml100k_user_8020`). The order does not depend on
    ``k``, so the query set — ratings 6 onward — is the same 17,087 ratings for
    every ``k`` (any reading with a ``k``-independent order gives that count, as all
    ML-100K users have >= 20 ratings). Ratings ``k+1..5`` are unused.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k <= 5:
        raise DataError(f"ml100k_cold: k must be an integer in 0..5, got {k!r}")
    split = cold_user_split(data, cold_fraction=0.2, n_support=int(k), seed=0, query_start=5)
    return _tag(split, "ml100k_cold")


@_from_dataset
def ml100k_last_one(data: Interactions) -> Split:
    """Leave-last-one-out: per user by timestamp (ties in file order), the last rating is
    test, the one before it validation, the rest train. On ML-100K, 415 users' last two
    ratings share a timestamp (``info["tied_at_cut"]``).
    """
    return _tag(leave_last_n(data, 1, valid_n=1), "ml100k_last_one")


@_from_dataset
def validation_slice(data: Interactions, fraction: float = 0.1, seed: int = 1) -> Split:
    """A random validation slice of training (or new-data) rows: 10%, seed 1.

    ``perm = default_rng(seed).permutation(len(data))`` over the rows in their
    current order (file order for our splits); the first ``floor(fraction * n)``
    are the slice. Returned as ``Split(train=fit rows, test=validation slice)``, so
    ``fit, valid = validation_slice(train)``. Never take it from test rows.
    """
    split = random_split(data, fraction, seed=seed)
    split.info.update(protocol="validation_slice", role="validation")
    return split


@_from_dataset
def temporal_validation_slice(data: Interactions, fraction: float = 0.1) -> Split:
    """The newest ``fraction`` of ``data`` (stable sort by time) as validation, the temporal
    task's choice: ``fit, valid = temporal_validation_slice(new)``.
    """
    _need_timestamps(data, "temporal_validation_slice")
    ts = temporal_split(data, test_fraction=fraction)
    split = ts.to_split(new_as="train")
    split.info.update(protocol="temporal_validation_slice", role="validation")
    return split


PRESETS: dict[str, Callable[..., Any]] = {
    "ml100k_fixed_8020": ml100k_fixed_8020,
    "ml100k_5fold": ml100k_5fold,
    "ml100k_user_8020": ml100k_user_8020,
    "ml100k_temporal": ml100k_temporal,
    "ml100k_xdomain": ml100k_xdomain,
    "ml100k_cold": ml100k_cold,
    "ml100k_last_one": ml100k_last_one,
    "validation_slice": validation_slice,
    "temporal_validation_slice": temporal_validation_slice,
}
"""Protocol name -> function. Names are the ones figures cite ("measured with ...")."""
