"""``rectune.finetune.auto``: the search, the negative-transfer guard, budget and metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rectune._errors import DataError, RectuneError
from rectune.bench.splits import protocols_for
from rectune.data.protocols import XDomainSplit
from rectune.data.synthetic import synthetic
from rectune.finetune.auto import SKIPPED_BUDGET, UNSUPPORTED, auto, paired_user_bootstrap
from rectune.models.als import ALS
from rectune.models.base import Recommender
from rectune.models.knn import ItemKNN
from rectune.models.mf_svd import SVD
from rectune.models.popularity import Popularity

SVD_KW: dict[str, Any] = {"n_factors": 8, "n_epochs": 15, "random_state": 0}


def _xdomain(c: float, fraction: float = 0.5) -> XDomainSplit:
    ds = synthetic(12_000, second_domain=True, domain_correlation=c, seed=0)
    return protocols_for(ds).xdomain(ds, fraction, 0)


@pytest.fixture(scope="module")
def related() -> XDomainSplit:
    return _xdomain(1.0)


@pytest.fixture(scope="module")
def related_result(related: XDomainSplit) -> Any:
    pre = SVD(**SVD_KW).fit(related.source)
    return auto(pre, related.target_train, old_data=related.source, n_boot=400)


def test_correlated_domains_pick_transfer(related_result: Any, related: XDomainSplit) -> None:
    rep = related_result.report
    assert rep["choice_kind"] == "transfer"
    assert rep["verdict"] == "transfer" and "beat training from scratch" in rep["reason"]
    chosen = next(c for c in rep["candidates"] if c["name"] == rep["choice"])
    assert chosen["vs_scratch"]["beats_scratch"]
    assert chosen["vs_scratch"]["one_sided"]["upper"] < 0  # one-sided 95% bound below 0
    # chosen = lowest validation RMSE among the core candidates that beat scratch (an
    # extra strategy only if it beats that beyond noise too)
    winners = [c for c in rep["candidates"] if c.get("vs_scratch", {}).get("beats_scratch")]
    core = [c for c in winners if not c["extra"]]
    best_core = min(c["valid_score"] for c in core)
    if chosen["extra"]:
        assert chosen["valid_score"] < best_core and "beat the best core" in rep["reason"]
    else:
        assert chosen["valid_score"] == best_core
    assert rep["valid_score"] < rep["scratch_score"]
    assert rep["diagnostic"]["mean_rating_corr"] > 0.4
    # small new data: every row is scored out of fold, then the choice is refitted
    assert rep["valid"]["mode"].startswith("5-fold cross-validation") and rep["refit"] is True
    assert rep["valid"]["n_folds"] == 5 and rep["valid"]["n_rows"] == len(related.target_train)
    # repeated over 3 fold assignments: every row is scored once per repeat
    assert rep["valid"]["n_repeats"] == 3 and "repeated 3×" in rep["valid"]["mode"]
    for c in related_result.candidates:
        if c.status == "ok":
            assert c.counts.sum() == 3 * len(related.target_train)


def test_slice_mode_returns_the_candidate_itself(related: XDomainSplit) -> None:
    pre = SVD(**SVD_KW).fit(related.source)
    res = auto(pre, related.target_train, n_boot=200, cv_folds=1)
    rep = res.report
    assert rep["refit"] is False and rep["valid"]["mode"] == "random"
    assert rep["valid"]["n_rows"] == len(related.target_train) // 10
    chosen = next(c for c in res.candidates if c.name == rep["choice"])
    assert res.model is chosen.model
    if chosen.kind == "transfer":  # the engine early-stopped on auto's own slice
        assert res.model.meta_["finetune"]["n_valid_rows"] == rep["valid"]["n_rows"]


def test_every_strategy_is_a_candidate(related_result: Any) -> None:
    names = [c["name"] for c in related_result.report["candidates"]]
    for want in ("scratch", "finetune (lr x0.3)", "finetune (lr x1)", "l2sp (lambda 0.1)",
                 "freeze item_* (users free)", "freeze user_* (items free)",
                 "new rows only (old rows pinned)", "transfer biases only",
                 "transfer factors only", "replay 0.5"):
        assert want in names
    for c in related_result.report["candidates"]:
        assert c["status"] == "ok" and c["cost_s"] > 0 and 0.3 < c["valid_score"] < 2.0


def _noise_model(pre: SVD, seed: int = 0) -> SVD:
    """The pre-trained model with every learned table replaced by random noise."""
    rng = np.random.default_rng(seed)
    for name, arr in pre.parameters().items():
        a = np.asarray(arr)
        if name != "global_bias":
            setattr(pre, name + "_", rng.normal(0, 1.0, a.shape).astype(a.dtype))
    return pre


def test_guard_picks_scratch_when_the_source_model_is_random_noise(
        related: XDomainSplit) -> None:
    pre = _noise_model(SVD(**SVD_KW).fit(related.source))
    res = auto(pre, related.target_train, n_boot=400)
    rep = res.report
    assert rep["choice_kind"] == "scratch" and rep["choice"] == "scratch"
    assert "The result is the scratch model" in rep["reason"]
    assert rep["guard"]["n_significant"] == 0 and rep["guard"]["n_transfer_candidates"] >= 8
    assert "meta_" not in vars(res.model) or "finetune" not in res.model.meta_
    scratch = next(c for c in res.candidates if c.name == "scratch")
    assert res.model is scratch.model


def test_choice_and_scores_are_saved_with_the_model(related_result: Any,
                                                    tmp_path: Path) -> None:
    model = related_result.model
    model.save(tmp_path / "m")
    meta = Recommender.load(tmp_path / "m").meta_["auto"]
    rep = related_result.report
    assert meta["choice"] == rep["choice"] and meta["reason"] == rep["reason"]
    saved = {c["name"]: c for c in meta["candidates"]}
    assert len(saved) == len(rep["candidates"])
    for c in related_result.candidates:
        assert saved[c.name]["valid_score"] == pytest.approx(c.score)
        assert saved[c.name]["cost_s"] == pytest.approx(c.cost_s)
    assert meta["diagnostic"]["overlap"]["shared_users"] > 0
    assert "finetune" in Recommender.load(tmp_path / "m").meta_  # the engine's own record


def test_budget_skips_the_rest_and_says_so(related: XDomainSplit) -> None:
    pre = SVD(**SVD_KW).fit(related.source)
    auto(pre, related.target_train, n_boot=50)  # warm the compiled kernels
    res = auto(pre, related.target_train, budget_s=1e-4, n_boot=50)
    st = {c.name: c.status for c in res.candidates}
    assert st["scratch"] == "ok"  # the fallback always runs
    assert SKIPPED_BUDGET in st.values()
    assert all(s == SKIPPED_BUDGET for n, s in st.items() if n != "scratch")
    assert res.report["choice"] == "scratch" and "No transfer candidate ran" in \
        res.report["reason"]
    with pytest.raises(RectuneError, match="budget_s"):
        auto(pre, related.target_train, budget_s=0)
    with pytest.raises(RectuneError, match="cv_repeats"):
        auto(pre, related.target_train, cv_repeats=0)


def test_knn_and_ranking_families(related: XDomainSplit) -> None:
    knn = auto(ItemKNN(k=20).fit(related.source), related.target_train, n_boot=100)
    st = {c.name: c.status for c in knn.candidates}
    assert st["finetune (decay 0.7)"] == "ok" and st["l2sp (lambda 1)"] == UNSUPPORTED
    assert knn.report["metric"] == "rmse"
    src, tgt = related.source.binarize(4.0), related.target_train.binarize(4.0)
    als = auto(ALS(factors=8, iterations=4).fit(src), tgt, n_boot=100, cv_folds=1)
    assert als.report["metric"] == "ndcg@10" and not als.report["lower_is_better"]
    assert {"transfer biases only"}.isdisjoint(c.name for c in als.candidates)  # no biases
    assert all(0.0 <= (c.score or 0.0) <= 1.0 for c in als.candidates)
    assert als.report["early_stopping"].startswith("this family has no epochs")
    pop = auto(Popularity().fit(src), tgt, n_boot=100)  # a family that cannot fine-tune
    assert pop.choice == "scratch" and "No transfer candidate ran" in pop.report["reason"]
    assert pop.report["verdict"] == "scratch (no transfer candidate)"


def test_paired_user_bootstrap_known_answers() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(200)
    same = paired_user_bootstrap(a, a, np.ones(200), how="mean", n_boot=200)
    assert same["delta"] == 0 and same["ci"] == [0.0, 0.0]
    up = paired_user_bootstrap(a + 0.5, a, np.ones(200), how="mean", n_boot=200)
    assert up["delta"] == pytest.approx(0.5) and up["ci"][0] == pytest.approx(0.5)
    counts = rng.integers(1, 5, 200).astype(float)
    sq_a, sq_b = counts * 1.0, counts * 4.0  # RMSE 1 vs 2
    r = paired_user_bootstrap(sq_a, sq_b, counts, how="rmse", n_boot=200)
    assert r["delta"] == pytest.approx(-1.0) and r["ci"][1] == pytest.approx(-1.0)
    with pytest.raises(DataError):
        paired_user_bootstrap(a[:1], a[:1], np.ones(1), how="mean")


def test_cli_finetune_auto(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rectune.cli import app

    ds = synthetic(5000, seed=1)
    SVD(n_factors=4, n_epochs=2).fit(ds.interactions).save(tmp_path / "base")
    csv = tmp_path / "new.csv"
    ds.interactions.to_frame().head(1500).to_csv(csv, index=False)
    runner = CliRunner()
    args = ["finetune", str(tmp_path / "base"), "--data", str(csv), "--out",
            str(tmp_path / "ft")]
    res = runner.invoke(app, [*args, "--auto", "--budget", "60"])
    assert res.exit_code == 0, res.output
    meta = Recommender.load(tmp_path / "ft").meta_["auto"]
    assert meta["budget_s"] == 60 and meta["reason"].split(":")[0] in res.output
    assert len(meta["candidates"]) >= 8
    res = runner.invoke(app, [*args, "--budget", "5"])
    assert res.exit_code == 2 and "--auto only" in res.output


def test_given_validation_set_and_apply_choice(related: XDomainSplit) -> None:
    from rectune.data.protocols import validation_slice
    from rectune.finetune.auto import apply_choice

    pre = SVD(**SVD_KW).fit(related.source)
    s = validation_slice(related.target_train, 0.2, seed=5)
    res = auto(pre, s.train, valid=s.test, n_boot=200, epochs=10)
    rep = res.report
    assert rep["valid"]["mode"] == "given by the caller"
    assert rep["valid"]["n_fit_rows"] == len(s.train) and rep["valid"]["n_rows"] == len(s.test)
    assert rep["early_stopping"].startswith("none")
    if res.model.meta_.get("finetune"):
        assert res.model.meta_["finetune"]["config"]["early_stopping"] is False
        assert res.model.meta_["finetune"]["n_valid_rows"] == 0  # trained on every given row
    again = apply_choice(res, pre, s.train)
    assert np.allclose(again.predict_indices(s.test.user, s.test.item),
                       res.model.predict_indices(s.test.user, s.test.item))  # deterministic
    with pytest.raises(RectuneError, match="no candidate"):
        apply_choice({**rep, "choice": "nope"}, pre, s.train)


def test_an_extra_strategy_must_beat_the_core_choice_beyond_noise() -> None:
    from rectune.finetune.auto import Candidate, decide

    rng = np.random.default_rng(0)
    n = 300
    counts = np.full(n, 4.0)
    base = rng.gamma(2.0, 1.0, n) * counts

    def cand(name: str, kind: str, sums: np.ndarray, extra: bool = False) -> Candidate:
        c = Candidate(name, kind, {}, stage=2 if extra else 1,  # type: ignore[arg-type]
                      extra=extra, status="ok")
        c.values, c.counts = sums, counts
        c.score = float(np.sqrt(sums.sum() / counts.sum()))
        return c

    scratch = cand("scratch", "scratch", base * 1.3)
    core = cand("l2sp", "transfer", base)
    jitter = rng.normal(0, 0.2, n)
    tiny_edge = cand("replay 0.5", "transfer", base * (1 + jitter - jitter.mean() - 0.002),
                     extra=True)
    assert (tiny_edge.score or 0) < (core.score or 0)  # better on validation, by noise
    report, chosen = decide([scratch, core, tiny_edge], metric="rmse", lower_is_better=True,
                            how="rmse", n_boot=500)
    assert chosen is core and "not beyond noise" in report["reason"]
    clear = cand("replay 1", "transfer", base * 0.8, extra=True)
    report, chosen = decide([scratch, core, clear], metric="rmse", lower_is_better=True,
                            how="rmse", n_boot=500)
    assert chosen is clear and "beat the best core strategy" in report["reason"]


@pytest.mark.parametrize("key", ["early_stopping_patience", "patience"])
def test_scratch_early_stops_whatever_the_family_calls_patience(
        related: XDomainSplit, key: str) -> None:
    """A scratch candidate whose grid asks for early stopping gets a validation set.

    The neural models call the knob ``patience``, the MF models
    ``early_stopping_patience``; a scratch run that ignored the first trained every
    epoch and overfitted, so the guard compared transfer with a crippled scratch.
    """
    from rectune.finetune.auto import _run_scratch
    from rectune.models.neural.ncf import NeuMF

    new = related.target_train
    if key == "patience":
        pre = NeuMF(n_factors=4, loss="mse", epochs=1, patience=None, batch_size=256,
                    random_state=0).fit(related.source)
        cfg = {"epochs": 12, "patience": 1, "lr": 0.05}
    else:
        pre = SVD(**SVD_KW).fit(related.source)
        cfg = {"n_epochs": 200, "early_stopping_patience": 1, "lr_all": 0.05}
    m = _run_scratch(pre, new, None, cfg, inner=True)
    ran = len(m.history_) if key == "patience" else int(m.history_["epochs"])
    assert ran < cfg.get("epochs", cfg.get("n_epochs"))
    off = _run_scratch(pre, new, None, cfg, inner=False)  # no validation: no stopping
    assert getattr(off, key) is None
