"""auto's extra validation evidence: rolling origins, the users threshold, pooled stand-ins."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from rectune._errors import DataError, RectuneError
from rectune.data.protocols import ml100k_temporal, temporal_validation_slice
from rectune.data.split import cold_user_split
from rectune.data.synthetic import synthetic
from rectune.finetune.auto import apply_choice, auto, auto_pooled, decide, decide_pooled
from rectune.models.mf_svd import SVD

SVD_KW: dict[str, Any] = {"n_factors": 8, "n_epochs": 15, "random_state": 0}


@pytest.fixture(scope="module")
def temporal() -> Any:
    return ml100k_temporal(synthetic(12_000, drift=1.0, seed=0).interactions)


def _blocks(new: Any, most: int, users: int = 200, rows: int = 1000) -> list[Any]:
    """The rolling blocks by hand: each the newest 10% of what the newer ones left,
    until they hold ``users`` users and ``rows`` rows together (at most ``most``)."""
    out, rest, seen = [], new, set()
    while len(out) < most and len(rest) >= 20:
        s = temporal_validation_slice(rest, 0.1)
        out.append(s.test)
        seen |= set(s.test.user.tolist())
        rest = s.train
        if len(seen) >= users and sum(map(len, out)) >= rows:
            break
    return out


def test_temporal_small_slice_validates_on_rolling_origins(temporal: Any) -> None:
    pre = SVD(**SVD_KW).fit(temporal.pretrain)
    new = temporal.new
    # 12,000 ratings: the newest 10% of the new period holds 180 rows from 12 users;
    # with thresholds of 15 users and 400 rows it is small, and origins are added
    # until the blocks hold that much (3 here)
    small = {"cv_below_users": 15, "cv_below_rows": 400}
    res = auto(pre, new, valid_mode="temporal", n_boot=200, **small)
    rep = res.report
    blocks = _blocks(new, 10, 15, 400)
    n_users = len(set(np.concatenate([b.user for b in blocks]).tolist()))
    assert 2 < len(blocks) < 10 and n_users >= 15
    assert f"{len(blocks)} rolling origins" in rep["valid"]["mode"]
    assert rep["valid"]["n_folds"] == len(blocks) and rep["valid"]["n_users"] == n_users
    assert rep["refit"] is False  # origin 0's model, trained on new minus its newest 10%
    n_rows = sum(map(len, blocks))
    assert rep["valid"]["n_rows"] == n_rows
    chosen = next(c for c in res.candidates if c.name == rep["choice"])
    assert res.model is chosen.model
    if chosen.kind == "transfer":  # origin 0: the engine early-stopped on the newest 10%
        assert res.model.meta_["finetune"]["n_valid_rows"] == len(blocks[0])
    for c in res.candidates:
        if c.status == "ok":
            assert c.counts.sum() == n_rows
    # temporal_origins caps them
    two = auto(pre, new, valid_mode="temporal", n_boot=200, temporal_origins=2, **small)
    assert two.report["valid"]["n_folds"] == 2
    assert two.report["valid"]["n_rows"] == sum(map(len, blocks[:2]))
    # one origin: the old behaviour, the newest slice only
    one = auto(pre, new, valid_mode="temporal", n_boot=200, temporal_origins=1)
    assert one.report["valid"]["mode"] == "temporal"
    assert one.report["valid"]["n_rows"] == len(blocks[0])
    with pytest.raises(RectuneError, match="temporal_origins"):
        auto(pre, new, valid_mode="temporal", temporal_origins=0)


def test_rolling_blocks_never_validate_on_the_past_of_their_fit(temporal: Any) -> None:
    from rectune.finetune.auto import _rolling_folds

    folds = _rolling_folds(temporal.new, 0.1, 3, True)
    assert len(folds) == 3
    for f in folds:
        assert f.fit.timestamp.max() <= f.valid.timestamp.min()
        assert len(f.engine_data) == len(f.fit) + len(f.valid)
    # blocks are disjoint and each is older than the one before
    for newer, older in itertools.pairwise(folds):
        assert older.valid.timestamp.max() <= newer.valid.timestamp.min()
        assert len(older.engine_data) == len(newer.fit)


def test_few_users_in_a_large_slice_switch_to_cross_validation(temporal: Any) -> None:
    pre = SVD(**SVD_KW).fit(temporal.pretrain)
    new = temporal.new
    base = auto(pre, new, n_boot=200, cv_below_rows=1, cv_below_users=1,
                diagnose=False)
    assert base.report["valid"]["mode"] == "random"
    n_users = len(np.unique(new.user))
    res = auto(pre, new, n_boot=200, cv_below_rows=1, cv_below_users=n_users + 1,
               diagnose=False)
    assert res.report["valid"]["mode"].startswith("5-fold cross-validation")
    assert "users" in res.report["valid"]["mode"]


def _stand_ins(k: int) -> tuple[list[Any], Any]:
    data = synthetic(12_000, seed=1).interactions
    out = []
    for r in range(2):
        s = cold_user_split(data, cold_fraction=0.2, n_support=k, seed=1, query_start=5,
                            rotation=r)
        is_c = np.zeros(data.n_users, dtype=bool)
        is_c[s.info["cold_users"]] = True
        warm = data.take(~is_c[data.user])
        pre = SVD(**SVD_KW).fit(warm)
        out.append((pre, s.train.take(is_c[s.train.user]), s.test))
    return out, data


def test_decide_pooled_is_decide_on_the_concatenated_users() -> None:
    runs, _ = _stand_ins(3)
    results = [auto(p, sup, valid=q, n_boot=300, diagnose=False, plain_grid=[{"epochs": 5}])
               for p, sup, q in runs]
    rep = decide_pooled(results, n_boot=300)
    n = [r.report["valid"]["n_users"] for r in results]
    assert rep["pooled"]["n_runs"] == 2 and rep["pooled"]["n_users"] == n
    assert rep["pooled"]["choices_per_run"] == [r.report["choice"] for r in results]
    # same decision as decide() on candidates whose users are the union
    from rectune.finetune.auto import Candidate

    cands = []
    for i, c0 in enumerate(results[0].candidates):
        c = Candidate(c0.name, c0.kind, c0.config, extra=c0.extra, status=c0.status)
        if c0.status == "ok":
            c.values = np.r_[c0.values, results[1].candidates[i].values]
            c.counts = np.r_[c0.counts, results[1].candidates[i].counts]
            c.score = float(np.sqrt(c.values.sum() / c.counts.sum()))
        cands.append(c)
    ref, chosen = decide(cands, metric="rmse", lower_is_better=True, how="rmse", n_boot=300)
    assert rep["choice"] == chosen.name and rep["verdict"] == ref["verdict"]
    assert rep["reason"] == ref["reason"]
    assert f"over {sum(n)} validation users" in rep["reason"]
    scored = {c["name"]: c["valid_score"] for c in rep["candidates"]}
    assert scored[chosen.name] == pytest.approx(chosen.score)
    # the pooled report drives apply_choice like a single run's
    pre, sup, _ = runs[0]
    model = apply_choice(rep, pre, sup)
    assert model.is_fitted


def test_decide_pooled_refuses_runs_of_different_grids() -> None:
    runs, _ = _stand_ins(1)
    a = auto(*runs[0][:2], valid=runs[0][2], n_boot=100, diagnose=False,
             plain_grid=[{"epochs": 5}])
    b = auto(*runs[1][:2], valid=runs[1][2], n_boot=100, diagnose=False,
             plain_grid=[{"epochs": 5}, {"epochs": 10}])
    with pytest.raises(RectuneError, match="different candidates"):
        decide_pooled([a, b])
    with pytest.raises(RectuneError, match="no auto results"):
        decide_pooled([])


def test_decide_pooled_refuses_same_names_with_different_configurations() -> None:
    """Stage two builds on each run's own best plain fine-tuning; pooling "l2sp (lambda
    0.1)" of two runs with different bases would pool two different strategies."""
    runs, _ = _stand_ins(1)
    grid = [{"epochs": 5}, {"epochs": 10}]
    a, b = (auto(p, sup, valid=q, n_boot=100, diagnose=False, plain_grid=grid,
                 lambdas=(0.1,), stage_two_base=base)
            for (p, sup, q), base in zip(runs, grid, strict=True))
    assert a.report["stage_two_base"] == {"epochs": 5}
    with pytest.raises(RectuneError, match="different configurations"):
        decide_pooled([a, b])


