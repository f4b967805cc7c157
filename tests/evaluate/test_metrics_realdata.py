"""The ranking metrics reproduce the popularity figure of PROTOCOLS.md on ML-100K.

PROTOCOLS.md, "ML-100K top-N ranking": popularity scores 0.149 NDCG@10 on the
per-user 80/20 split of positives. The split is rebuilt here from its written
definition (a reference loop, fine in a test), so this checks our metric
definitions (NDCG, IDCG over min(10, |test_u|), candidate exclusion, ties)
against a number measured independently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from rectune.evaluate import (
    bootstrap_ci,
    gini_index,
    ranking_metrics,
    ranking_metrics_per_user,
    topk_from_scores,
)


def _protocol_split(ml100k_dir: Path) -> tuple[sp.csr_array, sp.csr_array]:
    df = pd.read_csv(ml100k_dir / "u.data", sep="\t", names=["u", "i", "r", "t"])
    users, items = np.unique(df["u"]), np.unique(df["i"])
    pos = df[df["r"] >= 4]
    ui = np.searchsorted(users, pos["u"].to_numpy())
    ii = np.searchsorted(items, pos["i"].to_numpy())
    order = np.lexsort((ii, ui))
    ui, ii = ui[order], ii[order]
    rng = np.random.default_rng(0)
    starts = np.flatnonzero(np.r_[True, ui[1:] != ui[:-1]])
    ends = np.r_[starts[1:], ui.size]
    is_test = np.zeros(ui.size, dtype=bool)
    for s, e in zip(starts, ends, strict=True):
        n = e - s
        perm = rng.permutation(n)
        n_test = 0 if n < 2 else min(n - 1, max(1, int(np.floor(0.2 * n + 0.5))))
        is_test[s + perm[:n_test]] = True
    shape = (users.size, items.size)
    tr, te = ~is_test, is_test
    train = sp.csr_array((np.ones(tr.sum()), (ui[tr], ii[tr])), shape=shape)
    test = sp.csr_array((np.ones(te.sum()), (ui[te], ii[te])), shape=shape)
    return train, test


@pytest.mark.realdata
def test_popularity_ndcg_matches_protocol_figure(ml100k_dir: Path) -> None:
    train, test = _protocol_split(ml100k_dir)
    assert train.shape == (943, 1682)
    evaluated = np.flatnonzero(np.diff(test.indptr) > 0)
    assert evaluated.size == 942
    popularity = np.asarray(train.sum(axis=0)).ravel()
    scores = np.broadcast_to(popularity, (evaluated.size, train.shape[1]))
    top, _ = topk_from_scores(scores, 10, exclude=train[evaluated])
    assert not sp.csr_array(train[evaluated]).multiply(
        sp.csr_array((np.ones(top.size), (np.repeat(np.arange(top.shape[0]), 10), top.ravel())),
                     shape=(evaluated.size, train.shape[1]))
    ).nnz  # no training positive among the candidates
    res = ranking_metrics(top, test, k=10, users=evaluated)
    assert res["ndcg@10"] == pytest.approx(0.149, abs=0.001)
    assert 0.0 < res["coverage@10"] < 0.05  # popularity recommends a few dozen items
    assert gini_index(top, train.shape[1]) > 0.95
    per_user = ranking_metrics_per_user(top, test, k=10, users=evaluated)["ndcg@10"]
    m, lo, hi = bootstrap_ci(per_user, n_boot=500)
    assert lo < m < hi and lo < 0.149 < hi and hi - lo < 0.05
