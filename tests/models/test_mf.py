from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rectune import DataError
from rectune.data import Interactions
from rectune.models import _mf_kernels as K
from rectune.models import _mf_order
from rectune.models.base import FitOptions, Recommender
from rectune.models.mf import NMF, SVD, SVDpp
from tests.models.contract import ContractTests, small_ratings


# ------------------------------------------------------------------ contract suites
class TestSVDContract(ContractTests):
    def make_model(self) -> SVD:
        return SVD(n_factors=8, n_epochs=5, random_state=0)


class TestUnbiasedSVDContract(ContractTests):
    def make_model(self) -> SVD:
        return SVD(n_factors=4, n_epochs=5, biased=False, random_state=1)


class TestSVDppContract(ContractTests):
    def make_model(self) -> SVDpp:
        return SVDpp(n_factors=6, n_epochs=5, random_state=0)


class TestNMFContract(ContractTests):
    def make_model(self) -> NMF:
        return NMF(n_factors=5, n_epochs=10, random_state=0)


class TestBiasedNMFContract(ContractTests):
    def make_model(self) -> NMF:
        return NMF(n_factors=5, n_epochs=10, biased=True, random_state=0)


# -------------------------------------------------------- reference implementations
RATES = dict(lr_bu=0.01, lr_bi=0.02, lr_pu=0.03, lr_qi=0.04, reg_bu=0.05, reg_bi=0.06,
             reg_pu=0.07, reg_qi=0.08)


def svd_rating_loss(theta: np.ndarray, r: float, mu: float, k: int) -> float:
    """Per-rating objective whose negative gradient step is Surprise's SVD update.

    ``theta = [b_u, b_i, p_u, q_i]``; L = 1/2 e^2 + 1/2 sum_g reg_g |theta_g|^2.
    """
    bu, bi, p, q = theta[0], theta[1], theta[2:2 + k], theta[2 + k:]
    e = r - (mu + bu + bi + p @ q)
    return float(0.5 * e * e + 0.5 * (RATES["reg_bu"] * bu ** 2 + RATES["reg_bi"] * bi ** 2
                                      + RATES["reg_pu"] * p @ p + RATES["reg_qi"] * q @ q))


def test_svd_step_is_a_gradient_step_on_the_rating_loss() -> None:
    rng = np.random.default_rng(0)
    k, mu, r = 4, 3.0, 4.5
    p, q = rng.normal(0, 0.5, (1, k)), rng.normal(0, 0.5, (1, k))
    bu, bi = np.array([0.2]), np.array([-0.1])
    theta0 = np.concatenate([bu, bi, p[0], q[0]])
    K.svd_epoch(0, 1, np.zeros(1, np.int32), np.zeros(1, np.int32), np.array([r]), mu,
                bu, bi, p, q, True, *RATES.values())
    # finite-difference gradient of the loss at the old parameters
    grad = np.zeros_like(theta0)
    for j in range(len(theta0)):
        d = np.zeros_like(theta0)
        d[j] = 1e-6
        grad[j] = (svd_rating_loss(theta0 + d, r, mu, k)
                   - svd_rating_loss(theta0 - d, r, mu, k)) / 2e-6
    lrs = np.array([RATES["lr_bu"], RATES["lr_bi"]] + [RATES["lr_pu"]] * k
                   + [RATES["lr_qi"]] * k)
    expected = theta0 - lrs * grad
    got = np.concatenate([bu, bi, p[0], q[0]])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)
    # and by hand for the first factor of q: uses the *old* p
    e = r - (mu + theta0[0] + theta0[1] + theta0[2:2 + k] @ theta0[2 + k:])
    assert q[0, 0] == pytest.approx(theta0[2 + k] + RATES["lr_qi"] * (
        e * theta0[2] - RATES["reg_qi"] * theta0[2 + k]))


