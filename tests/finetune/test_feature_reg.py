"""Feature-regularised fine-tuning (λ_f‖p_u − W f_u‖²) and new_rows="features" for MF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rectune._errors import DataError, RectuneError
from rectune.data.interactions import Interactions
from rectune.evaluate.rating import rmse
from rectune.features.table import FeatureTable
from rectune.finetune import FinetuneConfig, finetune, supports
from rectune.finetune._kernels import feature_mf_epoch, l2sp_mf_epoch
from rectune.finetune.features import (
    Projection,
    attach_feature_prior,
    embed_new_users,
    infer_spec,
)
from rectune.models.base import Recommender
from rectune.models.baseline import Baseline
from rectune.models.mf_svd import SVD

N_WARM, N_COLD, N_ITEMS, K, N_GROUPS = 300, 60, 120, 4, 5


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    """Users' factors are a linear function of a categorical feature (their group).

    Warm users rate 40 items; each cold user has 1 support rating and 30 query ones.
    """
    rng = np.random.default_rng(0)
    n_u = N_WARM + N_COLD
    group = rng.integers(0, N_GROUPS, n_u)
    centres = rng.normal(0, 1.0, (N_GROUPS, K))
    p = centres[group] + rng.normal(0, 0.05, (n_u, K))
    q = rng.normal(0, 0.6, (N_ITEMS, K))
    users, items = [], []
    for u in range(n_u):
        n = 40 if u < N_WARM else 31
        users.append(np.full(n, u))
        items.append(rng.choice(N_ITEMS, n, replace=False))
    uu, ii = np.concatenate(users), np.concatenate(items)
    r = 3.0 + np.einsum("ij,ij->i", p[uu], q[ii]) + rng.normal(0, 0.1, len(uu))
    raw_users = np.arange(1000, 1000 + n_u)
    frame = pd.DataFrame({"user": raw_users[uu], "item": ii + 1, "rating": r})
    first = np.r_[True, uu[1:] != uu[:-1]]
    warm = uu < N_WARM
    feats = pd.DataFrame({"group": [f"g{g}" for g in group],
                          "age": rng.integers(18, 60, n_u)}, index=pd.Index(raw_users))
    mk = Interactions.from_frame
    return {
        "warm": mk(frame[warm], timestamp=None),
        "support": mk(frame[~warm & first], timestamp=None),
        "query": mk(frame[~warm & ~first], timestamp=None),
        "features": feats,
    }


@pytest.fixture(scope="module")
def pre(world: dict[str, Any]) -> SVD:
    return SVD(n_factors=K, n_epochs=60, lr_all=0.01, reg_all=0.02,
               random_state=0).fit(world["warm"])


def _cfg(**kw: Any) -> FinetuneConfig:
    base: dict[str, Any] = {"learning_rate": 0.01, "epochs": 30, "early_stopping": False,
                            "verbose": False}
    return FinetuneConfig(**{**base, **kw})


def _query_rmse(m: Recommender, query: Interactions) -> float:
    u = query.user_map.decode(query.user)
    i = query.item_map.decode(query.item)
    return rmse(query.value, m.predict(u, i))


# ----------------------------------------------------------------------- kernel
def _params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"mu": np.array([3.0]), "bu": rng.normal(0, .3, 2), "bi": rng.normal(0, .3, 2),
            "p": rng.normal(0, .5, (2, 3)), "q": rng.normal(0, .5, (2, 3))}


def test_feature_term_gradient_matches_finite_differences() -> None:
    """One SGD step equals −lr × the gradient of ½e² + penalties, prior term included."""
    rng = np.random.default_rng(3)
    th = _params(rng)
    a0 = _params(rng)  # pre-trained anchors
    tgt = _params(rng)  # feature targets
    old_u, old_i = np.array([False, True]), np.array([True, False])
    regs, lams, reg_new, lr = np.array([0, .02, .03, .04, .05]), np.full(5, 0.7), 0.06, 0.01
    lfu, lfi = np.array([2.5, 0.0]), np.array([0.0, 1.5])
    r, uu, ii = 4.2, 0, 1  # user 0: new row with a prior; item 1: new row with a prior

    def objective(v: dict[str, np.ndarray]) -> float:
        e = r - (v["mu"][0] + v["bu"][uu] + v["bi"][ii] + v["p"][uu] @ v["q"][ii])
        f = 0.5 * e * e + 0.5 * lams[0] * (v["mu"][0] - a0["mu"][0]) ** 2
        f += 0.5 * reg_new * (v["bu"][uu] ** 2 + v["p"][uu] @ v["p"][uu])  # new user row
        f += 0.5 * lfu[uu] * ((v["bu"][uu] - tgt["bu"][uu]) ** 2
                              + np.sum((v["p"][uu] - tgt["p"][uu]) ** 2))
        f += 0.5 * reg_new * (v["bi"][ii] ** 2 + v["q"][ii] @ v["q"][ii])  # new item row
        f += 0.5 * lfi[ii] * ((v["bi"][ii] - tgt["bi"][ii]) ** 2
                              + np.sum((v["q"][ii] - tgt["q"][ii]) ** 2))
        return float(f)

    grad: dict[str, np.ndarray] = {}
    h = 1e-6
    for k, arr in th.items():
        g = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            up = {kk: vv.copy() for kk, vv in th.items()}
            dn = {kk: vv.copy() for kk, vv in th.items()}
            up[k][idx] += h
            dn[k][idx] -= h
            g[idx] = (objective(up) - objective(dn)) / (2 * h)
        grad[k] = g
    new = {k: v.copy() for k, v in th.items()}
    feature_mf_epoch(np.array([uu]), np.array([ii]), np.array([r]), new["mu"], new["bu"],
                     new["bi"], new["p"], new["q"], float(a0["mu"][0]), a0["bu"], a0["bi"],
                     a0["p"], a0["q"], old_u, old_i, True, np.full(5, lr), regs, lams, reg_new,
                     np.ones(5, dtype=np.bool_), tgt["bu"], tgt["bi"], tgt["p"], tgt["q"],
                     lfu, lfi)
    for k in th:
        np.testing.assert_allclose(new[k], th[k] - lr * grad[k], atol=1e-9, err_msg=k)
    assert abs(grad["bu"][uu]) > 1e-3 and abs(grad["q"][ii]).max() > 1e-3  # not vacuous


def test_zero_prior_weight_kernel_equals_l2sp_kernel() -> None:
    rng = np.random.default_rng(5)
    n_u, n_i = 6, 5
    tabs = [rng.normal(0, .3, n_u), rng.normal(0, .3, n_i), rng.normal(0, .3, (n_u, 3)),
            rng.normal(0, .3, (n_i, 3))]
    u, i = rng.integers(0, n_u, 50), rng.integers(0, n_i, 50)
    r = rng.uniform(1, 5, 50)
    old_u, old_i = rng.random(n_u) < .5, rng.random(n_i) < .5
    cfg = (True, np.full(5, .01), np.full(5, .02), np.full(5, .3), .05, np.ones(5, np.bool_))
    a = [np.array([3.0])] + [t.copy() for t in tabs]
    b = [np.array([3.0])] + [t.copy() for t in tabs]
    plain: Any = l2sp_mf_epoch
    featured: Any = feature_mf_epoch
    plain(u, i, r, *a, 3.1, *tabs, old_u, old_i, *cfg)
    featured(u, i, r, *b, 3.1, *tabs, old_u, old_i, *cfg, tabs[0], tabs[1], tabs[2],
                     tabs[3], np.zeros(n_u), np.zeros(n_i))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_weighted_ridge_matches_normal_equations() -> None:
    """The W-step: weighted ridge, intercept unpenalised, one penalty per output."""
    import scipy.sparse as sp

    from rectune.finetune.features import Ridge

    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 6))
    y = x @ rng.normal(size=(6, 3)) + 1.5 + rng.normal(0, .1, (40, 3))
    w = rng.integers(1, 20, 40).astype(float)
    ridge = Ridge(sp.csr_array(x), w)
    alpha = ridge.choose(y)
    coef, icpt = ridge.solve(y, alpha)
    xa = np.column_stack([x, np.ones(40)])
    wn = w * 40 / w.sum()
    for c in range(3):
        pen = np.diag(np.r_[np.full(6, alpha[c]), 0.0])
        sol = np.linalg.solve(xa.T @ (xa * wn[:, None]) + pen, xa.T @ (wn * y[:, c]))
        np.testing.assert_allclose(np.r_[coef[:, c], icpt[c]], sol, rtol=1e-8, atol=1e-10)
    assert alpha.max() < 0.1 * ridge.scale  # a strong linear signal: GCV penalises little


# ------------------------------------------------------------------ fine-tuning
def test_supported_for_mf_family() -> None:
    assert supports(SVD, "feature_reg") and supports(Baseline, "feature_reg")


def test_lambda_zero_is_plain_l2sp_bit_for_bit(world: dict[str, Any], pre: SVD) -> None:
    cfg = _cfg(l2sp=0.1, feature_reg=0.0)
    plain = finetune(pre, world["support"], cfg)
    with_f = finetune(pre, world["support"], cfg, features=world["features"])
    for name, arr in plain.parameters().items():
        np.testing.assert_array_equal(np.asarray(arr), np.asarray(with_f.parameters()[name]))
    assert "feature_prior" in with_f.meta_ and "feature_prior" not in plain.meta_


@pytest.mark.parametrize("solver", ["sgd", "als"])
def test_huge_lambda_puts_new_users_on_their_feature_prediction(world: dict[str, Any],
                                                                pre: SVD, solver: str) -> None:
    feats = world["features"]
    m = finetune(pre, world["support"], _cfg(feature_reg=1e6, solver=solver), features=feats)
    proj = Projection.from_json(m.meta_["feature_prior"]["user"], feats)
    cold = world["support"].user_map.decode(np.unique(world["support"].user))
    f, b, present = proj.targets(cold)
    rows = m.user_map_.encode(cold)
    assert present.all() and b is not None
    params = m.parameters()
    np.testing.assert_allclose(params["user_factors"][rows], f, atol=0.05)
    np.testing.assert_allclose(params["user_bias"][rows], b, atol=0.05)
    # and the targets are not trivially shared: the feature (group) separates them
    assert np.ptp(f[:, 0]) > 0.5
    info = m.meta_["finetune"]["feature_prior"]
    assert info["new_rows"] == "features" and info["user"]["prior_rows"] == N_COLD


def test_features_beat_no_features_for_one_rating_users(world: dict[str, Any],
                                                        pre: SVD) -> None:
    freeze = ["item_*", "global_bias"]
    plain = finetune(pre, world["support"], _cfg(freeze=freeze))
    feat = finetune(pre, world["support"], _cfg(freeze=freeze, feature_reg=3.0),
                    features=world["features"])
    init_only = finetune(pre, world["support"], _cfg(freeze=freeze, new_rows="features"),
                         features=world["features"])
    e_plain, e_feat = _query_rmse(plain, world["query"]), _query_rmse(feat, world["query"])
    assert e_feat < 0.6 * e_plain, (e_feat, e_plain)
    assert _query_rmse(init_only, world["query"]) < e_plain


def test_baseline_gets_a_feature_prior_on_its_biases(world: dict[str, Any]) -> None:
    base = Baseline().fit(world["warm"])
    m = finetune(base, world["support"], _cfg(feature_reg=1.0), features=world["features"])
    proj = m.meta_["feature_prior"]["user"]
    assert proj["n_factors"] == 0 and proj["bias"]
    plain = finetune(base, world["support"], _cfg())
    assert not np.array_equal(m.parameters()["user_bias"], plain.parameters()["user_bias"])


def test_item_features_dict_and_feature_table(world: dict[str, Any], pre: SVD) -> None:
    items = pd.DataFrame({"kind": [f"k{i % 3}" for i in range(N_ITEMS)]},
                         index=pd.Index(np.arange(1, N_ITEMS + 1)))
    table = FeatureTable({"group": "categorical"})
    m = finetune(pre, world["support"], _cfg(feature_reg=1.0),
                 features={"user": (table, world["features"]), "item": items})
    prior = m.meta_["feature_prior"]
    assert set(prior) == {"user", "item"}
    assert list(prior["user"]["table"]["fields"]) == ["group"]  # the table given was used


def test_save_load_keeps_what_embedding_needs(world: dict[str, Any], pre: SVD,
                                              tmp_path: Path) -> None:
    m = finetune(pre, world["support"], _cfg(feature_reg=1.0), features=world["features"])
    m.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    fresh = pd.DataFrame({"group": ["g0", "g1", "g2"], "age": [20, 30, 40]},
                         index=pd.Index([5001, 5002, 5003]))
    a, b = embed_new_users(m, fresh), embed_new_users(loaded, fresh)
    items = np.array([1, 2, 3])
    pa = a.predict(np.repeat(fresh.index.to_numpy(), 3), np.tile(items, 3))
    np.testing.assert_allclose(pa, b.predict(np.repeat(fresh.index.to_numpy(), 3),
                                             np.tile(items, 3)))
    assert a.n_users == m.n_users + 3 and m.n_users == pre.n_users + N_COLD  # m unchanged
    assert np.ptp(pa.reshape(3, 3)[:, 0]) > 1e-3  # the profile matters
    # the brand-new users are scored from their features, not the unknown-user fallback
    assert not np.allclose(pa[:3], m.predict([5001] * 3, items))


def test_attach_prior_embeds_profile_only_users(world: dict[str, Any], pre: SVD) -> None:
    m = embed_new_users(attach_feature_prior(pre, world["features"]), world["features"])
    stale = _query_rmse(pre, world["query"])
    assert _query_rmse(m, world["query"]) < 0.8 * stale  # K = 0: features alone


# ----------------------------------------------------------------------- errors
def test_missing_column_is_named(world: dict[str, Any], pre: SVD) -> None:
    table = FeatureTable({"occupation": "categorical"})
    with pytest.raises(DataError, match="occupation"):
        finetune(pre, world["support"], _cfg(feature_reg=1.0),
                 features=(table, world["features"]))
    m = finetune(pre, world["support"], _cfg(feature_reg=1.0), features=world["features"])
    with pytest.raises(DataError, match="age"):
        embed_new_users(m, pd.DataFrame({"group": ["g1"]}, index=pd.Index([7001])))


def test_nan_age_is_named(world: dict[str, Any], pre: SVD) -> None:
    bad = world["features"].astype({"age": float})
    bad.iloc[N_WARM + 2, bad.columns.get_loc("age")] = np.nan
    with pytest.raises(DataError, match=r"'age'.*1302"):
        finetune(pre, world["support"], _cfg(feature_reg=1.0), features=bad)


def test_bad_feature_arguments(world: dict[str, Any], pre: SVD) -> None:
    with pytest.raises(RectuneError, match="need side features"):
        finetune(pre, world["support"], _cfg(feature_reg=1.0))
    with pytest.raises(DataError, match="'user' and/or 'item'"):
        finetune(pre, world["support"], _cfg(feature_reg=1.0),
                 features={"users": world["features"]})
    other = world["features"].set_axis(pd.Index([f"u{i}" for i in range(N_WARM + N_COLD)]))
    with pytest.raises(DataError, match="feature"):
        finetune(pre, world["support"], _cfg(feature_reg=1.0), features=other)
    with pytest.raises(RectuneError, match="no user feature projection"):
        embed_new_users(pre, world["features"])


def test_infer_spec_by_dtype() -> None:
    df = pd.DataFrame({"age": [20, 30], "job": ["a", "b"], "tags": [["x"], ["x", "y"]],
                       "flag": [True, False]}, index=pd.Index([1, 2]))
    spec = infer_spec(df)
    assert spec["age"]["mode"] == "standard" and spec["age:bucket"]["mode"] == "bucket"
    assert spec["job"]["kind"] == "categorical" and spec["tags"]["kind"] == "multi"
    assert spec["flag"]["kind"] == "categorical"



@pytest.mark.realdata
def test_ml100k_profiles_improve_on_the_stale_fallback(ml100k_dir: Path) -> None:
    """ML-100K cold users (PROTOCOLS.md split), K = 0: age/gender/occupation/zip alone."""
    from rectune.data.movielens import load_movielens
    from rectune.data.split import cold_user_split

    ds = load_movielens("ml-100k", path=ml100k_dir, progress=False)
    assert ds.user_features is not None
    s = cold_user_split(ds.interactions, cold_fraction=0.2, n_support=0, seed=0, query_start=5)
    cold = np.zeros(s.train.n_users, dtype=bool)
    cold[s.info["cold_users"]] = True
    warm = s.train.take(~cold[s.train.user])
    pre = SVD(n_factors=50, n_epochs=20, random_state=0).fit(warm)
    m = embed_new_users(attach_feature_prior(pre, ds.user_features), ds.user_features)
    assert _query_rmse(m, s.test) < _query_rmse(pre, s.test) - 0.002
