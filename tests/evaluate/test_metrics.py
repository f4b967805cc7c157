"""Ranking metrics: hand-computed values, sklearn cross-checks, edge cases, top-k selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import ndcg_score

from rectune import DataError
from rectune.evaluate import (
    hit_rate_at_k,
    map_at_k,
    mean,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    ranking_metrics_per_user,
    recall_at_k,
    topk_from_scores,
)

L2, L3, L4, L5 = 1 / math.log2(2), 1 / math.log2(3), 1 / math.log2(4), 1 / math.log2(5)
# discounts at ranks 1..4: 1, 0.63093, 0.5, 0.43068

TOP = np.array(
    [
        [0, 1, 2, 3],  # user 0: relevant {1, 3, 7} -> hits at ranks 2 and 4
        [4, 5, -1, -1],  # user 1: short list (padding); relevant {5} -> hit at rank 2
        [2, 0, 1, 3],  # user 2: no relevant item -> NaN everywhere
        [6, 7, 8, 9],  # user 3: relevant {6, 0, 1, 2, 3, 4} -> hit at rank 1 only
    ]
)


def _truth(grades: bool = False) -> sp.csr_array:
    m = np.zeros((4, 10))
    m[0, [1, 3, 7]] = [3, 1, 2] if grades else 1
    m[1, 5] = 1
    m[3, [6, 0, 1, 2, 3, 4]] = 1
    return sp.csr_array(m)


def test_precision_hand_computed() -> None:
    # u0: 2 hits / 4; u1: 1 / 4 (padding counts as a miss); u3: 1 / 4
    p = precision_at_k(TOP, _truth(), k=4)
    np.testing.assert_allclose(p, [0.5, 0.25, np.nan, 0.25])
    assert mean(p) == pytest.approx((0.5 + 0.25 + 0.25) / 3)  # user 2 excluded


def test_recall_hand_computed() -> None:
    # u0: 2 / |{1,3,7}| = 2/3; u1: 1/1; u3: 1/6 (denominator |test_u|, not min(k, |test_u|))
    np.testing.assert_allclose(recall_at_k(TOP, _truth(), k=4), [2 / 3, 1.0, np.nan, 1 / 6])


def test_ndcg_binary_hand_computed() -> None:
    # u0: DCG = 1/log2(3) + 1/log2(5) = 1.06161; IDCG over min(4, 3) = 3 positions
    #     = 1 + 1/log2(3) + 1/log2(4) = 2.13093 -> 0.498189
    # u1: DCG = 1/log2(3); IDCG over min(4, 1) = 1 position = 1 -> 0.63093
    # u3: DCG = 1; IDCG over min(4, 6) = 4 positions = 2.56161 -> 0.39038
    expected = [
        (L3 + L5) / (L2 + L3 + L4),
        L3 / 1.0,
        np.nan,
        1.0 / (L2 + L3 + L4 + L5),
    ]
    np.testing.assert_allclose(ndcg_at_k(TOP, _truth(), k=4), expected)
    assert expected[0] == pytest.approx(0.498189, abs=1e-6)


def test_ndcg_graded_hand_computed() -> None:
    # u0 grades: item1 = 3, item3 = 1, item7 = 2; list 0,1,2,3
    # DCG = 3/log2(3) + 1/log2(5) = 2.32347
    # IDCG = grades sorted 3, 2, 1: 3 + 2/log2(3) + 1/log2(4) = 4.76186 -> 0.48794
    v = ndcg_at_k(TOP, _truth(grades=True), k=4, relevance="graded")
    assert v[0] == pytest.approx((3 * L3 + 1 * L5) / (3 + 2 * L3 + 1 * L4))
    assert v[0] == pytest.approx(0.48794, abs=1e-5)
    # binary NDCG ignores the grades
    assert ndcg_at_k(TOP, _truth(grades=True), k=4)[0] == pytest.approx((L3 + L5) / (1 + L3 + L4))


def test_map_mrr_hit_rate_hand_computed() -> None:
    # MAP u0: (1/min(4,3)) (P@2 + P@4) = (1/3)(1/2 + 2/4) = 1/3
    #     u1: (1/1) P@2 = 1/2;  u3: (1/min(4,6)) P@1 = 1/4
    np.testing.assert_allclose(map_at_k(TOP, _truth(), k=4), [1 / 3, 0.5, np.nan, 0.25])
    # MRR: first hit at rank 2, 2, -, 1
    np.testing.assert_allclose(mrr_at_k(TOP, _truth(), k=4), [0.5, 0.5, np.nan, 1.0])
    np.testing.assert_allclose(hit_rate_at_k(TOP, _truth(), k=4), [1, 1, np.nan, 1])


def test_cutoff_smaller_than_list() -> None:
    # @2: u0 hit at rank 2 only -> P = 1/2, NDCG = (1/log2 3) / (1 + 1/log2 3) = 0.38685
    # u3 @1: hit at rank 1 -> everything 1 except recall 1/6
    assert precision_at_k(TOP, _truth(), k=2)[0] == 0.5
    assert ndcg_at_k(TOP, _truth(), k=2)[0] == pytest.approx(L3 / (1 + L3))
    assert map_at_k(TOP, _truth(), k=2)[0] == pytest.approx(0.5 * 0.5)  # (1/2) * P@2
    assert mrr_at_k(TOP, _truth(), k=1)[0] == 0.0  # no hit at rank 1


def test_k_larger_than_list_pads_with_misses() -> None:
    # lists of 4, k = 6: u0 still has 2 hits, but Precision is 2/6; NDCG's IDCG keeps
    # min(6, 3) = 3 positions, so NDCG is unchanged
    assert precision_at_k(TOP, _truth(), k=6)[0] == pytest.approx(2 / 6)
    assert ndcg_at_k(TOP, _truth(), k=6)[0] == pytest.approx(ndcg_at_k(TOP, _truth(), k=4)[0])
    # u3 has 6 relevant items: IDCG grows with k, so NDCG drops
    assert ndcg_at_k(TOP, _truth(), k=6)[3] < ndcg_at_k(TOP, _truth(), k=4)[3]


def test_all_padding_list_is_all_misses() -> None:
    top = np.full((1, 3), -1)
    truth = sp.csr_array(np.array([[0.0, 1.0]]))
    out = ranking_metrics_per_user(top, truth, k=3)
    for name, v in out.items():
        assert v[0] == 0.0, name


def test_ranking_metrics_dict_and_empty_policy() -> None:
    res = ranking_metrics(TOP, _truth(), k=[2, 4])
    assert set(res) == {
        f"{m}@{k}" for k in (2, 4)
        for m in ("precision", "recall", "ndcg", "map", "mrr", "hit_rate", "coverage")
    }
    assert res["precision@4"] == pytest.approx(1 / 3)
    # coverage = |{0..9} in all lists| / 10: @4 every item 0..9 appears -> 1.0;
    # @2 items {0,1,4,5,2,6,7} -> 0.7 (user 2's list counts too)
    assert res["coverage@4"] == 1.0
    assert res["coverage@2"] == pytest.approx(0.7)
    zero = ranking_metrics(TOP, _truth(), k=4, empty="zero", metrics=("precision",))
    assert zero == {"precision@4": pytest.approx(1.0 / 4)}  # (0.5 + 0.25 + 0 + 0.25) / 4


def test_users_selects_truth_rows() -> None:
    # lists for users 3 and 0, in that order
    v = precision_at_k(TOP[[3, 0]], _truth(), k=4, users=np.array([3, 0]))
    np.testing.assert_allclose(v, [0.25, 0.5])


def test_all_users_empty_gives_nan_mean_without_warning() -> None:
    truth = sp.csr_array((2, 5))
    with np.errstate(all="raise"):
        res = ranking_metrics(np.array([[0, 1], [2, 3]]), truth, k=2)
    assert math.isnan(res["ndcg@2"])
    assert res["coverage@2"] == pytest.approx(4 / 5)


def test_explicit_zeros_in_truth_are_not_relevant() -> None:
    truth = sp.csr_array((np.array([0.0, 1.0]), (np.array([0, 0]), np.array([0, 1]))), shape=(1, 3))
    # item 0 stored with value 0: not relevant; |test_u| = 1
    assert recall_at_k(np.array([[0, 1]]), truth, k=2)[0] == 1.0
    assert precision_at_k(np.array([[0, 2]]), truth, k=2)[0] == 0.0


@pytest.mark.parametrize("relevance", ["binary", "graded"])
def test_ndcg_matches_sklearn_on_full_score_vectors(relevance: str) -> None:
    """Where the definitions coincide, our NDCG equals sklearn's ``ndcg_score``.

    sklearn ranks *all* columns of a score matrix and takes IDCG from the top-k
    grades of the full ``y_true`` row; ours ranks the given list and takes IDCG
    over min(k, |test_u|) positions of the user's grades sorted. Both are the
    same number when (a) the list is the top-k of the same full score vector
    (no exclusion of training items), (b) scores have no ties (sklearn averages
    over tied scores, we take lists as given) and (c) the user has a relevant
    item (sklearn scores 0 there, we give NaN and exclude the user). Gains are
    linear in both (sklearn: rel / log2(r + 1)). Graded IDCG: the top-k grades of
    a row padded with zeros are the min(k, |test_u|) largest nonzero grades.
    """
    rng = np.random.default_rng(7)
    n_users, n_items, k = 60, 40, 5
    scores = rng.random((n_users, n_items))  # continuous: no ties
    grades = rng.integers(1, 4, size=(n_users, n_items)) * (rng.random((n_users, n_items)) < 0.15)
    if relevance == "binary":
        grades = (grades > 0).astype(np.int64)
    grades[0] = 0  # a user without relevant items
    truth = sp.csr_array(grades.astype(np.float64))
    top, _ = topk_from_scores(scores, k)
    ours = ndcg_at_k(top, truth, k=k, relevance=relevance)  # type: ignore[arg-type]
    assert np.isnan(ours[0])
    has = grades.sum(axis=1) > 0
    for u in np.flatnonzero(has):
        assert ours[u] == pytest.approx(ndcg_score(grades[u : u + 1], scores[u : u + 1], k=k))
    assert mean(ours) == pytest.approx(ndcg_score(grades[has], scores[has], k=k))


def test_ranking_agrees_with_brute_force_per_user_loop() -> None:
    """The vectorised lookup agrees with a plain per-user reference on random data."""
    rng = np.random.default_rng(3)
    n_users, n_items, k = 50, 30, 7
    top = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    top[rng.random(top.shape) < 0.1] = -1
    top = np.where(np.cumsum(top < 0, axis=1) > 0, -1, top)  # padding only at the end
    truth_d = (rng.random((n_users, n_items)) < 0.2).astype(float)
    res = ranking_metrics_per_user(top, sp.csr_array(truth_d), k=k)
    for u in range(n_users):
        rel = set(np.flatnonzero(truth_d[u]))
        if not rel:
            assert np.isnan(res[f"ndcg@{k}"][u])
            continue
        hits = [1.0 if (i >= 0 and i in rel) else 0.0 for i in top[u]]
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(rel))))
        prec = [sum(hits[: r + 1]) / (r + 1) for r in range(k)]
        ap = sum(h * p for h, p in zip(hits, prec, strict=True)) / min(k, len(rel))
        assert res[f"precision@{k}"][u] == pytest.approx(sum(hits) / k)
        assert res[f"recall@{k}"][u] == pytest.approx(sum(hits) / len(rel))
        assert res[f"ndcg@{k}"][u] == pytest.approx(dcg / idcg)
        assert res[f"map@{k}"][u] == pytest.approx(ap)


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, -1, 2.0, True])
def test_bad_k(k: object) -> None:
    with pytest.raises(DataError, match="k must be a positive integer"):
        precision_at_k(TOP, _truth(), k=k)  # type: ignore[arg-type]


def test_row_mismatch() -> None:
    with pytest.raises(DataError, match="3 rows but there are 4 recommendation lists"):
        precision_at_k(TOP, _truth()[:3], k=4)


def test_bad_lists() -> None:
    with pytest.raises(DataError, match="integer item indices"):
        precision_at_k(TOP.astype(float), _truth())
    with pytest.raises(DataError, match="must be 2-D"):
        precision_at_k(TOP[0], _truth())
    with pytest.raises(DataError, match="catalogue has 10 items"):
        precision_at_k(np.array([[0, 10]] * 4), _truth())
    with pytest.raises(DataError, match=r"top_items\[0, 1\] = -2"):
        precision_at_k(np.array([[0, -2]] * 4), _truth())
    with pytest.raises(DataError, match="lists item 1 more than once"):
        precision_at_k(np.array([[1, 1]] * 4), _truth())
    with pytest.raises(DataError, match="scipy sparse"):
        precision_at_k(TOP, _truth().toarray())
    with pytest.raises(DataError, match="unknown ranking metric"):
        ranking_metrics(TOP, _truth(), metrics=("ndgc",))


def test_bad_truth_values() -> None:
    with pytest.raises(DataError, match=r"grade -1\.0"):
        precision_at_k(TOP, sp.csr_array(np.array([[0, -1.0]] * 4)), k=1)
    with pytest.raises(DataError, match="NaN"):
        precision_at_k(TOP, sp.csr_array(np.array([[0, np.nan]] * 4)), k=1)


# --- topk_from_scores --------------------------------------------------------------------


def test_topk_ties_go_to_lower_index() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 3.0, 2.0]])
    items, vals = topk_from_scores(scores, 2)
    np.testing.assert_array_equal(items, [[1, 2]])  # three items tie at 3: take 1 and 2
    np.testing.assert_array_equal(vals, [[3.0, 3.0]])
    items, _ = topk_from_scores(scores, 4)
    np.testing.assert_array_equal(items, [[1, 2, 3, 4]])


def test_topk_all_identical_scores() -> None:
    items, vals = topk_from_scores(np.zeros((3, 6)), 4)
    np.testing.assert_array_equal(items, np.tile([0, 1, 2, 3], (3, 1)))
    assert (vals == 0).all()


def test_topk_exclude_and_padding() -> None:
    scores = np.array([[0.5, 0.9, 0.1], [0.3, 0.2, 0.1]])
    exclude = sp.csr_array(np.array([[0, 1, 0], [1, 1, 0]]))
    items, vals = topk_from_scores(scores, 5, exclude=exclude)
    # row 0: item 1 excluded -> 0, 2 then padding; row 1: only item 2 is left
    np.testing.assert_array_equal(items, [[0, 2, -1, -1, -1], [2, -1, -1, -1, -1]])
    np.testing.assert_array_equal(vals[0, :2], [0.5, 0.1])
    assert np.isneginf(vals[0, 2:]).all()


def test_topk_neg_inf_is_not_recommendable_but_pos_inf_is() -> None:
    items, _ = topk_from_scores(np.array([[-np.inf, 1.0, np.inf, 0.0]]), 4)
    np.testing.assert_array_equal(items, [[2, 1, 3, -1]])


def test_topk_matches_stable_reference_with_many_ties() -> None:
    rng = np.random.default_rng(11)
    scores = rng.integers(0, 4, size=(40, 25)).astype(float)  # heavy ties
    exclude = sp.csr_array(rng.random((40, 25)) < 0.3)
    items, _ = topk_from_scores(scores, 8, exclude=exclude)
    ex = exclude.toarray()
    for u in range(40):
        cand = np.flatnonzero(~ex[u])
        ref = cand[np.lexsort((cand, -scores[u, cand]))][:8]  # by score desc, then index
        ref = np.concatenate([ref, -np.ones(8 - ref.size, dtype=int)])
        np.testing.assert_array_equal(items[u], ref)


def test_topk_validation() -> None:
    with pytest.raises(DataError, match=r"scores\[0, 1\] is NaN"):
        topk_from_scores(np.array([[0.0, np.nan]]), 1)
    with pytest.raises(DataError, match="exclude has shape"):
        topk_from_scores(np.zeros((2, 3)), 1, exclude=sp.csr_array((2, 4)))
    with pytest.raises(DataError, match="k must be"):
        topk_from_scores(np.zeros((2, 3)), 0)