def surprise_svdpp(u: np.ndarray, i: np.ndarray, r: np.ndarray, mu: float, bu: np.ndarray,
                   bi: np.ndarray, p: np.ndarray, q: np.ndarray, y: np.ndarray,
                   lr: dict[str, float], reg: dict[str, float], epochs: int) -> None:
    """Surprise's SVDpp.sgd loop, verbatim, over ratings in the given order (float64)."""
    items_of = {uu: i[u == uu] for uu in np.unique(u)}
    for _ in range(epochs):
        for uu, ii, rr in zip(u, i, r, strict=True):
            iu = items_of[uu]
            sq = np.sqrt(len(iu))
            z = y[iu].sum(axis=0) / sq
            err = rr - (mu + bu[uu] + bi[ii] + q[ii] @ (p[uu] + z))
            bu[uu] += lr["bu"] * (err - reg["bu"] * bu[uu])
            bi[ii] += lr["bi"] * (err - reg["bi"] * bi[ii])
            puf, qif = p[uu].copy(), q[ii].copy()
            p[uu] += lr["pu"] * (err * qif - reg["pu"] * puf)
            q[ii] += lr["qi"] * (err * (puf + z) - reg["qi"] * qif)
            y[iu] += lr["yj"] * (err * qif / sq - reg["yj"] * y[iu])


