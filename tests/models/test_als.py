"""ALS: the contract, the solver against the closed form, fold-in, and data with a known answer.

``implicit_small`` and ``checkerboard`` are shared with the BPR and EASE tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from rectune import DataError, UnknownIdError
from rectune.data import Interactions
from rectune.data.idmap import IdMap
from rectune.models import _implicit_kernels as kernels
from rectune.models.als import ALS, confidence_matrix
from rectune.models.base import FitOptions, Recommender
from tests.models.contract import ContractTests, small_ratings


def implicit_small() -> Interactions:
    """``small_ratings`` binarised at 4, except user 1 keeps every item (the 'saw everything'
    case of the contract) and users without a like stay in the map with no rows."""
    data = small_ratings()
    sub = data.take((data.value >= 4) | (data.user == 0))
    return Interactions.from_indices(sub.user, sub.item, None, sub.user_map, sub.item_map,
                                     timestamp=sub.timestamp, kind="implicit")


def checkerboard(n_users: int = 100, n_items: int = 20, seed: int = 0) -> Interactions:
    """Even users like items of the first half only, odd users the second half only.

    Each user likes at least 2 and about 60% of their half but never 3 random items
    of it, so the right answer after excluding seen items is known: the unseen
    items of the user's own half.
    """
    rng = np.random.default_rng(seed)
    half = n_items // 2
    liked = rng.random((n_users, half)) < 0.6
    order = np.argsort(rng.random((n_users, half)), axis=1)
    np.put_along_axis(liked, order[:, 3:5], True, axis=1)
    np.put_along_axis(liked, order[:, :3], False, axis=1)
    uu, jj = np.nonzero(liked)
    ii = jj + half * (uu % 2)
    return Interactions.from_indices(uu, ii, None, IdMap.from_values(np.arange(n_users)),
                                     IdMap.from_values(np.arange(n_items)), kind="implicit")


def assert_checkerboard(model: Recommender, data: Interactions, k: int = 3) -> None:
    """Every user's top-k unseen items lie in the user's own half."""
    half = data.n_items // 2
    users = data.user_map.ids
    ids, _ = model.recommend(users, k)
    own = (users % 2)[:, None]
    assert np.all(ids >= 0)
    np.testing.assert_array_equal(ids // half, np.broadcast_to(own, ids.shape))


def random_system(seed: int = 0, n_rows: int = 6, n_items: int = 15, f: int = 4,
                  alpha: float = 2.0) -> tuple[sp.csr_array, np.ndarray]:
    """A confidence CSR with positive and negative (dislike) entries and fixed item factors."""
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((n_rows, n_items)) < 0.4, rng.integers(1, 5, (n_rows, n_items)),
                     0).astype(np.float64)
    dense[0, :3] = [-2.0, 3.0, 1.0]  # one explicit dislike
    conf = sp.csr_array(np.sign(dense) * (1.0 + alpha * np.abs(dense)))
    conf.sort_indices()
    return conf, rng.normal(size=(n_items, f))


def closed_form(conf_row: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """np.linalg.solve of (Yᵀ C_u Y + λI) x = Yᵀ C_u p_u over the dense row."""
    c = np.where(conf_row == 0, 1.0, np.abs(conf_row))
    p = (conf_row > 0).astype(np.float64)
    a = (y.T * c) @ y + lam * np.eye(y.shape[1])
    return np.linalg.solve(a, (y.T * c) @ p)


class TestALSContract(ContractTests):
    def make_model(self) -> ALS:
        return ALS(factors=6, iterations=4, random_state=0)

    def make_data(self) -> Interactions:
        return implicit_small()


class TestALSCholeskyContract(ContractTests):
    def make_model(self) -> ALS:
        return ALS(factors=5, iterations=3, solver="cholesky", reg_exponent=0.5,
                   regularization=0.01, dtype="float64", random_state=3)

    def make_data(self) -> Interactions:
        return implicit_small()


# ------------------------------------------------------------------ the solver
@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_half_step_equals_closed_form(solver: str) -> None:
    conf, y = random_system()
    lam = 0.3
    x = np.random.default_rng(1).normal(size=(conf.shape[0], y.shape[1]))
    args = (conf.indptr.astype(np.int64), conf.indices.astype(np.int64), conf.data, x, y,
            y.T @ y, np.full(conf.shape[0], lam))
    if solver == "cg":  # CG is exact after f steps (here f = 4 steps suffice)
        kernels.als_cg_half_step(*args, y.shape[1])
    else:
        assert kernels.als_cholesky_half_step(*args) == 0
    dense = conf.toarray()
    for u in range(conf.shape[0]):
        np.testing.assert_allclose(x[u], closed_form(dense[u], y, lam), atol=1e-6, rtol=0)


def test_three_cg_steps_improve_a_warm_start() -> None:
    conf, y = random_system(seed=2, f=8)
    exact = np.stack([closed_form(r, y, 0.1) for r in conf.toarray()])
    x = exact + 0.05 * np.random.default_rng(0).normal(size=exact.shape)
    before = np.abs(x - exact).max()
    kernels.als_cg_half_step(conf.indptr.astype(np.int64), conf.indices.astype(np.int64),
                             conf.data, x, y, y.T @ y, np.full(conf.shape[0], 0.1), 3)
    assert np.abs(x - exact).max() < 0.5 * before


def test_confidence_matrix_is_one_plus_alpha_r() -> None:
    df = pd.DataFrame({"user": [1, 1, 2, 2], "item": [1, 2, 1, 3],
                       "rating": [2.0, -1.0, 0.0, 1.0]})
    data = Interactions.from_frame(df, timestamp=None, kind="implicit")
    c = confidence_matrix(data, 3.0, np.float64)
    np.testing.assert_array_equal(c.toarray(), [[7.0, -4.0, 0.0], [0.0, 0.0, 4.0]])
    assert c.nnz == 3  # the zero-valued row carries no information


def test_fitted_items_solve_their_normal_equations() -> None:
    """After the last sweep (items last) every item row is the exact ridge solution."""
    data = implicit_small()
    m = ALS(factors=4, iterations=3, solver="cholesky", alpha=2.0, regularization=0.2,
            dtype="float64").fit(data)
    conf = confidence_matrix(data, 2.0, np.float64).T.toarray()
    for i in (0, 5, 17):
        np.testing.assert_allclose(m.item_factors_[i],
                                   closed_form(conf[i], m.user_factors_, 0.2), atol=1e-8)


def test_cg_and_cholesky_agree_in_quality() -> None:
    data = checkerboard()
    a = ALS(factors=4, iterations=10, regularization=0.1, dtype="float64").fit(data)
    b = ALS(factors=4, iterations=10, regularization=0.1, dtype="float64",
            solver="cholesky").fit(data)
    sa, sb = a._score(np.arange(data.n_users)), b._score(np.arange(data.n_users))
    assert np.corrcoef(sa.ravel(), sb.ravel())[0, 1] > 0.99


def test_frequency_scaled_regularization() -> None:
    data = implicit_small()
    m = ALS(factors=3, regularization=0.01, alpha=2.0, reg_exponent=1.0)
    conf = confidence_matrix(data, 2.0, np.float64)
    reg = m._row_reg(conf)
    counts = data.user_counts()
    np.testing.assert_allclose(reg, 0.01 * (data.n_items + 2.0 * counts))


def test_threads_do_not_change_the_result() -> None:
    data = implicit_small()
    one = ALS(factors=5, iterations=3).fit(data, options=FitOptions(n_threads=1))
    two = ALS(factors=5, iterations=3).fit(data, options=FitOptions(n_threads=2))
    np.testing.assert_array_equal(one.user_factors_, two.user_factors_)
    np.testing.assert_array_equal(one.item_factors_, two.item_factors_)


# ----------------------------------------------------------------- fold-in
def test_fold_in_is_the_exact_solution() -> None:
    data = implicit_small()
    m = ALS(factors=5, iterations=3, alpha=1.5, regularization=0.2, dtype="float64").fit(data)
    items = data.item_map.ids[[1, 4, 9]]
    values = np.array([1.0, 3.0, 2.0])
    row = np.zeros(data.n_items)
    row[[1, 4, 9]] = 1.0 + 1.5 * values
    np.testing.assert_allclose(m.fold_in(items, values), closed_form(row, m.item_factors_, 0.2),
                               atol=1e-10)
    # unknown items are skipped, or refused on request
    np.testing.assert_allclose(m.fold_in([*items, 99999], [*values, 5.0]),
                               m.fold_in(items, values))
    with pytest.raises(UnknownIdError):
        m.fold_in([99999], unknown="error")
    with pytest.raises(DataError, match="more than once"):
        m.fold_in(items[[0, 0]])
    with pytest.raises(DataError, match="values"):
        m.fold_in(items, [1.0])


def test_fold_in_reproduces_a_training_user_after_a_user_sweep() -> None:
    """A user's fold-in equals the factors a user sweep would give them."""
    data = implicit_small()
    m = ALS(factors=4, iterations=2, solver="cholesky", dtype="float64",
            reg_exponent=0.5, regularization=0.05).fit(data)
    conf = confidence_matrix(data, 1.0, np.float64)
    m._half_step((conf.indptr.astype(np.int64), conf.indices.astype(np.int64), conf.data),
                 m.user_factors_, m.item_factors_, m._row_reg(conf))
    u = 3
    row = conf[[u]]
    np.testing.assert_allclose(m.fold_in_indices(row.indices, row.data - 1.0),
                               m.user_factors_[u], atol=1e-8)


