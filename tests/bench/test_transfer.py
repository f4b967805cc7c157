"""The transfer suite end to end on small synthetic data, plus its statistics helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rectune import RectuneError
from rectune.bench import run_transfer
from rectune.bench.arms import ARMS, NA_UNSUPPORTED
from rectune.bench.compare import paired_users, pooled_users, seed_interval, verdict

MODELS = ("SVD", "ItemKNN", "ALS")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench")
    res = run_transfer("synthetic", out=out, quick=True, progress=False, synthetic_ratings=6000,
                       correlations=(0.9,), models=MODELS, repeats=2, n_boot=100,
                       sweep_correlations=(0.0, 1.0))
    return res, out


def _ok_arms(arms: dict[str, Any]) -> list[str]:
    return [a for a, d in arms.items() if d["status"] == "ok"]


def test_every_task_and_output_file(run: tuple[dict[str, Any], Path]) -> None:
    res, out = run
    assert set(res["tasks"]) == {"temporal_explicit", "temporal_implicit", "cross_domain",
                                 "cold_start", "task_change", "correlation_sweep"}
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["tasks"]["temporal_explicit"]["models"]["SVD"]["headline"] == \
        res["tasks"]["temporal_explicit"]["models"]["SVD"]["headline"]
    md = (out / "results.md").read_text()
    for title in ("## Verdicts", "Temporal update (explicit ratings)", "Cross-domain transfer",
                  "Cold-start users", "Task change", "## The auto arm",
                  "Gain of transfer over scratch vs the domains' correlation"):
        assert title in md
    pngs = sorted(out.glob("*.png"))
    assert {"temporal_explicit_rmse", "cross_domain_0_curves", "cold_start_rmse",
            "task_change_curve", "cost_wall_time", "correlation_sweep_gain"} <= \
        {p.stem for p in pngs}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert res["meta"]["settings"]["repeats"] == 2
    assert "jit_s" in res["jit"]["SVD"]["fit"]


def test_arms_are_real_or_marked_unsupported(run: tuple[dict[str, Any], Path]) -> None:
    res, _ = run
    t = res["tasks"]["temporal_explicit"]["models"]
    assert set(t["SVD"]["arms"]) == set(ARMS)
    assert set(_ok_arms(t["SVD"]["arms"])) == set(ARMS)  # SVD supports every arm
    knn = t["ItemKNN"]["arms"]
    assert knn["l2sp"]["status"] == NA_UNSUPPORTED and knn["frozen"]["status"] == NA_UNSUPPORTED
    assert "metrics" not in knn["l2sp"]  # nothing invented for an arm that did not run
    assert t["neural"]["status"].startswith("n/a")
    # an exact KNN update equals a refit on the same rows
    assert knn["finetune"]["metrics"]["rmse"] == pytest.approx(knn["retrain"]["metrics"]["rmse"])
    for d in t["SVD"]["arms"].values():
        m = d["metrics"]
        assert 0.3 < m["rmse"] < 2.0 and m["rmse_ci"][0] <= m["rmse"] <= m["rmse_ci"][1]
        assert m["n_returning"] + m["n_new_users"] == m["n"]
        assert d["time"]["n_runs"] == 2 and d["time"]["median_s"] > 0
    assert t["SVD"]["arms"]["stale"]["metrics"]["forgetting"] == 0.0


def test_choices_come_from_the_grid_and_deltas_match(run: tuple[dict[str, Any], Path]) -> None:
    res, _ = run
    svd = res["tasks"]["temporal_explicit"]["models"]["SVD"]
    l2 = svd["arms"]["l2sp"]
    assert l2["chosen"]["l2sp"] in res["meta"]["settings"]["models"]["SVD"]["l2sp_values"]
    assert l2["chosen"]["valid_mode"] == "temporal"
    als = svd["arms"]["als_replay"]["chosen"]
    assert als["solver"] == "als" and als["l2sp"] in \
        res["meta"]["settings"]["models"]["SVD"]["als_l2sp"]
    assert "returning" in svd["headline"] and "als_replay" in svd["headline"]["returning"]
    assert "budget" in svd["arms"]["als_replay"]["notes"][0]
    imp = res["tasks"]["temporal_implicit"]["models"]["ALS"]
    rep = imp["arms"]["l2sp_replay"]
    assert rep["status"] == "ok" and rep["chosen"]["replay"] >= 1
    assert "l2sp_replay vs retrain" in imp["comparisons"]
    c = svd["comparisons"]["l2sp vs scratch"]
    want = svd["arms"]["l2sp"]["metrics"]["rmse"] - svd["arms"]["scratch"]["metrics"]["rmse"]
    assert c["delta"] == pytest.approx(want)
    assert c["ci"][0] <= c["ci"][1] and 0 < c["p_value"] <= 1
    assert c["verdict"] == verdict(c["ci"], lower_is_better=True)
    sel = svd["comparisons"]["selected"]
    valid = {a: svd["arms"][a]["valid_score"] for a in ("finetune", "l2sp", "frozen")}
    assert sel == min(valid, key=lambda a: valid[a])  # chosen on validation, not on test


def test_cross_domain_curves_cold_start_and_click(run: tuple[dict[str, Any], Path]) -> None:
    res, _ = run
    xd = res["tasks"]["cross_domain"][0]
    assert xd["data"]["domain_correlation"] == 0.9
    svd = xd["models"]["SVD"]
    assert [r["fraction"] for r in svd["curve"]["rmse"]["scratch"]] == list(xd["fractions"])
    assert len(svd["points"]) == len(xd["fractions"]) * len(xd["seeds"])
    sizes = [p["n_target_train"] for p in svd["points"]]
    assert sizes == sorted(sizes)  # nested, growing target subsets
    cold = res["tasks"]["cold_start"]
    k0 = cold["models"]["SVD"]["by_k"]["0"]["arms"]
    assert k0["finetune"]["status"].startswith("n/a (K=0")
    assert cold["models"]["SVD"]["by_k"]["5"]["arms"]["fold_in_tuned"]["status"] == "ok"
    from rectune.finetune import supports
    from rectune.models.mf_svd import SVD

    fr = cold["models"]["SVD"]["by_k"]["5"]["arms"]["feature_reg"]["status"]
    assert fr == "ok" if supports(SVD, "feature_reg") else fr.startswith("n/a")
    tc = res["tasks"]["task_change"]
    assert tc["models"]["ItemKNN"]["status"].startswith("n/a (unsupported")
    pt = next(p for p in tc["models"]["SVD"]["points"] if p["fraction"] == tc["fraction"])
    assert 0.5 < pt["arms"]["finetune"]["metrics"]["auc"] <= 1.0
    assert pt["arms"]["stale"]["metrics"]["log_loss"] is None  # a rating is no probability


def test_unsupported_capability_is_reported_not_faked(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    from rectune.finetune import capabilities

    caps = dict(capabilities.CAPABILITIES)
    caps["SVD"] = caps["SVD"] - {"l2sp"}
    monkeypatch.setattr(capabilities, "CAPABILITIES", caps)
    res = run_transfer("synthetic", quick=True, progress=False, synthetic_ratings=4000,
                       tasks=("temporal",), models=("SVD",), repeats=1, n_boot=50)
    arms = res["tasks"]["temporal_explicit"]["models"]["SVD"]["arms"]
    assert arms["l2sp"]["status"] == NA_UNSUPPORTED
    assert arms["als_replay"]["status"] == NA_UNSUPPORTED  # needs l2sp too
    assert arms["finetune"]["status"] == "ok"
    with pytest.raises(RectuneError, match="unknown task"):
        run_transfer("synthetic", tasks=("nope",), progress=False)
    with pytest.raises(RectuneError, match="target fractions"):
        run_transfer("synthetic", fractions=(0.0, 0.1), progress=False)


def test_paired_users_and_intervals() -> None:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(50), 4)
    a = rng.random(200)
    same = paired_users(users, a, a, n_boot=200)
    assert same["delta"] == 0 and same["ci"] == [0.0, 0.0]
    worse = paired_users(users, a + 1.0, a, n_boot=200)
    assert worse["ci"][0] > 0 and verdict(worse["ci"], lower_is_better=True) == "worse"
    assert worse["delta"] == pytest.approx(np.sqrt(np.mean(a + 1.0)) - np.sqrt(np.mean(a)))
    s = seed_interval([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["lo"] < 2.0 < s["hi"] and s["n"] == 3
    assert seed_interval([1.5])["lo"] == 1.5


def test_pooled_users_averages_runs_over_one_user_resample() -> None:
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(60), 3)
    a, b = rng.random(180), rng.random(180)
    one = pooled_users(users, [a], [b], n_boot=300)
    single = paired_users(users, a, b, n_boot=300)
    assert one["delta"] == pytest.approx(single["delta"]) and one["n_runs"] == 1
    # two runs: the point is the mean of the runs' differences
    two = pooled_users(users, [a, a + 0.5], [b, b], n_boot=300)
    d2 = np.sqrt(np.mean(a + 0.5)) - np.sqrt(np.mean(b))
    assert two["delta"] == pytest.approx((single["delta"] + d2) / 2)
    assert pooled_users(users, [a, b], [a, b], n_boot=100)["ci"] == [0.0, 0.0]
    # one run clearly worse, one clearly better by the same amount: pooled, a tie
    tie = pooled_users(users, [a + 1.0, a], [a, a + 1.0], how="mean", n_boot=300)
    assert tie["delta"] == pytest.approx(0.0, abs=1e-12)
    assert tie["ci"][0] <= 0 <= tie["ci"][1]
    worse = pooled_users(users, [a + 0.2, a + 0.1], [a, a], how="mean", n_boot=300)
    assert worse["delta"] == pytest.approx(0.15) and worse["ci"][0] > 0
    with pytest.raises(ValueError, match="as many"):
        pooled_users(users, [a], [a, b])
    with pytest.raises(ValueError, match="one value per test row"):
        pooled_users(users, [a[:-1]], [b[:-1]])


def test_auto_pool_pools_runs_on_the_same_test_rows() -> None:
    from rectune.bench.arms import Arm
    from rectune.bench.auto_arm import AutoPool

    rng = np.random.default_rng(2)
    users = np.repeat(np.arange(40), 2)
    pool = AutoPool()
    for group, shift in ((0.1, 0.0), (0.1, 0.1), (0.5, 0.0)):
        sq = rng.random(80)
        arms = {"auto": Arm("auto", arrays={"sq": sq + shift}),
                "l2sp": Arm("l2sp", arrays={"sq": sq})}
        pool.add(group, users, arms, {"auto vs reference": {"reference": "l2sp"}})
    pool.add(0.5, users[:-2], arms, {"auto vs reference": {"reference": "l2sp"}})
    pool.add(0.5, users, arms, {})  # no auto comparison in this run: nothing to pool
    out = pool.compare(n_boot=200)
    assert out["all"]["n_runs"] == 3 and out["n_skipped"] == 1
    assert [g["group"] for g in out["by_group"]] == [0.1, 0.5]
    assert out["by_group"][1]["delta"] == 0.0 and out["by_group"][1]["not_worse"]
    assert out["by_group"][0]["delta"] > 0
    assert AutoPool().compare() == {}


def test_cli_bench_transfer(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from rectune.cli_bench import register

    app = typer.Typer()
    register(app)
    r = CliRunner().invoke(app, ["bench", "transfer", "--data", "synthetic", "--quick",
                                 "--task", "temporal", "--model", "SVD", "--ratings", "4000",
                                 "--repeats", "1", "--no-progress", "--no-plots",
                                 "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "Temporal update" in r.output and (tmp_path / "results.md").is_file()
    bad = CliRunner().invoke(app, ["bench", "transfer", "--data", "synthetic", "--model", "X",
                                   "--no-progress", "--out", str(tmp_path)])
    assert bad.exit_code == 2


FIXED = ("scratch", "finetune", "l2sp", "frozen")


def _check_reference(arms: dict[str, Any], comps: dict[str, Any], metric: str,
                     lower: bool) -> None:
    """Reference: better of scratch / fixed arms on validation; oracle: the same on test."""
    ok = {a: arms[a] for a in FIXED if a in arms and arms[a]["status"] == "ok"}
    for key, score in (("auto vs oracle", lambda d: d["metrics"].get(metric)),
                       ("auto vs reference", lambda d: d.get("valid_score"))):
        scores = {a: score(d) for a, d in ok.items() if score(d) is not None}
        best = (min if lower else max)(scores, key=lambda a: scores[a])
        ref = comps[key]
        assert ref["reference"] == best
        want = arms["auto"]["metrics"][metric] - arms[best]["metrics"][metric]
        assert ref["delta"] == pytest.approx(want, abs=1e-9)
        assert ref["not_worse"] == (ref["verdict"] != "worse")
    assert comps["auto_choice"] == arms["auto"]["chosen"]["choice"]


def test_auto_arm_on_every_task(run: tuple[dict[str, Any], Path]) -> None:
    res, _ = run
    tasks = res["tasks"]
    svd = tasks["temporal_explicit"]["models"]["SVD"]
    auto = svd["arms"]["auto"]
    assert auto["status"] == "ok" and auto["n_candidates"] >= 8
    names = {c["name"] for c in auto["chosen"]["candidates"]}
    assert {"l2sp (lambda 0.1)", "freeze item_* (users free)", "replay 0.5"} <= names
    assert any(n.startswith("scratch") for n in names)
    _check_reference(svd["arms"], svd["comparisons"], "rmse", True)
    assert svd["headline"]["auto"]["choice"] == auto["chosen"]["choice"]
    imp = tasks["temporal_implicit"]["models"]
    _check_reference(imp["ALS"]["arms"], imp["ALS"]["comparisons"], "ndcg@10", False)
    xd = tasks["cross_domain"][0]["models"]["SVD"]
    assert all(p["arms"]["auto"]["status"] == "ok" for p in xd["points"])
    assert xd["headline"]["auto"]["points"] == len(xd["points"])
    pooled = xd["headline"]["auto"]["pooled_vs_reference"]
    assert pooled["all"]["n_runs"] == len(xd["points"]) and pooled["n_skipped"] == 0
    assert {g["group"] for g in pooled["by_group"]} == {p["fraction"] for p in xd["points"]}
    cold = tasks["cold_start"]["models"]["SVD"]["by_k"]
    assert cold["0"]["arms"]["auto"]["status"].startswith("n/a (K=0")
    assert cold["5"]["arms"]["auto"]["status"] == "ok"
    assert "warm users playing cold" in " ".join(cold["5"]["arms"]["auto"]["notes"])
    # auto's stand-ins: disjoint rotations sized like the real cold set, pooled by the guard
    stand = cold["5"]["arms"]["auto"]["chosen"]["stand_ins"]
    n_cold = tasks["cold_start"]["data"]["n_cold_users"]
    assert stand["rotations"] >= 2 and len(stand["choices_per_rotation"]) == stand["rotations"]
    assert all(abs(n - n_cold) <= 1 for n in stand["n_users"])
    assert f"over {sum(stand['n_users'])} validation users" in \
        " ".join(cold["5"]["arms"]["auto"]["notes"])
    cold_pool = tasks["cold_start"]["models"]["SVD"]["headline"]["auto_pooled_vs_reference"]
    assert cold_pool["all"]["n_runs"] == sum(k != "0" for k in cold)  # K = 0 has no auto
    tc = tasks["task_change"]
    pt = next(p for p in tc["models"]["SVD"]["points"] if p["fraction"] == tc["fraction"])
    assert pt["arms"]["auto"]["status"] == "ok"
    assert pt["arms"]["auto"]["chosen"]["choice"] in FIXED
    # a small slice: the guard scores each arm out of fold over every labelled click
    gv = pt["arms"]["auto"]["chosen"]["guard_validation"]
    assert gv.startswith("5-fold out-of-fold")
    n_users = int(gv.split(" users")[0].split()[-1])
    assert f"over {n_users} validation users" in " ".join(pt["arms"]["auto"]["notes"])
    _check_reference(pt["arms"], pt["comparisons"], "log_loss", True)
    tc_pool = tc["models"]["SVD"]["headline"]["auto"]["pooled_vs_reference"]
    # auto is compared at the headline label fraction, once per seed
    assert tc_pool["all"]["n_runs"] == sum(p["fraction"] == tc["fraction"]
                                           for p in tc["models"]["SVD"]["points"])


def test_correlation_sweep(run: tuple[dict[str, Any], Path]) -> None:
    res, _ = run
    sw = res["tasks"]["correlation_sweep"]
    assert sw["correlations"] == [0.0, 1.0]
    d = sw["diagnostics"]
    assert d["0"]["mean_rating_corr"] < d["1"]["mean_rating_corr"]
    curve = sw["models"]["SVD"]["curve"]["0.1"]
    assert [r["correlation"] for r in curve["auto"]] == [0.0, 1.0]
    for p in sw["models"]["SVD"]["points"]:
        g = p["gains"]["auto"]
        assert g["gain"] == pytest.approx(p["scratch_rmse"] - g["rmse"])
    rows = sw["headline"]["SVD @ 0.1"]
    assert [r["correlation"] for r in rows] == [0.0, 1.0]


def test_sweep_needs_synthetic_data() -> None:
    from rectune.bench.context import Context
    from rectune.bench.splits import protocols_for
    from rectune.bench.transfer import _run_task
    from rectune.data.dataset import Dataset
    from rectune.data.synthetic import synthetic

    ds = synthetic(3000, seed=0)
    real = Dataset("not-synthetic", ds.interactions, ds.user_features, ds.item_features, {},
                   {**ds.info, "synthetic": False})
    out = _run_task("sweep", {"main": real, "sweep": {}}, protocols_for(real),
                    Context(specs={}))
    assert out["correlation_sweep"]["status"].startswith("n/a (synthetic data only")


def test_per_user_newest_holds_out_each_users_latest_rows() -> None:
    import pandas as pd

    from rectune.bench.tasks_rating import per_user_newest
    from rectune.data import Interactions

    # user 1: 20 rows (2 held out), user 2: 4 rows (< min_rows: none held out),
    # user 3: 5 rows with tied timestamps (1 held out: the last in row order)
    df = pd.DataFrame({
        "user": [1] * 20 + [2] * 4 + [3] * 5,
        "item": list(range(20)) + list(range(4)) + list(range(5)),
        "rating": 3.0,
        "timestamp": list(range(20, 0, -1)) + [1, 2, 3, 4] + [7] * 5,
    })
    fit, valid = per_user_newest(Interactions.from_frame(df), fraction=0.1, min_rows=5)
    got = sorted(zip(valid.user_map.decode(valid.user).tolist(),
                     valid.item_map.decode(valid.item).tolist(), strict=True))
    assert got == [(1, 0), (1, 1), (3, 4)]  # user 1's newest are items 0 and 1
    assert len(fit) + len(valid) == len(df)
    fu = fit.user_map.decode(fit.user)
    ft = fit.timestamp
    for u in (1, 3):
        vt = valid.timestamp[valid.user_map.decode(valid.user) == u]
        assert ft[fu == u].max() <= vt.min()  # no validation row older than training


def test_budgeted_selection_keeps_the_best_candidate_that_fits() -> None:
    import time as _time

    from rectune.bench.arms import select

    cost = {"fast": 0.0, "slow": 0.05, "slowest": 0.06}
    quality = {"fast": 1.0, "slow": 0.5, "slowest": 0.4}

    def build(g: dict[str, Any]) -> Any:
        _time.sleep(cost[g["name"]])
        return g["name"]

    grid = [{"name": n} for n in cost]
    score = lambda m: quality[m]  # noqa: E731
    assert select("x", grid, build, score).chosen["name"] == "slowest"
    arm = select("x", grid, build, score, max_build_s=0.02)
    assert arm.chosen["name"] == "fast" and "1 of 3 candidates" in arm.notes[0]
    assert arm.valid_score == 1.0
    arm = select("x", [{"name": "slow"}, {"name": "slowest"}], build, score, max_build_s=0.01)
    assert arm.chosen["name"] == "slow" and "kept the fastest" in arm.notes[0]