def test_svdpp_kernel_equals_surprise_per_rating_schedule() -> None:
    """The O(k)-per-rating reorganisation gives Surprise's updates exactly (float64)."""
    rng = np.random.default_rng(3)
    n_u, n_i, k = 6, 9, 3
    mask = rng.random((n_u, n_i)) < 0.6
    mask[:, 0] = True
    u, i = np.nonzero(mask)  # grouped by user, as the kernel visits them
    r = rng.integers(1, 6, len(u)).astype(np.float64)
    lr = dict(bu=0.01, bi=0.02, pu=0.03, qi=0.04, yj=0.05)
    reg = dict(bu=0.02, bi=0.03, pu=0.04, qi=0.05, yj=0.06)
    init = [rng.normal(0, 0.3, (n, k)) for n in (n_u, n_i, n_i)]
    mu = float(r.mean())
    ref = [a.copy() for a in init]
    rbu, rbi = np.zeros(n_u), np.zeros(n_i)
    surprise_svdpp(u, i, r, mu, rbu, rbi, ref[0], ref[1], ref[2], lr, reg, epochs=3)
    p, q, y = (a.copy() for a in init)
    bu, bi = np.zeros(n_u), np.zeros(n_i)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(u, minlength=n_u))])
    for _ in range(3):
        K.svdpp_epoch(0, n_u, np.arange(n_u, dtype=np.int32), indptr, i.astype(np.int32), r,
                      mu, bu, bi, p, q, y, *lr.values(), *reg.values())
    for got, want in zip((bu, bi, p, q, y), (rbu, rbi, *ref), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def surprise_nmf_epoch(u: np.ndarray, i: np.ndarray, r: np.ndarray, p: np.ndarray,
                       q: np.ndarray, reg_pu: float, reg_qi: float) -> None:
    """Surprise's unbiased NMF epoch, verbatim (float64)."""
    un, ud = np.zeros_like(p), np.zeros_like(p)
    inn, idd = np.zeros_like(q), np.zeros_like(q)
    for uu, ii, rr in zip(u, i, r, strict=True):
        est = q[ii] @ p[uu]
        un[uu] += q[ii] * rr
        ud[uu] += q[ii] * est
        inn[ii] += p[uu] * rr
        idd[ii] += p[uu] * est
    nu, ni = np.bincount(u, minlength=len(p)), np.bincount(i, minlength=len(q))
    for uu in range(len(p)):
        for f in range(p.shape[1]):
            if p[uu, f] != 0:
                p[uu, f] *= un[uu, f] / (ud[uu, f] + nu[uu] * reg_pu * p[uu, f])
    for ii in range(len(q)):
        for f in range(q.shape[1]):
            if q[ii, f] != 0:
                q[ii, f] *= inn[ii, f] / (idd[ii, f] + ni[ii] * reg_qi * q[ii, f])


@pytest.mark.parametrize("n_threads", [1, 2])
def test_nmf_epoch_equals_surprise(n_threads: int) -> None:
    rng = np.random.default_rng(5)
    n_u, n_i, k = 7, 8, 3
    mask = rng.random((n_u, n_i)) < 0.5
    mask[:, 1] = True
    u, i = np.nonzero(mask)
    r = rng.integers(1, 6, len(u)).astype(np.float64)
    p0, q0 = rng.uniform(0, 1, (n_u, k)), rng.uniform(0, 1, (n_i, k))
    p0[2, 1] = 0.0  # a zero factor stays zero (Surprise skips it)
    rp, rq = p0.copy(), q0.copy()
    p, q = p0.copy(), q0.copy()
    indptr = np.concatenate([[0], np.cumsum(np.bincount(u, minlength=n_u))])
    bounds = K.weighted_bounds(indptr, n_threads)
    un, ud = np.zeros_like(p), np.zeros_like(p)
    parts_n, parts_d = np.zeros((len(bounds), n_i, k)), np.zeros((len(bounds), n_i, k))
    with K.ChunkRunner(n_threads) as runner:
        for _ in range(4):
            surprise_nmf_epoch(u, i, r, rp, rq, 0.06, 0.07)
            runner.run_each(K.nmf_accumulate, [
                (s, e, indptr, i.astype(np.int32), r, p, q, un, ud, parts_n[c], parts_d[c])
                for c, (s, e) in enumerate(bounds)])
            K.nmf_apply(p, un, ud, np.bincount(u, minlength=n_u).astype(np.float64), 0.06,
                        q, parts_n.sum(0), parts_d.sum(0),
                        np.bincount(i, minlength=n_i).astype(np.float64), 0.07)
    np.testing.assert_allclose(p, rp, rtol=1e-6)
    np.testing.assert_allclose(q, rq, rtol=1e-6)
    assert p[2, 1] == 0.0


# ----------------------------------------------------------------------- behaviour
def low_rank(seed: int = 0, n_users: int = 60, n_items: int = 50, rank: int = 2,
             noise: float = 0.0) -> tuple[Interactions, Interactions]:
    """Ratings ``3 + p_u . q_i (+ noise)`` on 60% of the cells; a 90/10 split."""
    rng = np.random.default_rng(seed)
    p, q = rng.normal(0, 0.8, (n_users, rank)), rng.normal(0, 0.8, (n_items, rank))
    uu, ii = np.nonzero(rng.random((n_users, n_items)) < 0.6)
    r = 3.0 + (p[uu] * q[ii]).sum(1) + rng.normal(0, noise, len(uu))
    df = pd.DataFrame({"user": uu, "item": ii, "rating": r})
    data = Interactions.from_frame(df, timestamp=None)
    rows = rng.permutation(len(data))
    cut = int(0.9 * len(rows))
    return data.take(rows[:cut]), data.take(rows[cut:])


def rmse(model: Recommender, data: Interactions) -> float:
    pred = model.predict_indices(data.user, data.item, clip=False)
    return float(np.sqrt(np.mean((pred - data.value) ** 2)))


def test_svd_recovers_a_low_rank_matrix() -> None:
    train, test = low_rank()
    m = SVD(n_factors=4, n_epochs=150, lr_all=0.02, reg_all=0.002).fit(train)
    spread = float(np.std(test.value))
    assert rmse(m, train) < 0.08
    assert rmse(m, test) < 0.25 * spread


def test_svdpp_and_nmf_learn_low_rank_structure() -> None:
    train, test = low_rank(seed=1)
    base = float(np.sqrt(np.mean((test.value - train.value.mean()) ** 2)))
    pp = SVDpp(n_factors=4, n_epochs=100, lr_all=0.02, reg_all=0.002).fit(train)
    assert rmse(pp, test) < 0.35 * base
    nmf = NMF(n_factors=6, n_epochs=200, biased=True, reg_pu=0.01, reg_qi=0.01).fit(train)
    assert rmse(nmf, test) < 0.6 * base


@pytest.mark.parametrize("make", [lambda: NMF(n_factors=4, n_epochs=30),
                                  lambda: NMF(n_factors=4, n_epochs=30, biased=True,
                                              lr_bu=0.05, lr_bi=0.05)])
def test_nmf_factors_stay_non_negative(make: Any) -> None:
    m = make().fit(small_ratings())
    assert (m.user_factors_ >= 0).all() and (m.item_factors_ >= 0).all()
    assert m.user_factors_.max() > 0


def test_nmf_on_a_scale_reaching_zero_shifts_like_surprise() -> None:
    data = small_ratings()
    df = data.to_frame()
    df["rating"] = df["rating"] - 3.0  # scale -2..2
    shifted = Interactions.from_frame(df, rating_scale=(-2, 2))
    m = NMF(n_factors=4, n_epochs=30).fit(shifted)
    assert m.rating_offset_ == 3.0
    assert (m.user_factors_ >= 0).all() and (m.item_factors_ >= 0).all()
    pred = m.predict_indices(shifted.user, shifted.item)
    assert pred.min() >= -2 and pred.max() <= 2
    assert rmse(m, shifted) < float(np.std(shifted.value))


@pytest.mark.parametrize("cls", [SVD, SVDpp, NMF])
def test_seeds_differ_and_repeat(cls: type) -> None:
    data = small_ratings()
    a, b = cls(n_factors=3, n_epochs=3, random_state=1), cls(n_factors=3, n_epochs=3,
                                                             random_state=2)
    a.fit(data), b.fit(data)
    assert not np.array_equal(a.user_factors_, b.user_factors_)
    c = cls(n_factors=3, n_epochs=3, random_state=1).fit(data)
    np.testing.assert_array_equal(a.item_factors_, c.item_factors_)


@pytest.mark.parametrize("model", [SVD(n_factors=5, n_epochs=3), SVDpp(n_factors=5, n_epochs=3),
                                   NMF(n_factors=5, n_epochs=3),
                                   SVD(n_factors=5, n_epochs=3, biased=False)])
def test_score_matches_vectorised_predict(model: Recommender) -> None:
    data = small_ratings()
    model.fit(data)
    users = np.array([0, 3, 7])
    block = model._score(users)
    uu, ii = np.repeat(users, data.n_items), np.tile(np.arange(data.n_items), len(users))
    np.testing.assert_allclose(block.ravel(), model.predict_indices(uu, ii, clip=False),
                               rtol=1e-5, atol=1e-5)


def test_svdpp_prediction_formula() -> None:
    data = small_ratings()
    m = SVDpp(n_factors=4, n_epochs=3).fit(data)
    u, i = 5, 2
    n_u = data.item[data.user == u]
    z = m.item_implicit_[n_u].sum(0) / np.sqrt(len(n_u))
    want = (m.global_bias_[0] + m.user_bias_[u] + m.item_bias_[i]
            + m.item_factors_[i] @ (m.user_factors_[u] + z))
    assert m.predict_indices(np.array([u]), np.array([i]), clip=False)[0] == pytest.approx(
        want, rel=1e-5)


def test_unknown_and_absent_ids_follow_surprise() -> None:
    data = small_ratings()
    keep = (data.user != 4) & (data.item != 6)
    train = data.take(keep)  # user 4 and item 6 stay in the maps without ratings
    m = SVD(n_factors=4, n_epochs=5).fit(train)
    mu = m.global_bias_[0]
    u4, i6 = data.user_map.ids[4], data.item_map.ids[6]
    u0, i0 = data.user_map.ids[0], data.item_map.ids[0]
    p = m.predict([u4, u0, 10**9, u4], [i0, i6, i0, i6], clip=False)
    np.testing.assert_allclose(p, [mu + m.item_bias_[0], mu + m.user_bias_[0],
                                   mu + m.item_bias_[0], mu], rtol=1e-6)
    assert not m.known([u4, u0], [i0, i6]).any()
    assert (m.user_factors_[4] == 0).all() and (m.item_factors_[6] == 0).all()
    unbiased = SVD(n_factors=4, n_epochs=5, biased=False).fit(train)
    np.testing.assert_allclose(unbiased.predict([u4, 10**9], [i0, i0], clip=False),
                               unbiased.global_mean_)


def test_similar_items_and_users_use_factors() -> None:
    data = small_ratings()
    m = SVDpp(n_factors=4, n_epochs=3).fit(data)
    ids, scores = m.similar_items(data.item_map.ids[:2], k=3)
    assert ids.shape == (2, 3) and np.all(np.isfinite(scores))
    assert data.item_map.ids[0] not in ids[0]
    ids, _ = m.similar_users(data.user_map.ids[:1], k=4)
    assert ids.shape == (1, 4)


def test_replacing_parameter_groups_changes_predictions() -> None:
    data = small_ratings()
    m = SVDpp(n_factors=4, n_epochs=3).fit(data)
    params = {k: v.copy() for k, v in m.parameters().items()}
    params["item_implicit"][:] = 0.0
    m._set_parameters(params)
    u, i = np.array([1]), np.array([2])
    want = (m.global_bias_[0] + m.user_bias_[1] + m.item_bias_[2]
            + m.item_factors_[2] @ m.user_factors_[1])
    assert m.predict_indices(u, i, clip=False)[0] == pytest.approx(want, rel=1e-5)


def test_early_stopping_keeps_the_best_epoch() -> None:
    train, valid = low_rank(seed=2, noise=1.0)
    m = SVD(n_factors=20, n_epochs=60, lr_all=0.05, reg_all=0.0,
            early_stopping_patience=2).fit(train, valid=valid)
    hist = m.history_
    assert hist["epochs"] < 60, "over-fitting with 20 factors and no regularisation stops early"
    best = int(np.argmin(hist["valid_rmse"]))
    assert hist["best_epoch"] == best + 1
    assert rmse(m, valid) == pytest.approx(hist["valid_rmse"][best], rel=1e-4)
    with pytest.raises(DataError, match="valid"):
        SVD(early_stopping_patience=2).fit(train)


def test_threads_below_the_threshold_change_nothing() -> None:
    data = small_ratings()
    a = SVD(n_factors=4, n_epochs=3).fit(data, options=FitOptions(n_threads=1))
    b = SVD(n_factors=4, n_epochs=3).fit(data, options=FitOptions(n_threads=2))
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)


