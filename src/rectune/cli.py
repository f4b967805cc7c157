"""The ``rectune`` command line: one entry point over data, models and reports.

Heavy imports (pandas, torch, the models) happen inside each command so that
``rectune --version`` and ``--help`` stay instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rectune import RectuneError, __version__

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Pre-train, fine-tune, evaluate and serve recommendation models.")
data_app = typer.Typer(no_args_is_help=True, help="Fetch, inspect and split data sets.")
app.add_typer(data_app, name="data")

console = Console()
err = Console(stderr=True)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"rectune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback,
                                          is_eager=True, help="Print the version and exit.")]
    = False,
) -> None:
    """rectune: recommenders you can pre-train, fine-tune, evaluate and serve."""


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code=2)


# ---------------------------------------------------------------------------- data
@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="Registry name, e.g. ml-100k, ml-1m.")],
    force: Annotated[bool, typer.Option(help="Download again even if cached.")] = False,
) -> None:
    """Download a data set into the cache (checksummed, atomic)."""
    from rectune.data.download import REGISTRY, fetch

    if name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise _fail(RectuneError(f"unknown data set {name!r}; known: {known}"))
    try:
        path = fetch(name, force=force)
    except RectuneError as exc:
        raise _fail(exc) from None
    console.print(f"{name}: {path}")


def load_source(source: str, *, synthetic_ratings: int = 100_000) -> Any:
    """A Dataset from a registry name, ``synthetic[:N]``, a folder/zip, or a CSV/Parquet file."""
    from rectune.data import Dataset, synthetic
    from rectune.data.download import REGISTRY
    from rectune.data.movielens import load_movielens
    from rectune.data.readers import read_interactions

    if source.startswith("synthetic"):
        n = int(source.split(":", 1)[1]) if ":" in source else synthetic_ratings
        return synthetic(n)
    if source in REGISTRY:
        return load_movielens(source)
    p = Path(source)
    if not p.exists():
        raise RectuneError(f"{source!r} is neither a known data set ({', '.join(sorted(REGISTRY))}"
                           ", synthetic[:N]) nor an existing path")
    if p.is_dir() or p.suffix == ".zip":
        return load_movielens(_guess_movielens_name(p), path=p)
    inter = read_interactions(p)
    return Dataset(name=p.name, interactions=inter, info={"source": str(p)})


def _guess_movielens_name(p: Path) -> str:
    from rectune.data.download import REGISTRY

    stem = p.name[:-4] if p.suffix == ".zip" else p.name
    if stem in REGISTRY:
        return stem
    if p.is_dir():
        if (p / "u.data").exists():
            return "ml-100k"
        if (p / "users.dat").exists():
            return "ml-1m"
        if (p / "ratings.dat").exists():
            return "ml-10m"
        if (p / "ratings.csv").exists():
            return "ml-latest-small"
    raise RectuneError(f"{p}: cannot tell which MovieLens layout this is; "
                       f"name the folder after one of {', '.join(sorted(REGISTRY))}")


def data_summary(ds: Any) -> dict[str, Any]:
    """Counts, sparsity, rating histogram and time span of a Dataset (JSON-safe)."""
    import numpy as np
    import pandas as pd

    x = ds.interactions
    out: dict[str, Any] = {
        "name": ds.name,
        "synthetic": bool(ds.info.get("synthetic", False)),
        "ratings": len(x),
        "users": x.n_users,
        "items": x.n_items,
        "density": x.density,
        "sparsity": 1.0 - x.density,
        "kind": x.kind,
    }
    vals, counts = np.unique(x.value, return_counts=True)
    if len(vals) <= 20:
        out["histogram"] = {f"{v:g}": int(c) for v, c in zip(vals, counts, strict=True)}
    else:
        hist, edges = np.histogram(x.value, bins=10)
        out["histogram"] = {f"[{edges[j]:.3g},{edges[j + 1]:.3g})": int(hist[j])
                            for j in range(len(hist))}
    if x.timestamp is not None:
        lo, hi = int(x.timestamp.min()), int(x.timestamp.max())
        out["time_span"] = {
            "first": pd.Timestamp(lo, unit="s").isoformat(),
            "last": pd.Timestamp(hi, unit="s").isoformat(),
            "days": round((hi - lo) / 86400, 1),
        }
    per_user = x.user_counts()
    out["ratings_per_user"] = {"min": int(per_user.min()), "median": float(np.median(per_user)),
                               "max": int(per_user.max())}
    if ds.user_features is not None:
        out["user_features"] = list(map(str, ds.user_features.columns))
    if ds.item_features is not None:
        out["item_features"] = list(map(str, ds.item_features.columns))
    if ds.folds:
        out["folds"] = sorted(ds.folds)
    return out


@data_app.command("info")
def data_info(
    source: Annotated[str, typer.Argument(help="ml-100k | ... | synthetic[:N] | PATH")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
    = False,
) -> None:
    """Counts of ratings, users and items, sparsity, rating histogram and time span."""
    try:
        summary = data_summary(load_source(source))
    except RectuneError as exc:
        raise _fail(exc) from None
    if as_json:
        console.print_json(json.dumps(summary))
        return
    t = Table(title=f"{summary['name']}{' (synthetic)' if summary['synthetic'] else ''}")
    t.add_column("field")
    t.add_column("value")
    for k, v in summary.items():
        if k in ("name", "histogram"):
            continue
        t.add_row(k, f"{v:.6f}" if isinstance(v, float) else str(v))
    console.print(t)
    h = Table(title="rating histogram")
    h.add_column("rating")
    h.add_column("count", justify="right")
    for k, v in summary["histogram"].items():
        h.add_row(k, f"{v:,}")
    console.print(h)


@data_app.command("split")
def data_split(
    source: Annotated[str, typer.Argument(help="ml-100k | ... | synthetic[:N] | PATH")],
    out: Annotated[Path, typer.Option(help="Folder for train/test(/valid) Parquet files.")],
    protocol: Annotated[str, typer.Option(
        help="A named preset (e.g. ml100k_fixed_8020) or random|user|last|temporal.")]
    = "random",
    test_fraction: Annotated[float, typer.Option(help="Test share for random/user splits.")]
    = 0.2,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Split a data set and write each part as Parquet (raw ids, so any tool can read it)."""
    from rectune.data import split as S

    try:
        ds = load_source(source)
        parts = _run_split(S, ds, protocol, test_fraction, seed)
    except RectuneError as exc:
        raise _fail(exc) from None
    out.mkdir(parents=True, exist_ok=True)
    for name, inter in parts.items():
        path = out / f"{name}.parquet"
        inter.to_frame().to_parquet(path, index=False)
        console.print(f"{name}: {len(inter):,} rows -> {path}")


