"""ALS and EASE fine-tuning: anchored closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from rectune.data import Interactions, synthetic, temporal_split
from rectune.finetune import FinetuneConfig, finetune
from rectune.finetune.implicit import anchored_als_cg_step, anchored_als_half_step
from rectune.models import ALS, EASE


@pytest.fixture(scope="module")
def parts() -> tuple[Interactions, Interactions]:
    x = synthetic(20_000, seed=4, drift=1.0).interactions.binarize(4)
    s = temporal_split(x, train_fraction=0.7)
    return s.pretrain, s.test


def test_anchored_half_step_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=(6, 3))
    x = np.zeros((2, 3))
    x0 = rng.normal(size=(2, 3))
    indptr = np.array([0, 3, 5])
    indices = np.array([0, 2, 5, 1, 2])
    conf = np.array([2.0, 3.0, -2.0, 1.5, 4.0])
    reg, mu = np.array([0.1, 0.2]), np.array([0.5, 0.0])
    anchored_als_half_step(np.array([0, 1]), indptr, indices, conf, x, y, y.T @ y, reg, mu, x0)
    for r in range(2):
        c = np.ones(6)
        p = np.zeros(6)
        for q in range(indptr[r], indptr[r + 1]):
            c[indices[q]] = abs(conf[q])
            p[indices[q]] = 1.0 if conf[q] > 0 else 0.0
        a = y.T @ (c[:, None] * y) + (reg[r] + mu[r]) * np.eye(3)
        b = y.T @ (c * p) + mu[r] * x0[r]
        np.testing.assert_allclose(x[r], np.linalg.solve(a, b), rtol=1e-9)


def test_conjugate_gradient_step_converges_to_the_exact_solve() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=(8, 4))
    x0 = rng.normal(size=(2, 4))
    indptr = np.array([0, 3, 6])
    indices = np.array([0, 2, 5, 1, 3, 7])
    conf = np.array([2.0, 3.0, -2.0, 1.5, 4.0, 6.0])
    reg, mu = np.array([0.1, 0.2]), np.array([0.5, 0.0])
    exact, cg, one = np.zeros((2, 4)), x0.copy(), x0.copy()
    args = (indptr, indices, conf)
    anchored_als_half_step(np.array([0, 1]), *args, exact, y, y.T @ y, reg, mu, x0)
    anchored_als_cg_step(np.array([0, 1]), *args, cg, y, y.T @ y, reg, mu, x0, 20)
    anchored_als_cg_step(np.array([0, 1]), *args, one, y, y.T @ y, reg, mu, x0, 1)
    np.testing.assert_allclose(cg, exact, atol=1e-8)
    assert np.abs(one - exact).max() > 1e-4  # one step is an approximation


def test_als_replay_and_cg_steps(parts) -> None:  # type: ignore[no-untyped-def]
    old, new = parts
    pre = ALS(factors=8, iterations=5, random_state=0).fit(old)
    exact = finetune(pre, new, FinetuneConfig(l2sp=1.0, epochs=1, verbose=False))
    cg = finetune(pre, new, FinetuneConfig(l2sp=1.0, epochs=1, cg_steps=40, verbose=False))
    np.testing.assert_allclose(cg.user_factors_, exact.user_factors_, atol=1e-3)
    assert cg.meta_["finetune"]["solve"] == "40 conjugate-gradient steps"
    # replaying the old events of the updated users changes their solve
    rep = finetune(pre, new, FinetuneConfig(l2sp=1.0, epochs=1, replay=1.0, verbose=False),
                   old_data=old)
    assert rep.meta_["finetune"]["n_new_rows"] > len(new)
    assert not np.allclose(rep.user_factors_, exact.user_factors_)


def test_als_finetune_moves_only_new_rows_and_l2sp_anchors(parts) -> None:  # type: ignore[no-untyped-def]
    old, new = parts
    base = ALS(factors=16, iterations=8, random_state=0).fit(old)
    plain = finetune(base, new, FinetuneConfig(verbose=False, epochs=3))
    sp = finetune(base, new, FinetuneConfig(verbose=False, epochs=3, l2sp=1000.0))
    absent = np.setdiff1d(np.arange(base.n_users), new.user)
    np.testing.assert_array_equal(plain.user_factors_[absent], base.user_factors_[absent])
    moved = np.unique(new.user)
    anchored = moved[np.diff(base.seen_.indptr)[moved] > 0]
    d_plain = np.linalg.norm(plain.user_factors_[anchored] - base.user_factors_[anchored])
    d_sp = np.linalg.norm(sp.user_factors_[anchored] - base.user_factors_[anchored])
    assert d_sp < 0.2 * d_plain
    frozen = finetune(base, new, FinetuneConfig(verbose=False, freeze=["item_*"]))
    np.testing.assert_array_equal(frozen.item_factors_[: base.n_items], base.item_factors_)


def test_ease_finetune_closed_form(parts) -> None:  # type: ignore[no-untyped-def]
    old, new = parts
    base = EASE(regularization=50.0).fit(old)
    huge = finetune(base, new, FinetuneConfig(verbose=False, l2sp=1e9))
    np.testing.assert_allclose(huge.item_weights_, base.item_weights_, atol=1e-4)
    zero = finetune(base, new, FinetuneConfig(verbose=False, l2sp=0.0))
    scratch = EASE(regularization=50.0).fit(new)
    np.testing.assert_allclose(zero.item_weights_, scratch.item_weights_, atol=1e-8)
    assert np.all(np.diag(zero.item_weights_) == 0)
