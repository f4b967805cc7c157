"""The evaluator on cases whose answer is known by hand, its leak guard, and the drivers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rectune import DataError
from rectune.data import Interactions
from rectune.data.split import kfold
from rectune.evaluate.evaluator import (
    check_no_leak,
    evaluate_ranking,
    evaluate_ratings,
    item_feature_vectors,
)
from rectune.evaluate.protocols import cold_user, cross_validate, holdout, temporal
from rectune.models import Popularity
from rectune.models.base import FitOptions, Recommender
from tests.models.contract import small_ratings

# (user, item, rating); users 1..4, items 10..14
TRAIN = [(1, 10, 5), (1, 11, 3), (2, 10, 4), (2, 12, 2), (3, 13, 5)]
TEST = [(1, 12, 4), (1, 14, 5), (2, 11, 5), (2, 13, 1), (3, 10, 2)]
# the fixed model's score (= predicted rating) of every (user, item)
SCORES = {
    1: [4.0, 3.0, 3.0, 4.0, 2.0],
    2: [1.0, 2.5, 1.0, 3.0, 1.0],
    3: [6.0, 0.0, 0.0, 0.0, 0.0],
}
ITEMS = [10, 11, 12, 13, 14]


class FixedScores(Recommender):
    """A model whose scores are given: the right answer of every metric is known."""

    def __init__(self, scores: dict[int, list[float]] | None = None) -> None:
        self.scores = scores

    def _fit(self, train: Interactions, features: Any, valid: Interactions | None,
             options: FitOptions) -> None:
        s = np.zeros((train.n_users, train.n_items))
        for u, row in (self.scores or {}).items():
            ui = train.user_map.encode([u])[0]
            s[ui, train.item_map.encode(ITEMS)] = row
        self.table_ = s

    def _predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return self.table_[u, i]

    def _score(self, u: np.ndarray) -> np.ndarray:
        return self.table_[u]


def _split(train: Sequence[tuple[int, int, float]], test: Sequence[tuple[int, int, float]]
           ) -> tuple[Interactions, Interactions]:
    df = pd.DataFrame([*train, *test], columns=["user", "item", "rating"])
    full = Interactions.from_frame(df, timestamp=None, rating_scale=(1, 5))
    n = len(train)
    return full.take(np.arange(n)), full.take(np.arange(n, len(df)))


def test_rmse_mae_known_values_with_clipping() -> None:
    train, test = _split(TRAIN, TEST)
    model = FixedScores(SCORES).fit(train)
    r = evaluate_ratings(model, test, train=train)
    # errors: -1, -3, -2.5, +2, +3 (6.0 clipped to 5 for the rating 2)
    assert r["rmse"] == pytest.approx(math.sqrt((1 + 9 + 6.25 + 4 + 9) / 5))
    assert r["mae"] == pytest.approx((1 + 3 + 2.5 + 2 + 3) / 5)
    assert r["n"] == 5 and r["n_unknown"] == 1  # item 14 has no training rating
    assert r["n_unknown_item"] == 1 and r["n_unknown_user"] == 0
    assert r["clipped_to"] == [1.0, 5.0]
    lo, hi = r["rmse_ci"]
    assert lo <= r["rmse"] <= hi


def test_ndcg_known_value_and_seen_filter() -> None:
    train, test = _split(TRAIN, TEST)
    model = FixedScores(SCORES).fit(train)
    res = evaluate_ranking(model, train, test, k=3, relevance_threshold=4)
    # user 1: candidates 12,13,14 (10, 11 seen) ranked [13, 12, 14]; relevant {12, 14}
    # user 2: candidates 11,13,14 ranked [13, 11, 14]; relevant {11}; user 3: nothing relevant
    u1 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    u2 = 1 / math.log2(3)
    assert list(res.users) == [1, 2]
    np.testing.assert_allclose(res.per_user["ndcg@3"], [u1, u2])
    assert res.metrics["ndcg@3"] == pytest.approx((u1 + u2) / 2)
    assert res.metrics["hit_rate@3"] == 1.0
    assert res.metrics["precision@3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    top = model.item_map_.decode(res.top_items[res.top_items >= 0]).reshape(2, 3)
    np.testing.assert_array_equal(top, [[13, 12, 14], [13, 11, 14]])
    assert res.counts["n_users_unknown"] == 0
    assert res.counts["n_filtered"] == 4  # the training items of users 1 and 2
    assert res.metrics["coverage@3"] == pytest.approx(4 / 5)


def test_no_filter_lets_training_items_back() -> None:
    train, test = _split(TRAIN, TEST)
    model = FixedScores(SCORES).fit(train)
    res = evaluate_ranking(model, train, test, k=1, exclude=None, relevance_threshold=4)
    # without the filter user 1's best item is 10 (score 4.0, ties to the lower index)
    assert model.item_map_.decode(res.top_items[:1, 0])[0] == 10


def test_leak_between_train_and_test_raises() -> None:
    train, _ = _split(TRAIN, TEST)
    test = Interactions.from_frame(  # (1, 10) is also in train
        pd.DataFrame([*TEST, (1, 10, 5)], columns=["user", "item", "rating"]), timestamp=None,
        rating_scale=(1, 5), user_map=train.user_map, item_map=train.item_map)
    with pytest.raises(DataError, match="leak"):
        check_no_leak(train, test)
    model = FixedScores(SCORES).fit(train)
    with pytest.raises(DataError, match="user=1, item=10"):
        evaluate_ranking(model, train, test)
    with pytest.raises(DataError, match="leak"):
        evaluate_ratings(model, test, train=train)


def test_model_trained_on_test_pairs_raises() -> None:
    train, test = _split(TRAIN, TEST)
    both = train.concat(test)
    model = FixedScores(SCORES).fit(both)
    with pytest.raises(DataError, match="trained on 5 test"):
        evaluate_ratings(model, test)
    with pytest.raises(DataError, match="leak"):
        evaluate_ranking(model, train, test)


def test_leak_check_works_across_different_maps() -> None:
    a = Interactions.from_frame(pd.DataFrame({"user": [1, 2], "item": [5, 6], "rating": [1, 2]}),
                                timestamp=None)
    b = Interactions.from_frame(pd.DataFrame({"user": [9, 2], "item": [5, 6], "rating": [1, 2]}),
                                timestamp=None)
    with pytest.raises(DataError, match="user=2, item=6"):
        check_no_leak(a, b)


def test_unknown_users_and_items_are_scored_by_fallback_and_counted() -> None:
    train, test = _split(TRAIN, [*TEST, (4, 12, 5), (1, 99, 5)])  # user 4, item 99 unseen
    model = Popularity().fit(train)
    res = evaluate_ranking(model, train, test, k=2, relevance_threshold=4)
    assert res.counts["n_users_unknown"] == 1
    assert list(res.users) == [1, 2, 4]
    assert not res.known_user[2] and res.known_user[:2].all()
    assert res.counts["n_relevant_unrecommendable"] == 0  # 99 is in the map, never trained
    # the unknown user 4 gets popularity: item 10 (2 training users) first
    assert model.item_map_.decode([res.top_items[2, 0]])[0] == 10
    assert np.isfinite(res.by_group["unknown_users"]["ndcg@2"])
    svd_like = FixedScores(SCORES).fit(train)
    r = evaluate_ratings(svd_like, test)
    assert r["n_unknown_user"] == 1 and r["n_unknown_item"] == 2 and r["n_unknown"] == 3
    assert r["n"] == 7


def test_user_outside_the_models_map_keeps_its_filter() -> None:
    train, test = _split(TRAIN, TEST)
    # a model fitted on other data that lacks user 2 and item 12 entirely
    other = Interactions.from_frame(
        pd.DataFrame({"user": [1, 1, 3, 3], "item": [10, 11, 13, 14], "rating": [5, 4, 4, 5]}),
        timestamp=None)
    model = Popularity().fit(other)
    res = evaluate_ranking(model, train, test, k=4, relevance_threshold=4)
    row = list(res.users).index(2)
    assert not res.known_user[row]
    recs = set(model.item_map_.decode(res.top_items[row][res.top_items[row] >= 0]))
    assert 10 not in recs  # user 2's training item is filtered even though the model lacks them
    assert res.counts["n_relevant_unrecommendable"] == 1  # item 12 (user 1) is not in the model


def test_diversity_from_genres_and_json() -> None:
    train, test = _split(TRAIN, TEST)
    feats = pd.DataFrame({"genres": [["A"], ["A"], ["B"], ["A", "B"], []]}, index=ITEMS)
    vec = item_feature_vectors(feats, train.item_map)
    assert vec is not None and vec.shape == (5, 2)
    model = FixedScores(SCORES).fit(train)
    res = evaluate_ranking(model, train, test, k=[2, 3], item_features=feats,
                           relevance_threshold=4)
    # user 1 top-2 = [13 (A,B), 12 (B)]: cosine 1/sqrt(2) -> distance 1 - 0.7071
    assert res.per_user["diversity@2"][0] == pytest.approx(1 - 1 / math.sqrt(2))
    d = res.to_dict(per_user=True)
    assert d["k"] == [2, 3] and len(d["per_user"]["ndcg@2"]) == 2
    assert set(d["ci"]) >= {"ndcg@2", "novelty@3", "diversity@3"}


def test_bad_inputs_raise() -> None:
    train, test = _split(TRAIN, TEST)
    model = FixedScores(SCORES).fit(train)
    with pytest.raises(DataError):
        evaluate_ranking(model, train, test, k=0)
    with pytest.raises(DataError, match="no relevant"):
        evaluate_ranking(model, train, test, relevance_threshold=6)
    with pytest.raises(DataError, match="ranking-only"):
        evaluate_ratings(Popularity().fit(train), test)


def test_protocol_drivers_run_and_summarise() -> None:
    data = small_ratings()
    cv = cross_validate(Popularity(), kfold(data, 3, seed=0), k=5)
    assert len(cv.folds) == 3 and cv.summary()["ndcg@5"]["n_folds"] == 3
    assert cv.summary()["ndcg@5"]["std"] >= 0
    h = holdout(lambda: FixedScores(), data, test_fraction=0.2, seed=0)
    assert h.folds[0].rating is not None and h.folds[0].ranking is not None
    t = temporal(Popularity(), data, train_fraction=0.6, new_fraction=0.2)
    assert [f.name for f in t.folds] == ["pretrain only", "pretrain+new"]
    c = cold_user(Popularity(), data, ks=(0, 2), cold_fraction=0.25)
    assert [f.name for f in c.folds] == ["K=0", "K=2"]
    assert c.folds[0].n_test == c.folds[1].n_test  # the same query rows for every K
    assert c.folds[0].ranking is not None
    assert c.folds[0].ranking.counts["n_users_unknown"] == c.folds[0].ranking.counts[
        "n_users_evaluated"]  # K = 0: every cold user is unknown
    assert "folds" in cv.to_dict()


@pytest.mark.realdata
def test_ml100k_popularity_matches_the_protocol_figure(ml100k_dir: Any) -> None:
    """PROTOCOLS.md: popularity scores 0.149 NDCG@10 on the per-user 80/20 of positives."""
    from rectune.data.movielens import load_movielens
    from rectune.data.protocols import ml100k_fixed_8020, ml100k_user_8020
    from rectune.data.split import predefined_folds

    ds = load_movielens("ml-100k", path=ml100k_dir)
    split = ml100k_user_8020(ds.interactions)
    res = evaluate_ranking(Popularity().fit(split.train), split.train, split.test, 10,
                           item_features=ds.item_features)
    assert res.counts["n_users_evaluated"] == 942 and res.counts["n_catalogue"] == 1682
    assert res.metrics["ndcg@10"] == pytest.approx(0.149, abs=0.001)
    assert 0 < res.metrics["diversity@10"] < 1
    train, test = ml100k_fixed_8020(ds.interactions)
    r = evaluate_ratings(FixedScores().fit(train), test, train=train)
    assert r["n"] == 20_000 and r["n_unknown"] == 40  # the protocol's 40 unknown rows
    u1 = cross_validate(Popularity(), predefined_folds(ds, ["u1"]), k=10)
    assert u1.folds[0].name == "u1" and u1.folds[0].n_test == 20_000