# ------------------------------------------------------------ known answer
def test_checkerboard_recommends_the_right_half() -> None:
    data = checkerboard()
    m = ALS(factors=8, iterations=10, regularization=5.0).fit(data)
    assert_checkerboard(m, data)
    sim, _ = m.similar_items([0, 15], 3)
    assert np.all(sim[0] < 10) and np.all(sim[1] >= 10)


def test_interrupt_leaves_a_usable_model(monkeypatch: pytest.MonkeyPatch) -> None:
    real = kernels.als_cg_half_step
    calls = {"n": 0}

    def flaky(*args: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # first half-step of the second sweep
            raise KeyboardInterrupt
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr("rectune.models.als.als_cg_half_step", flaky)
    m = ALS(factors=4, iterations=5)
    with pytest.raises(KeyboardInterrupt):
        m.fit(implicit_small())
    assert m.n_iter_ == 1
    ids, scores = m.recommend([2, 3], 3)
    assert ids.shape == (2, 3) and np.all(np.isfinite(scores))


def test_progress_bar_runs(capsys: pytest.CaptureFixture[str]) -> None:
    ALS(factors=3, iterations=2).fit(implicit_small(), options=FitOptions(progress=True))


@pytest.mark.parametrize("bad", [{"factors": 0}, {"regularization": 0.0}, {"alpha": -1.0},
                                 {"solver": "lu"}, {"dtype": "float16"}, {"cg_steps": 0},
                                 {"reg_exponent": float("nan")}, {"random_state": "x"}])
def test_bad_hyper_parameters_raise(bad: dict[str, object]) -> None:
    with pytest.raises(DataError):
        ALS(**bad).fit(implicit_small())  # type: ignore[arg-type]


@pytest.mark.realdata
def test_ml100k_quality_band(ml100k_dir: Path) -> None:
    """PROTOCOLS.md per-user 80/20: implicit's ALS (64, 15 it., reg 0.05) gets 0.220."""
    m = ALS(factors=64, iterations=15, regularization=0.05, alpha=0.0)
    assert 0.21 <= ml100k_ndcg(ml100k_dir, m) <= 0.24


def ml100k_ndcg(folder: Path, model: Recommender) -> float:
    """NDCG@10 of ``model`` on the per-user 80/20 ranking protocol (full ranking)."""
    from rectune.data.protocols import ml100k_user_8020
    from rectune.evaluate.ranking import ranking_metrics

    df = pd.read_csv(folder / "u.data", sep="\t", names=["user", "item", "rating", "timestamp"])
    train, test = ml100k_user_8020(Interactions.from_frame(df, rating_scale=(1, 5)))
    model.fit(train)
    truth = test.csr()
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    top, _ = model.recommend_indices(users, 10)
    return ranking_metrics(top, truth[users], 10, ["ndcg"])["ndcg@10"]
