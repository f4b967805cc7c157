"""Model commands of the ``rectune`` CLI: run, train, evaluate, recommend, tune.

:func:`register` adds them to the main Typer app (``rectune.cli``). Heavy imports
happen inside each command, so ``rectune --help`` stays instant, and
``rectune.cli`` is imported lazily too (it imports this module to register).

Data sources are the ones ``rectune data`` understands (a registry name such as
``ml-100k``, ``synthetic[:N]``, a MovieLens folder/zip, or a CSV/Parquet file).
``--protocol`` names a preset of :mod:`rectune.data.protocols` (e.g.
``ml100k_fixed_8020``), a split method (``random``, ``user``, ``last``,
``temporal``), or ``none`` (all data is training data).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rectune._errors import RectuneError

__all__ = ["register"]

console = Console()
err = Console(stderr=True)
TRAINING_FILE = "training.json"


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code=2)


def _params(items: list[str] | None) -> dict[str, Any]:
    from rectune.tune import parse_value

    out: dict[str, Any] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise RectuneError(f"--param {item!r}: expected name=value")
        out[k.strip()] = parse_value(v)
    return out


def _parts(source: str, protocol: str, test_fraction: float, seed: int) -> tuple[Any, Any]:
    """``(dataset, Parts)``; protocol ``none`` gives all data as train and no test."""
    import numpy as np

    from rectune.data.protocols import PRESETS
    from rectune.experiment.config import SplitConfig
    from rectune.experiment.data import Parts, make_parts

    ds = _load(source)
    if protocol == "none":
        empty = ds.interactions.take(np.zeros(0, dtype=np.int64))
        return ds, Parts(ds.interactions, empty, info={"protocol": None, "method": "none"})
    if protocol in PRESETS:
        cfg = SplitConfig(protocol=protocol, seed=seed)
    elif protocol in ("random", "user", "last", "temporal"):
        cfg = SplitConfig(method=protocol, test_fraction=test_fraction,  # type: ignore[arg-type]
                          seed=seed)
    else:
        raise RectuneError(f"unknown protocol {protocol!r}; presets: {', '.join(sorted(PRESETS))}"
                           "; methods: random, user, last, temporal; or none")
    return ds, make_parts(cfg, ds)


def _load(source: str) -> Any:
    """A Dataset from a data source, through ``rectune.cli.load_source``.

    ``synthetic[:N]`` is built here directly (same meaning) so these commands do not
    depend on which names ``rectune.data`` re-exports.
    """
    from rectune.cli import load_source

    if source.startswith("synthetic"):
        from rectune.data.synthetic import synthetic

        n = source.split(":", 1)[1] if ":" in source else "100000"
        if not n.isdigit() or int(n) < 100:
            raise RectuneError(f"{source!r}: write synthetic:N with N >= 100 ratings")
        return synthetic(int(n))
    return load_source(source)


def _encode_user_args(model: Any, users: list[str]) -> list[Any]:
    if model.user_map_.kind != "int":
        return list(users)
    out = []
    for u in users:
        try:
            out.append(int(u))
        except ValueError:
            raise RectuneError(f"user id {u!r} is not an integer, but this model's user ids "
                               "are integers") from None
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


# ------------------------------------------------------------------------- run
def run_cmd(
    experiment: Annotated[Path, typer.Argument(help="Experiment TOML file.", exists=True,
                                               dir_okay=False)],
    out: Annotated[Path | None, typer.Option(help="Output folder (default runs/<name>).")]
    = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run an experiment file: fit, fine-tune, evaluate; write results.json and report.html."""
    from rectune.experiment import load_config, run_experiment

    try:
        cfg = load_config(experiment)
        out_dir = out or Path("runs") / cfg.experiment.name
        results = run_experiment(experiment, out_dir, progress=not quiet, console=err)
    except RectuneError as exc:
        raise _fail(exc) from None
    t = Table(title=f"{results['experiment']['name']} — {results['data']['label']}")
    for col in ("result", "status", "RMSE", "MAE", "NDCG@k", "fit s"):
        t.add_column(col)
    k = results["metrics_config"]["k"][0]
    for r in results["results"]:
        rt, rk = r.get("rating") or {}, (r.get("ranking") or {}).get("metrics") or {}
        t.add_row(r["label"], r["status"], _fmt(rt.get("rmse", "")), _fmt(rt.get("mae", "")),
                  _fmt(rk.get(f"ndcg@{k}", "")), _fmt(r.get("fit_seconds") or ""))
    console.print(t)
    if results["data"]["synthetic"]:
        console.print("[bold yellow]note:[/] these results are on SYNTHETIC data.")
    console.print(f"results: {out_dir / 'results.json'}")
    if (out_dir / "report.html").exists():
        console.print(f"report:  {out_dir / 'report.html'}")
    if any(r["status"] == "failed" for r in results["results"]):
        err.print("[bold red]some results failed[/] (see the status column)")
        raise typer.Exit(code=1)


