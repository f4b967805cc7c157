"""The synthetic MovieLens-shaped generator: shape, realism, knobs, speed."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from rectune import DataError
from rectune.data.dataset import Dataset
from rectune.data.synthetic import (
    GENRES,
    OCCUPATIONS,
    default_sizes,
    synthetic,
    synthetic_truth,
)

START = int(pd.Timestamp("1997-09-20", tz="UTC").timestamp())


@pytest.fixture(scope="module")
def ml() -> Dataset:
    return synthetic()


def _frame(ds: Dataset) -> pd.DataFrame:
    return ds.interactions.to_frame()


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    """Share of the variance of ``y`` (n, k) explained linearly by ``x``."""
    x = np.column_stack([np.ones(len(x)), x])
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    res = y - x @ beta
    return float(1 - (res**2).sum() / ((y - y.mean(0)) ** 2).sum())


# --- shape -------------------------------------------------------------------------
def test_default_sizes_hit_movielens_anchors() -> None:
    assert default_sizes(100_000) == (943, 1682)
    assert default_sizes(1_000_000) == (6040, 3706)
    assert default_sizes(25_000_000) == (162541, 59047)
    u, i = default_sizes(300_000)
    assert 943 < u < 6040 and 1682 < i < 3706


def test_counts_ids_and_scale(ml: Dataset) -> None:
    it = ml.interactions
    assert len(it) == 100_000
    assert it.shape == (943, 1682)
    assert it.kind == "explicit" and it.rating_scale == (1.0, 5.0)
    assert it.user_map.ids.tolist() == list(range(1, 944))
    assert it.item_map.ids.tolist() == list(range(1, 1683))
    assert it.user_counts().min() >= 20  # like ML-100K
    assert set(np.unique(it.value).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert 3.3 < it.value.mean() < 3.8 and 0.9 < it.value.std() < 1.2
    assert it.timestamp is not None and it.timestamp.dtype == np.int64
    assert it.timestamp.min() >= START and it.timestamp.max() < START + 215 * 86_400


def test_pairs_are_unique_and_rows_grouped_by_user_in_time_order(ml: Dataset) -> None:
    it = ml.interactions
    key = it.user * it.n_items + it.item
    assert len(np.unique(key)) == len(key)
    assert np.all(np.diff(it.user) >= 0)
    same = np.diff(it.user) == 0
    assert it.timestamp is not None and np.all(np.diff(it.timestamp)[same] >= 0)


def test_popularity_is_heavy_tailed(ml: Dataset) -> None:
    counts = np.sort(ml.interactions.item_counts())[::-1]
    top = counts[: len(counts) // 10].sum() / counts.sum()
    assert top > 0.40  # ML-100K: 0.43
    assert (counts < 5).mean() > 0.05  # a long tail of rarely rated movies
    users = ml.interactions.user_counts()
    assert users.max() > 5 * np.median(users)  # heavy-tailed activity


def test_user_and_item_features(ml: Dataset) -> None:
    uf, itf = ml.user_features, ml.item_features
    assert uf is not None and itf is not None
    assert list(uf.columns) == ["age", "gender", "occupation", "zip"]
    assert uf.index.tolist() == list(range(1, 944))
    assert uf["age"].between(7, 73).all() and 28 < uf["age"].mean() < 40
    assert 0.64 < (uf["gender"] == "M").mean() < 0.78
    assert set(uf["occupation"]) <= set(OCCUPATIONS)
    assert uf["occupation"].value_counts().index[0] == "student"
    assert uf["zip"].str.fullmatch(r"\d{5}").all()
    assert list(itf.columns) == ["title", "year", "genres"]
    assert itf.index.tolist() == list(range(1, 1683))
    assert itf["title"].iloc[122] == f"Synthetic movie 123 ({itf['year'].iloc[122]})"
    assert itf["year"].max() <= 1998 and itf["year"].min() >= 1920
    n_genres = itf["genres"].map(len)
    assert n_genres.between(1, 3).all()
    assert {g for gs in itf["genres"] for g in gs} <= set(GENRES)
    share = itf["genres"].explode().value_counts() / len(itf)
    assert share.index[0] == "Drama" and 0.3 < share["Drama"] < 0.55
    assert share.index[1] == "Comedy"


def test_info_is_json_scalars(ml: Dataset) -> None:
    assert ml.synthetic and ml.info["seed"] == 0 and ml.info["n_factors"] == 8
    assert json.loads(json.dumps(ml.info)) == ml.info


# --- determinism -------------------------------------------------------------------
def test_same_arguments_same_data() -> None:
    a, b = synthetic(20_000, seed=5), synthetic(20_000, seed=5)
    for name in ("user", "item", "value", "timestamp"):
        assert np.array_equal(getattr(a.interactions, name), getattr(b.interactions, name))
    pd.testing.assert_frame_equal(a.user_features, b.user_features)
    pd.testing.assert_frame_equal(a.item_features, b.item_features)
    c = synthetic(20_000, seed=6)
    assert not np.array_equal(a.interactions.item, c.interactions.item)


def test_truth_matches_the_data_set() -> None:
    ds = synthetic(20_000, seed=2, second_domain=True)
    truth = synthetic_truth(20_000, seed=2, second_domain=True)
    pd.testing.assert_frame_equal(truth.item_features, ds.item_features)
    assert truth.user_factors.shape == (2, ds.interactions.n_users, 8)
    assert truth.item_factors.shape == (ds.interactions.n_items, 8)
    assert np.isclose(truth.item_popularity.sum(), 1.0)
    with pytest.raises(DataError, match="unknown argument"):
        synthetic_truth(1000, n_factor=3)


# --- knobs -------------------------------------------------------------------------
def test_side_features_carry_signal() -> None:
    def signal(gs: float, ds_: float) -> tuple[float, float]:
        t = synthetic_truth(100_000, genre_signal=gs, demographic_signal=ds_, seed=3)
        itf, uf = t.item_features, t.user_features
        genres = pd.get_dummies(itf["genres"].explode()).groupby(level=0).max()
        xi = np.column_stack([genres.to_numpy(float), itf["year"].to_numpy(float)])
        xu = np.column_stack([pd.get_dummies(uf[["gender", "occupation"]]).to_numpy(float),
                              uf["age"].to_numpy(float)])
        return _r2(xi, t.item_factors), _r2(xu, t.user_factors[0])

    item_r2, user_r2 = signal(0.6, 0.5)
    assert 0.45 < item_r2 < 0.75 and 0.4 < user_r2 < 0.7
    item0, user0 = signal(0.0, 0.0)
    assert item0 < 0.05 and user0 < 0.05


def _genre_shift(ds: Dataset) -> float:
    """Mean |change| of per-genre mean ratings between the early and late half."""
    d = _frame(ds).join(ds.item_features["genres"], on="item").explode("genres")
    early = d["timestamp"] < d["timestamp"].median()
    m = d.groupby([early, "genres"])["rating"].mean().unstack(0)
    return float((m[True] - m[False]).abs().mean())


def test_taste_drift_is_measurable() -> None:
    still, moving = synthetic(seed=2, drift=0.0), synthetic(seed=2, drift=1.5)
    # same pairs and times (separate random streams); only tastes move
    assert np.array_equal(still.interactions.item, moving.interactions.item)
    assert _genre_shift(moving) > 2.5 * _genre_shift(still)


def _domain_corr(c: float, seed: int) -> float:
    ds = synthetic(seed=seed, second_domain=True, domain_correlation=c)
    d = _frame(ds).join(ds.item_features["domain"], on="item")
    means = d.groupby(["user", "domain"])["rating"].mean().unstack().dropna()
    return float(np.corrcoef(means[0], means[1])[0, 1])


@pytest.mark.parametrize("seed", [0, 1])
def test_domain_correlation_knob(seed: int) -> None:
    high, mid, none = (_domain_corr(c, seed) for c in (1.0, 0.5, 0.0))
    assert high > 0.8
    assert abs(none) < 0.15
    assert none + 0.2 < mid < high - 0.2


def test_second_domain_column() -> None:
    ds = synthetic(20_000, second_domain=True, domain_fraction=0.3)
    dom = ds.item_features["domain"]
    assert set(dom.unique()) == {0, 1}
    assert 0.2 < dom.mean() < 0.4
    assert ds.info["second_domain"] is True and ds.info["domain_correlation"] == 1.0
    assert "domain" not in synthetic(2000).item_features.columns


# --- small, dense and odd configurations ------------------------------------------
def test_fully_dense_matrix_uses_every_pair() -> None:
    ds = synthetic(200, n_users=10, n_items=20, seed=1)
    assert ds.interactions.csr().nnz == 200
    assert (ds.interactions.user_counts() == 20).all()


def test_few_ratings_per_user_skip_the_floor() -> None:
    ds = synthetic(300, n_users=30, n_items=50)
    counts = ds.interactions.user_counts()
    assert counts.sum() == 300 and counts.min() >= 1 and counts.max() <= 50


def test_sampler_reaches_every_item_under_extreme_skew() -> None:
    from rectune.data.synthetic import _pairs

    p = np.r_[np.full(5, 0.2 - 1e-9), np.full(95, 5e-9 / 95 * 5)]
    p /= p.sum()
    counts = np.array([100, 60, 3, 0])
    u, i = _pairs(counts, p, np.random.default_rng(0))
    assert np.array_equal(np.bincount(u, minlength=4), counts)
    assert len(np.unique(u * 100 + i)) == len(u)
    assert set(i[u == 0].tolist()) == set(range(100))


def test_other_rating_scales() -> None:
    half = synthetic(5000, rating_scale=(0.5, 5), rating_step=0.5).interactions.value
    assert half.min() >= 0.5 and half.max() <= 5.0
    assert np.all((half * 2) == np.round(half * 2)) and len(np.unique(half)) == 10
    cont = synthetic(5000, rating_step=None).interactions.value
    assert len(np.unique(cont)) > 1000 and cont.min() >= 1 and cont.max() <= 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_ratings": 0}, "n_ratings"),
        ({"n_ratings": 101, "n_users": 10, "n_items": 10}, "exceeds"),
        ({"domain_correlation": 1.5}, "domain_correlation"),
        ({"rating_scale": (5, 1)}, "rating_scale"),
        ({"start": "not a date"}, "start"),
        ({"n_users": 0}, "n_users"),
        ({"seed": -1}, "seed"),
        ({"noise": -0.1}, "noise"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    n = kwargs.pop("n_ratings", 1000)
    with pytest.raises(DataError, match=match):
        synthetic(n, **kwargs)


# --- speed -------------------------------------------------------------------------
def test_one_million_ratings_is_fast() -> None:
    t0 = time.process_time()  # CPU time: robust to a busy test machine
    ds = synthetic(1_000_000, seed=3)
    assert time.process_time() - t0 < 10.0
    it = ds.interactions
    assert len(it) == 1_000_000 and it.shape == (6040, 3706)
    assert it.user_counts().min() >= 20
    assert len(np.unique(it.user * it.n_items + it.item)) == len(it)
