"""Rating errors and click metrics: hand-computed values and scikit-learn cross-checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import mean_absolute_error, mean_squared_error, roc_auc_score

from rectune import DataError
from rectune.evaluate import auc, auc_per_user, gauc, log_loss, mae, rmse, squared_errors


def test_rmse_mae_hand_computed() -> None:
    # errors 0, 1, 2 -> RMSE = sqrt((0 + 1 + 4) / 3), MAE = (0 + 1 + 2) / 3 = 1
    assert rmse([1, 2, 3], [1, 3, 5]) == pytest.approx(math.sqrt(5 / 3))
    assert mae([1, 2, 3], [1, 3, 5]) == pytest.approx(1.0)
    # clipped to (1, 4): predictions 1, 3, 4 -> errors 0, 1, 1
    assert rmse([1, 2, 3], [1, 3, 5], clip=(1, 4)) == pytest.approx(math.sqrt(2 / 3))
    assert mae([1, 2, 3], [0, 3, 5], clip=(1, 4)) == pytest.approx(2 / 3)
    np.testing.assert_allclose(squared_errors([1, 2, 3], [1, 3, 5]), [0, 1, 4])


def test_rmse_mae_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(1, 6, 500).astype(float)
    p = y + rng.normal(0, 0.9, 500)
    assert rmse(y, p) == pytest.approx(math.sqrt(mean_squared_error(y, p)))
    assert mae(y, p) == pytest.approx(mean_absolute_error(y, p))
    assert rmse(y, p, clip=(1, 5)) == pytest.approx(
        math.sqrt(mean_squared_error(y, np.clip(p, 1, 5)))
    )
    assert rmse(y, p, clip=(1, 5)) < rmse(y, p)  # clipping only removes impossible error


def test_rating_validation() -> None:
    with pytest.raises(DataError, match=r"y_pred\[1\] is nan"):
        rmse([1, 2], [1, np.nan])
    with pytest.raises(DataError, match="same length"):
        mae([1, 2], [1, 2, 3])
    with pytest.raises(DataError, match="empty"):
        rmse([], [])
    with pytest.raises(DataError, match="low <= high"):
        rmse([1], [1], clip=(5, 1))


def test_auc_hand_computed() -> None:
    # positives 0.35, 0.8; negatives 0.1, 0.4: pairs won 0.35>0.1, 0.8>0.1, 0.8>0.4 -> 3/4
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # with a tie: pos 0.5 vs neg 0.5 -> 1/2, vs neg 0.2 -> 1; pos 0.9 wins both -> 3.5 / 4
    assert auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(0.875)
    assert auc([0, 1, 0, 1], [1, 1, 1, 1]) == pytest.approx(0.5)  # all tied


def test_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    s = np.round(rng.random(2000) + 0.3 * y, 1)  # rounded: many ties
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s))


def test_auc_per_user_matches_per_group_sklearn() -> None:
    rng = np.random.default_rng(2)
    users = rng.integers(0, 30, 1500)
    y = rng.integers(0, 2, 1500)
    s = np.round(rng.random(1500) + 0.2 * y, 1)
    y[users == 5] = 1  # one class only -> NaN
    per = auc_per_user(y, s, users, n_users=32)
    assert per.shape == (32,)
    assert np.isnan(per[5]) and np.isnan(per[30]) and np.isnan(per[31])  # no rows for 30, 31
    for u in range(30):
        if u == 5:
            continue
        m = users == u
        assert per[u] == pytest.approx(roc_auc_score(y[m], s[m]))


def test_gauc_hand_computed() -> None:
    # user 0 (4 rows): AUC 0.75 (the first example above); user 1 (2 rows): AUC 0.0
    # user 2: one class, left out. Impression-weighted: (4*0.75 + 2*0) / 6 = 0.5
    y = [0, 0, 1, 1, 1, 0, 1]
    s = [0.1, 0.4, 0.35, 0.8, 0.1, 0.9, 0.3]
    g = [0, 0, 0, 0, 1, 1, 2]
    assert gauc(y, s, g) == pytest.approx(0.5)
    assert gauc(y, s, g, weighting="uniform") == pytest.approx(0.375)
    # clicks: user 0 has 2, user 1 has 1 -> (2*0.75 + 0) / 3
    assert gauc(y, s, g, weighting="clicks") == pytest.approx(0.5)
    with pytest.raises(DataError, match="both a positive and a negative"):
        gauc([1, 1], [0.1, 0.2], [0, 1])


def test_log_loss_hand_and_sklearn() -> None:
    # -(log 0.8 + log(1 - 0.3)) / 2
    assert log_loss([1, 0], [0.8, 0.3]) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    p = np.clip(rng.random(400), 0.01, 0.99)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p))
    assert math.isfinite(log_loss([1], [0.0]))  # clipped, not infinite
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(1e-15))


def test_click_validation() -> None:
    with pytest.raises(DataError, match="labels must be 0 or 1"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(DataError, match="both classes"):
        auc([1, 1], [0.1, 0.2])
    with pytest.raises(DataError, match=r"y_score\[0\] is nan"):
        auc([0, 1], [np.nan, 0.2])
    with pytest.raises(DataError, match="outside"):
        log_loss([0, 1], [0.5, 1.5])
    with pytest.raises(DataError, match="same length"):
        auc_per_user([0, 1], [0.1, 0.2], [0])