def test_auto_pooled_shares_one_stage_two_base_chosen_on_pooled_stage_one() -> None:
    runs, _ = _stand_ins(3)
    grid = [{"epochs": 2, "lr_factor": 0.3}, {"epochs": 10, "lr_factor": 1.0}]
    kw: dict[str, Any] = {"diagnose": False, "plain_grid": grid, "lambdas": (0.1,)}
    rep = auto_pooled(runs, n_boot=200, **kw)
    # the base is the best plain candidate on the pooled evidence of the first pass
    first = decide_pooled([auto(p, s, valid=q, stages=1, n_boot=200, **kw)
                           for p, s, q in runs], n_boot=200)
    assert not any(c["stage"] == 2 for c in first["candidates"])
    plain = [c for c in first["candidates"] if c["kind"] == "transfer"]
    best = min(plain, key=lambda c: c["valid_score"])
    assert rep["pooled"]["stage_two_base"] == best["config"]
    stage2 = [c for c in rep["candidates"] if c["stage"] == 2]
    assert stage2 and all({**c["config"], **best["config"]} == c["config"] for c in stage2)
    # the choice drives apply_choice on other data
    pre, sup, _ = runs[1]
    assert apply_choice(rep, pre, sup).is_fitted
    with pytest.raises(RectuneError, match="sets"):
        auto_pooled(runs, valid=runs[0][2])
    with pytest.raises(RectuneError, match="stages must be"):
        auto(*runs[0][:2], valid=runs[0][2], stages=3)


