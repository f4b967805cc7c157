"""Fine-tuning the SGD family: semantics of DESIGN.md "Fine-tuning"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rectune import RectuneError
from rectune.data import Interactions, synthetic, temporal_split
from rectune.evaluate import rmse
from rectune.finetune import FinetuneConfig, finetune
from rectune.models.base import Recommender
from rectune.models.baseline import Baseline
from rectune.models.mf_svd import SVD


@pytest.fixture(scope="module")
def drift_split() -> tuple[Interactions, Interactions, Interactions]:
    ds = synthetic(30_000, drift=1.5, seed=3)
    s = temporal_split(ds.interactions, train_fraction=0.6, new_fraction=0.25)
    return s.pretrain, s.new, s.test


@pytest.fixture(scope="module")
def base(drift_split: tuple[Interactions, Interactions, Interactions]) -> SVD:
    return SVD(n_factors=16, n_epochs=15, random_state=0).fit(drift_split[0])


def _ev(m: Recommender, test: Interactions) -> float:
    return rmse(test.value, m.predict_indices(test.user, test.item))


def test_never_mutates_pretrained(base: SVD, drift_split: tuple) -> None:
    before = {k: v.copy() for k, v in base.parameters().items()}
    ft = finetune(base, drift_split[1], FinetuneConfig(epochs=3, verbose=False))
    assert ft is not base
    for k, v in base.parameters().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert not any(np.array_equal(ft.parameters()[k], before[k]) for k in ("user_factors",))


def test_finetune_beats_stale_model_on_drifted_data(base: SVD, drift_split: tuple) -> None:
    _, new, test = drift_split
    ft = finetune(base, new, FinetuneConfig(verbose=False))
    assert _ev(ft, test) < _ev(base, test) - 0.005
    hist = ft.meta_["finetune"]["history"]
    assert hist["epochs"] >= 1 and len(hist["valid_rmse"]) == hist["epochs"]


def test_freeze_keeps_groups_fixed(base: SVD, drift_split: tuple) -> None:
    ft = finetune(base, drift_split[1], FinetuneConfig(freeze=["item_*"], epochs=3,
                                                         verbose=False))
    old = base.item_popularity_ > 0  # rows with pre-training data; the others get the init
    np.testing.assert_array_equal(ft.parameters()["item_factors"][old],
                                  base.parameters()["item_factors"][old])
    np.testing.assert_array_equal(ft.parameters()["item_bias"][old],
                                  base.parameters()["item_bias"][old])
    assert not np.array_equal(ft.parameters()["user_factors"], base.parameters()["user_factors"])


def test_l2sp_pulls_towards_pretrained(base: SVD, drift_split: tuple) -> None:
    def dist(lam: float) -> float:
        ft = finetune(base, drift_split[1], FinetuneConfig(l2sp=lam, epochs=10,
                                                             early_stopping=False,
                                                             lr_factor=1.0, verbose=False))
        old = np.diff(base.seen_.indptr) > 0  # anchored rows: users with pre-training data
        return float(np.linalg.norm(ft.parameters()["user_factors"][old]
                                    - base.parameters()["user_factors"][old]))

    assert dist(5.0) < 0.5 * dist(0.0)


def test_new_users_and_items_are_grown(base: SVD) -> None:
    df = pd.DataFrame({"user": [10**6, 10**6, 1, 2], "item": [1, 2, 10**6, 10**6],
                       "rating": [5.0, 4.0, 1.0, 2.0], "timestamp": [1, 2, 3, 4]})
    new = Interactions.from_frame(df, rating_scale=(1, 5))
    ft = finetune(base, new, FinetuneConfig(epochs=5, early_stopping=False, verbose=False))
    assert ft.n_users == base.n_users + 1 and ft.n_items == base.n_items + 1
    np.testing.assert_array_equal(ft.user_map_.ids[: base.n_users], base.user_map_.ids)
    assert ft.known([10**6], [1]).all()
    p = ft.predict([10**6, 10**6], [1, 2])
    assert np.all(np.isfinite(p))
    assert ft.meta_["finetune"]["new_users"] == 1 and ft.meta_["finetune"]["new_items"] == 1


def test_transfer_biases_only_reinitialises_factors(base: SVD, drift_split: tuple) -> None:
    ft = finetune(base, drift_split[1], FinetuneConfig(transfer=["*_bias", "global_bias"],
                                                         epochs=1, verbose=False))
    assert ft.meta_["finetune"]["transferred"] == ["global_bias", "item_bias", "user_bias"]
    corr = np.corrcoef(ft.parameters()["item_factors"].ravel(),
                       base.parameters()["item_factors"].ravel())[0, 1]
    assert abs(corr) < 0.5


def test_bad_patterns_and_replay_without_old_data(base: SVD, drift_split: tuple) -> None:
    with pytest.raises(RectuneError, match="matches no parameter group"):
        finetune(base, drift_split[1], FinetuneConfig(freeze=["itme_*"], verbose=False))
    with pytest.raises(RectuneError, match="old training data"):
        finetune(base, drift_split[1], FinetuneConfig(replay=0.5, verbose=False))


def test_replay_and_baseline(drift_split: tuple) -> None:
    pre, new, test = drift_split
    b = Baseline().fit(pre)
    ft = finetune(b, new, FinetuneConfig(replay=0.5, verbose=False), old_data=pre)
    assert ft.meta_["finetune"]["n_new_rows"] > len(new) * 0.9 * 1.4
    assert _ev(ft, test) < _ev(b, test)


def test_config_json_round_trip_and_saved_metadata(base: SVD, drift_split: tuple,
                                                   tmp_path: Path) -> None:
    cfg = FinetuneConfig(l2sp=0.1, freeze=["item_factors"], group_weights={"user_bias": 2.0},
                         epochs=2, verbose=False)
    assert FinetuneConfig.from_json(cfg.to_json()) == cfg
    (tmp_path / "ft.toml").write_text('[finetune]\nl2sp = 0.1\nfreeze = ["item_factors"]\n')
    assert FinetuneConfig.from_file(tmp_path / "ft.toml").freeze == ["item_factors"]
    ft = finetune(base, drift_split[1], cfg)
    ft.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert loaded.meta_["finetune"]["config"]["l2sp"] == 0.1
    assert loaded.meta_["finetune"]["base_checksum"] == ft.meta_["finetune"]["base_checksum"]
    np.testing.assert_array_equal(loaded.predict([1, 2], [3, 4]), ft.predict([1, 2], [3, 4]))


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        FinetuneConfig(l2sp=-1)
    with pytest.raises(ValueError):
        FinetuneConfig(unknown_field=1)  # type: ignore[call-arg]


def test_task_change_rating_to_click(base: SVD, drift_split: tuple) -> None:
    from rectune.evaluate import auc
    from rectune.finetune import TaskChange
    from rectune.models.click import ClickMF

    _, new, test = drift_split
    ft = finetune(base, new, FinetuneConfig(task=TaskChange(threshold=4), verbose=False))
    assert isinstance(ft, ClickMF) and not isinstance(base, ClickMF)
    p = ft.predict_indices(test.user, test.item)
    assert np.all((p > 0) & (p < 1))
    assert auc((test.value >= 4).astype(float), p) > 0.6
    assert {"head.weight", "head.bias"} <= set(ft.parameters())


def test_capability_table_and_unsupported_combination(drift_split: tuple) -> None:
    from rectune.finetune import capability_table, supports
    from rectune.models import Popularity

    table = capability_table()
    assert isinstance(table, str) and "| SVD |" in table
    assert supports(SVD, "l2sp") and not supports(Popularity, "finetune")
    with pytest.raises(RectuneError, match=r"fine-tuning is not available|does not support"):
        finetune(Popularity().fit(drift_split[0]), drift_split[1], FinetuneConfig(verbose=False))


def test_seen_union_equals_scipy() -> None:
    import scipy.sparse as sp

    from rectune.finetune.engine import _union_rows

    rng = np.random.default_rng(0)
    for trial in range(10):
        n_u, n_i, n_old = 50, 40, 30
        old = sp.random(n_old, n_i, density=0.2, format="csr", random_state=trial)
        old.sort_indices()
        m = int(rng.integers(0, 200))
        u, i = rng.integers(0, n_u, m), rng.integers(0, n_i, m)
        ip, ix = _union_rows(old.indptr.astype(np.int64), old.indices.astype(np.int64), u, i,
                             n_u)
        grown = sp.csr_array((old.data, old.indices,
                              np.r_[old.indptr, np.full(n_u - n_old, old.indptr[-1])]),
                             shape=(n_u, n_i))
        ref = sp.csr_array(grown + sp.csr_array((np.ones(m), (u, i)), shape=(n_u, n_i)) > 0)
        ref.sort_indices()
        np.testing.assert_array_equal(ip, ref.indptr)
        np.testing.assert_array_equal(ix, ref.indices)
