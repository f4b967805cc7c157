"""``solver="als"``: anchored block solves of the SGD fine-tuning objective."""

from __future__ import annotations

import numpy as np
import pytest

from rectune import RectuneError
from rectune.data import Interactions, synthetic, temporal_split
from rectune.evaluate import rmse
from rectune.finetune import FinetuneConfig, finetune
from rectune.finetune.capabilities import capability_table, supports
from rectune.finetune.config import TaskChange
from rectune.models import SVDpp
from rectune.models.baseline import Baseline
from rectune.models.mf_svd import SVD


@pytest.fixture(scope="module")
def split() -> tuple[Interactions, Interactions, Interactions]:
    ds = synthetic(20_000, drift=1.5, seed=5)
    s = temporal_split(ds.interactions, train_fraction=0.6, new_fraction=0.25)
    return s.pretrain, s.new, s.test


@pytest.fixture(scope="module")
def base(split: tuple[Interactions, Interactions, Interactions]) -> SVD:
    return SVD(n_factors=8, n_epochs=10, random_state=0).fit(split[0])


def _cfg(**kw: object) -> FinetuneConfig:
    return FinetuneConfig(**{"solver": "als", "early_stopping": False, "verbose": False, **kw})


def _user_rows(model: SVD, data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    return (model.user_map_.encode(data.user_map.decode(data.user)),
            model.item_map_.encode(data.item_map.decode(data.item)))


def _ridge_users(base: SVD, ft: SVD, data: Interactions, lam: float) -> dict[int, np.ndarray]:
    """Each user's [b_u, p_u] solved with numpy: items fixed at ft's, the L2-SP system."""
    _, _, _, _, reg_bu, _, reg_pu, _ = base._rates()
    u, i = _user_rows(ft, data)
    mu = float(np.asarray(ft.global_bias_).reshape(-1)[0])
    q = np.asarray(ft.item_factors_, dtype=np.float64)
    bi = np.asarray(ft.item_bias_, dtype=np.float64)
    k = q.shape[1]
    out = {}
    for uu in np.unique(u):
        rows = u == uu
        n = int(rows.sum())
        x = np.column_stack([np.ones(n), q[i[rows]]])
        y = data.value[rows] - mu - bi[i[rows]]
        old = uu < base.n_users and base.seen_[[uu]].nnz > 0
        if old:
            d = n * (np.r_[reg_bu, np.full(k, reg_pu)] + lam)
            anchor = np.r_[base.user_bias_[uu], base.user_factors_[uu]].astype(np.float64)
            rhs = x.T @ y + n * lam * anchor
        else:
            d = n * np.full(k + 1, reg_pu)
            rhs = x.T @ y
        out[int(uu)] = np.linalg.solve(x.T @ x + np.diag(d), rhs)
    return out


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_exact_block_equals_numpy_ridge(base: SVD, split: tuple, lam: float) -> None:
    new = split[1]
    ft = finetune(base, new, _cfg(freeze=["item_*"], epochs=1, cg_steps=0, l2sp=lam))
    want = _ridge_users(base, ft, new, lam)
    got_b, got_p = np.asarray(ft.user_bias_), np.asarray(ft.user_factors_)
    for uu, w in want.items():
        np.testing.assert_allclose(got_b[uu], w[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got_p[uu], w[1:], rtol=1e-4, atol=1e-5)


def test_conjugate_gradient_converges_to_the_exact_solve(base: SVD, split: tuple) -> None:
    new = split[1]
    exact = finetune(base, new, _cfg(freeze=["item_*"], epochs=1, cg_steps=0, l2sp=0.1))
    cg = finetune(base, new, _cfg(freeze=["item_*"], epochs=1, cg_steps=30, l2sp=0.1))
    np.testing.assert_allclose(cg.user_factors_, exact.user_factors_, atol=2e-4)
    few = finetune(base, new, _cfg(freeze=["item_*"], epochs=1, cg_steps=1, l2sp=0.1))
    err_few = np.abs(few.user_factors_ - exact.user_factors_).max()
    assert err_few > np.abs(cg.user_factors_ - exact.user_factors_).max()


def test_huge_lambda_keeps_pretrained_rows(base: SVD, split: tuple) -> None:
    ft = finetune(base, split[1], _cfg(epochs=2, cg_steps=0, l2sp=1e9))
    n_u, n_i = base.n_users, base.n_items
    old_u = np.diff(base.seen_.indptr) > 0
    old_i = base.item_popularity_ > 0
    np.testing.assert_allclose(ft.user_factors_[:n_u][old_u], base.user_factors_[old_u],
                               atol=1e-5)
    np.testing.assert_allclose(ft.item_bias_[:n_i][old_i], base.item_bias_[old_i], atol=1e-5)


def test_frozen_groups_bit_identical_one_free_block_converges(base: SVD, split: tuple) -> None:
    ft = finetune(base, split[1], _cfg(freeze=["user_*"], epochs=3, l2sp=0.1))
    old_u = np.diff(base.seen_.indptr) > 0
    np.testing.assert_array_equal(ft.user_factors_[:base.n_users][old_u],
                                  base.user_factors_[old_u])
    np.testing.assert_array_equal(ft.user_bias_[:base.n_users][old_u], base.user_bias_[old_u])
    # with one side frozen the other side's block is solved by the first sweep
    loss = ft.meta_["finetune"]["history"]["train_rmse"]
    assert abs(loss[-1] - loss[0]) < 1e-5
    assert np.array_equal(np.asarray(base.global_bias_), np.asarray(ft.global_bias_))


def test_als_adapts_like_sgd(base: SVD, split: tuple) -> None:
    _, new, test = split
    stale = rmse(test.value, base.predict_indices(test.user, test.item))
    als = finetune(base, new, FinetuneConfig(solver="als", l2sp=0.1, epochs=10, verbose=False))
    got = rmse(test.value, als.predict_indices(test.user, test.item))
    assert got < stale - 0.01
    hist = als.meta_["finetune"]["history"]
    assert 1 <= hist["epochs"] <= 10 and len(hist["valid_rmse"]) == hist["epochs"]


def test_baseline_works_with_als(split: tuple) -> None:
    old, new, test = split
    b = Baseline().fit(old)
    ft = finetune(b, new, _cfg(epochs=2, l2sp=0.1))
    assert rmse(test.value, ft.predict_indices(test.user, test.item)) < \
        rmse(test.value, b.predict_indices(test.user, test.item))


def test_refusals(base: SVD, split: tuple) -> None:
    new = split[1]
    with pytest.raises(RectuneError, match="solver='als'"):
        finetune(base, new, _cfg(task=TaskChange()))
    pp = SVDpp(n_factors=4, n_epochs=2, random_state=0).fit(split[0])
    with pytest.raises(RectuneError, match="als_solver"):
        finetune(pp, new, _cfg())
    assert supports(SVD, "als_solver") and not supports(SVDpp, "als_solver")
    assert "als_solver" in str(capability_table())
    with pytest.raises(ValueError):
        FinetuneConfig(solver="newton")  # type: ignore[arg-type]
    assert FinetuneConfig.from_json(_cfg(cg_steps=0).to_json()).solver == "als"
