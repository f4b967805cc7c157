"""BPR: the contract, the negative sampler, and data with a known answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from rectune import DataError
from rectune.data import Interactions
from rectune.models._implicit_kernels import draw_negatives
from rectune.models.base import FitOptions
from rectune.models.bpr import BPR
from tests.models.contract import ContractTests
from tests.models.test_als import assert_checkerboard, checkerboard, implicit_small, ml100k_ndcg


class TestBPRContract(ContractTests):
    def make_model(self) -> BPR:
        return BPR(factors=6, iterations=5, random_state=0)

    def make_data(self) -> Interactions:
        return implicit_small()


class TestBPRPopularityContract(ContractTests):
    def make_model(self) -> BPR:
        return BPR(factors=4, iterations=3, negative_sampling="popularity", dtype="float64",
                   random_state=7)

    def make_data(self) -> Interactions:
        return implicit_small()


# ------------------------------------------------------------------ sampler
def _sampler_input() -> tuple[np.ndarray, np.ndarray, int]:
    rng = np.random.default_rng(0)
    n_users, n_items = 30, 25
    dense = rng.random((n_users, n_items)) < 0.5
    dense[0] = True  # owns the whole catalogue: no negative exists
    dense[1] = True
    dense[1, 7] = False  # exactly one negative
    m = sp.csr_array(dense.astype(np.float32))
    m.sort_indices()
    return m.indptr.astype(np.int64), m.indices.astype(np.int64), n_items


@pytest.mark.parametrize("popularity", [False, True])
def test_sampler_never_returns_a_positive(popularity: bool) -> None:
    indptr, indices, n_items = _sampler_input()
    pool = indices if popularity else np.empty(0, np.int64)
    users = np.repeat(np.arange(2, 30), 400)
    neg = draw_negatives(indptr, indices, pool, n_items, users, True, 64, 123)
    assert np.all(neg >= 0)
    for u in range(2, 30):
        drawn = set(neg[users == u].tolist())
        positives = set(indices[indptr[u]:indptr[u + 1]].tolist())
        assert not drawn & positives
        if not popularity:  # uniform: every negative is reachable
            assert drawn == set(range(n_items)) - positives


def test_sampler_edge_users() -> None:
    indptr, indices, n_items = _sampler_input()
    empty = np.empty(0, np.int64)
    neg = draw_negatives(indptr, indices, empty, n_items, np.zeros(10, np.int64), True, 64, 1)
    assert np.all(neg == -1)  # a user with everything has no negative
    neg = draw_negatives(indptr, indices, empty, n_items, np.ones(50, np.int64), True, 1000, 1)
    assert np.all(neg == 7)  # the only item user 1 does not have


def test_unverified_sampler_does_return_positives() -> None:
    """Without verification the same draws hit positives: the check above is not vacuous."""
    indptr, indices, n_items = _sampler_input()
    users = np.repeat(np.arange(2, 30), 50)
    neg = draw_negatives(indptr, indices, np.empty(0, np.int64), n_items, users, False, 64, 123)
    dense = np.zeros((30, n_items), dtype=bool)
    dense[np.repeat(np.arange(30), np.diff(indptr)), indices] = True
    assert dense[users, neg].any()


def test_sampler_is_seeded() -> None:
    indptr, indices, n_items = _sampler_input()
    users = np.arange(2, 30)
    a = draw_negatives(indptr, indices, np.empty(0, np.int64), n_items, users, True, 64, 5)
    b = draw_negatives(indptr, indices, np.empty(0, np.int64), n_items, users, True, 64, 5)
    c = draw_negatives(indptr, indices, np.empty(0, np.int64), n_items, users, True, 64, 6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# ------------------------------------------------------------ known answer
@pytest.mark.parametrize("kw", [{}, {"negative_sampling": "popularity"}, {"hogwild": True}])
def test_checkerboard_recommends_the_right_half(kw: dict[str, object]) -> None:
    data = checkerboard()
    m = BPR(factors=8, iterations=50, learning_rate=0.05, **kw)  # type: ignore[arg-type]
    m.fit(data, options=FitOptions(n_threads=2))
    assert_checkerboard(m, data)
    assert m.train_auc_ > 0.9 and m.n_iter_ == 50


def test_user_with_every_item_is_skipped_not_stuck() -> None:
    m = BPR(factors=4, iterations=3).fit(implicit_small())
    assert np.all(np.isfinite(m.user_factors_))
    # the first user owns everything: no negative, so its factors never move from init
    init = BPR(factors=4, iterations=1, learning_rate=1e-30).fit(implicit_small())
    np.testing.assert_allclose(m.user_factors_[0], init.user_factors_[0])


def test_scores_include_item_bias() -> None:
    data = implicit_small()
    m = BPR(factors=4, iterations=5).fit(data)
    s = m._score(np.array([2]))[0]
    np.testing.assert_allclose(s, m.user_factors_[2] @ m.item_factors_.T + m.item_bias_,
                               rtol=1e-6)
    assert np.any(m.item_bias_ != 0)
    # unknown user, known item: the bias; the recommendation falls back to popularity
    np.testing.assert_allclose(m.predict([10**9], [data.item_map.ids[3]]), [m.item_bias_[3]],
                               rtol=1e-6)


@pytest.mark.parametrize("bad", [{"factors": 0}, {"learning_rate": 0.0}, {"iterations": 0},
                                 {"negative_sampling": "hard"}, {"hogwild": 1},
                                 {"verify_negative_samples": "yes"}, {"dtype": "int8"},
                                 {"max_tries": 0}])
def test_bad_hyper_parameters_raise(bad: dict[str, object]) -> None:
    with pytest.raises(DataError):
        BPR(**bad).fit(implicit_small())  # type: ignore[arg-type]


@pytest.mark.realdata
def test_ml100k_quality_band(ml100k_dir: Path) -> None:
    """implicit's BPR (64 factors, 100 epochs) gets 0.203 on the per-user 80/20 protocol."""
    assert 0.20 <= ml100k_ndcg(ml100k_dir, BPR(factors=64)) <= 0.25
