"""DeepFM: the model contract with side features, cold-start scoring, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rectune._errors import DataError
from rectune.data import Interactions
from rectune.models.base import Recommender
from rectune.models.neural import DeepFM
from tests.models.contract import ContractTests, small_ratings

torch.set_num_threads(1)


def side_frames(data: Interactions) -> dict[str, pd.DataFrame]:
    """User (gender, age, occupation) and item (genres list, year) tables for ``data``'s ids."""
    rng = np.random.default_rng(0)
    users = pd.DataFrame({"gender": rng.choice(["F", "M"], data.n_users),
                          "age": rng.integers(15, 70, data.n_users),
                          "occupation": rng.choice(["a", "b", "c"], data.n_users)},
                         index=pd.Index(data.user_map.ids, name="user"))
    genres = ["Action", "Drama", "Comedy", "Horror"]
    items = pd.DataFrame({"genres": [list(rng.choice(genres, rng.integers(1, 3), replace=False))
                                     for _ in range(data.n_items)],
                          "year": rng.integers(1950, 2000, data.n_items)},
                         index=pd.Index(data.item_map.ids, name="item"))
    return {"user": users, "item": items}


class TestDeepFM(ContractTests):
    def make_model(self) -> Recommender:
        return DeepFM(n_factors=8, layers=(16,), epochs=2, batch_size=128, random_state=0)

    def fit_model(self, data: Interactions | None = None) -> Recommender:
        d = data if data is not None else self.make_data()
        return self.make_model().fit(d, features=side_frames(d))


class TestDeepFMExplicitContext(ContractTests):
    def make_model(self) -> Recommender:
        return DeepFM(n_factors=8, layers=(16,), loss="mse", context=True, epochs=2,
                      batch_size=128, random_state=0)

    def fit_model(self, data: Interactions | None = None) -> Recommender:
        d = data if data is not None else self.make_data()
        return self.make_model().fit(d, features=side_frames(d))


def taste_data(n_users: int = 80, n_items: int = 40, seed: int = 0
               ) -> tuple[Interactions, pd.DataFrame]:
    """Users of taste "even" like even items, "odd" users odd ones: the feature decides."""
    rng = np.random.default_rng(seed)
    taste = np.where(np.arange(n_users) % 2 == 0, "even", "odd")
    likes = (np.arange(n_items)[None, :] % 2) == (np.arange(n_users)[:, None] % 2)
    uu, ii = np.nonzero(likes & (rng.random((n_users, n_items)) < 0.5))
    df = pd.DataFrame({"user": uu + 1, "item": ii, "rating": np.ones(len(uu))})
    data = Interactions.from_frame(df, kind="implicit", timestamp=None)
    users = pd.DataFrame({"taste": taste, "age": rng.integers(18, 60, n_users)},
                         index=pd.Index(np.arange(n_users) + 1, name="user"))
    return data, users


def test_cold_users_are_scored_from_their_features() -> None:
    data, users = taste_data()
    m = DeepFM(n_factors=8, layers=(16,), id_dropout=0.5, epochs=25, lr=1e-2, batch_size=64,
               random_state=0).fit(data, features={"user": users})
    cold = pd.DataFrame({"taste": ["even", "odd"], "age": [30, 40]},
                        index=pd.Index([5000, 5001], name="user"))
    ids, scores = m.recommend([5000, 5001], 5, user_features=cold)
    assert (ids[0] % 2 == 0).all() and (ids[1] % 2 == 1).all()
    assert np.all(np.isfinite(scores))
    assert not m.known([5000, 5001], [0, 1]).any()
    # pointwise: each cold user prefers items of its taste
    items = np.arange(40)
    p_even = m.predict(np.full(40, 5000), items, user_features=cold)
    p_odd = m.predict(np.full(40, 5001), items, user_features=cold)
    assert p_even[items % 2 == 0].mean() > p_even[items % 2 == 1].mean()
    assert p_odd[items % 2 == 1].mean() > p_odd[items % 2 == 0].mean()
    # without features a cold user gets one feature-free ranking, the same for everyone
    plain, _ = m.recommend([5000, 5001], 5)
    np.testing.assert_array_equal(plain[0], plain[1])


def test_cold_item_scored_from_features_and_roundtrip(tmp_path: Path) -> None:
    d = small_ratings()
    feats = side_frames(d)
    m = DeepFM(n_factors=8, layers=(16,), epochs=2, random_state=0).fit(
        d, features=feats)
    new_item = pd.DataFrame({"genres": [["Horror"]], "year": [1990]},
                            index=pd.Index([9999], name="item"))
    p1 = m.predict([1], [9999], item_features=new_item)
    p0 = m.predict([1], [9999])
    assert np.isfinite(p1).all() and p1[0] != p0[0]
    m.save(tmp_path / "m")
    m2 = Recommender.load(tmp_path / "m")
    assert isinstance(m2, DeepFM)
    np.testing.assert_array_equal(m2.predict([1], [9999], item_features=new_item), p1)
    cfg = (tmp_path / "m" / "config.json").read_text()
    assert '"FeatureTable"' in cfg and "genres" in cfg  # encoders saved as JSON


def test_dataset_like_features_and_context_at_predict() -> None:
    d = small_ratings()

    class DatasetLike:
        user_features = side_frames(d)["user"]
        item_features = side_frames(d)["item"]

    m = DeepFM(n_factors=8, layers=(16,), context=True, epochs=2, random_state=0).fit(
        d, features=DatasetLike())
    fields = [f[0] for f in m.feature_state_["fields"]]
    assert {"u__gender", "u__age", "i__genres", "c__hour", "c__weekday"} <= set(fields)
    night = m.predict([1, 1], [101, 102], context={"timestamp": 3 * 3600})
    noon = m.predict([1, 1], [101, 102], context={"timestamp": 12 * 3600})
    assert np.isfinite(night).all() and not np.array_equal(night, noon)


def test_bad_inputs_raise() -> None:
    d = small_ratings()
    with pytest.raises(DataError, match="loss"):
        DeepFM(loss="bpr").fit(d)
    with pytest.raises(DataError, match="features"):
        DeepFM(epochs=1).fit(d, features={"users": pd.DataFrame()})
    with pytest.raises(DataError, match="id_dropout"):
        DeepFM(id_dropout=2.0).fit(d)


def test_factorised_catalogue_scores_equal_pairwise_forward() -> None:
    d = small_ratings()
    m = DeepFM(n_factors=8, layers=(16, 8), context=True, epochs=2, random_state=0).fit(
        d, features=side_frames(d))
    users = np.arange(d.n_users)
    block = m._score(users)
    items = np.arange(d.n_items)
    pairs = m._predict(np.repeat(users, d.n_items), np.tile(items, d.n_users))
    np.testing.assert_allclose(block, pairs.reshape(d.n_users, -1), rtol=1e-5, atol=1e-6)
