"""Beyond-accuracy metrics: hand-computed values and brute-force pairwise references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp

from rectune import DataError
from rectune.evaluate import (
    catalog_coverage,
    gini_index,
    intra_list_diversity,
    novelty,
    personalization,
    recommendation_counts,
)

TOP = np.array([[0, 1], [0, 2], [1, -1]])  # 4 items; item 3 never recommended


def test_coverage_and_gini_hand_computed() -> None:
    # union {0, 1, 2} of 4 items
    assert catalog_coverage(TOP, 4) == 0.75
    assert catalog_coverage(TOP, 4, k=1) == 0.5  # first column: {0, 1}
    # counts [2, 2, 1, 0] -> ascending [0, 1, 2, 2], n = 4, total 5
    # Σ (2i - n - 1) x_(i) = -3*0 - 1*1 + 1*2 + 3*2 = 7 -> 7 / (4 * 5) = 0.35
    np.testing.assert_array_equal(recommendation_counts(TOP, 4), [2, 2, 1, 0])
    assert gini_index(TOP, 4) == pytest.approx(0.35)
    assert gini_index(np.array([[0], [1], [2], [3]]), 4) == pytest.approx(0.0)  # equal counts
    # one item in every list, 100 items: (2*100 - 100 - 1) * n / (100 * n) = 0.99
    assert gini_index(np.zeros((7, 1), dtype=int), 100) == pytest.approx(0.99)
    assert math.isnan(gini_index(np.full((2, 2), -1), 4))


def test_novelty_hand_computed() -> None:
    # counts over 16 users: p = 8/16, 4/16, 2/16, 0 -> floored to 1/16
    # self-information -log2 p: 1, 2, 3, 4 bits
    pop = np.array([8, 4, 2, 0])
    top = np.array([[0, 1], [0, 2], [1, -1], [3, -1], [-1, -1]])
    np.testing.assert_allclose(
        novelty(top, pop, n_users=16), [1.5, 2.0, 2.0, 4.0, np.nan]
    )
    # share of interactions: floored counts [8, 4, 2, 1], total 15 -> -log2(8/15) for item 0
    assert novelty(np.array([[0]]), pop)[0] == pytest.approx(-math.log2(8 / 15))
    with pytest.raises(DataError, match="n_users=5"):
        novelty(top, pop, n_users=5)


def test_ild_hand_computed_dense_and_sparse() -> None:
    # genre multi-hot: item0 = [1,0], item1 = [0,1], item2 = [1,1], item3 = [0,0]
    vec = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=float)
    top = np.array([[0, 1, -1], [0, 2, -1], [1, -1, -1], [0, 2, 1], [0, 3, -1]])
    # [0,1]: cos 0 -> 1; [0,2]: cos 1/√2 -> 1 - 0.70711; [1]: NaN (one item)
    # [0,2,1]: cos(0,2) = cos(2,1) = 1/√2, cos(0,1) = 0 -> 1 - (2/√2)/3
    # [0,3]: zero vector has cosine 0 -> 1
    expected = [1.0, 1 - 1 / math.sqrt(2), np.nan, 1 - (2 / math.sqrt(2)) / 3, 1.0]
    np.testing.assert_allclose(intra_list_diversity(top, vec), expected)
    np.testing.assert_allclose(intra_list_diversity(top, sp.csr_array(vec)), expected)


def test_ild_matches_pairwise_reference() -> None:
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(30, 6))
    top = np.stack([rng.permutation(30)[:5] for _ in range(20)])
    unit = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    got = intra_list_diversity(top, vec)
    for u in range(20):
        d = [1 - unit[i] @ unit[j] for i, j in itertools.combinations(top[u], 2)]
        assert got[u] == pytest.approx(np.mean(d))


def test_personalization_hand_computed() -> None:
    # u0 = {0,1}, u1 = {0,2}, u2 = {1}: cos = 1/2, 1/√2, 0 -> mean 0.40237 -> 0.59763
    expected = 1 - (0.5 + 1 / math.sqrt(2) + 0) / 3
    assert personalization(TOP, 4) == pytest.approx(expected)
    assert personalization(np.tile([0, 1, 2], (5, 1)), 4) == pytest.approx(0.0)  # same list
    assert personalization(np.array([[0, 1], [2, 3]]), 4) == pytest.approx(1.0)  # disjoint
    assert math.isnan(personalization(np.array([[0, 1], [-1, -1]]), 4))  # one non-empty list


def test_personalization_matches_all_pairs_reference() -> None:
    rng = np.random.default_rng(1)
    top = np.stack([rng.permutation(15)[:4] for _ in range(25)])
    top[3, 2:] = -1
    a = np.zeros((25, 15))
    for u in range(25):
        a[u, top[u][top[u] >= 0]] = 1
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    sims = a @ a.T
    iu = np.triu_indices(25, 1)
    assert personalization(top, 15) == pytest.approx(1 - sims[iu].mean())


def test_beyond_validation() -> None:
    with pytest.raises(DataError, match="n_items must be a positive integer"):
        catalog_coverage(TOP, 0)
    with pytest.raises(DataError, match="catalogue has 2 items"):
        gini_index(TOP, 2)
    with pytest.raises(DataError, match="more than once"):
        personalization(np.array([[1, 1]]), 4)
    with pytest.raises(DataError, match="must be finite"):
        intra_list_diversity(TOP, np.full((4, 2), np.nan))
