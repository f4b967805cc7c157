"""KNN fine-tuning through the engine equals a refit on old + new data."""

from __future__ import annotations

import numpy as np
import pytest

from rectune.data import synthetic, temporal_split
from rectune.finetune import FinetuneConfig, finetune
from rectune.models import ImplicitItemKNN, ItemKNN, UserKNN


@pytest.mark.parametrize("make", [
    lambda: ItemKNN(similarity="pearson", rule="mean"),
    lambda: UserKNN(similarity="cosine", rule="plain"),
])
def test_knn_finetune_equals_refit(make) -> None:  # type: ignore[no-untyped-def]
    x = synthetic(8_000, seed=2).interactions
    s = temporal_split(x, train_fraction=0.8)
    old, new = s.pretrain, s.test
    base = make().fit(old)
    before = base.predict_indices(new.user[:50], new.item[:50])
    ft = finetune(base, new, FinetuneConfig(verbose=False))
    refit = make().fit(old.concat(new))
    np.testing.assert_allclose(ft.predict_indices(new.user, new.item),
                               refit.predict_indices(new.user, new.item), atol=1e-9)
    # the pre-trained model is untouched
    np.testing.assert_array_equal(base.predict_indices(new.user[:50], new.item[:50]), before)
    assert ft.meta_["finetune"]["n_events_added"] == len(new)


def test_implicit_knn_finetune_and_unsupported_options() -> None:
    from rectune import RectuneError

    x = synthetic(8_000, seed=2).interactions.binarize(4)
    s = temporal_split(x, train_fraction=0.8)
    base = ImplicitItemKNN().fit(s.pretrain)
    ft = finetune(base, s.test, FinetuneConfig(verbose=False))
    refit = ImplicitItemKNN().fit(s.pretrain.concat(s.test))
    u = np.arange(20)
    np.testing.assert_allclose(ft._score(u), refit._score(u), atol=1e-9)
    with pytest.raises(RectuneError, match="does not support l2sp"):
        finetune(base, s.test, FinetuneConfig(l2sp=0.1, verbose=False))


def test_capability_table_is_true() -> None:
    """Every model the table says can be fine-tuned is fine-tuned; the others refuse."""
    from rectune import RectuneError, models
    from rectune.finetune import CAPABILITIES, supports

    x = synthetic(3_000, seed=1).interactions
    s = temporal_split(x, train_fraction=0.8)
    small = {"SVD": {"n_factors": 4, "n_epochs": 2}, "SVDpp": {"n_factors": 4, "n_epochs": 2},
             "NMF": {"n_factors": 4, "n_epochs": 2}, "ALS": {"factors": 4, "iterations": 2},
             "BPR": {"factors": 4, "iterations": 2}, "ClickMF": {"n_factors": 4, "n_epochs": 2}}
    for name in CAPABILITIES:
        cls = getattr(models, name)
        base = cls(**small.get(name, {})).fit(s.pretrain)
        cfg = FinetuneConfig(verbose=False, epochs=2)
        if supports(cls, "finetune"):
            ft = finetune(base, s.test, cfg)
            assert ft.meta_["finetune"]["n_new_rows"] > 0, name
        else:
            with pytest.raises(RectuneError):
                finetune(base, s.test, cfg)
