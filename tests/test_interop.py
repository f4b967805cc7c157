"""Importing models pre-trained by Surprise and implicit, then fine-tuning them.

These tests need the peer libraries (``pip install 'rectune[peers]'``) and run in CI.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import surprise
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking

from rectune import NotFittedError, RectuneError
from rectune.data import Interactions, synthetic
from rectune.data.idmap import IdMap
from rectune.finetune import FinetuneConfig, finetune
from rectune.interop import from_implicit, from_surprise
from rectune.models import ALS, BPR, NMF, SVD, Baseline, SVDpp
from rectune.models.base import Recommender

pytestmark = [pytest.mark.peers,
              pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")]
QUIET = {"verbose": False}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = synthetic(6_000, seed=1).interactions.to_frame()
    df["user"] = "u" + df["user"].astype(str)  # Surprise's built-in sets use str ids
    return df


@pytest.fixture(scope="module")
def trainset(frame: pd.DataFrame) -> surprise.Trainset:
    reader = surprise.Reader(rating_scale=(1, 5))
    return surprise.Dataset.load_from_df(frame[["user", "item", "rating"]],
                                         reader).build_full_trainset()


SURPRISE_ALGOS = {
    "SVD": (lambda: surprise.SVD(n_factors=6, n_epochs=4, random_state=0), SVD),
    "SVD-unbiased": (lambda: surprise.SVD(n_factors=6, n_epochs=4, biased=False,
                                          random_state=0), SVD),
    "SVDpp": (lambda: surprise.SVDpp(n_factors=4, n_epochs=2, random_state=0), SVDpp),
    "NMF": (lambda: surprise.NMF(n_factors=4, n_epochs=5, random_state=0), NMF),
    "NMF-biased": (lambda: surprise.NMF(n_factors=4, n_epochs=5, biased=True,
                                        random_state=0), NMF),
    "BaselineOnly": (lambda: surprise.BaselineOnly(verbose=False), Baseline),
}


@pytest.mark.parametrize("name", list(SURPRISE_ALGOS))
def test_surprise_predictions_are_reproduced(name: str, frame: pd.DataFrame,
                                             trainset: surprise.Trainset) -> None:
    make, cls = SURPRISE_ALGOS[name]
    algo = make().fit(trainset)
    m = from_surprise(algo)
    assert type(m) is cls
    rng = np.random.default_rng(0)
    users = np.r_[rng.choice(frame["user"].to_numpy(), 300), ["nobody", "nobody"],
                  frame["user"].iloc[:2]]
    items = np.r_[rng.choice(frame["item"].to_numpy(), 300), frame["item"].iloc[:2],
                  [10**9, 10**9 + 1]]
    est = np.array([algo.predict(u, i).est for u, i in zip(users, items, strict=True)])
    np.testing.assert_allclose(m.predict(users, items), est, atol=1e-5)
    assert not m.known(["nobody"], [items[0]])[0]
    # seen pairs and popularity come from the trainset
    assert m.seen_.nnz == trainset.n_ratings
    np.testing.assert_array_equal(m.item_popularity_, m.seen_.sum(axis=0))
    assert m.rating_scale_ == (1.0, 5.0)
    assert m.global_mean_ == pytest.approx(trainset.global_mean)
    top, _ = m.recommend([frame["user"].iloc[0]], k=5)
    seen = set(frame.loc[frame["user"] == frame["user"].iloc[0], "item"])
    assert not seen & set(top[0].tolist())


def _new_ratings(frame: pd.DataFrame) -> Interactions:
    """Drifted ratings of old users plus a new user and a new item."""
    rng = np.random.default_rng(3)
    old = frame.sample(800, random_state=0).copy()
    old["rating"] = np.clip(6 - old["rating"] + rng.integers(-1, 2, len(old)), 1, 5)
    fresh = pd.DataFrame({"user": ["brand-new"] * 3 + ["u1"],
                          "item": [int(frame["item"].iloc[0]), 10**8, 10**8, 10**8],
                          "rating": [5.0, 4.0, 4.0, 2.0]})
    both = pd.concat([old, fresh], ignore_index=True)[["user", "item", "rating"]]
    both = both.drop_duplicates(["user", "item"], keep="last")
    return Interactions.from_frame(both, timestamp=None, rating_scale=(1, 5))


@pytest.mark.parametrize("name", ["SVD", "SVDpp", "NMF", "BaselineOnly"])
def test_imported_surprise_model_fine_tunes_with_new_ids(name: str, frame: pd.DataFrame,
                                                         trainset: surprise.Trainset,
                                                         tmp_path: Path) -> None:
    algo = SURPRISE_ALGOS[name][0]().fit(trainset)
    m = from_surprise(algo)
    before = {k: np.array(v, copy=True) for k, v in m.parameters().items()}
    new = _new_ratings(frame)
    ft = finetune(m, new, FinetuneConfig(epochs=5, l2sp=0.01, **QUIET))
    for k, v in m.parameters().items():
        np.testing.assert_array_equal(v, before[k])
    assert ft.n_users == m.n_users + 1 and ft.n_items == m.n_items + 1
    assert ft.known(["brand-new"], [10**8]).all()

    def err(x: Recommender) -> float:
        return float(np.sqrt(np.mean((x.predict_indices(ft_data.user, ft_data.item)
                                      - ft_data.value) ** 2)))

    ft_data = new.with_maps(ft.user_map_, ft.item_map_)
    assert err(ft) < err(m)
    ft.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(["brand-new", "u1"], [10**8, 10**8]),
                                  ft.predict(["brand-new", "u1"], [10**8, 10**8]))


# -------------------------------------------------------------------------- implicit
@pytest.fixture(scope="module")
def user_items() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    m = sp.random(80, 60, density=0.12, format="csr", random_state=rng, dtype=np.float32)
    m.data[:] = 1.0
    return m


def _fit_quiet(model: object, ui: sp.csr_matrix) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(ui, show_progress=False)  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["als", "bpr"])
def test_implicit_scores_and_recommendations_are_reproduced(kind: str,
                                                            user_items: sp.csr_matrix) -> None:
    peer: AlternatingLeastSquares | BayesianPersonalizedRanking
    if kind == "als":
        peer = AlternatingLeastSquares(factors=8, iterations=3, alpha=5.0, random_state=0)
    else:
        peer = BayesianPersonalizedRanking(factors=8, iterations=5, random_state=0)
    _fit_quiet(peer, user_items)
    uids = np.array([f"user{k}" for k in range(80)], dtype=object)
    m = from_implicit(peer, user_items, user_ids=uids)
    assert type(m) is (ALS if kind == "als" else BPR)
    full = peer.user_factors @ peer.item_factors.T
    np.testing.assert_allclose(m._score(np.arange(80)), full, rtol=1e-5, atol=1e-6)
    ids, scores = peer.recommend(np.arange(5), user_items[:5], N=6)
    top, top_s = m.recommend(uids[:5], k=6)
    np.testing.assert_allclose(top_s, scores, rtol=1e-5, atol=1e-6)
    assert (top == ids).mean() > 0.95  # ids agree up to exact ties
    assert m.seen_.nnz == user_items.nnz
    if kind == "als":
        assert m.alpha == pytest.approx(4.0)  # implicit's alpha·r = our 1 + alpha·r at r = 1


@pytest.mark.parametrize("kind", ["als", "bpr"])
def test_imported_implicit_model_fine_tunes_with_new_ids(kind: str,
                                                         user_items: sp.csr_matrix) -> None:
    peer: AlternatingLeastSquares | BayesianPersonalizedRanking
    if kind == "als":
        peer = AlternatingLeastSquares(factors=8, iterations=3, random_state=0)
    else:
        peer = BayesianPersonalizedRanking(factors=8, iterations=5, random_state=0)
    _fit_quiet(peer, user_items)
    m = from_implicit(peer, user_items)
    before = {k: np.array(v, copy=True) for k, v in m.parameters().items()}
    rng = np.random.default_rng(1)
    users = np.r_[rng.integers(0, 80, 150), [1000, 1000, 1000]]
    items = np.r_[rng.integers(0, 60, 150), [0, 1, 2000]]
    df = pd.DataFrame({"user": users, "item": items}).drop_duplicates()
    new = Interactions.from_frame(df, value=None, timestamp=None, kind="implicit")
    ft = finetune(m, new, FinetuneConfig(epochs=3, l2sp=0.1, **QUIET))
    for k, v in m.parameters().items():
        np.testing.assert_array_equal(v, before[k])
    assert ft.n_users == 81 and ft.n_items == 61
    assert np.isfinite(ft.predict([1000], [2000])).all()
    assert not np.array_equal(ft.parameters()["user_factors"][:80], before["user_factors"])


def test_gpu_models_go_through_to_cpu(user_items: sp.csr_matrix) -> None:
    cpu = AlternatingLeastSquares(factors=4, iterations=2, random_state=0)
    _fit_quiet(cpu, user_items)

    class FakeGpuALS:  # implicit.gpu models are only built with CUDA
        def to_cpu(self) -> AlternatingLeastSquares:
            return cpu

    FakeGpuALS.__module__ = "implicit.gpu.als"
    m = from_implicit(FakeGpuALS(), user_items)
    np.testing.assert_array_equal(m.parameters()["user_factors"], cpu.user_factors)


def test_clear_errors(trainset: surprise.Trainset, user_items: sp.csr_matrix,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RectuneError, match="expects a trained surprise"):
        from_surprise(surprise.KNNBasic())
    with pytest.raises(RectuneError, match="expects a trained surprise"):
        from_surprise(object())
    with pytest.raises(NotFittedError, match="not trained"):
        from_surprise(surprise.SVD())
    with pytest.raises(NotFittedError, match="not trained"):
        from_implicit(AlternatingLeastSquares(factors=4), user_items)
    with pytest.raises(RectuneError, match="expects a trained implicit"):
        from_implicit(surprise.SVD(), user_items)
    peer = AlternatingLeastSquares(factors=4, iterations=1, random_state=0)
    _fit_quiet(peer, user_items)
    with pytest.raises(RectuneError, match="shape"):
        from_implicit(peer, user_items[:10])
    with pytest.raises(RectuneError, match="scipy sparse"):
        from_implicit(peer, user_items.toarray())
    with pytest.raises(RectuneError, match="user ids"):
        from_implicit(peer, user_items, user_ids=IdMap(np.arange(5)).ids)
    low = AlternatingLeastSquares(factors=4, iterations=1, alpha=0.5, random_state=0)
    _fit_quiet(low, user_items)
    with pytest.warns(UserWarning, match="alpha"):
        assert from_implicit(low, user_items, item_ids=IdMap(np.arange(60) + 7)).alpha == 0
    monkeypatch.setattr(surprise, "__version__", "1.0.6")
    with pytest.raises(RectuneError, match="too old"):
        from_surprise(surprise.SVD().fit(trainset))


@pytest.mark.realdata
def test_surprise_svd_on_ml100k_fixed_split(ml100k_dir: Path) -> None:
    """PROTOCOLS.md's fixed 80/20 split: the imported model scores Surprise's RMSE exactly."""
    df = pd.read_csv(ml100k_dir / "u.data", sep="\t", names=["user", "item", "rating", "ts"])
    perm = np.random.default_rng(0).permutation(len(df))
    train, test = df.iloc[perm[20000:]], df.iloc[perm[:20000]]
    reader = surprise.Reader(rating_scale=(1, 5))
    ts = surprise.Dataset.load_from_df(train[["user", "item", "rating"]],
                                       reader).build_full_trainset()
    algo = surprise.SVD(random_state=0).fit(ts)
    est = np.array([p.est for p in algo.test(list(test[["user", "item", "rating"]]
                                                  .itertuples(index=False, name=None)))])
    m = from_surprise(algo)
    ours = m.predict(test["user"].to_numpy(), test["item"].to_numpy())
    np.testing.assert_allclose(ours, est, atol=1e-5)
    err = float(np.sqrt(np.mean((ours - test["rating"].to_numpy()) ** 2)))
    assert 0.92 < err < 0.95