@pytest.mark.parametrize("cls", [SVD, SVDpp, NMF])
def test_hogwild_threads_reach_the_same_quality(cls: type,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    train, test = low_rank(seed=4, n_users=120, n_items=80)
    kw: dict[str, Any] = {"n_factors": 4, "n_epochs": 40}
    if cls is not NMF:
        kw.update(lr_all=0.02, reg_all=0.01)
    one = cls(**kw).fit(train, options=FitOptions(n_threads=1))
    monkeypatch.setattr(K, "PARALLEL_MIN_RATINGS", 0)
    two = cls(**kw).fit(train, options=FitOptions(n_threads=2))
    assert rmse(two, test) == pytest.approx(rmse(one, test), rel=0.1, abs=0.02)


def test_run_epochs_interrupt_leaves_whole_epochs() -> None:
    seen: list[int] = []

    def step(epoch: int) -> float:
        if epoch == 2:
            raise KeyboardInterrupt
        seen.append(epoch)
        return 1.0

    hist: dict[str, Any] = {}
    with pytest.raises(KeyboardInterrupt):
        K.run_epochs(hist, 5, step, n_ratings=1, label="t", progress=False)
    assert hist["interrupted"] and hist["epochs"] == 2 and seen == [0, 1]


def test_chunk_runner_waits_for_threads_before_raising() -> None:
    done = threading.Event()

    def fn(start: int, end: int) -> float:
        if start == 0:
            raise KeyboardInterrupt
        time.sleep(0.2)
        done.set()
        return 0.0

    with K.ChunkRunner(2) as runner, pytest.raises(KeyboardInterrupt):
        runner.run(fn, [(0, 1), (1, 2)])
    assert done.is_set()


def test_progress_bar_runs(capsys: pytest.CaptureFixture[str]) -> None:
    m = SVD(n_factors=3, n_epochs=2).fit(small_ratings(), options=FitOptions(progress=True))
    assert m.history_["epochs"] == 2


def test_history_survives_save_load(tmp_path: Path) -> None:
    m = NMF(n_factors=3, n_epochs=4).fit(small_ratings())
    m.save(tmp_path / "m")
    m2 = Recommender.load(tmp_path / "m")
    assert m2.history_["train_rmse"] == m.history_["train_rmse"]  # type: ignore[attr-defined]
    assert m2.rating_offset_ == 0.0  # type: ignore[attr-defined]


BAD: list[dict[str, Any]] = [{"n_factors": 0}, {"lr_pu": -1.0}, {"biased": "no"},
                             {"early_stopping_patience": 0}, {"n_epochs": 1.5},
                             {"init_std_dev": float("nan")}]


@pytest.mark.parametrize("make", [*(lambda kw=kw: SVD(**kw) for kw in BAD),
                                  lambda: SVDpp(reg_yj=float("inf")),
                                  lambda: NMF(init_low=0.5, init_high=0.2),
                                  lambda: NMF(init_low=-0.1)])
def test_bad_hyper_parameters_raise(make: Any) -> None:
    with pytest.raises(DataError):
        make().fit(small_ratings())


def test_implicit_data_is_refused() -> None:
    with pytest.raises(DataError, match="explicit"):
        SVD().fit(small_ratings().binarize(4))


# ------------------------------------------------------------- epoch orders (speed paths)
def _columns(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = np.arange(n, dtype=np.int32)
    return u, u + 100, (u * 0.5).astype(np.float32)


@pytest.mark.parametrize("bucketed", [False, True])
def test_shuffles_are_seeded_permutations_that_keep_rows_together(bucketed: bool) -> None:
    su, si, sr = _columns(5000)
    outs = []
    for seed in (7, 7, 8):
        du, di, dr = (np.empty_like(a) for a in (su, si, sr))
        if bucketed:
            K.shuffle_into(np.uint64(seed), su, si, sr, du, di, dr,
                           np.empty(len(su), np.uint16), 13)
        else:
            K.shuffle_copy(np.uint64(seed), su, si, sr, du, di, dr)
        np.testing.assert_array_equal(np.sort(du), su)
        np.testing.assert_array_equal(di, du + 100)
        np.testing.assert_array_equal(dr, (du * 0.5).astype(np.float32))
        outs.append(du)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2]) and not np.array_equal(outs[0], su)


