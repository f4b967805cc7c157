"""The experiment runner end to end on a small synthetic TOML, and its config checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from rectune import DataError, DownloadError
from rectune.experiment import data as exp_data
from rectune.experiment import load_config, parse_config, run_experiment

TOML = """
[experiment]
name = "tiny"
seed = 0

[data]
synthetic = 4000

[split]
method = "temporal"
train_fraction = 0.7
new_fraction = 0.15

[metrics]
k = [5, 10]
n_boot = 50

[finetune]
epochs = 2

[[models]]
class = "Popularity"

[[models]]
class = "SVD"
label = "svd-small"
params = { n_factors = 4, n_epochs = 3, random_state = 0 }
arms = ["scratch", "retrain", "finetune"]
"""


def _write(tmp_path: Path, text: str = TOML) -> Path:
    p = tmp_path / "exp.toml"
    p.write_text(text)
    return p


@pytest.fixture
def no_finetune(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``rectune.finetune`` unimportable, as in a version without the engine."""
    monkeypatch.setitem(sys.modules, "rectune.finetune", None)


def test_run_end_to_end_without_finetune_engine(tmp_path: Path, no_finetune: None) -> None:
    out = tmp_path / "out"
    res = run_experiment(_write(tmp_path), out, progress=False)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["format"] == "rectune-results/1"
    assert (out / "report.html").stat().st_size > 10_000
    assert on_disk["data"]["synthetic"] is True and "synthetic" in on_disk["data"]["label"]
    assert on_disk["notes"][0].startswith("SYNTHETIC")
    labels = [r["label"] for r in on_disk["results"]]
    assert labels == ["Popularity / pretrain", "Popularity / scratch", "Popularity / retrain",
                      "Popularity / finetune", "svd-small / scratch", "svd-small / retrain",
                      "svd-small / finetune"]
    by = {r["label"]: r for r in on_disk["results"]}
    for lab in ("Popularity / finetune", "svd-small / finetune"):
        assert by[lab]["status"] == "not_available"
        assert "not available in this version" in by[lab]["message"]
        assert by[lab]["ranking"] is None and by[lab]["rating"] is None
    pop = by["Popularity / retrain"]
    assert pop["status"] == "ok" and pop["rating"] is None  # ranking-only model
    assert pop["n_train"] < 0.85 * 4000  # fitted on the positives only
    assert set(pop["ranking"]["metrics"]) >= {"ndcg@5", "ndcg@10", "coverage@10", "novelty@5"}
    lo, hi = pop["ranking"]["ci"]["ndcg@10"]
    assert lo <= pop["ranking"]["metrics"]["ndcg@10"] <= hi
    assert len(pop["ranking"]["popularity_bias"]["rec_share"]) == 10
    svd = by["svd-small / retrain"]
    assert svd["rating"]["rmse"] > 0 and svd["rating"]["n"] == res["split"]["sizes"]["test"]
    assert [h["epoch"] for h in svd["history"]] == [1.0, 2.0, 3.0]
    assert "train_rmse" in svd["history"][0]
    # every arm is scored on the same users, so paired tests against "retrain" exist
    pairs = {(t["a"], t["b"], t["metric"]) for t in on_disk["paired_tests"]}
    assert ("svd-small / scratch", "svd-small / retrain", "ndcg@5") in pairs
    assert ("svd-small / scratch", "svd-small / retrain", "squared_error") in pairs
    man = on_disk["manifest"]
    assert "numpy" in man["packages"] and man["seeds"]["experiment"] == 0
    assert len(man["data"]["interactions_sha256"]) == 64
    assert man["config_sha256"] and {"load_data", "models", "report"} <= set(man["wall_seconds"])
    assert res["results"][0]["label"] == labels[0]


def test_finetune_arm_uses_the_engine(tmp_path: Path) -> None:
    text = TOML.replace('class = "Popularity"', 'class = "Popularity"\narms = ["finetune"]')
    res = run_experiment(_write(tmp_path, text), None, progress=False)
    by = {r["label"]: r for r in res["results"]}
    assert "Popularity / pretrain" not in by  # pre-trained for the fine-tune arm, not reported
    assert by["Popularity / finetune"]["status"] == "unsupported"  # said, never faked
    ft = by["svd-small / finetune"]
    assert ft["status"] == "ok" and ft["rating"]["rmse"] > 0


