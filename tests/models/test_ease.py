"""EASE: the contract, the closed form, memory limits, and data with a known answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from rectune import DataError
from rectune.data import Interactions
from rectune.models import ease as ease_module
from rectune.models.ease import EASE, ease_weights
from tests.models.contract import ContractTests
from tests.models.test_als import assert_checkerboard, checkerboard, implicit_small, ml100k_ndcg


class TestEASEContract(ContractTests):
    def make_model(self) -> EASE:
        return EASE(regularization=5.0)

    def make_data(self) -> Interactions:
        return implicit_small()


def test_weights_equal_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((12, 7)) < 0.4).astype(np.float64)
    lam = 2.5
    p = np.linalg.inv(x.T @ x + lam * np.eye(7))
    expected = np.eye(7) - p / np.diag(p)[np.newaxis, :]
    b = ease_weights(sp.csr_array(x), lam)
    np.testing.assert_allclose(b, expected, atol=1e-12)
    np.testing.assert_array_equal(np.diag(b), 0.0)


def test_mirroring_works_across_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    x = (rng.random((30, 10)) < 0.3).astype(np.float64)
    p = np.linalg.inv(x.T @ x + np.eye(10))
    monkeypatch.setattr(ease_module, "_MIRROR_BLOCK", 3)  # 10 items: 4 blocks, ragged end
    np.testing.assert_allclose(ease_weights(sp.csr_array(x), 1.0),
                               np.eye(10) - p / np.diag(p)[np.newaxis, :], atol=1e-12)


def test_fitted_model_scores_are_history_times_b() -> None:
    data = implicit_small()
    m = EASE(regularization=3.0).fit(data)
    b = m.item_weights_
    np.testing.assert_array_equal(np.diag(b), 0.0)
    x = data.csr().toarray()
    np.testing.assert_allclose(m._score(np.arange(data.n_users)), x @ b, atol=1e-10)
    u = np.array([2, 2, 5, 9])
    i = np.array([0, 3, 7, 29])
    np.testing.assert_allclose(m._predict(u, i), (x @ b)[u, i], atol=1e-10)
    items = data.item_map.decode(np.flatnonzero(x[5]))
    np.testing.assert_allclose(m.score_history([*items, 10**9]), (x @ b)[5], atol=1e-10)


def test_checkerboard_recommends_the_right_half() -> None:
    data = checkerboard()
    m = EASE(regularization=10.0).fit(data)
    assert_checkerboard(m, data)
    sim, _ = m.similar_items([0, 15], 3)
    assert np.all(sim[0] < 10) and np.all(sim[1] >= 10)


def test_too_many_items_is_refused_with_the_limit_named() -> None:
    with pytest.raises(DataError, match=r"30 x 30.*max_items=10"):
        EASE(max_items=10).fit(implicit_small())


def test_short_memory_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ease_module, "_available_memory", lambda: 1000)
    with pytest.raises(DataError, match="available"):
        EASE().fit(implicit_small())


@pytest.mark.parametrize("bad", [{"regularization": 0.0}, {"regularization": -1.0},
                                 {"max_items": 0}])
def test_bad_hyper_parameters_raise(bad: dict[str, object]) -> None:
    with pytest.raises(DataError):
        EASE(**bad).fit(implicit_small())  # type: ignore[arg-type]


@pytest.mark.realdata
def test_ml100k_quality_band(ml100k_dir: Path) -> None:
    """PROTOCOLS.md: a plain closed-form EASE gets 0.31-0.32 for λ 100-400."""
    assert 0.31 <= ml100k_ndcg(ml100k_dir, EASE(regularization=300.0)) <= 0.33
