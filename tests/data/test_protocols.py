"""Named protocol presets: the exact figures of PROTOCOLS.md on MovieLens 100K.

The real-data tests build the interactions straight from ``u.data`` (file order)
so they do not depend on the loader; each recipe is also checked against a plain,
loop-per-user reference written from the PROTOCOLS.md text.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rectune._errors import DataError
from rectune.data import Dataset, IdMap, Interactions
from rectune.data.protocols import (
    PRESETS,
    ml100k_5fold,
    ml100k_cold,
    ml100k_fixed_8020,
    ml100k_last_one,
    ml100k_temporal,
    ml100k_user_8020,
    ml100k_xdomain,
    temporal_validation_slice,
    validation_slice,
)
from rectune.data.split import Split


@pytest.fixture(scope="module")
def ml_frame(ml100k_dir: Path) -> pd.DataFrame:
    return pd.read_csv(ml100k_dir / "u.data", sep="\t",
                       names=["user", "item", "rating", "timestamp"])


@pytest.fixture(scope="module")
def ml(ml_frame: pd.DataFrame) -> Interactions:
    return Interactions.from_frame(ml_frame, rating_scale=(1, 5))


@pytest.fixture(scope="module")
def ml_dataset(ml100k_dir: Path, ml: Interactions) -> Dataset:
    genres = [line.split("|")[0] for line in
              (ml100k_dir / "u.genre").read_text(encoding="latin-1").splitlines() if line]
    items = pd.read_csv(ml100k_dir / "u.item", sep="|", encoding="latin-1", header=None)
    flags = items.iloc[:, -19:].to_numpy().astype(bool)
    names = np.array(genres)
    feats = pd.DataFrame({"genres": [names[row].tolist() for row in flags]},
                         index=pd.Index(items[0].to_numpy(), name="item"))
    return Dataset("ml-100k", ml, item_features=feats)


def raw_rows(data: Interactions, part: Interactions) -> set[tuple[int, int]]:
    return set(zip(data.user_map.decode(part.user).tolist(),
                   data.item_map.decode(part.item).tolist(), strict=True))


# ML-100K figures ------------------------------------------------------------------
@pytest.mark.realdata
def test_fixed_8020(ml: Interactions) -> None:
    s = ml100k_fixed_8020(ml)
    perm = np.random.default_rng(0).permutation(100_000)
    assert np.array_equal(s.info["test_rows"], np.sort(perm[:20000]))
    assert len(s.test) == 20000 and len(s.train) == 80000
    assert s.info["test_unknown_user_or_item"] == 40
    assert s.info["protocol"] == "ml100k_fixed_8020"


@pytest.mark.realdata
def test_5fold_is_surprise_kfold(ml: Interactions) -> None:
    folds = ml100k_5fold(ml)
    idx = np.arange(100_000)
    np.random.RandomState(0).shuffle(idx)  # Surprise get_rng(0).shuffle(indices)
    for i, f in enumerate(folds):
        assert np.array_equal(f.info["test_rows"], np.sort(idx[i * 20000:(i + 1) * 20000]))
        assert len(f.train) == 80000


def reference_user_8020(df: pd.DataFrame) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """PROTOCOLS.md's text, literally: one rng, one call per user in ascending user index."""
    pos = df[df.rating >= 4]
    rng = np.random.default_rng(0)
    train, test = set(), set()
    for _, g in pos.groupby("user", sort=True):
        uid = int(g["user"].to_numpy()[0])
        items_u = np.sort(g.item.to_numpy())
        n = len(items_u)
        perm = rng.permutation(n)
        n_test = 0 if n < 2 else min(n - 1, max(1, math.floor(0.2 * n + 0.5)))
        test |= {(uid, int(i)) for i in items_u[perm[:n_test]]}
        train |= {(uid, int(i)) for i in items_u[perm[n_test:]]}
    return train, test


@pytest.mark.realdata
def test_user_8020(ml: Interactions, ml_frame: pd.DataFrame) -> None:
    s = ml100k_user_8020(ml)
    assert s.train.kind == s.test.kind == "implicit"
    assert s.train.n_items == s.test.n_items == 1682  # the full catalogue
    assert s.info["evaluated_users"] == 942 == len(np.unique(s.test.user))
    assert (s.train.value == 1).all()
    ref_train, ref_test = reference_user_8020(ml_frame)
    assert raw_rows(ml, s.test) == ref_test
    assert raw_rows(ml, s.train) == ref_train
    assert len(s.train) + len(s.test) == int((ml_frame.rating >= 4).sum())


@pytest.mark.realdata
def test_temporal(ml: Interactions) -> None:
    s = ml100k_temporal(ml)
    pre, new, test = s
    assert (len(pre), len(new), len(test)) == (70000, 15000, 15000)
    assert pre.timestamp.max() <= new.timestamp.min()  # type: ignore[union-attr]
    assert new.timestamp.max() <= test.timestamp.min()  # type: ignore[union-attr]
    non_returning = 1 - s.info["returning_fraction"]
    assert non_returning == pytest.approx(0.83, abs=0.005)
    assert s.info["test_returning"].sum() == 2514  # 15,000 x (1 - 0.8324)