@pytest.mark.parametrize("bucketed", [False, True])
def test_shuffles_are_uniform_over_permutations(bucketed: bool) -> None:
    """All 24 orders of 4 ratings, each within 25% of its expected count (sd ~3%)."""
    su, si, sr = _columns(4)
    counts: dict[tuple[int, ...], int] = {}
    n_draws = 24 * 1000
    du, di, dr = (np.empty_like(a) for a in (su, si, sr))
    bucket = np.empty(4, np.uint16)
    for seed in range(n_draws):
        if bucketed:
            K.shuffle_into(np.uint64(seed), su, si, sr, du, di, dr, bucket, 3)
        else:
            K.shuffle_copy(np.uint64(seed), su, si, sr, du, di, dr)
        key = tuple(du.tolist())
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 24
    assert min(counts.values()) > 750 and max(counts.values()) < 1250


def test_background_shuffle_gives_the_same_orders() -> None:
    u = np.repeat(np.arange(50), 20)
    i = np.tile(np.arange(20), 50)
    r = np.arange(1000, dtype=np.float32)
    seq = []
    for background in (False, True):
        with K.EpochOrder(u, i, r, np.random.default_rng(3), True, background) as order:
            seq.append([order.next()[2].copy() for _ in range(4)])
    for a, b in zip(*seq, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(seq[0][0], seq[0][1])
    assert np.array_equal(r, np.arange(1000, dtype=np.float32))  # the input is not touched


def test_bucketed_order_and_background_fit_reproducibly(monkeypatch: pytest.MonkeyPatch) -> None:
    data = small_ratings()

    def fit() -> NMF:  # biased NMF trains by SGD in an EpochOrder
        return NMF(n_factors=4, n_epochs=3, biased=True).fit(data)

    base = fit()
    monkeypatch.setattr(_mf_order, "BUCKET_MIN_RATINGS", 1)  # read where EpochOrder lives
    monkeypatch.setattr(_mf_order, "BUCKET_SIZE", 16)
    a = fit()
    b = fit()
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    assert not np.array_equal(a.user_factors_, base.user_factors_)  # another shuffle
    assert rmse(a, data) == pytest.approx(rmse(base, data), rel=0.05)
    # a background shuffle changes nothing: SGD on one thread, same seeds
    monkeypatch.setattr(K, "PARALLEL_MIN_RATINGS", 0)
    one = NMF(n_factors=3, n_epochs=4, biased=True).fit(data, options=FitOptions(n_threads=1))
    two = NMF(n_factors=3, n_epochs=4, biased=True).fit(data, options=FitOptions(n_threads=2))
    np.testing.assert_array_equal(one.user_factors_, two.user_factors_)


def test_padded_width_rule() -> None:
    assert [K.padded_width(k) for k in (1, 8, 14, 15, 16, 20, 30, 100)] == \
        [1, 8, 16, 16, 16, 20, 32, 100]


@pytest.mark.parametrize("cls", [SVD, NMF])
def test_zero_padded_factors_change_nothing(cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """15 factors run on 16 columns (``padded_width``): same model as unpadded, to rounding."""
    import rectune.models.mf_svd as mf_svd

    data = small_ratings()
    padded = cls(n_factors=15, n_epochs=5).fit(data)
    monkeypatch.setattr(mf_svd, "padded_width", lambda k: k)
    plain = cls(n_factors=15, n_epochs=5).fit(data)
    for name in ("user_factors_", "item_factors_"):
        a, b = getattr(padded, name), getattr(plain, name)
        assert a.shape == b.shape == (b.shape[0], 15) and a.flags.c_contiguous
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)



# ------------------------------------------------------------- SVD's by-user kernel
def user_csr(seed: int = 0, n_users: int = 30,
             n_items: int = 25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indptr, item, rating)`` by user: 0 to 12 ratings each (empty users included)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 13, n_users)
    counts[3] = 0
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    item = np.concatenate([rng.choice(n_items, c, replace=False) for c in counts])
    return indptr, item.astype(np.int32), rng.integers(1, 6, len(item)).astype(np.float64)


