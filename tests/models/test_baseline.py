from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rectune import DataError
from rectune.data import Interactions
from rectune.models.baseline import Baseline
from tests.models.contract import ContractTests, small_ratings


class TestBaselineALSContract(ContractTests):
    def make_model(self) -> Baseline:
        return Baseline()


class TestBaselineSGDContract(ContractTests):
    def make_model(self) -> Baseline:
        return Baseline(method="sgd", n_epochs=5, random_state=3)


def tiny() -> Interactions:
    df = pd.DataFrame({"user": [1, 1, 1, 2, 2, 3, 3, 4],
                       "item": [10, 20, 30, 10, 40, 20, 30, 40],
                       "rating": [5.0, 3.0, 4.0, 2.0, 1.0, 4.0, 5.0, 3.0]})
    return Interactions.from_frame(df, timestamp=None, rating_scale=(1, 5))


def als_by_hand(data: Interactions, n_epochs: int, reg_u: float,
                reg_i: float) -> tuple[np.ndarray, np.ndarray]:
    """Surprise's ``baseline_als`` as plain loops (the reference implementation)."""
    mu = float(np.mean(data.value, dtype=np.float64))
    bu, bi = np.zeros(data.n_users), np.zeros(data.n_items)
    for _ in range(n_epochs):
        for i in range(data.n_items):
            rows = np.flatnonzero(data.item == i)
            dev = sum(data.value[k] - mu - bu[data.user[k]] for k in rows)
            bi[i] = dev / (reg_i + len(rows))
        for u in range(data.n_users):
            rows = np.flatnonzero(data.user == u)
            dev = sum(data.value[k] - mu - bi[data.item[k]] for k in rows)
            bu[u] = dev / (reg_u + len(rows))
    return bu, bi


@pytest.mark.parametrize("n_epochs", [1, 3])
def test_als_equals_closed_form_sweeps(n_epochs: int) -> None:
    data = tiny()
    m = Baseline(n_epochs=n_epochs, reg_u=2.0, reg_i=1.5).fit(data)
    bu, bi = als_by_hand(data, n_epochs, 2.0, 1.5)
    np.testing.assert_allclose(m.user_bias_, bu, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.item_bias_, bi, rtol=1e-12, atol=1e-12)
    # first sweep by hand: item 10 has ratings 5 and 2, mu = 27/8
    if n_epochs == 1:
        mu = 27 / 8
        assert m.item_bias_[0] == pytest.approx((5 - mu + 2 - mu) / (1.5 + 2))


def test_als_converges_to_the_regularised_least_squares_optimum() -> None:
    data = small_ratings()
    m = Baseline(n_epochs=300, reg_u=3.0, reg_i=2.0).fit(data)
    mu = m.global_bias_[0]
    res = data.value - mu - m.user_bias_[data.user] - m.item_bias_[data.item]
    # stationarity of sum (r - mu - b_u - b_i)^2 + reg_u |b_u|^2 + reg_i |b_i|^2
    grad_u = np.bincount(data.user, res, minlength=data.n_users) - 3.0 * m.user_bias_
    grad_i = np.bincount(data.item, res, minlength=data.n_items) - 2.0 * m.item_bias_
    assert np.abs(grad_u).max() < 1e-8 and np.abs(grad_i).max() < 1e-8


def test_sgd_one_rating_one_step_by_hand() -> None:
    df = pd.DataFrame({"user": ["a"], "item": ["x"], "rating": [4.0]})
    data = Interactions.from_frame(df, timestamp=None, rating_scale=(1, 5))
    m = Baseline(method="sgd", n_epochs=1, reg=0.1, learning_rate=0.2).fit(data)
    # mu = 4, biases start at 0: error 0, so nothing moves
    assert m.user_bias_[0] == 0 and m.item_bias_[0] == 0
    df2 = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "rating": [5.0, 1.0]})
    data2 = Interactions.from_frame(df2, timestamp=None, rating_scale=(1, 5))
    m2 = Baseline(method="sgd", n_epochs=1, reg=0.1, learning_rate=0.2, shuffle=False).fit(data2)
    # mu = 3; rating (a, x, 5): e = 2 -> b_a = b_x = 0.2 * 2 = 0.4; (b, y, 1): e = -2
    np.testing.assert_allclose(m2.user_bias_, [0.4, -0.4], rtol=1e-6)
    np.testing.assert_allclose(m2.item_bias_, [0.4, -0.4], rtol=1e-6)


