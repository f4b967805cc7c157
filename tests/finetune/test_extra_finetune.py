"""Fine-tuning SVD++, NMF and BPR: L2-SP limits, freezing, growth, gradients."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rectune import RectuneError
from rectune.data import IdMap, Interactions, synthetic, temporal_split
from rectune.evaluate import rmse
from rectune.finetune import FinetuneConfig, capability_table, finetune, supports
from rectune.finetune._kernels_extra import l2sp_bpr_epoch, l2sp_svdpp_epoch
from rectune.finetune.extra import bpr_loss
from rectune.models import BPR, NMF, SVDpp
from rectune.models._implicit_kernels import bpr_epoch
from rectune.models.base import Recommender

QUIET = {"verbose": False}


@pytest.fixture(scope="module")
def split() -> tuple[Interactions, Interactions, Interactions]:
    ds = synthetic(12_000, drift=1.5, seed=3)
    s = temporal_split(ds.interactions, train_fraction=0.6, new_fraction=0.25)
    return s.pretrain, s.new, s.test


@pytest.fixture(scope="module")
def models(split: tuple) -> dict[str, Recommender]:
    pre = split[0]
    return {
        "svdpp": SVDpp(n_factors=8, n_epochs=8, random_state=0).fit(pre),
        "nmf": NMF(n_factors=6, n_epochs=25, random_state=0).fit(pre),
        "nmf_biased": NMF(n_factors=6, n_epochs=25, biased=True, random_state=0).fit(pre),
        "bpr": BPR(factors=8, iterations=15, random_state=0).fit(pre.binarize(4)),
    }


def _data(name: str, d: Interactions) -> Interactions:
    return d.binarize(4) if name == "bpr" else d


def _old_rows(m: Recommender, name: str) -> np.ndarray:
    if name.startswith("user_"):
        return np.flatnonzero(np.diff(m.seen_.indptr) > 0)
    return np.flatnonzero(m.item_popularity_ > 0)


def _snapshot(m: Recommender) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in m.parameters().items()}


NAMES = ["svdpp", "nmf", "nmf_biased", "bpr"]


def test_capability_rows() -> None:
    for cls in (SVDpp, NMF, BPR):
        for cap in ("finetune", "l2sp", "freeze", "growth"):
            assert supports(cls, cap), (cls.__name__, cap)
        assert not supports(cls, "task_change")
    table = capability_table("dict")
    assert isinstance(table, dict) and table["SVDpp"]["l2sp"] and not table["NMF"]["fold_in"]


@pytest.mark.parametrize("name", NAMES)
def test_huge_l2sp_keeps_old_rows_and_pretrained_is_untouched(name: str, models: dict,
                                                              split: tuple) -> None:
    m = models[name]
    before = _snapshot(m)
    ft = finetune(m, _data(name, split[1]),
                  FinetuneConfig(l2sp=1e9, epochs=3, early_stopping=False, **QUIET))
    after_pre = _snapshot(m)
    for k, v in before.items():  # the pre-trained object is unchanged
        np.testing.assert_array_equal(after_pre[k], v, err_msg=k)
    for k, v in ft.parameters().items():
        rows = _old_rows(m, k) if k.startswith(("user_", "item_")) else slice(None)
        np.testing.assert_allclose(np.asarray(v)[: len(before[k])][rows], before[k][rows],
                                   atol=1e-5, err_msg=k)
    free = finetune(m, _data(name, split[1]),
                    FinetuneConfig(l2sp=0.0, epochs=3, early_stopping=False, **QUIET))
    k = "user_factors"
    rows = _old_rows(m, k)
    assert np.abs(free.parameters()[k][rows] - before[k][rows]).max() > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_frozen_groups_are_bit_identical(name: str, models: dict, split: tuple) -> None:
    m = models[name]
    ft = finetune(m, _data(name, split[1]),
                  FinetuneConfig(freeze=["item_*"], epochs=3, early_stopping=False, **QUIET))
    pre = m.parameters()
    for k, v in ft.parameters().items():
        if k.startswith("item_"):
            np.testing.assert_array_equal(np.asarray(v)[: len(pre[k])], pre[k], err_msg=k)
    assert not np.array_equal(ft.parameters()["user_factors"][: m.n_users],
                              pre["user_factors"])
    assert ft.meta_["finetune"]["frozen"] == sorted(k for k in pre if k.startswith("item_"))


@pytest.mark.parametrize("name", NAMES)
def test_new_ids_grow_rows_and_old_indices_stay(name: str, models: dict) -> None:
    m = models[name]
    old_u, old_i = m.user_map_.ids[:3].tolist(), m.item_map_.ids[:3].tolist()
    nu, ni = 10**7, 10**7 + 1
    df = pd.DataFrame({"user": [nu, nu, nu, old_u[0], old_u[1], nu + 5],
                       "item": [old_i[0], old_i[1], ni, ni, old_i[2], ni],
                       "rating": [5.0, 4.0, 5.0, 4.0, 2.0, 5.0],
                       "timestamp": np.arange(6)})
    new = Interactions.from_frame(df, rating_scale=(1, 5))
    ft = finetune(m, _data(name, new), FinetuneConfig(epochs=4, early_stopping=False, **QUIET))
    assert ft.n_users == m.n_users + 2 and ft.n_items == m.n_items + 1
    np.testing.assert_array_equal(ft.user_map_.ids[: m.n_users], m.user_map_.ids)
    np.testing.assert_array_equal(ft.item_map_.ids[: m.n_items], m.item_map_.ids)
    for k, v in ft.parameters().items():
        if k.startswith("user_"):
            assert len(v) == ft.n_users
        elif k.startswith("item_"):
            assert len(v) == ft.n_items
        assert np.all(np.isfinite(np.asarray(v))), k
    assert ft.known([nu], [ni]).all()
    assert np.all(np.isfinite(ft.predict([nu, nu], [ni, old_i[0]])))
    if name.startswith("nmf"):  # non-negativity survives growth and anchoring
        assert (ft.parameters()["user_factors"] >= 0).all()
        assert (ft.parameters()["item_factors"] >= 0).all()


@pytest.mark.parametrize(("name", "lam"), [("svdpp", 0.01), ("nmf", 0.1), ("nmf_biased", 1.0)])
def test_finetuning_beats_the_stale_model(name: str, lam: float, models: dict,
                                          split: tuple) -> None:
    m = models[name]
    _, new, test = split
    ft = finetune(m, new, FinetuneConfig(l2sp=lam, **QUIET))

    def ev(x: Recommender, d: Interactions) -> float:
        return rmse(d.value, x.predict_indices(d.user, d.item))

    assert ev(ft, new) < ev(m, new) - 0.02
    assert ev(ft, test) < ev(m, test)
    hist = ft.meta_["finetune"]["history"]
    assert hist["epochs"] >= 1 and len(hist["valid_rmse"]) == hist["epochs"]


def test_bpr_finetuning_lowers_the_loss_on_new_data(models: dict, split: tuple) -> None:
    m = models["bpr"]
    new = split[1].binarize(4)
    new = new.take(np.flatnonzero(new.value > 0))
    ft = finetune(m, new, FinetuneConfig(lr_factor=1.0, epochs=15, **QUIET))
    # one fixed set of negatives for both models, none of them a positive of either
    rng = np.random.default_rng(5)
    users = new.user
    neg = rng.integers(0, m.n_items, len(users))
    ok = ~np.asarray(ft.seen_[users, neg]).astype(bool).ravel()
    stale = bpr_loss(m, users[ok], new.item[ok], neg[ok])
    tuned = bpr_loss(ft, users[ok], new.item[ok], neg[ok])
    assert tuned < stale - 0.05
    assert ft.meta_["finetune"]["history"]["valid_loss"]


# ---------------------------------------------------------------- λ = 0 = plain training
def test_svdpp_lambda_zero_continues_its_own_training(split: tuple) -> None:
    pre = split[0]
    kw = {"n_factors": 6, "shuffle": False, "random_state": 0}
    m3 = SVDpp(n_epochs=3, **kw).fit(pre)
    m4 = SVDpp(n_epochs=4, **kw).fit(pre)
    ft = finetune(m3, pre, FinetuneConfig(l2sp=0.0, lr_factor=1.0, epochs=1,
                                          early_stopping=False, freeze=["global_bias"],
                                          **QUIET))
    for k, v in m4.parameters().items():
        np.testing.assert_allclose(ft.parameters()[k], v, atol=2e-5, err_msg=k)
    assert not np.allclose(m3.parameters()["item_implicit"], m4.parameters()["item_implicit"],
                           atol=1e-4)


def test_nmf_lambda_zero_is_plain_alternating_multiplicative_updates() -> None:
    rng = np.random.default_rng(2)
    n_u, n_i, k, reg = 12, 9, 3, 0.06
    mask = rng.random((n_u, n_i)) < 0.5
    mask[:, 0] = mask[0, :] = True
    u, i = np.nonzero(mask)
    r = rng.integers(1, 6, len(u)).astype(float)
    umap, imap = IdMap(np.arange(n_u)), IdMap(np.arange(n_i))
    pre = Interactions.from_indices(u, i, r, umap, imap, rating_scale=(1, 5))
    m = NMF(n_factors=k, n_epochs=3, random_state=0).fit(pre)
    sub = rng.random(len(u)) < 0.6  # the new data: a subset of the pairs, new values
    r_new = rng.integers(1, 6, int(sub.sum())).astype(float)
    new = Interactions.from_indices(u[sub], i[sub], r_new, umap, imap, rating_scale=(1, 5))
    ft = finetune(m, new, FinetuneConfig(l2sp=0.0, epochs=1, early_stopping=False, **QUIET))
    # reference: dense Lee-Seung step with Surprise's count-scaled L2, users then items
    p, q = m.user_factors_.astype(float), m.item_factors_.astype(float)
    big_r = np.zeros((n_u, n_i))
    big_r[u[sub], i[sub]] = r_new
    w = big_r > 0
    nu, ni = w.sum(1), w.sum(0)
    p_ref = p * (big_r @ q) / (((p @ q.T) * w) @ q + nu[:, None] * reg * p)
    p_ref[nu == 0] = p[nu == 0]
    q_ref = q * (big_r.T @ p_ref) / (((p_ref @ q.T) * w).T @ p_ref + ni[:, None] * reg * q)
    q_ref[ni == 0] = q[ni == 0]
    np.testing.assert_allclose(ft.parameters()["user_factors"], p_ref, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(ft.parameters()["item_factors"], q_ref, rtol=2e-5, atol=1e-6)
    assert not np.allclose(p_ref, p, atol=1e-3)


def test_bpr_kernel_lambda_zero_is_the_model_epoch() -> None:
    rng = np.random.default_rng(0)
    n_u, n_i, f = 30, 25, 4
    dense = rng.random((n_u, n_i)) < 0.2
    indptr = np.r_[0, np.cumsum(dense.sum(1))].astype(np.int64)
    indices = np.nonzero(dense)[1].astype(np.int64)
    pos_user = np.repeat(np.arange(n_u), np.diff(indptr)).astype(np.int64)
    uf = (rng.random((n_u, f)) - 0.5).astype(np.float32)
    vf = (rng.random((n_i, f)) - 0.5).astype(np.float32)
    b = np.zeros(n_i, np.float32)
    pool = np.empty(0, np.int64)
    a = [uf.copy(), vf.copy(), b.copy()]
    c = [uf.copy(), vf.copy(), b.copy()]
    sa = np.array([7], dtype=np.uint64)
    sc = sa.copy()
    bpr_epoch(pos_user, indices, indptr, indices, pool, np.arange(len(indices)), *a, 0.05,
              0.01, True, 64, sa)
    l2sp_bpr_epoch(pos_user, indices, indptr, indices, pool, np.arange(len(indices)), *c,
                   uf, vf, b, np.ones(n_u, bool), np.ones(n_i, bool), 0.05, 0.01,
                   np.zeros(3), 0.01, np.ones(3, bool), True, 64, sc)
    for x, y in zip(a, c, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-6)
    assert not np.allclose(a[0], uf)


# ------------------------------------------------------------ numerical L2-SP gradient
def _svdpp_loss(theta: dict[str, np.ndarray], theta0: dict[str, np.ndarray], u: int, i: int,
                r: float, n_items: np.ndarray, regs: np.ndarray, lams: np.ndarray) -> float:
    """½e² + ½Σ reg_g‖θ_g‖² + ½Σ λ_g‖θ_g − θ_g^pre‖² over the rows one rating touches."""
    z = theta["y"][n_items].sum(0) / np.sqrt(len(n_items))
    e = r - (theta["mu"][0] + theta["bu"][u] + theta["bi"][i]
             + theta["q"][i] @ (theta["p"][u] + z))
    rows = {"mu": [0], "bu": [u], "bi": [i], "p": [u], "q": [i], "y": list(n_items)}
    out = 0.5 * e * e
    for g, (name, rr) in enumerate(rows.items()):
        t, t0 = theta[name][rr], theta0[name][rr]
        out += 0.5 * regs[g] * np.sum(t * t) + 0.5 * lams[g] * np.sum((t - t0) ** 2)
    return float(out)


def test_svdpp_step_follows_the_numerical_l2sp_gradient() -> None:
    rng = np.random.default_rng(1)
    n_u, n_i, k = 3, 6, 4
    theta0 = {"mu": np.array([3.5]), "bu": rng.normal(0, 0.3, n_u),
              "bi": rng.normal(0, 0.3, n_i), "p": rng.normal(0, 0.3, (n_u, k)),
              "q": rng.normal(0, 0.3, (n_i, k)), "y": rng.normal(0, 0.3, (n_i, k))}
    theta = {key: v + rng.normal(0, 0.2, v.shape) for key, v in theta0.items()}
    u, i, r = 1, 2, 4.0
    n_items = np.array([0, 2, 3, 5])  # N(u) includes the rated item
    lrs = np.array([1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3])
    regs = np.array([0.0, 0.02, 0.03, 0.04, 0.05, 0.06])
    lams = np.array([0.5, 1.0, 2.0, 3.0, 4.0, 5.0])
    num = {}
    for key, v in theta.items():  # central differences of the anchored objective
        grad = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            hi = {kk: vv.copy() for kk, vv in theta.items()}
            lo = {kk: vv.copy() for kk, vv in theta.items()}
            hi[key][idx] += 1e-6
            lo[key][idx] -= 1e-6
            grad[idx] = (_svdpp_loss(hi, theta0, u, i, r, n_items, regs, lams)
                         - _svdpp_loss(lo, theta0, u, i, r, n_items, regs, lams)) / 2e-6
        num[key] = grad
    cur = {key: v.copy() for key, v in theta.items()}
    n_indptr = np.array([0, 0, len(n_items), len(n_items)], dtype=np.int64)
    l2sp_svdpp_epoch(np.array([u], np.int32), np.array([0, 0, 1, 1], np.int64),
                     np.array([i], np.int32), np.array([r], np.float64), n_indptr,
                     n_items.astype(np.int64), cur["mu"], cur["bu"], cur["bi"], cur["p"],
                     cur["q"], cur["y"], float(theta0["mu"][0]), theta0["bu"], theta0["bi"],
                     theta0["p"], theta0["q"], theta0["y"], np.ones(n_u, bool),
                     np.ones(n_i, bool), lrs, regs, lams, 0.0, np.ones(6, bool))
    for g, key in enumerate(["mu", "bu", "bi", "p", "q", "y"]):
        # the proximal step is a gradient step of size lr / (1 + lr·λ)
        step = (theta[key] - cur[key]) * (1 + lrs[g] * lams[g]) / lrs[g]
        np.testing.assert_allclose(step, num[key], atol=1e-5, err_msg=key)
    assert np.abs(num["y"][[1, 4]]).max() == 0  # rows outside N(u) have no gradient


def test_unsupported_requests_are_refused(models: dict, split: tuple) -> None:
    from rectune.finetune import TaskChange

    with pytest.raises(RectuneError, match="task_change"):
        finetune(models["svdpp"], split[1], FinetuneConfig(task=TaskChange(), **QUIET))
    with pytest.raises(RectuneError, match="matches no parameter group"):
        finetune(models["nmf"], split[1], FinetuneConfig(freeze=["item_implicit"], **QUIET))
    with pytest.raises(RectuneError, match="new_rows='zero'"):
        finetune(models["nmf"], split[1], FinetuneConfig(new_rows="zero", **QUIET))


@pytest.mark.parametrize("name", NAMES)
def test_replay_mixes_old_rows_in(name: str, models: dict, split: tuple) -> None:
    pre, new, _ = split
    ft = finetune(models[name], _data(name, new),
                  FinetuneConfig(replay=0.5, epochs=2, **QUIET), old_data=_data(name, pre))
    assert ft.meta_["finetune"]["n_new_rows"] > 1.3 * ft.meta_["finetune"]["n_valid_rows"] * 9
