"""Generic splits: property-based leak checks on small random data, plus edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rectune._errors import DataError
from rectune.data import Dataset, IdMap, Interactions
from rectune.data.split import (
    CrossDomain,
    Split,
    TemporalSplit,
    cold_user_split,
    cross_domain_split,
    kfold,
    leave_last_n,
    predefined_folds,
    random_split,
    temporal_split,
    user_holdout,
)

FAST = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def make_data(seed: int, n_users: int, n_items: int, density: float,
              ts_range: int = 5) -> Interactions:
    """Random unique (user, item) pairs with few distinct timestamps (so ties happen).

    The maps hold two more users and items than ever appear, like a real catalogue.
    """
    rng = np.random.default_rng(seed)
    cells = rng.random((n_users, n_items)) < density
    cells[rng.integers(n_users), rng.integers(n_items)] = True  # never empty
    u, i = np.nonzero(cells)
    order = rng.permutation(len(u))  # file order is not sorted by user
    u, i = u[order], i[order]
    return Interactions.from_indices(
        u, i, rng.integers(1, 6, len(u)).astype(np.float32),
        IdMap(np.arange(n_users + 2) * 10), IdMap(np.arange(n_items + 2) + 100),
        timestamp=rng.integers(0, ts_range, len(u)), rating_scale=(1, 5),
    )


Args = tuple[int, int, int, float]
data_args = st.tuples(st.integers(0, 2**31), st.integers(1, 12), st.integers(1, 15),
                      st.floats(0.1, 0.9))
big_data_args = st.tuples(st.integers(0, 2**31), st.integers(3, 12), st.integers(5, 15),
                          st.floats(0.4, 0.9))


def check_partition(data: Interactions, parts: list[np.ndarray], *, complete: bool) -> None:
    """Parts are pairwise disjoint, sorted, within range; with ``complete`` they cover all rows."""
    allrows = np.concatenate(parts)
    assert len(np.unique(allrows)) == len(allrows), "a row is in two parts"
    for p in parts:
        assert np.all(np.diff(p) > 0), "row order not kept"
    if complete:
        assert np.array_equal(np.sort(allrows), np.arange(len(data)))


def check_rows_match(data: Interactions, part: Interactions, rows: np.ndarray) -> None:
    assert np.array_equal(part.user, data.user[rows])
    assert np.array_equal(part.item, data.item[rows])
    assert part.user_map is data.user_map and part.item_map is data.item_map


# random hold-out and k-fold -------------------------------------------------------
@FAST
@given(data_args, st.floats(0.05, 0.5), st.sampled_from([0.0, 0.1, 0.3]), st.integers(0, 99))
def test_random_split_properties(args: Args, tf: float, vf: float, seed: int) -> None:
    data = make_data(*args)
    try:
        s = random_split(data, tf, seed=seed, valid_fraction=vf)
    except DataError as exc:  # tiny data: some part empty, which must be said
        assert "empty" in str(exc)
        return
    parts = [s.info["train_rows"], s.info["test_rows"]]
    if vf:
        assert s.valid is not None
        parts.append(s.info["valid_rows"])
    else:
        assert s.valid is None
    check_partition(data, parts, complete=True)
    check_rows_match(data, s.train, s.info["train_rows"])
    check_rows_match(data, s.test, s.info["test_rows"])
    assert len(s.test) == int(np.floor(round(tf * len(data), 6)))
    again = random_split(data, tf, seed=seed, valid_fraction=vf)
    assert np.array_equal(again.info["test_rows"], s.info["test_rows"])


def test_random_split_exact_recipe_and_seeds() -> None:
    data = make_data(3, 12, 15, 0.6)
    s = random_split(data, 0.25, seed=7)
    perm = np.random.default_rng(7).permutation(len(data))
    assert np.array_equal(s.info["test_rows"], np.sort(perm[: len(data) // 4]))
    other = random_split(data, 0.25, seed=8)
    assert not np.array_equal(other.info["test_rows"], s.info["test_rows"])
    a, b = user_holdout(data, 0.3, seed=1), user_holdout(data, 0.3, seed=2)
    assert not np.array_equal(a.info["test_rows"], b.info["test_rows"])


def test_split_unpacks_like_a_tuple() -> None:
    s = random_split(make_data(1, 8, 8, 0.7), 0.2)
    train, test = s
    assert train is s.train and test is s.test
    assert isinstance(s, Split)


@FAST
@given(data_args, st.integers(2, 6), st.integers(0, 50), st.booleans())
def test_kfold_partitions_rows_like_surprise(args: Args, k: int, seed: int, shuffle: bool) -> None:
    data = make_data(*args)
    if k > len(data):
        with pytest.raises(DataError, match="folds need at least"):
            kfold(data, k)
        return
    folds = kfold(data, k, seed=seed, shuffle=shuffle)
    assert len(folds) == k
    tests = [f.info["test_rows"] for f in folds]
    check_partition(data, tests, complete=True)
    for f in folds:
        check_partition(data, [f.info["train_rows"], f.info["test_rows"]], complete=True)
    # Surprise: RandomState(seed).shuffle(arange(n)), contiguous folds, first n % k larger
    idx = np.arange(len(data))
    if shuffle:
        np.random.RandomState(seed).shuffle(idx)
    for f, ref in zip(folds, np.array_split(idx, k), strict=True):
        assert np.array_equal(f.info["test_rows"], np.sort(ref))


def test_kfold_rejects_bad_k() -> None:
    data = make_data(0, 5, 5, 0.5)
    for bad in (1, 0, -3):
        with pytest.raises(DataError, match="k must be >= 2"):
            kfold(data, bad)
    with pytest.raises(DataError, match="integer"):
        kfold(data, 2.5)  # type: ignore[arg-type]


def test_predefined_folds_and_leak_check() -> None:
    data = make_data(0, 6, 6, 0.8)
    n = len(data)
    ds = Dataset("toy", data, folds={"a": (np.arange(0, n - 3), np.arange(n - 3, n)),
                                     "bad": (np.arange(0, n - 2), np.arange(n - 3, n))})
    (s,) = predefined_folds(ds, ["a"])
    assert s.info["fold"] == "a" and len(s.test) == 3
    with pytest.raises(DataError, match="in both train and test"):
        predefined_folds(ds, ["bad"])
    with pytest.raises(DataError, match="no fold 'u1'"):
        predefined_folds(ds)


# per-user splits ------------------------------------------------------------------
@FAST
@given(data_args, st.floats(0.1, 0.6), st.integers(0, 3), st.integers(0, 50))
def test_user_holdout_properties(args: Args, tf: float, min_train: int, seed: int) -> None:
    data = make_data(*args)
    counts = data.user_counts()
    if not (counts > min_train).any():
        with pytest.raises(DataError, match="empty"):
            user_holdout(data, tf, seed=seed, min_train=min_train)
        return
    if min_train == 0 and (counts[counts > 0] == 1).all():  # every row would be a test row
        with pytest.raises(DataError, match="training part is empty"):
            user_holdout(data, tf, seed=seed, min_train=min_train)
        return
    s = user_holdout(data, tf, seed=seed, min_train=min_train)
    check_partition(data, [s.info["train_rows"], s.info["test_rows"]], complete=True)
    tr, te = s.train.user_counts(), s.test.user_counts()
    want = np.where(counts <= min_train, 0, np.minimum(
        counts - min_train, np.maximum(1, np.floor(tf * counts + 0.5)).astype(int)))
    assert np.array_equal(te, want)
    assert np.all(tr[counts > 0] >= np.minimum(min_train, counts[counts > 0]))
    again = user_holdout(data, tf, seed=seed, min_train=min_train)
    assert np.array_equal(again.info["test_rows"], s.info["test_rows"])


@FAST
@given(big_data_args, st.integers(1, 3), st.integers(0, 2), st.sampled_from(["train", "drop"]))
def test_leave_last_n_properties(args: Args, n: int, valid_n: int, short: str) -> None:
    data = make_data(*args)
    try:
        s = leave_last_n(data, n, valid_n=valid_n, short_users=short)  # type: ignore[arg-type]
    except DataError as exc:
        assert "empty" in str(exc)
        return
    parts = [s.info["train_rows"], s.info["test_rows"]]
    if valid_n:
        parts.append(s.info["valid_rows"])
    check_partition(data, parts, complete=(short == "train"))
    # reference: per user, order by (timestamp, row); last n test, valid_n before
    rows = np.arange(len(data))
    assert data.timestamp is not None
    order = np.lexsort((rows, data.timestamp, data.user))
    for u in np.unique(data.user):
        hist = order[data.user[order] == u]
        if len(hist) < n + valid_n + 1:
            assert not np.isin(hist, s.info["test_rows"]).any()
            assert np.isin(hist, s.info["train_rows"]).all() == (short == "train")
            continue
        assert set(hist[len(hist) - n:]) <= set(s.info["test_rows"])
        if valid_n:
            assert set(hist[len(hist) - n - valid_n:len(hist) - n]) <= set(s.info["valid_rows"])
        assert set(hist[: len(hist) - n - valid_n]) <= set(s.info["train_rows"])
        # no user sees the future: each test timestamp >= all their train timestamps
        assert data.timestamp[hist[: len(hist) - n]].max() <= data.timestamp[hist[-n:]].min()


def test_leave_last_n_errors_and_ties() -> None:
    data = Interactions.from_frame(pd.DataFrame({
        "user": [1, 1, 1, 2, 2], "item": [5, 6, 7, 5, 6], "rating": [1, 2, 3, 4, 5],
        "timestamp": [10, 30, 30, 5, 6]}))
    with pytest.raises(DataError, match=r"user 2 has 2 interactions .* 3 are needed"):
        leave_last_n(data, 1, valid_n=1)
    s = leave_last_n(data, 1, valid_n=1, short_users="drop")
    # user 1: items 6 and 7 share t=30; file order puts item 7 last -> test
    assert s.test.item_map.decode(s.test.item).tolist() == [7]
    assert s.valid is not None and s.valid.item_map.decode(s.valid.item).tolist() == [6]
    assert s.info["tied_at_cut"] == 1 and s.info["n_short_users"] == 1
    with pytest.raises(DataError, match="no timestamps"):
        leave_last_n(Interactions.from_frame(
            pd.DataFrame({"user": [1], "item": [2], "rating": [3]}), timestamp=None))
    with pytest.raises(DataError, match="n must be >= 1"):
        leave_last_n(data, 0)


# temporal -------------------------------------------------------------------------
@FAST
@given(data_args, st.floats(0.3, 0.7), st.sampled_from([0.0, 0.1, 0.2]))
def test_temporal_split_properties(args: Args, train_f: float, new_f: float) -> None:
    data = make_data(*args, ts_range=8)
    try:
        s = temporal_split(data, train_fraction=train_f, new_fraction=new_f)
    except DataError as exc:
        assert "empty" in str(exc)
        return
    assert isinstance(s, TemporalSplit)
    pre, new, test = s
    parts = [s.info[f"{k}_rows"] for k in ("pretrain", "new", "test")]
    check_partition(data, parts, complete=True)
    assert pre.timestamp is not None and test.timestamp is not None
    assert pre.timestamp.max() <= test.timestamp.min()
    if len(new):
        assert new.timestamp is not None
        assert pre.timestamp.max() <= new.timestamp.min() <= new.timestamp.max()
        assert new.timestamp.max() <= test.timestamp.min()
    # ties across a cut are resolved in file order: later-sorted rows are later rows
    assert data.timestamp is not None
    order = np.argsort(data.timestamp, kind="stable")
    c1 = int(np.floor(round(train_f * len(data), 6)))
    assert np.array_equal(parts[0], np.sort(order[:c1]))
    seen = set(np.concatenate([pre.user, new.user]).tolist())
    assert s.info["test_returning"].tolist() == [u in seen for u in test.user.tolist()]
    merged = s.to_split()
    check_partition(data, [merged.info["train_rows"], merged.info["test_rows"]], complete=True)
    assert len(merged.train) == len(pre) + len(new)


def test_temporal_split_fraction_rules() -> None:
    data = make_data(2, 10, 10, 0.8, ts_range=1000)
    s = temporal_split(data)  # default: newest 20% test
    assert s.info["n_test"] == len(data) - int(np.floor(round(0.8 * len(data), 6)))
    assert len(s.new) == 0
    with pytest.raises(DataError, match="no 'new' slice"):
        s.to_split(new_as="valid")
    s2 = temporal_split(data, new_fraction=0.1, test_fraction=0.2)
    assert s2.info["train_fraction"] == pytest.approx(0.7)
    with pytest.raises(DataError, match="must be 1"):
        temporal_split(data, train_fraction=0.5, test_fraction=0.2)
    with pytest.raises(DataError, match=r"train_fraction must be in \(0, 1\)"):
        temporal_split(data, train_fraction=1.5)
    with pytest.raises(DataError, match="must be < 1"):
        temporal_split(data, train_fraction=0.7, new_fraction=0.4)
    v = temporal_split(data, train_fraction=0.6, new_fraction=0.2).to_split(new_as="valid")
    assert v.valid is not None and len(v.valid) > 0


# cold users -----------------------------------------------------------------------
@FAST
@given(big_data_args, st.floats(0.2, 0.8), st.integers(0, 4), st.integers(0, 50))
def test_cold_user_split_properties(args: Args, cf: float, k: int, seed: int) -> None:
    data = make_data(*args)
    try:
        s = cold_user_split(data, cold_fraction=cf, n_support=k, seed=seed, query_start=4)
    except DataError as exc:
        assert "empty" in str(exc) or "no cold user" in str(exc)
        return
    check_partition(data, [s.info["train_rows"], s.info["test_rows"]], complete=False)
    cold = s.info["cold_users"]
    is_cold = np.isin(np.arange(data.n_users), cold)
    tr_counts = s.train.user_counts()
    counts = data.user_counts()
    assert np.all(tr_counts[cold] == np.minimum(k, counts[cold]))  # support of K
    assert np.array_equal(tr_counts[~is_cold], counts[~is_cold])  # warm users keep all
    assert is_cold[s.test.user].all()  # only cold users are tested
    assert np.array_equal(s.test.user_counts()[cold], np.maximum(counts[cold] - 4, 0))
    # the query set does not depend on K
    other = cold_user_split(data, cold_fraction=cf, n_support=(k + 1) % 5, seed=seed,
                            query_start=4)
    assert np.array_equal(other.info["test_rows"], s.info["test_rows"])


def test_cold_user_split_errors() -> None:
    data = make_data(0, 10, 12, 0.7)
    with pytest.raises(DataError, match="query_start=1 must be >= n_support=3"):
        cold_user_split(data, n_support=3, query_start=1)
    with pytest.raises(DataError, match="selects no cold user"):
        cold_user_split(data, cold_fraction=0.01)
    with pytest.raises(DataError, match=r"cold_fraction must be in \(0, 1\)"):
        cold_user_split(data, cold_fraction=1.0)
    a = cold_user_split(data, seed=1, n_support=1)
    b = cold_user_split(data, seed=2, n_support=1)
    assert not np.array_equal(a.info["test_rows"], b.info["test_rows"])


# cross-domain ---------------------------------------------------------------------
VOCAB = ["a", "b", "c", "x", "y", "z"]


def make_dataset(seed: int, data: Interactions) -> Dataset:
    rng = np.random.default_rng(seed)
    ids = data.item_map.ids[:-1]  # the last catalogue item has no feature row
    genres = [list(rng.choice(VOCAB, rng.integers(0, 3), replace=False)) for _ in ids]
    return Dataset("toy", data, item_features=pd.DataFrame({"genres": genres}, index=ids))


@FAST
@given(big_data_args, st.sampled_from(["source", "target", "drop"]))
def test_cross_domain_properties(args: Args, both: str) -> None:
    data = make_data(*args)
    ds = make_dataset(args[0], data)
    try:
        cd = cross_domain_split(ds, source_values=["a", "b"], target_values=["x", "y"],
                                both=both)  # type: ignore[arg-type]
    except DataError as exc:
        assert "has no interactions" in str(exc)
        return
    assert isinstance(cd, CrossDomain)
    src, tgt = cd
    check_partition(data, [cd.info["source_rows"], cd.info["target_rows"]], complete=False)
    assert not set(src.item.tolist()) & set(tgt.item.tolist())  # no item in both domains
    assert src.user_map is tgt.user_map is data.user_map
    g = ds.item_features["genres"]  # type: ignore[index]
    raw = data.item_map.ids
    has = {k: {i for i in raw if i in g.index and set(g[i]) & set(vals)}
           for k, vals in (("s", ["a", "b"]), ("t", ["x", "y"]))}
    src_items, tgt_items = set(raw[src.item]), set(raw[tgt.item])
    assert src_items <= has["s"] and tgt_items <= has["t"]
    mixed = has["s"] & has["t"]
    if both != "source":
        assert not src_items & mixed
    if both != "target":
        assert not tgt_items & mixed
    rated = set(raw[data.item])
    expect_src = (has["s"] - (mixed if both != "source" else set())) & rated
    assert src_items == expect_src
    left = set(raw[cd.info["left_out_items"]])
    assert left | src_items | tgt_items == rated


def test_cross_domain_errors() -> None:
    data = make_data(0, 6, 8, 0.8)
    with pytest.raises(DataError, match="no item features"):
        cross_domain_split(Dataset("x", data), source_values=["a"], target_values=["x"])
    ds = make_dataset(0, data)
    with pytest.raises(DataError, match="no column 'tags'"):
        cross_domain_split(ds, attribute="tags", source_values=["a"], target_values=["x"])
    with pytest.raises(DataError, match="in both source_values and target_values"):
        cross_domain_split(ds, source_values=["a"], target_values=["a", "x"])
    feats = pd.DataFrame({"genres": [["a"], ["x", "a"], []]}, index=data.item_map.ids[:3])
    with pytest.raises(DataError, match="target domain has no interactions"):
        cross_domain_split(Dataset("t", data, item_features=feats), source_values=["a"],
                           target_values=["x"])  # item 101 has both: it goes to the source
    strs = pd.DataFrame({"genres": [["a"], ["x"]]}, index=["100", "101"])
    with pytest.raises(DataError, match="index the features by raw item id"):
        cross_domain_split(Dataset("t", data, item_features=strs), source_values=["a"],
                           target_values=["x"])
    dup = pd.DataFrame({"genres": [["a"], ["x"]]}, index=[100, 100])
    with pytest.raises(DataError, match="repeats item 100"):
        cross_domain_split(Dataset("t", data, item_features=dup), source_values=["a"],
                           target_values=["x"])


# validation -----------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan"), "x"])
def test_bad_fractions_are_data_errors(bad: object) -> None:
    data = make_data(0, 5, 5, 0.8)
    with pytest.raises(DataError, match="test_fraction must be"):
        random_split(data, bad)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="test_fraction must be"):
        user_holdout(data, bad)  # type: ignore[arg-type]


def test_empty_results_and_inputs_are_refused() -> None:
    one = make_data(0, 1, 1, 1.0)  # a single interaction
    with pytest.raises(DataError, match="test part is empty"):
        random_split(one, 0.2)
    with pytest.raises(DataError, match="test_fraction \\+ valid_fraction"):
        random_split(make_data(0, 5, 5, 0.8), 0.5, valid_fraction=0.5)
    empty = one.take(np.zeros(0, dtype=np.int64))
    with pytest.raises(DataError, match="data set is empty"):
        kfold(empty)
