"""GMF / MLP / NeuMF: the model contract, each loss, early stopping and a quality check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rectune._errors import DataError
from rectune.data import Interactions
from rectune.models.base import FitOptions, Recommender
from rectune.models.neural import GMF, MLP, NeuMF
from tests.models.contract import ContractTests, small_ratings

torch.set_num_threads(1)


def implicit_blocks(seed: int = 0, n_users: int = 60, n_items: int = 40) -> Interactions:
    """Two user groups, each liking one half of the catalogue (a known answer)."""
    rng = np.random.default_rng(seed)
    group = np.arange(n_users) % 2
    likes = (np.arange(n_items)[None, :] % 2) == group[:, None]
    mask = likes & (rng.random((n_users, n_items)) < 0.6)
    uu, ii = np.nonzero(mask)
    df = pd.DataFrame({"user": uu, "item": ii, "rating": np.ones(len(uu))})
    return Interactions.from_frame(df, kind="implicit", timestamp=None)


class TestGMF(ContractTests):
    def make_model(self) -> Recommender:
        return GMF(n_factors=8, epochs=3, batch_size=128, random_state=0)


class TestMLP(ContractTests):
    def make_model(self) -> Recommender:
        return MLP(n_factors=8, layers=(16, 8), dropout=0.1, loss="bpr", epochs=3,
                   batch_size=128, random_state=0)


class TestNeuMF(ContractTests):
    def make_model(self) -> Recommender:
        return NeuMF(n_factors=8, layers=(16, 8), epochs=3, batch_size=128, random_state=0)


class TestNeuMFExplicit(ContractTests):
    def make_model(self) -> Recommender:
        return NeuMF(n_factors=8, layers=(16, 8), loss="mse", epochs=3, batch_size=128,
                     random_state=0)


def test_parameter_groups_named_as_designed() -> None:
    d = small_ratings()
    assert set(GMF(n_factors=4, epochs=1).fit(d).parameters()) == {
        "user_embedding", "item_embedding", "head.weight", "head.bias"}
    p = NeuMF(n_factors=4, layers=(8, 4), epochs=1).fit(d).parameters()
    assert {"user_gmf_embedding", "item_gmf_embedding", "user_mlp_embedding",
            "item_mlp_embedding", "mlp.0.weight", "mlp.2.bias", "head.weight"} <= set(p)
    assert p["user_gmf_embedding"].shape == (d.n_users, 4)
    assert all(v.dtype == np.float32 for v in p.values())


@pytest.mark.parametrize("loss", ["bce", "bpr"])
def test_learns_a_block_structure(loss: str) -> None:
    d = implicit_blocks()
    m = NeuMF(n_factors=8, layers=(16, 8), loss=loss, epochs=15, lr=5e-3, batch_size=64,
              random_state=0).fit(d)
    ids, _ = m.recommend(d.user_map.ids, 5)
    group = np.asarray(d.user_map.ids) % 2
    right = (ids % 2) == group[:, None]
    assert right.mean() > 0.9


def test_explicit_mse_beats_global_mean() -> None:
    d = small_ratings(n_users=80, n_items=40, density=0.5)
    m = GMF(n_factors=8, loss="mse", epochs=40, lr=1e-2, batch_size=64, random_state=0).fit(d)
    pred = m.predict(d.user_map.decode(d.user), d.item_map.decode(d.item))
    rmse = float(np.sqrt(np.mean((pred - d.value) ** 2)))
    base = float(np.sqrt(np.mean((d.value - d.value.mean()) ** 2)))
    assert rmse < 0.8 * base
    assert pred.min() >= 1 and pred.max() <= 5  # clipped to the rating scale
    assert m.predicts_ratings and not GMF().predicts_ratings


def test_early_stopping_on_validation_keeps_best_epoch() -> None:
    d = implicit_blocks(n_users=80)
    rng = np.random.default_rng(0)
    test = rng.random(len(d)) < 0.2
    train, valid = d.take(np.flatnonzero(~test)), d.take(np.flatnonzero(test))
    m = GMF(n_factors=8, epochs=30, lr=2e-2, patience=2, batch_size=64,
            random_state=0).fit(train, valid=valid)
    scores = [h["valid"] for h in m.history_]
    assert 0 <= min(scores) and max(scores) <= 1
    assert m.best_epoch_ == int(np.argmax(scores)) + 1
    assert m.history_[-1]["epoch"] <= 30


def test_bad_hyper_parameters_raise() -> None:
    d = small_ratings()
    with pytest.raises(DataError, match="loss"):
        GMF(loss="hinge").fit(d)
    with pytest.raises(DataError, match="layers"):
        MLP(layers=(8, 0)).fit(d)
    with pytest.raises(DataError, match="dropout"):
        NeuMF(dropout=1.5).fit(d)


@pytest.mark.parametrize("cls", [GMF, MLP, NeuMF])
def test_factorised_catalogue_scores_equal_pairwise_forward(cls: type) -> None:
    d = small_ratings()
    m = cls(n_factors=8, epochs=2, random_state=0).fit(d)
    users = np.arange(d.n_users)
    block = m._score(users)
    pairs = m._pairs_numpy(np.repeat(users, d.n_items), np.tile(np.arange(d.n_items), d.n_users))
    np.testing.assert_allclose(block, pairs.reshape(d.n_users, -1), rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_is_seeded_and_scores_on_cpu_after_fit() -> None:
    d = implicit_blocks()
    opts = FitOptions(device="cuda")
    a = NeuMF(n_factors=8, layers=(16, 8), dropout=0.2, epochs=3).fit(d, options=opts)
    b = NeuMF(n_factors=8, layers=(16, 8), dropout=0.2, epochs=3).fit(d, options=opts)
    for k, v in a.parameters().items():
        np.testing.assert_array_equal(v, b.parameters()[k], err_msg=k)
    assert a._module_device().type == "cuda"  # a named device is kept for scoring
    cpu = a.predict([0, 1], [0, 1])
    a.to("cpu")
    np.testing.assert_allclose(a.predict([0, 1], [0, 1]), cpu, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.realdata
def test_neumf_quality_band_on_ml100k(ml100k_dir: Path) -> None:
    """Three epochs of NeuMF(32) already beat popularity (0.149 NDCG@10) on ml100k_user_8020."""
    from rectune.data import load_movielens, ml100k_user_8020
    from rectune.evaluate.ranking import ranking_metrics, topk_from_scores

    ds = load_movielens("ml-100k", path=ml100k_dir, download=False, progress=False)
    train, test = ml100k_user_8020(ds.interactions)
    m = NeuMF(n_factors=32, layers=(64, 32), epochs=3, batch_size=256, random_state=0).fit(train)
    t = test.csr()
    users = np.flatnonzero(np.diff(t.indptr) > 0)
    top, _ = topk_from_scores(m._score(users), 10, exclude=train.csr()[users])
    ndcg = ranking_metrics(top, t[users], 10, ["ndcg"])["ndcg@10"]
    print(f"NeuMF NDCG@10 {ndcg:.4f}")
    assert 0.17 < ndcg < 0.40