def test_mlflow_requested_but_missing_is_a_note(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    text = TOML.replace('arms = ["scratch", "retrain", "finetune"]', 'arms = ["retrain"]')
    res = run_experiment(_write(tmp_path, text + "\n[mlflow]\nenabled = true\n"), None,
                         progress=False)
    assert any("mlflow is not importable" in n for n in res["notes"])


def test_plain_split_has_one_arm(tmp_path: Path) -> None:
    text = TOML.replace('method = "temporal"\ntrain_fraction = 0.7\nnew_fraction = 0.15',
                        'method = "random"\ntest_fraction = 0.2')
    text = text.replace('arms = ["scratch", "retrain", "finetune"]\n', "")
    res = run_experiment(_write(tmp_path, text), None, progress=False)
    assert [r["label"] for r in res["results"]] == ["Popularity", "svd-small"]
    # against the first result; no squared-error test: Popularity predicts no ratings
    assert [(t["a"], t["b"], t["metric"]) for t in res["paired_tests"]] == [
        ("svd-small", "Popularity", "ndcg@5")]


def test_missing_movielens_falls_back_to_labelled_synthetic(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(name: str, path: Path | None) -> Any:
        raise DownloadError("no network")

    monkeypatch.setattr(exp_data, "_movielens", offline)
    monkeypatch.setenv("RECTUNE_DATA", str(tmp_path / "nothing-here"))
    cfg = parse_config({"data": {"name": "ml-100k", "fallback_ratings": 3000},
                        "split": {"method": "random"}, "models": [{"class": "Popularity"}]})
    res = run_experiment(cfg, None, progress=False)
    assert res["data"]["synthetic"] is True
    assert "fallback for ml-100k" in res["data"]["label"]
    assert "no network" in res["data"]["fallback_reason"]
    cfg.data.fallback = "error"
    with pytest.raises(DataError, match="RECTUNE_DATA"):
        run_experiment(cfg, None, progress=False)


@pytest.mark.parametrize(("doc", "match"), [
    ({"data": {"synthetic": 1000}, "split": {"method": "random"},
      "models": [{"class": "NoSuchModel"}]}, "unknown model class 'NoSuchModel'"),
    ({"data": {"synthetic": 1000}, "split": {"method": "random"},
      "models": [{"class": "Popularity", "params": {"bogus": 1}}]}, r"models\[0\].*bad params"),
    ({"data": {"synthetic": 1000, "name": "ml-100k"}, "split": {"method": "random"},
      "models": [{"class": "Popularity"}]}, "exactly one of name, path, synthetic"),
    ({"data": {"synthetic": 1000}, "split": {"method": "random"}, "metrics": {"kk": 3},
      "models": [{"class": "Popularity"}]}, "metrics.kk"),
    ({"data": {"synthetic": 1000}, "split": {"method": "random"},
      "models": [{"class": "Popularity"}, {"class": "Popularity"}]}, "share the label"),
    ({"data": {"synthetic": 1000}, "split": {}, "models": [{"class": "Popularity"}]},
     "protocol"),
])
def test_config_errors_name_the_field(doc: dict[str, Any], match: str) -> None:
    with pytest.raises(DataError, match=match):
        parse_config(doc, "exp.toml")


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nname=1")
    with pytest.raises(DataError, match="not valid TOML"):
        load_config(bad)


def test_arms_need_a_staged_split(tmp_path: Path) -> None:
    text = TOML.replace('method = "temporal"\ntrain_fraction = 0.7\nnew_fraction = 0.15',
                        'method = "random"')
    with pytest.raises(DataError, match="staged split"):
        run_experiment(_write(tmp_path, text), None, progress=False)


def test_bad_finetune_settings_fail_before_fitting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = TOML.replace("[finetune]\nepochs = 2", "[finetune]\nepochs = 2\nbogus = 1")
    with pytest.raises(DataError, match=r"\[finetune\] settings for models\[0\]"):
        run_experiment(_write(tmp_path, text), tmp_path / "never", progress=False)
    assert not (tmp_path / "never" / "results.json").exists()
