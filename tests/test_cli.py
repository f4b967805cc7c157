"""The data and fine-tune commands of the CLI."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from rectune import __version__
from rectune.cli import app

runner = CliRunner()


def test_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output


def test_data_info_and_split(tmp_path: Path) -> None:
    res = runner.invoke(app, ["data", "info", "synthetic:5000", "--json"])
    assert res.exit_code == 0, res.output
    assert '"ratings": 5000' in res.output and '"histogram"' in res.output
    res = runner.invoke(app, ["data", "split", "synthetic:5000", "--protocol", "temporal",
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    parts = {p.stem: len(pd.read_parquet(p)) for p in tmp_path.glob("*.parquet")}
    assert set(parts) == {"pretrain", "new", "test"} and sum(parts.values()) == 5000


def test_data_info_bad_source_is_a_clear_error() -> None:
    res = runner.invoke(app, ["data", "info", "/no/such/file.csv"])
    assert res.exit_code == 2 and "neither a known data set" in res.output


def test_finetune_command(tmp_path: Path) -> None:
    from rectune.data import synthetic
    from rectune.models import SVD

    ds = synthetic(5000, seed=1)
    SVD(n_factors=4, n_epochs=2).fit(ds.interactions).save(tmp_path / "base")
    csv = tmp_path / "new.csv"
    ds.interactions.to_frame().head(500).to_csv(csv, index=False)
    (tmp_path / "ft.toml").write_text("[finetune]\nl2sp = 0.1\nepochs = 2\nverbose = false\n")
    res = runner.invoke(app, ["finetune", str(tmp_path / "base"), "--data", str(csv),
                              "--config", str(tmp_path / "ft.toml"), "--out",
                              str(tmp_path / "ft")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ft" / "config.json").is_file() and "fine-tuned SVD" in res.output