def round_robin(users: np.ndarray, indptr: np.ndarray, lanes: int) -> np.ndarray:
    """Rating positions in the order the kernel visits them (one per lane in turn)."""
    todo = [list(range(indptr[u], indptr[u + 1])) for u in users if indptr[u + 1] > indptr[u]]
    slots: list[list[int]] = [todo.pop(0) if todo else [] for _ in range(lanes)]
    out: list[int] = []
    while any(slots):
        for lane in range(lanes):
            if slots[lane]:
                out.append(slots[lane].pop(0))
                if not slots[lane] and todo:
                    slots[lane] = todo.pop(0)
    return np.array(out, dtype=np.int64)


def svd_params(n_users: int, n_items: int, k: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.1, n_users), rng.normal(0, 0.1, n_items),
            rng.normal(0, 0.3, (n_users, k)), rng.normal(0, 0.3, (n_items, k))]


@pytest.mark.parametrize("lanes", [1, 3])
def test_user_kernel_is_surprise_update_in_round_robin_order(lanes: int) -> None:
    """Without the in-kernel shuffle, the kernel is ``svd_epoch`` over the round-robin order."""
    indptr, item, rating = user_csr()
    n_users, k = len(indptr) - 1, 5
    users = np.random.default_rng(2).permutation(n_users).astype(np.int32)
    pos = round_robin(users, indptr, lanes)
    assert np.array_equal(np.sort(pos), np.arange(len(item)))
    user = np.repeat(np.arange(n_users, dtype=np.int32), np.diff(indptr))
    got, want = svd_params(n_users, 25, k), svd_params(n_users, 25, k)
    kernel = K.svd_user_kernel(k)
    rates = list(RATES.values())
    sse = kernel(0, n_users, users, indptr, item.copy(), rating.copy(), np.uint64(0), False,
                 lanes, 3.5, *got, True, *rates)
    ref = K.svd_epoch(0, len(pos), user[pos], item[pos], rating[pos], 3.5, *want, True, *rates)
    assert sse == pytest.approx(ref, rel=1e-12)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="width"):
        K.svd_user_kernel(k + 1)(0, n_users, users, indptr, item, rating, np.uint64(0), False,
                                 lanes, 3.5, *got, True, *rates)


