"""The transferability diagnostic, and the synthetic knob it is meant to read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rectune._errors import DataError
from rectune.bench.splits import protocols_for
from rectune.data.interactions import Interactions
from rectune.data.synthetic import synthetic, synthetic_truth
from rectune.finetune.diagnose import transferability
from rectune.models.baseline import Baseline
from rectune.models.mf_svd import SVD


def _frame(rows: list[tuple[str, str, float]]) -> Interactions:
    df = pd.DataFrame(rows, columns=["user", "item", "rating"])
    return Interactions.from_frame(df, user="user", item="item", value="rating", timestamp=None,
                                   rating_scale=(1.0, 5.0))


@pytest.fixture(scope="module")
def handmade() -> tuple[Interactions, Interactions]:
    src = _frame([("a", "s1", 5), ("a", "s2", 5), ("a", "s3", 4), ("b", "s1", 2), ("b", "s2", 1),
                  ("c", "s1", 3), ("c", "s3", 3), ("d", "s2", 4), ("x", "s1", 1)])
    tgt = _frame([("a", "t1", 4), ("a", "t2", 5), ("b", "t1", 1), ("b", "t2", 2), ("b", "t3", 2),
                  ("c", "t1", 5), ("d", "t3", 3), ("d", "t1", 4), ("new", "t1", 3),
                  ("new", "s1", 4)])
    return src, tgt


def test_overlap_and_correlations_match_a_hand_count(handmade: tuple[Interactions,
                                                                      Interactions]) -> None:
    src, tgt = handmade
    model = Baseline().fit(src)
    d = transferability(model, tgt, old_data=src, fit=tgt, valid=tgt)
    ov = d["overlap"]
    assert ov["source_users"] == 5 and ov["target_users"] == 5
    assert ov["shared_users"] == 4  # a, b, c, d ("x" only in source, "new" only in target)
    assert ov["shared_items"] == 1  # s1
    assert ov["target_users_unknown_to_model"] == 1 and ov["target_items_unknown_to_model"] == 3
    s_mean = np.array([14 / 3, 1.5, 3.0, 4.0])  # a, b, c, d
    t_mean = np.array([4.5, 5 / 3, 5.0, 3.5])
    assert d["mean_rating_corr"] == pytest.approx(np.corrcoef(s_mean, t_mean)[0, 1])
    s_n, t_n = np.array([3, 2, 2, 1]), np.array([2, 3, 1, 2])
    assert d["activity_corr"] == pytest.approx(np.corrcoef(np.log1p(s_n), np.log1p(t_n))[0, 1])
    assert "4 shared users" in d["summary"]


def test_zero_shot_uses_biases_only(handmade: tuple[Interactions, Interactions]) -> None:
    src, tgt = handmade
    model = SVD(n_factors=3, n_epochs=5, random_state=0).fit(src)
    d = transferability(model, tgt, old_data=src, fit=tgt, valid=tgt)
    z = d["zero_shot"]
    p = model.parameters()
    u = model.user_map_.encode(tgt.user_map.decode(tgt.user), missing="negative")
    i = model.item_map_.encode(tgt.item_map.decode(tgt.item), missing="negative")
    pred = (float(np.asarray(p["global_bias"]).reshape(-1)[0])
            + np.where(u >= 0, np.asarray(p["user_bias"])[np.maximum(u, 0)], 0.0)
            + np.where(i >= 0, np.asarray(p["item_bias"])[np.maximum(i, 0)], 0.0))
    want = np.sqrt(np.mean((tgt.value - np.clip(pred, 1, 5)) ** 2))
    assert z["metric"] == "rmse" and z["what"].startswith("biases only")
    assert z["value"] == pytest.approx(want)
    assert z["target_mean_rmse"] == pytest.approx(np.std(tgt.value))


def test_without_old_data_activity_comes_from_the_model(
        handmade: tuple[Interactions, Interactions]) -> None:
    src, tgt = handmade
    d = transferability(Baseline().fit(src), tgt, fit=tgt, valid=tgt)
    assert d["mean_rating_corr"] is None and d["activity_corr"] is not None
    assert d["overlap"]["shared_users"] == 4
    with pytest.raises(DataError):
        transferability(Baseline().fit(src), tgt.take(np.zeros(0, dtype=np.int64)))


@pytest.mark.parametrize("c", [0.0, 0.5, 1.0])
def test_generator_knob_sets_the_cross_domain_correlation_of_user_factors(c: float) -> None:
    t = synthetic_truth(50_000, second_domain=True, domain_correlation=c, seed=3)
    f0, f1 = t.user_factors[0].ravel(), t.user_factors[1].ravel()
    b0, b1 = t.user_bias[0], t.user_bias[1]
    assert np.corrcoef(f0, f1)[0, 1] == pytest.approx(c, abs=0.06)
    assert np.corrcoef(b0, b1)[0, 1] == pytest.approx(c, abs=0.12)


def test_diagnostic_reads_related_and_unrelated_domains_apart() -> None:
    out = {}
    for c in (0.0, 1.0):
        ds = synthetic(15_000, second_domain=True, domain_correlation=c, seed=0)
        xd = protocols_for(ds).xdomain(ds, 1.0, 0)
        pre = Baseline().fit(xd.source)
        out[c] = transferability(pre, xd.target_train, old_data=xd.source)
    assert out[0.0]["mean_rating_corr"] < 0.25 < 0.45 < out[1.0]["mean_rating_corr"]
    assert not out[0.0]["zero_shot"]["beats_target_mean"]
    assert out[1.0]["zero_shot"]["beats_target_mean"]
