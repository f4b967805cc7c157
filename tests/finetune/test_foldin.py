"""Fold-in: a user's parameters solved from a history against fixed item parameters."""

from __future__ import annotations

import numpy as np
import pytest

from rectune import DataError
from rectune.data import synthetic
from rectune.finetune.foldin import fold_in, recommend_history
from rectune.models.baseline import Baseline
from rectune.models.mf_svd import SVD


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return synthetic(20_000, seed=5).interactions


def test_svd_fold_in_matches_ridge_closed_form(data) -> None:  # type: ignore[no-untyped-def]
    m = SVD(n_factors=8, n_epochs=10, random_state=0).fit(data)
    u = 3
    rows = data.user == u
    items = data.item_map.decode(data.item[rows])
    vals = data.value[rows].astype(np.float64)
    got = fold_in(m, items, vals)
    # independent solve of the same ridge problem by augmenting the design matrix
    q = m.item_factors_[data.item[rows]].astype(np.float64)
    n, k = q.shape
    x = np.column_stack([np.ones(n), q])
    y = vals - m.global_bias_[0] - m.item_bias_[data.item[rows]]
    lam = np.sqrt(n * np.r_[0.02, np.full(k, 0.02)])
    w, *_ = np.linalg.lstsq(np.vstack([x, np.diag(lam)]), np.r_[y, np.zeros(k + 1)], rcond=None)
    np.testing.assert_allclose(got.bias, w[0], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got.factors, w[1:], rtol=1e-4, atol=1e-6)
    # the folded user ranks like the trained one (same data, fixed items)
    s_fold = m.item_factors_ @ got.factors + m.item_bias_
    s_model = m._score(np.array([u]))[0]
    assert np.corrcoef(s_fold, s_model)[0, 1] > 0.5  # SGD is not the exact ridge optimum


def test_recommend_history_excludes_history_and_handles_unknown(data) -> None:  # type: ignore[no-untyped-def]
    m = SVD(n_factors=8, n_epochs=5, random_state=0).fit(data)
    hist = data.item_map.ids[:5]
    ids, scores = recommend_history(m, [*hist.tolist(), 10**9], [5, 4, 5, 3, 1, 5], k=10)
    assert len(ids) == 10 and not set(ids.tolist()) & set(hist.tolist())
    assert np.all(np.diff(scores) <= 0)
    with pytest.raises(DataError):
        fold_in(m, hist, [1.0, 2.0])


def test_baseline_fold_in_is_shrunk_mean_residual(data) -> None:  # type: ignore[no-untyped-def]
    b = Baseline().fit(data)
    items = data.item_map.ids[:4]
    vals = np.array([5.0, 5.0, 4.0, 5.0])
    got = fold_in(b, items, vals)
    idx = data.item_map.encode(items)
    expect = np.sum(vals - b.global_bias_[0] - b.item_bias_[idx]) / (15.0 + 4)
    assert got.bias == pytest.approx(expect)