def test_user_kernel_shuffle_is_seeded_per_user_and_keeps_rows_together() -> None:
    indptr, item, rating = user_csr(seed=3)
    rating = item * 10.0 + 1  # rating tied to its item: rows must move together
    n_users, k = len(indptr) - 1, 4
    kernel = K.svd_user_kernel(k)
    users = np.arange(n_users, dtype=np.int32)
    rates = list(RATES.values())

    def run(seed: int, bounds: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        i, r = item.copy(), rating.copy()
        params = svd_params(n_users, 25, k)
        for a, b in bounds:  # the split between calls (threads) must not matter
            kernel(a, b, users, indptr, i, r, np.uint64(seed), True, 4, 3.0, *params, True,
                   *rates)
        return i, r

    i1, r1 = run(5, [(0, n_users)])
    i2, r2 = run(5, [(0, 7), (7, 19), (19, n_users)])
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(r1, i1 * 10.0 + 1)
    for u in range(n_users):
        seg = slice(indptr[u], indptr[u + 1])
        assert sorted(i1[seg]) == sorted(item[seg])
    assert not np.array_equal(i1, item)
    assert not np.array_equal(run(6, [(0, n_users)])[0], i1)


def test_svd_shuffle_false_replays_surprise_order() -> None:
    """``shuffle=False``: users in index order, each user's ratings in data order."""
    data = small_ratings()
    m = SVD(n_factors=4, n_epochs=3, shuffle=False).fit(data)
    rng = np.random.default_rng(0)
    p = m._init_normal(rng, data.user_counts()).astype(np.float64)
    q = m._init_normal(rng, data.item_counts()).astype(np.float64)
    bu, bi = np.zeros(data.n_users), np.zeros(data.n_items)
    order = np.argsort(data.user, kind="stable")
    u, i, r = data.user[order], data.item[order], data.value[order].astype(np.float64)
    for _ in range(3):
        K.svd_epoch(0, len(u), u, i, r, m.global_mean_, bu, bi, p, q, True,
                    *[0.005] * 4, *[0.02] * 4)
    np.testing.assert_allclose(m.user_factors_, p, atol=2e-5)
    np.testing.assert_allclose(m.item_bias_, bi, atol=2e-5)


def test_run_pulled_runs_every_range_once() -> None:
    calls: list[tuple[int, int]] = []
    lock = threading.Lock()

    def fn(start: int, end: int, scale: float) -> float:
        time.sleep(0.01 * (start % 3))
        with lock:
            calls.append((start, end))
        return scale * (end - start)

    bounds = [(a, a + 2) for a in range(0, 20, 2)]
    for n in (1, 2):
        calls.clear()
        with K.ChunkRunner(n) as runner:
            assert runner.run_pulled(fn, bounds, 0.5) == 10.0
        assert sorted(calls) == bounds


def test_svd_hogwild_fit_matches_one_thread_quality(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads pull ranges of users (``CHUNKS_PER_THREAD``); every rating is still visited."""
    data = small_ratings(seed=5, n_users=60)
    one = SVD(n_factors=4, n_epochs=10).fit(data, options=FitOptions(n_threads=1))
    monkeypatch.setattr(K, "PARALLEL_MIN_RATINGS", 0)
    two = SVD(n_factors=4, n_epochs=10).fit(data, options=FitOptions(n_threads=2))
    assert two.history_["train_rmse"][-1] == pytest.approx(one.history_["train_rmse"][-1],
                                                           rel=0.02)


def test_run_pulled_interrupt_lets_the_other_threads_finish() -> None:
    main = threading.main_thread()
    done: list[int] = []

    def fn(start: int, end: int) -> float:
        if threading.current_thread() is main:
            raise KeyboardInterrupt
        time.sleep(0.01)
        done.append(start)
        return 0.0

    with K.ChunkRunner(2) as runner, pytest.raises(KeyboardInterrupt):
        runner.run_pulled(fn, [(a, a + 1) for a in range(8)])
    assert len(done) == 7  # every range but the one the caller took