@pytest.mark.realdata
def test_xdomain(ml_dataset: Dataset) -> None:
    x = ml100k_xdomain(ml_dataset)
    assert len(x.info["target_items"]) == 350
    assert x.info["n_target"] == 25337
    assert len(x.info["left_out_items"]) == 129
    assert len(x.target_test) == 5067 and len(x.target_train) == 25337 - 5067
    assert not set(x.source.item.tolist()) & set(x.target_train.item.tolist())
    assert x.source.user_map is x.target_test.user_map
    # test set fixed by seed 0 whatever the subset seed; subsets nested per seed
    small = ml100k_xdomain(ml_dataset, target_fraction=0.1, seed=3)
    half = ml100k_xdomain(ml_dataset, target_fraction=0.5, seed=3)
    other = ml100k_xdomain(ml_dataset, target_fraction=0.5, seed=4)
    assert np.array_equal(small.info["target_test_rows"], x.info["target_test_rows"])
    assert len(small.target_train) == math.floor(0.1 * 20270)
    assert set(small.info["target_train_rows"]) < set(half.info["target_train_rows"])
    assert not np.array_equal(half.info["target_train_rows"], other.info["target_train_rows"])
    assert not set(half.info["target_train_rows"]) & set(x.info["target_test_rows"])
    with pytest.raises(DataError, match="target_fraction"):
        ml100k_xdomain(ml_dataset, target_fraction=0.0)


@pytest.mark.realdata
def test_cold(ml: Interactions, ml_frame: pd.DataFrame) -> None:
    cold = np.sort(np.random.default_rng(0).permutation(943)[:188])
    splits = {k: ml100k_cold(ml, k) for k in (0, 1, 3, 5)}
    # reference: one fresh default_rng(0), one permutation per cold user (ascending index),
    # over that user's ratings in file order
    rng = np.random.default_rng(0)
    users = ml_frame.user.to_numpy()
    raw_cold = ml.user_map.decode(cold)
    ordered = {int(u): np.flatnonzero(users == u)[rng.permutation(int((users == u).sum()))]
               for u in raw_cold}
    query = np.sort(np.concatenate([rows[5:] for rows in ordered.values()]))
    for k, s in splits.items():
        assert s.info["n_cold_users"] == 188
        assert np.array_equal(s.info["cold_users"], cold)
        assert len(s.test) == 17087
        assert np.array_equal(s.info["test_rows"], query)  # the same ratings for every K
        support = np.sort(np.concatenate([rows[:k] for rows in ordered.values()]))
        cold_train = s.info["train_rows"][np.isin(users[s.info["train_rows"]], raw_cold)]
        assert np.array_equal(cold_train, support)
        assert len(s.train) == 100000 - 18027 + 188 * k
    with pytest.raises(DataError, match=r"k must be an integer in 0\.\.5"):
        ml100k_cold(ml, 6)


@pytest.mark.realdata
def test_last_one(ml: Interactions, ml_frame: pd.DataFrame) -> None:
    s = ml100k_last_one(ml)
    assert s.valid is not None
    assert len(s.test) == len(s.valid) == 943
    assert s.info["tied_at_cut"] == 415
    ranked = ml_frame.reset_index().sort_values(["user", "timestamp", "index"])
    last = ranked.groupby("user").tail(1)["index"].to_numpy()
    before = ranked.groupby("user").nth(-2)["index"].to_numpy()
    assert np.array_equal(s.info["test_rows"], np.sort(last))
    assert np.array_equal(s.info["valid_rows"], np.sort(before))


@pytest.mark.realdata
def test_validation_slices(ml: Interactions) -> None:
    train = ml100k_fixed_8020(ml).train
    fit, valid = validation_slice(train)
    assert len(valid) == 8000 and len(fit) == 72000
    new = ml100k_temporal(ml).new
    fit_t, valid_t = temporal_validation_slice(new)
    assert len(valid_t) == 1500
    assert fit_t.timestamp.max() <= valid_t.timestamp.min()  # type: ignore[union-attr]


# no real data needed --------------------------------------------------------------
def small() -> Interactions:
    rng = np.random.default_rng(5)
    u, i = np.nonzero(rng.random((30, 20)) < 0.5)
    return Interactions.from_indices(u, i, rng.integers(1, 6, len(u)).astype(np.float32),
                                     IdMap(np.arange(30)), IdMap(np.arange(20)),
                                     timestamp=rng.integers(0, 50, len(u)))


def test_validation_slice_recipe() -> None:
    data = small()
    s = validation_slice(data)
    perm = np.random.default_rng(1).permutation(len(data))
    assert np.array_equal(s.info["test_rows"], np.sort(perm[: len(data) // 10]))
    assert isinstance(s, Split) and s.info["role"] == "validation"
    t = temporal_validation_slice(data, 0.2)
    order = np.argsort(data.timestamp, kind="stable")  # type: ignore[arg-type]
    cut = math.floor(round(0.8 * len(data), 6))
    assert np.array_equal(t.info["test_rows"], np.sort(order[cut:]))


def test_user_8020_needs_positives_and_presets_registry() -> None:
    data = small()
    low = Interactions.from_indices(data.user, data.item, np.full(len(data), 2.0),
                                    data.user_map, data.item_map)
    with pytest.raises(DataError, match="no rating >= 4"):
        ml100k_user_8020(low)
    s = ml100k_user_8020(data)
    assert s.train.n_items == 20 and s.info["evaluated_users"] > 0
    assert set(PRESETS) >= {"ml100k_fixed_8020", "ml100k_5fold", "ml100k_user_8020",
                            "ml100k_temporal", "ml100k_xdomain", "ml100k_cold",
                            "ml100k_last_one", "validation_slice", "temporal_validation_slice"}
    assert all(callable(f) for f in PRESETS.values())
    assert PRESETS["ml100k_cold"] is ml100k_cold