def test_sgd_matches_surprise_loop_in_surprise_order() -> None:
    data = small_ratings(seed=2)
    lr, reg, epochs = 0.01, 0.05, 3
    m = Baseline(method="sgd", n_epochs=epochs, reg=reg, learning_rate=lr,
                 shuffle=False).fit(data)
    mu = float(np.mean(data.value, dtype=np.float64))
    bu, bi = np.zeros(data.n_users), np.zeros(data.n_items)
    order = np.argsort(data.user, kind="stable")
    for _ in range(epochs):
        for k in order:
            u, i = data.user[k], data.item[k]
            e = float(data.value[k]) - (mu + bu[u] + bi[i])
            bu[u] += lr * (e - reg * bu[u])
            bi[i] += lr * (e - reg * bi[i])
    np.testing.assert_allclose(m.user_bias_, bu, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(m.item_bias_, bi, rtol=1e-9, atol=1e-12)


def test_sgd_seed_changes_order_only_slightly() -> None:
    data = small_ratings()
    a = Baseline(method="sgd", random_state=0).fit(data)
    b = Baseline(method="sgd", random_state=1).fit(data)
    assert not np.array_equal(a.user_bias_, b.user_bias_)
    np.testing.assert_allclose(a.user_bias_, b.user_bias_, atol=0.05)


def test_unknown_and_absent_fallbacks_follow_surprise() -> None:
    data = small_ratings()
    m = Baseline().fit(data)
    mu, bu, bi = m.global_bias_[0], m.user_bias_, m.item_bias_
    u0, i0 = data.user_map.ids[0], data.item_map.ids[0]
    p = m.predict([10**9, u0, 10**9, u0], [i0, 10**9, 10**9, i0], clip=False)
    np.testing.assert_allclose(p, [mu + bi[0], mu + bu[0], mu, mu + bu[0] + bi[0]])
    # a user in the id map without training ratings counts as unknown
    part = data.take(data.user != 0)
    m2 = Baseline().fit(part)
    assert not m2.known([u0], [i0])[0]
    assert m2.predict([u0], [i0], clip=False)[0] == pytest.approx(
        m2.global_bias_[0] + m2.item_bias_[0])


def test_score_matches_predict() -> None:
    data = small_ratings()
    m = Baseline().fit(data)
    users = np.arange(5)
    block = m._score(users)
    uu, ii = np.repeat(users, data.n_items), np.tile(np.arange(data.n_items), 5)
    np.testing.assert_allclose(block.ravel(), m.predict_indices(uu, ii, clip=False))


def test_history_and_valid_rmse() -> None:
    data = small_ratings()
    rows = np.random.default_rng(0).permutation(len(data))
    train, valid = data.take(rows[:300]), data.take(rows[300:])
    m = Baseline(method="sgd", n_epochs=4).fit(train, valid=valid)
    assert m.history_["epochs"] == 4
    assert len(m.history_["train_rmse"]) == 4 and len(m.history_["valid_rmse"]) == 4
    assert m.history_["train_rmse"][-1] < m.history_["train_rmse"][0]


@pytest.mark.parametrize("kw", [{"method": "foo"}, {"n_epochs": 0}, {"reg_u": -1.0},
                                {"learning_rate": 0.0}, {"shuffle": "yes"},
                                {"random_state": -3}, {"reg": float("nan")}])
def test_bad_hyper_parameters_raise(kw: dict[str, object]) -> None:
    with pytest.raises(DataError):
        Baseline(**kw).fit(small_ratings())  # type: ignore[arg-type]


def test_implicit_data_is_refused() -> None:
    with pytest.raises(DataError, match="explicit"):
        Baseline().fit(small_ratings().binarize(4))


@pytest.mark.realdata
def test_ml100k_matches_surprise_baselineonly(ml100k_dir: object) -> None:
    df = pd.read_csv(f"{ml100k_dir}/u.data", sep="\t",
                     names=["user", "item", "rating", "timestamp"])
    data = Interactions.from_frame(df, rating_scale=(1, 5))
    perm = np.random.default_rng(0).permutation(len(data))
    train, test = data.take(perm[20000:]), data.take(perm[:20000])
    pred = Baseline().fit(train).predict_indices(test.user, test.item)
    rmse = float(np.sqrt(np.mean((pred - test.value) ** 2)))
    assert rmse == pytest.approx(0.9403, abs=0.0005)  # Surprise BaselineOnly, PROTOCOLS.md


def test_sgd_with_a_background_shuffle_is_reproducible(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads make the next epoch's order meanwhile; the SGD itself stays on one thread."""
    from rectune.models import _mf_kernels as K
    from rectune.models.base import FitOptions

    monkeypatch.setattr(K, "PARALLEL_MIN_RATINGS", 0)
    data = small_ratings()
    a = Baseline(method="sgd").fit(data, options=FitOptions(n_threads=1))
    b = Baseline(method="sgd").fit(data, options=FitOptions(n_threads=2))
    np.testing.assert_array_equal(a.user_bias_, b.user_bias_)
    np.testing.assert_array_equal(a.item_bias_, b.item_bias_)
