"""The model commands (train, evaluate, recommend, tune, run) through Typer's CliRunner."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rectune.cli_models import register

runner = CliRunner()
DATA = "synthetic:3000"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    register(a)
    return a


def _ok(app: typer.Typer, args: list[str]) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


def test_commands_are_registered(app: typer.Typer) -> None:
    out = _ok(app, ["--help"])
    for cmd in ("run", "train", "evaluate", "recommend", "tune"):
        assert cmd in out


def test_train_evaluate_recommend(app: typer.Typer, tmp_path: Path) -> None:
    model_dir = tmp_path / "svd"
    out = _ok(app, ["train", "SVD", "--data", DATA, "--out", str(model_dir), "--protocol",
                    "random", "-p", "n_factors=4", "-p", "n_epochs=3", "--no-progress"])
    assert "SVD fitted on 2,400 rows" in out
    info = json.loads((model_dir / "training.json").read_text())
    assert info["protocol"] == "random" and info["synthetic"] is True
    assert (model_dir / "config.json").is_file()

    # evaluate defaults to the data and split the model was trained on
    res = runner.invoke(app, ["evaluate", str(model_dir), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert got["synthetic"] is True and got["rating"]["n"] == 600
    assert 0.3 < got["rating"]["rmse"] < 2.5
    assert "ndcg@10" in got["ranking"]["metrics"]
    table = _ok(app, ["evaluate", str(model_dir), "-k", "5"])
    assert "ndcg@5" in table and "rmse" in table and "(synthetic)" in table

    # scoring on a split whose test rows the model was trained on is refused
    bad = runner.invoke(app, ["evaluate", str(model_dir), "--protocol", "random", "--seed", "7"])
    assert bad.exit_code == 2 and "leak" in bad.output

    rec = runner.invoke(app, ["recommend", str(model_dir), "1", "2", "-k", "3", "--json"])
    assert rec.exit_code == 0, rec.output
    lists = json.loads(rec.output)
    assert [r["user"] for r in lists] == [1, 2]
    assert all(len(r["items"]) == 3 for r in lists)
    assert lists[0]["items"][0]["title"].startswith("Synthetic movie")
    text = _ok(app, ["recommend", str(model_dir), "999999", "-k", "2"])
    assert "unknown: popularity fallback" in text
    assert "title" in text


def test_train_errors_exit_2(app: typer.Typer, tmp_path: Path) -> None:
    res = runner.invoke(app, ["train", "NoSuchModel", "--data", DATA, "--out",
                              str(tmp_path / "m")])
    assert res.exit_code == 2 and "unknown model class" in res.output
    res = runner.invoke(app, ["train", "SVD", "--data", DATA, "--out", str(tmp_path / "m"),
                              "-p", "wrong=1"])
    assert res.exit_code == 2 and "bad hyper-parameters" in res.output
    res = runner.invoke(app, ["train", "Popularity", "--data", DATA, "--out",
                              str(tmp_path / "m"), "--protocol", "nonsense"])
    assert res.exit_code == 2 and "unknown protocol" in res.output
    res = runner.invoke(app, ["recommend", str(tmp_path / "missing"), "1"])
    assert res.exit_code == 2 and "not a rectune model folder" in res.output


def test_tune_grid_writes_trials(app: typer.Typer, tmp_path: Path) -> None:
    out = _ok(app, ["tune", "Popularity", "--data", DATA, "--protocol", "random", "-s",
                    "normalize=true,false", "--method", "grid", "--metric", "ndcg@10",
                    "--out", str(tmp_path / "t")])
    assert "best ndcg@10" in out and "scored once, after the search" in out
    summary = json.loads((tmp_path / "t" / "tune.json").read_text())
    assert len(summary["trials"]) == 2 and summary["direction"] == "maximize"
    assert set(summary["best_params"]) == {"normalize"}
    assert "ndcg@10" in summary["test"]
    assert (tmp_path / "t" / "trials.csv").read_text().startswith("trial,normalize,score")
    res = runner.invoke(app, ["tune", "Popularity", "--data", DATA, "-s", "normalize"])
    assert res.exit_code == 2 and "search space entry" in res.output


def test_run_command(app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rectune.finetune", None)  # no engine in this test
    exp = tmp_path / "e.toml"
    exp.write_text('[experiment]\nname = "cli"\n[data]\nsynthetic = 3000\n'
                   '[split]\nmethod = "random"\n[metrics]\nn_boot = 20\n'
                   '[[models]]\nclass = "Popularity"\n[report]\nhtml = false\n')
    out_dir = tmp_path / "o"
    res = runner.invoke(app, ["run", str(exp), "--out", str(out_dir), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "SYNTHETIC" in res.output and re.search(r"Popularity\s*│\s*ok", res.output)
    assert (out_dir / "results.json").is_file() and not (out_dir / "report.html").exists()
    exp.write_text(exp.read_text().replace('"Popularity"', '"Nope"'))
    res = runner.invoke(app, ["run", str(exp), "--out", str(out_dir)])
    assert res.exit_code == 2 and "unknown model class" in res.output


def test_tune_api_random_tpe_and_spaces() -> None:
    from rectune import DataError
    from rectune.data.synthetic import synthetic
    from rectune.tune import parse_space, tune

    assert parse_space(["n=1,2", "reg=0.001:0.1:log", "k=2:6:int"]) == {
        "n": [1, 2], "reg": {"low": 0.001, "high": 0.1, "log": True, "type": "float"},
        "k": {"low": 2, "high": 6, "log": False, "type": "int"}}
    train = synthetic(2000).interactions
    space = {"n_factors": {"low": 2, "high": 6, "type": "int"},
             "reg_all": {"low": 0.005, "high": 0.1, "log": True}}
    fixed = {"n_epochs": 3}
    a = tune("SVD", train, space, method="random", n_trials=3, fixed=fixed)
    b = tune("SVD", train, space, method="random", n_trials=3, fixed=fixed)
    assert a.trials["score"].tolist() == b.trials["score"].tolist()  # seeded
    assert a.direction == "minimize" and a.best_score == a.trials["score"].min()
    assert 2 <= a.best_params["n_factors"] <= 6 and "holdout 0.1" in a.validation
    t = tune("SVD", train, space, method="tpe", n_trials=3, fixed=fixed, validation="cv",
             cv_folds=2)
    assert len(t.trials) == 3 and "2-fold CV" in t.validation
    g = tune("SVD", train, {"n_factors": {"low": 2, "high": 4, "type": "int"}}, method="grid",
             fixed=fixed)
    assert g.trials["n_factors"].tolist() == [2, 3, 4]
    bad = tune("SVD", train, {"n_factors": [3, -1]}, method="grid", fixed=fixed)
    assert bad.trials["status"].iloc[1].startswith("failed") and bad.best_params == {
        "n_factors": 3}
    with pytest.raises(DataError, match="continuous range"):
        tune("SVD", train, {"reg_all": {"low": 0.01, "high": 0.1}}, method="grid")
    with pytest.raises(DataError, match="ranking model"):
        tune("Popularity", train, {"normalize": [True]}, metric="rmse")
