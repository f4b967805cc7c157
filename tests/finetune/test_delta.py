"""Saving a fine-tuned model as a delta of its base, and loading it back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rectune import ModelFileError, RectuneError
from rectune.data import Interactions, synthetic, temporal_split
from rectune.finetune import FinetuneConfig, TaskChange, finetune, model_checksum, supports
from rectune.finetune.delta import delta_size, load_delta, save_delta
from rectune.models import ALS, BPR, NMF, SVD, Baseline, SVDpp, UserKNN
from rectune.models.base import Recommender

QUIET = {"verbose": False}


@pytest.fixture(scope="module")
def split() -> tuple[Interactions, Interactions, Interactions]:
    ds = synthetic(12_000, drift=1.0, seed=4)
    s = temporal_split(ds.interactions, train_fraction=0.6, new_fraction=0.25)
    return s.pretrain, s.new, s.test


def _with_new_ids(new: Interactions) -> Interactions:
    df = new.to_frame()
    extra = pd.DataFrame({"user": [10**7, 10**7, int(df["user"].iloc[0])],
                          "item": [int(df["item"].iloc[0]), 10**7, 10**7],
                          "rating": [4.0, 5.0, 3.0], "timestamp": df["timestamp"].iloc[:3]})
    return Interactions.from_frame(pd.concat([df, extra], ignore_index=True),
                                   rating_scale=(1, 5))


def _assert_same_model(a: Recommender, b: Recommender, test: Interactions) -> None:
    assert type(a) is type(b)
    assert a.user_map_ == b.user_map_ and a.item_map_ == b.item_map_
    for k, v in a.parameters().items():
        np.testing.assert_array_equal(np.asarray(b.parameters()[k]), np.asarray(v), err_msg=k)
    np.testing.assert_array_equal(a.seen_.indptr, b.seen_.indptr)
    np.testing.assert_array_equal(a.seen_.indices, b.seen_.indices)
    np.testing.assert_array_equal(a.item_popularity_, b.item_popularity_)
    np.testing.assert_array_equal(a.predict_indices(test.user, test.item),
                                  b.predict_indices(test.user, test.item))
    ua = a.user_map_.ids[:20]
    np.testing.assert_array_equal(a.recommend(ua, k=5)[0], b.recommend(ua, k=5)[0])
    assert a.meta_ == b.meta_


@pytest.mark.parametrize(("make", "task"), [
    (lambda: SVD(n_factors=8, n_epochs=5), None),
    (lambda: Baseline(), None),
    (lambda: SVDpp(n_factors=4, n_epochs=3), None),
    (lambda: NMF(n_factors=4, n_epochs=10), None),
    (lambda: ALS(factors=8, iterations=3), None),
    (lambda: BPR(factors=8, iterations=5), None),
    (lambda: UserKNN(), None),
    (lambda: SVD(n_factors=8, n_epochs=3), TaskChange()),  # the delta changes class
], ids=["SVD", "Baseline", "SVDpp", "NMF", "ALS", "BPR", "UserKNN", "SVD-to-click"])
def test_delta_rebuilds_the_whole_model(make: object, task: TaskChange | None, split: tuple,
                                        tmp_path: Path) -> None:
    pre, new, test = split
    base = make().fit(pre)  # type: ignore[operator]
    lam = 0.05 if supports(base, "l2sp") and task is None else 0.0
    ft = finetune(base, _with_new_ids(new),
                  FinetuneConfig(epochs=3, l2sp=lam, task=task, **QUIET))
    ft.save(tmp_path / "whole")
    save_delta(ft, tmp_path / "delta", base)
    whole = Recommender.load(tmp_path / "whole")
    rebuilt = load_delta(tmp_path / "delta", base)
    _assert_same_model(whole, rebuilt, test)
    _assert_same_model(ft, rebuilt, test)
    cfg = json.loads((tmp_path / "delta" / "config.json").read_text())
    assert cfg["delta_of"] == model_checksum(base) == ft.meta_["finetune"]["base_checksum"]


def test_frozen_items_make_a_small_delta(split: tuple, tmp_path: Path) -> None:
    pre, new, test = split
    base = SVD(n_factors=64, n_epochs=3).fit(pre)
    few = new.take(np.flatnonzero(np.isin(new.user, np.unique(new.user)[:10])))
    ft = finetune(base, few, FinetuneConfig(freeze=["item_*"], epochs=3, **QUIET))
    ft.save(tmp_path / "whole")
    save_delta(ft, tmp_path / "delta", base)
    whole, delta = delta_size(tmp_path / "whole"), delta_size(tmp_path / "delta")
    assert delta < 0.1 * whole, (delta, whole)
    _assert_same_model(ft, load_delta(tmp_path / "delta", base), test)
    cfg = json.loads((tmp_path / "delta" / "config.json").read_text())
    assert cfg["arrays"]["param/item_factors"] == "rows"


def test_load_refuses_a_delta_and_a_wrong_base(split: tuple, tmp_path: Path) -> None:
    pre, new, _ = split
    base = SVD(n_factors=4, n_epochs=2).fit(pre)
    other = SVD(n_factors=4, n_epochs=2, random_state=1).fit(pre)
    ft = finetune(base, new, FinetuneConfig(epochs=1, **QUIET))
    save_delta(ft, tmp_path / "d", base)
    with pytest.raises(ModelFileError, match="load_delta"):
        Recommender.load(tmp_path / "d")
    want, got = model_checksum(base), model_checksum(other)
    with pytest.raises(ModelFileError, match=f"{want}.*{got}"):
        load_delta(tmp_path / "d", other)
    with pytest.raises(ModelFileError, match="fine-tuned from base"):
        save_delta(ft, tmp_path / "d2", other)
    with pytest.raises(RectuneError, match=r"not the result of rectune\.finetune"):
        save_delta(base, tmp_path / "d3", other)
    base.save(tmp_path / "whole")
    with pytest.raises(ModelFileError, match="whole model"):
        load_delta(tmp_path / "whole", base)
    data = (tmp_path / "d" / "arrays.safetensors").read_bytes()
    (tmp_path / "d" / "arrays.safetensors").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        load_delta(tmp_path / "d", base)