def test_cold_user_split_rotations_are_disjoint_and_rotation_zero_unchanged() -> None:
    data = synthetic(5_000, seed=2).interactions
    base = cold_user_split(data, cold_fraction=0.25, n_support=1, seed=1, query_start=5)
    r0 = cold_user_split(data, cold_fraction=0.25, n_support=1, seed=1, query_start=5,
                         rotation=0)
    assert np.array_equal(base.info["cold_users"], r0.info["cold_users"])
    assert np.array_equal(base.train.user, r0.train.user)
    seen: set[int] = set()
    for r in range(4):
        s = cold_user_split(data, cold_fraction=0.25, n_support=1, seed=1, query_start=5,
                            rotation=r)
        cold = set(s.info["cold_users"].tolist())
        assert len(cold) == s.info["n_cold_users"] and not cold & seen
        assert s.info["rotation"] == r
        seen |= cold
    with pytest.raises(DataError, match="rotation=4"):
        cold_user_split(data, cold_fraction=0.25, n_support=1, seed=1, rotation=4)
    with pytest.raises(DataError, match="rotation must be"):
        cold_user_split(data, cold_fraction=0.25, rotation=-1)


@pytest.mark.parametrize("noise", [False, True])
def test_cv_refit_runs_for_the_median_epoch_the_folds_stopped_at(noise: bool) -> None:
    from rectune.bench.splits import protocols_for

    ds = synthetic(12_000, second_domain=True, domain_correlation=1.0, seed=0)
    xd = protocols_for(ds).xdomain(ds, 0.5, 0)
    pre = SVD(**SVD_KW).fit(xd.source)
    if noise:  # a useless source: the guard keeps scratch, whose refit is then checked
        rng = np.random.default_rng(0)
        for name, arr in pre.parameters().items():
            if name != "global_bias":
                setattr(pre, name + "_", rng.normal(0, 1.0, np.asarray(arr).shape))
    es = {"n_epochs": 40, "early_stopping_patience": 2, "random_state": 0}
    res = auto(pre, xd.target_train, n_boot=200, scratch_grid=[es], diagnose=False)
    rep = res.report
    assert rep["refit"] is True
    chosen = next(c for c in res.candidates if c.name == rep["choice"])
    assert chosen.kind == ("scratch" if noise else "transfer")
    stopped = chosen.fold_epochs
    assert len(stopped) == rep["valid"]["n_folds"] * rep["valid"]["n_repeats"] == 15
    assert all(e is not None and e >= 1 for e in stopped)
    expect = int(np.ceil(np.median(stopped)))
    assert rep["refit_epochs"] == expect and f"for {expect} epochs" in rep["final_model"]
    if noise:
        assert res.model.n_epochs == expect and res.model.early_stopping_patience is None
        assert res.model.history_["epochs"] == expect
    else:
        cfg = res.model.meta_["finetune"]["config"]
        assert cfg["epochs"] == expect and cfg["early_stopping"] is False
        assert res.model.meta_["finetune"]["n_valid_rows"] == 0
    assert next(c for c in rep["candidates"] if c["name"] == rep["choice"])["fold_epochs"] \
        == stopped