def _run_split(S: Any, ds: Any, protocol: str, test_fraction: float, seed: int) -> dict[str, Any]:
    from rectune.data.protocols import PRESETS

    x = ds.interactions
    if protocol in PRESETS:
        res = PRESETS[protocol](ds)
    elif protocol == "random":
        res = S.random_split(x, test_fraction, seed=seed)
    elif protocol == "user":
        res = S.user_holdout(x, test_fraction, seed=seed)
    elif protocol == "last":
        res = S.leave_last_n(x, 1)
    elif protocol == "temporal":
        res = S.temporal_split(x)
    else:
        raise RectuneError(f"unknown protocol {protocol!r}; presets: {', '.join(sorted(PRESETS))}"
                           "; methods: random, user, last, temporal")
    return split_parts(res)


def split_parts(res: Any) -> dict[str, Any]:
    """Name -> Interactions for any split result (Split, TemporalSplit, XDomainSplit, folds)."""
    from rectune.data.protocols import XDomainSplit
    from rectune.data.split import CrossDomain, Split, TemporalSplit

    if isinstance(res, list):
        out: dict[str, Any] = {}
        for j, fold in enumerate(res, start=1):
            out.update({f"fold{j}_{k}": v for k, v in split_parts(fold).items()})
        return out
    if isinstance(res, Split):
        parts = {"train": res.train, "test": res.test}
        if res.valid is not None:
            parts["valid"] = res.valid
        return parts
    if isinstance(res, TemporalSplit):
        return {"pretrain": res.pretrain, "new": res.new, "test": res.test}
    if isinstance(res, XDomainSplit):
        return {"source": res.source, "target_train": res.target_train,
                "target_test": res.target_test}
    if isinstance(res, CrossDomain):
        return {"source": res.source, "target": res.target}
    raise RectuneError(f"cannot write a split result of type {type(res).__name__}")


@app.command("finetune")
def finetune_cmd(
    base: Annotated[Path, typer.Argument(help="Folder of a saved pre-trained model.")],
    data: Annotated[str, typer.Option(help="New data: ml-100k | synthetic[:N] | PATH.")],
    out: Annotated[Path, typer.Option(help="Folder for the fine-tuned model.")],
    config: Annotated[Path | None, typer.Option(
        help="FinetuneConfig as TOML ([finetune] table or top level) or JSON.")] = None,
    auto: Annotated[bool, typer.Option(
        "--auto", help="Choose on a validation slice of the new data among scratch, plain "
        "fine-tuning, L2-SP, frozen groups, partial transfer and replay, with a "
        "negative-transfer guard (rectune.finetune.auto).")] = False,
    budget: Annotated[float | None, typer.Option(
        help="With --auto: wall-clock budget of the search in seconds.")] = None,
) -> None:
    """Fine-tune a saved model on new data (L2-SP, freezing, growth, task change)."""
    from rectune.finetune import FinetuneConfig, finetune
    from rectune.models.base import Recommender

    if not auto and budget is not None:
        raise _fail(RectuneError("--budget applies to --auto only"))
    if auto and config is not None:
        raise _fail(RectuneError("--auto chooses the fine-tuning configuration itself; "
                                 "drop --config (or drop --auto to use it)"))
    try:
        model = Recommender.load(base)
        new = load_source(data).interactions
        if auto:
            from rectune.finetune.auto import auto as auto_finetune

            res = auto_finetune(model, new, budget_s=budget)
            tuned = res.model
        else:
            cfg = FinetuneConfig.from_file(config) if config is not None else FinetuneConfig()
            tuned = finetune(model, new, cfg)
    except RectuneError as exc:
        raise _fail(exc) from None
    tuned.save(out)
    if auto:
        console.print(res.summary())
        console.print(f"-> {out} (the choice and every candidate's score are in its "
                      "config.json, meta.auto)")
        return
    meta = tuned.meta_["finetune"]
    console.print(f"fine-tuned {type(model).__name__} on {meta['n_new_rows']:,} rows "
                  f"({meta['new_users']} new users, {meta['new_items']} new items) -> {out}")


def _register_commands() -> None:
    from rectune.cli_bench import register as register_bench
    from rectune.cli_models import register

    register(app)
    register_bench(app)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
