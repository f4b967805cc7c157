"""Sampled-candidate evaluation: labelled output, tie rules, negative sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from rectune import DataError
from rectune.evaluate import sample_negatives, sampled_rank, sampled_ranking

POS = np.array([0.9, 0.5, 0.1])
NEG = np.array([[0.1, 0.2], [0.5, 0.7], [0.2, 0.3]])


def test_sampled_rank_tie_rules() -> None:
    # case 1: one negative above (0.7), one tied (0.5)
    np.testing.assert_array_equal(sampled_rank(POS, NEG), [1, 3, 3])
    np.testing.assert_array_equal(sampled_rank(POS, NEG, ties="optimistic"), [1, 2, 3])
    np.testing.assert_array_equal(sampled_rank(POS, NEG, ties="average"), [1, 2.5, 3])


def test_sampled_ranking_hand_computed_and_labelled() -> None:
    res = sampled_ranking(POS, NEG, k=2)
    # ranks 1, 3, 3: only case 0 is in the top 2 -> HR = 1/3, NDCG = (1/log2 2)/3, MRR = 1/3
    # AUC per case: (2 - (r - 1)) / 2 = 1, 0, 0 -> 1/3
    assert res == {
        "sampled_hit_rate@2": pytest.approx(1 / 3),
        "sampled_ndcg@2": pytest.approx(1 / 3),
        "sampled_mrr@2": pytest.approx(1 / 3),
        "sampled_auc": pytest.approx(1 / 3),
        "sampled_n_negatives": 2.0,
        "sampled_n_cases": 3.0,
    }
    assert all(key.startswith("sampled_") for key in res)
    res3 = sampled_ranking(POS, NEG, k=3, metrics=("ndcg",))
    assert res3["sampled_ndcg@3"] == pytest.approx((1 + 2 / math.log2(4)) / 3)


def test_sample_negatives_excludes_seen_and_is_distinct() -> None:
    rng = np.random.default_rng(0)
    seen = sp.csr_array(rng.random((50, 40)) < 0.3)
    neg = sample_negatives(seen, 10, seed=3)
    assert neg.shape == (50, 10)
    dense = seen.toarray()
    for u in range(50):
        assert len(set(neg[u])) == 10
        assert not dense[u, neg[u]].any()
    np.testing.assert_array_equal(neg, sample_negatives(seen, 10, seed=3))  # seeded
    sub = sample_negatives(seen, 5, users=np.array([4, 2]), seed=0)
    assert not dense[4, sub[0]].any() and not dense[2, sub[1]].any()


def test_sample_negatives_is_roughly_uniform() -> None:
    seen = sp.csr_array((2000, 10))
    counts = np.bincount(sample_negatives(seen, 3, seed=1).ravel(), minlength=10)
    # 6000 draws over 10 items: 600 each, sd ≈ 22
    assert counts.min() > 500 and counts.max() < 700


def test_sampled_validation() -> None:
    with pytest.raises(DataError, match="only 1 unseen items"):
        sample_negatives(sp.csr_array(np.array([[1, 1, 0]])), 2)
    with pytest.raises(DataError, match="3 rows"):
        sampled_rank(POS, NEG[:2])
    with pytest.raises(DataError, match="ties must be"):
        sampled_rank(POS, NEG, ties="random")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="unknown sampled metric"):
        sampled_ranking(POS, NEG, metrics=("precision",))