# ----------------------------------------------------------------------- train
def train_cmd(
    model_class: Annotated[str, typer.Argument(help="Model class, e.g. SVD, ItemKNN, ALS.")],
    data: Annotated[str, typer.Option(help="Data source (ml-100k, synthetic:N, PATH).")],
    out: Annotated[Path, typer.Option(help="Folder to save the model in.")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p",
                                                    help="Hyper-parameter name=value.")] = None,
    protocol: Annotated[str, typer.Option(help="Fit on the train part of this split, or "
                                               "'none' for all data.")] = "none",
    test_fraction: Annotated[float, typer.Option(help="Test share for random/user.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    positive_threshold: Annotated[float, typer.Option(
        help="Ranking-only models are fitted on ratings >= this.")] = 4.0,
    progress: Annotated[bool, typer.Option(help="Show training progress.")] = True,
) -> None:
    """Fit a model and save it (config.json + safetensors, no pickle)."""
    import time

    from rectune.evaluate.protocols import fit_data
    from rectune.experiment.config import resolve_model_class
    from rectune.experiment.manifest import interactions_sha256
    from rectune.models.base import FitOptions

    try:
        cls = resolve_model_class(model_class)
        model = cls(**_params(param))
        ds, parts = _parts(data, protocol, test_fraction, seed)
        train = fit_data(model, parts.train, positive_threshold)
        t0 = time.perf_counter()
        model.fit(train, options=FitOptions(progress=progress))
        seconds = time.perf_counter() - t0
        model.save(out)
    except TypeError as exc:
        raise _fail(RectuneError(f"{model_class}: bad hyper-parameters ({exc})")) from None
    except RectuneError as exc:
        raise _fail(exc) from None
    info = {"data": data, "synthetic": bool(ds.info.get("synthetic", False)),
            "protocol": protocol, "test_fraction": test_fraction, "seed": seed,
            "positive_threshold": positive_threshold, "n_train": len(train),
            "train_sha256": interactions_sha256(train), "fit_seconds": seconds}
    (out / TRAINING_FILE).write_text(json.dumps(info, indent=1))
    console.print(f"{type(model).__name__} fitted on {len(train):,} rows in {seconds:.2f} s "
                  f"-> {out}")


def _training_info(model_dir: Path) -> dict[str, Any]:
    p = model_dir / TRAINING_FILE
    if p.is_file():
        try:
            info = json.loads(p.read_text())
            return info if isinstance(info, dict) else {}
        except json.JSONDecodeError:
            return {}
    return {}


# -------------------------------------------------------------------- evaluate
def evaluate_cmd(
    model_dir: Annotated[Path, typer.Argument(help="A saved model folder.")],
    data: Annotated[str | None, typer.Option(help="Data source (default: the one it was "
                                                  "trained on).")] = None,
    protocol: Annotated[str | None, typer.Option(help="Split whose test part is scored "
                                                      "(default: the training split).")] = None,
    k: Annotated[int, typer.Option("-k", help="Cut-off of the ranking metrics.")] = 10,
    test_fraction: Annotated[float, typer.Option(help="Test share for random/user.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    positive_threshold: Annotated[float, typer.Option(help="Relevant = rating >= this.")]
    = 4.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Score a saved model on the test part of a split (leak-checked against its training)."""
    from rectune.evaluate.evaluator import evaluate_ranking, evaluate_ratings
    from rectune.models.base import Recommender

    info = _training_info(model_dir)
    data = data or info.get("data")
    protocol = protocol or info.get("protocol")
    if not data or not protocol or protocol == "none":
        raise _fail(RectuneError("give --data and a --protocol with a test part (the model "
                                 "folder does not name a training split)"))
    try:
        model = Recommender.load(model_dir)
        ds, parts = _parts(data, protocol, test_fraction, seed)
        out: dict[str, Any] = {"model": type(model).__name__, "data": data,
                               "protocol": protocol, "synthetic": ds.synthetic}
        if model.predicts_ratings and parts.test.kind == "explicit":
            r = evaluate_ratings(model, parts.test, train=parts.train)
            out["rating"] = r
        thr = positive_threshold if parts.test.kind == "explicit" else None
        res = evaluate_ranking(model, parts.train, parts.test, k, relevance_threshold=thr,
                               item_features=ds.item_features)
        out["ranking"] = res.to_dict()
    except RectuneError as exc:
        raise _fail(exc) from None
    if as_json:
        console.print_json(json.dumps(out, default=str))
        return
    t = Table(title=f"{out['model']} on {data} / {protocol}"
                    f"{' (synthetic)' if ds.synthetic else ''}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("95% CI", justify="right")
    for m in ("rmse", "mae"):
        if "rating" in out:
            lo, hi = out["rating"][f"{m}_ci"]
            t.add_row(m, _fmt(out["rating"][m]), f"[{lo:.4f}, {hi:.4f}]")
    for m, v in out["ranking"]["metrics"].items():
        ci = out["ranking"]["ci"].get(m)
        t.add_row(m, _fmt(v) if v is not None else "–",
                  f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci and None not in ci else "")
    console.print(t)
    c = out["ranking"]["counts"]
    console.print(f"users evaluated: {c['n_users_evaluated']:,} "
                  f"(unknown to the model: {c['n_users_unknown']:,})"
                  + (f"; unknown test rows: {out['rating']['n_unknown']:,}"
                     if "rating" in out else ""))


# ------------------------------------------------------------------- recommend
def recommend_cmd(
    model_dir: Annotated[Path, typer.Argument(help="A saved model folder.")],
    users: Annotated[list[str], typer.Argument(help="Raw user id(s).")],
    k: Annotated[int, typer.Option("-k", help="How many items per user.")] = 10,
    data: Annotated[str | None, typer.Option(help="Data source for item titles (default: "
                                                  "the one it was trained on).")] = None,
    include_seen: Annotated[bool, typer.Option(help="Allow items the user already rated.")]
    = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Top-k items for each user, with titles when the data has them."""
    import numpy as np

    from rectune.models.base import Recommender

    try:
        model = Recommender.load(model_dir)
        raw = _encode_user_args(model, users)
        ids, scores = model.recommend(raw, k, exclude_seen=not include_seen)
    except RectuneError as exc:
        raise _fail(exc) from None
    titles: dict[Any, str] = {}
    source = data or _training_info(model_dir).get("data")
    if source:
        try:
            feats = _load(source).item_features
            if feats is not None and "title" in feats.columns:
                titles = {(i.item() if isinstance(i, np.generic) else i): str(t)
                          for i, t in feats["title"].items()}
        except RectuneError as exc:
            err.print(f"[yellow]no titles:[/] {exc}")
    known = model.user_map_.encode(np.asarray(raw, dtype=object) if model.user_map_.kind
                                   == "str" else np.asarray(raw), missing="negative") >= 0
    out = []
    for row, u in enumerate(raw):
        items = [(i.item() if isinstance(i, np.generic) else i, float(s))
                 for i, s in zip(ids[row], scores[row], strict=True)
                 if i is not None and i != -1]
        out.append({"user": u, "known": bool(known[row]),
                    "items": [{"item": i, "title": titles.get(i), "score": s}
                              for i, s in items]})
    if as_json:
        console.print_json(json.dumps(out, default=str))
        return
    for rec in out:
        t = Table(title=f"user {rec['user']}"
                        + ("" if rec["known"] else " (unknown: popularity fallback)"))
        t.add_column("#", justify="right")
        t.add_column("item")
        if titles:
            t.add_column("title")
        t.add_column("score", justify="right")
        for j, it in enumerate(rec["items"], 1):
            cells = [str(j), str(it["item"])]
            if titles:
                cells.append(it["title"] or "")
            t.add_row(*cells, f"{it['score']:.4f}")
        console.print(t)


# ------------------------------------------------------------------------ tune
def tune_cmd(
    model_class: Annotated[str, typer.Argument(help="Model class, e.g. SVD.")],
    data: Annotated[str, typer.Option(help="Data source (ml-100k, synthetic:N, PATH).")],
    space: Annotated[list[str], typer.Option(
        "--space", "-s", help="name=v1,v2 (choices) or name=low:high[:log][:int] (range).")],
    protocol: Annotated[str, typer.Option(help="Tune on the train part of this split "
                                               "('none': all data).")] = "none",
    param: Annotated[list[str] | None, typer.Option("--param", "-p",
                                                    help="Fixed name=value.")] = None,
    method: Annotated[str, typer.Option(help="grid | random | tpe")] = "tpe",
    trials: Annotated[int, typer.Option(help="Number of trials (random, tpe).")] = 20,
    metric: Annotated[str, typer.Option(help="rmse | mae | ndcg@10 | recall@20 ...")]
    = "rmse",
    validation: Annotated[str, typer.Option(help="holdout (10% of train) | cv")] = "holdout",
    folds: Annotated[int, typer.Option(help="Folds for --validation cv.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the validation slice and sampler.")] = 1,
    test_fraction: Annotated[float, typer.Option(help="Test share for random/user.")] = 0.2,
    positive_threshold: Annotated[float, typer.Option(help="Relevant = rating >= this.")]
    = 4.0,
    out: Annotated[Path | None, typer.Option(help="Write tune.json and trials.csv here.")]
    = None,
    test: Annotated[bool, typer.Option(help="After the search, refit the best on train and "
                                            "score the test part once.")] = True,
) -> None:
    """Search hyper-parameters on training data only (validation slice or CV)."""
    from rectune.tune import parse_space, tune

    try:
        sp = parse_space(space)
        _, parts = _parts(data, protocol, test_fraction, 0)
        res = tune(model_class, parts.train, sp, method=method,  # type: ignore[arg-type]
                   n_trials=trials, metric=metric, fixed=_params(param),
                   validation=validation, seed=seed,  # type: ignore[arg-type]
                   cv_folds=folds, relevance_threshold=positive_threshold,
                   on_trial=lambda j, p, v: err.print(f"trial {j}: {p} -> {v:.4f}"))
    except RectuneError as exc:
        raise _fail(exc) from None
    t = Table(title=f"{model_class}: {res.method} search, {res.metric} ({res.validation})")
    cols = [c for c in res.trials.columns if c != "status"]
    for c in cols:
        t.add_column(str(c))
    order = res.trials.sort_values("score", ascending=res.direction == "minimize")
    for _, row in order.head(15).iterrows():
        t.add_row(*[_fmt(row[c]) for c in cols])
    console.print(t)
    console.print(f"best {res.metric} = {res.best_score:.4f} with {res.best_params}")
    summary = res.to_dict()
    if test and len(parts.test):
        from rectune.evaluate.protocols import evaluate_split
        from rectune.experiment.config import resolve_model_class

        try:
            cls = resolve_model_class(model_class)
            model = cls(**{**_params(param), **res.best_params})
            fold = evaluate_split(model, parts.train, parts.test, k=int(
                metric.partition("@")[2] or 10), positive_threshold=positive_threshold)
        except RectuneError as exc:
            raise _fail(exc) from None
        summary["test"] = fold.scalars()
        shown = {m: round(v, 4) for m, v in fold.scalars().items()
                 if m.split("@")[0] in ("rmse", "mae", metric.split("@")[0])}
        console.print(f"test (scored once, after the search): {shown}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "tune.json").write_text(json.dumps(summary, indent=1, default=str))
        res.trials.to_csv(out / "trials.csv", index=False)
        console.print(f"wrote {out / 'tune.json'} and {out / 'trials.csv'}")


def register(app: typer.Typer) -> None:
    """Add ``run``, ``train``, ``evaluate``, ``recommend`` and ``tune`` to ``app``."""
    app.command("run")(run_cmd)
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("recommend")(recommend_cmd)
    app.command("tune")(tune_cmd)
