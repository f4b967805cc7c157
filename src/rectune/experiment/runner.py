"""Run an experiment file: fit every model on every arm, evaluate, write results and report.

Arms. On a staged split (temporal: oldest 70% / next 15% / newest 15%; or
cross-domain: source / target-train / target-test) each model is fitted

* ``pretrain`` — on the oldest slice only (the stale model),
* ``scratch``  — on the new slice only,
* ``retrain``  — on old + new,
* ``finetune`` — the pre-trained model fine-tuned on the new slice by
  :func:`rectune.finetune.finetune` (imported lazily: when the engine is missing
  or does not support the family, the arm is reported as such, never faked),

and every arm is evaluated on the same test slice with the same candidate filter
(all data before the test period), so differences are the model's alone. Plain
splits have one arm, ``train``.

Outputs in ``out/``: ``results.json`` (plain data: metrics with 95% bootstrap
intervals, counts of unknown users/items, paired tests, popularity-bias
summaries, learning curves, and the reproducibility manifest) and ``report.html``
(a self-contained view of the same data with inline plots).
"""

from __future__ import annotations

import importlib
import json
import math
import re
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from rectune._errors import DataError, RectuneError

# evaluation imports scipy.stats (about a second): load it before anything is timed
from rectune.evaluate.evaluator import evaluate_ranking, evaluate_ratings
from rectune.evaluate.protocols import fit_data
from rectune.evaluate.stats import paired_test
from rectune.experiment.config import ExperimentConfig, ModelConfig, load_config
from rectune.experiment.data import LoadedData, Parts, load_data, make_parts
from rectune.experiment.manifest import manifest

__all__ = ["RESULTS_FORMAT", "popularity_deciles", "run_experiment"]

RESULTS_FORMAT = "rectune-results/1"
N_DECILES = 10


def popularity_deciles(top: np.ndarray, item_pop: np.ndarray) -> dict[str, Any]:
    """Where the recommendation slots land on the popularity curve.

    Items are ranked by training popularity (ties by index) and cut into ten groups
    of equal size; ``rec_share[d]`` is the share of recommended slots in group d,
    ``catalogue_share[d]`` the share of training interactions. Also the mean
    training popularity of a recommended item vs of a catalogue item.
    """
    n = len(item_pop)
    order = np.argsort(-item_pop, kind="stable")
    group = np.empty(n, dtype=np.int64)
    group[order] = (np.arange(n) * N_DECILES) // max(n, 1)
    rec = top[top >= 0]
    rec_counts = np.bincount(group[rec], minlength=N_DECILES).astype(np.float64)
    cat = np.bincount(group, weights=item_pop, minlength=N_DECILES)
    return {
        "rec_share": (rec_counts / max(rec_counts.sum(), 1)).tolist(),
        "catalogue_share": (cat / max(cat.sum(), 1e-12)).tolist(),
        "mean_rec_popularity": float(item_pop[rec].mean()) if rec.size else None,
        "mean_catalogue_popularity": float(item_pop.mean()) if n else None,
    }


def _num(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool) \
        and math.isfinite(float(v))


def _history(model: Any) -> list[dict[str, float]] | None:
    """Per-epoch metrics of a fitted model, as a list of ``{"epoch": e, metric: value}``.

    Models expose ``history_`` either as a list of per-epoch dicts or as a dict of
    per-epoch lists (``{"train_rmse": [...], "valid_rmse": [...], "epochs": 20}``);
    scalars in the latter (epochs run, seconds) are not curves and are dropped.
    """
    hist = getattr(model, "history_", None)
    rows: list[dict[str, float]] = []
    if isinstance(hist, dict):
        curves = {str(k): v for k, v in hist.items()
                  if isinstance(v, list | tuple | np.ndarray) and len(v)
                  and all(_num(x) for x in v)}
        n = max((len(v) for v in curves.values()), default=0)
        for e in range(n):
            row = {"epoch": float(e + 1)}
            row.update({k: float(v[e]) for k, v in curves.items() if e < len(v)})
            rows.append(row)
    elif isinstance(hist, list | tuple):
        for e, rec in enumerate(hist):
            if isinstance(rec, dict):
                row = {str(k): float(v) for k, v in rec.items() if _num(v)}
                row.setdefault("epoch", float(e + 1))
                rows.append(row)
    return rows or None


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_") or "model"


def _arms(m: ModelConfig, parts: Parts, j: int) -> list[str]:
    if not parts.staged:
        if m.arms:
            raise DataError(f"models[{j}] ({m.name}): arms {m.arms} need a staged split "
                            "(temporal with new_fraction > 0, or cross-domain)")
        return ["train"]
    arms = list(m.arms or ["pretrain", "scratch", "retrain", "finetune"])
    return [a for a in ("pretrain", "scratch", "retrain", "finetune") if a in arms]


class _Runner:
    """State of one run; :func:`run_experiment` is the public entry point."""

    def __init__(self, cfg: ExperimentConfig, say: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.say = say
        self.metrics = cfg.metrics
        self.ks = cfg.metrics.ks
        self.thr = cfg.metrics.relevance_threshold
        self.results: list[dict[str, Any]] = []
        self.per_user: dict[str, dict[str, np.ndarray]] = {}
        self.users: dict[str, np.ndarray] = {}
        self.sq_errors: dict[str, np.ndarray] = {}
        self.models: dict[str, Any] = {}
        self.catalogue_share: list[float] | None = None
        self.notes: list[str] = []

    # ------------------------------------------------------------- one arm
    def _fit_data(self, model: Any, data: Any) -> Any:
        return fit_data(model, data, self.thr)

    def _train_arm(self, m: ModelConfig, arm: str, parts: Parts,
                   pretrained: Any) -> tuple[Any, int, str | None, str | None]:
        """Fit (or fine-tune) one arm: ``(model, n_train, status, message)``."""
        from rectune.experiment.config import resolve_model_class
        from rectune.models.base import FitOptions

        cls = resolve_model_class(m.cls)
        data = {"train": parts.train, "retrain": parts.train, "pretrain": parts.pretrain,
                "scratch": parts.new}.get(arm)
        if arm == "finetune":
            return self._finetune(m, parts, pretrained)
        model = cls(**m.params)
        fit_on = self._fit_data(model, data)
        model.fit(fit_on, options=FitOptions(progress=False))
        return model, len(fit_on), None, None

    @staticmethod
    def _engine() -> tuple[Any, Any, str | None]:
        """``(FinetuneConfig, finetune, None)``, or ``(None, None, why it is missing)``."""
        try:  # the engine is optional: report its absence, never fake the arm
            engine = importlib.import_module("rectune.finetune")
            return engine.FinetuneConfig, engine.finetune, None
        except (ImportError, AttributeError) as exc:
            return None, None, (f"fine-tuning is not available in this version of rectune "
                                f"({exc}); the arm was not run")

    def check_finetune(self, parts: Parts) -> None:
        """Validate every fine-tune configuration before anything is fitted."""
        config_cls, _, missing = self._engine()
        if missing or not self.cfg.finetune.enabled:
            return
        for j, m in enumerate(self.cfg.models):
            if "finetune" in _arms(m, parts, j):
                try:
                    config_cls(**self.cfg.finetune.kwargs(m.finetune))
                except (ValueError, TypeError, RectuneError) as exc:
                    raise DataError(f"[finetune] settings for models[{j}] ({m.name}) are "
                                    f"invalid: {exc}") from None

    def _finetune(self, m: ModelConfig, parts: Parts,
                  pretrained: Any) -> tuple[Any, int, str | None, str | None]:
        if not self.cfg.finetune.enabled:
            return None, 0, "skipped", "fine-tuning disabled in [finetune]"
        config_cls, finetune, missing = self._engine()
        if missing:
            return None, 0, "not_available", missing
        from rectune.finetune import supports

        name = type(pretrained).__name__
        if not supports(pretrained, "finetune"):
            return None, 0, "unsupported", (f"{name} cannot be fine-tuned (see "
                                            "rectune.finetune.capability_table())")
        new = self._fit_data(pretrained, parts.new)
        kwargs = self.cfg.finetune.kwargs(m.finetune)
        # a family without an option runs without it (recorded), e.g. KNN has no L2-SP
        dropped = [k for k, cap in (("l2sp", "l2sp"), ("freeze", "freeze"),
                                    ("replay", "replay"), ("task", "task_change"))
                   if kwargs.get(k) and not supports(pretrained, cap)]
        for k in dropped:
            kwargs.pop(k)
        ft_cfg = config_cls(**kwargs)
        try:
            model = finetune(pretrained, new, ft_cfg)
        except NotImplementedError as exc:
            return None, 0, "unsupported", f"{name}: {exc}"
        if dropped:
            meta = getattr(model, "meta_", {}).get("finetune", {})
            meta["options_not_supported"] = dropped
        return model, len(new), None, None

    def _evaluate(self, label: str, model: Any, parts: Parts, item_features: Any
                  ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        mc = self.metrics
        rating = None
        if model.predicts_ratings and parts.test.kind == "explicit" and mc.rating:
            r = evaluate_ratings(model, parts.test, train=parts.train, n_boot=mc.n_boot,
                                 seed=self.cfg.experiment.seed, return_errors=True)
            self.sq_errors[label] = r.pop("squared_errors")
            r.pop("abs_errors")
            rating = {k: v for k, v in r.items()
                      if k.split("_")[0] in mc.rating or not k.startswith(("rmse", "mae"))}
        ranking = None
        if mc.ranking:
            thr = self.thr if parts.test.kind == "explicit" else None
            res = evaluate_ranking(
                model, parts.train, parts.test, self.ks, mc.ranking,
                "train" if mc.exclude == "train" else None, relevance_threshold=thr,
                item_features=item_features, beyond=mc.beyond, n_boot=mc.n_boot,
                seed=self.cfg.experiment.seed)
            ranking = res.to_dict(per_user=mc.per_user)
            self.per_user[label] = res.per_user
            self.users[label] = res.users
            pop = popularity_deciles(res.top_items[:, :self.ks[0]], res.item_popularity)
            ranking["popularity_bias"] = pop
            if self.catalogue_share is None:
                self.catalogue_share = pop["catalogue_share"]
        return rating, ranking

    def run_model(self, j: int, m: ModelConfig, parts: Parts, item_features: Any,
                  advance: Callable[[str], None], out: Path | None) -> None:

        arms = _arms(m, parts, j)
        pretrained = None
        need_pre = "finetune" in arms
        for arm in (["pretrain"] if need_pre and "pretrain" not in arms else []) + arms:
            label = m.name if arm == "train" else f"{m.name} / {arm}"
            advance(label)
            entry: dict[str, Any] = {
                "label": label, "model": m.name, "class": m.cls, "arm": arm,
                "params": m.params, "status": "ok", "message": None, "fit_seconds": None,
                "eval_seconds": None, "n_train": None, "rating": None, "ranking": None,
                "history": None,
            }
            try:
                if arm == "finetune" and pretrained is None:
                    raise RectuneError("no pre-trained model to fine-tune (the pretrain arm "
                                       "failed)")
                t0 = time.perf_counter()
                model, n_train, status, msg = self._train_arm(m, arm, parts, pretrained)
                entry["fit_seconds"] = time.perf_counter() - t0
                if arm == "pretrain":
                    pretrained = model
                if status is not None:
                    entry.update(status=status, message=msg)
                else:
                    entry["n_train"] = n_train
                    entry["class"] = f"{type(model).__module__}.{type(model).__qualname__}"
                    entry["task"] = "rating" if model.predicts_ratings else "ranking"
                    entry["history"] = _history(model)
                    t0 = time.perf_counter()
                    entry["rating"], entry["ranking"] = self._evaluate(
                        label, model, parts, item_features)
                    entry["eval_seconds"] = time.perf_counter() - t0
                    if out is not None and self.cfg.report.save_models:
                        model.save(out / "models" / _slug(label))
                        entry["saved_to"] = str(Path("models") / _slug(label))
            except (RectuneError, ValueError, TypeError, ArithmeticError, NotImplementedError,
                    RuntimeError, MemoryError) as exc:
                entry.update(status="failed", message=f"{type(exc).__name__}: {exc}")
                self.say(f"[red]{label} failed:[/] {type(exc).__name__}: {exc}")
            if arm in arms:
                self.results.append(entry)
            elif entry["status"] != "ok":  # the hidden pretrain for finetune failed
                self.results.append(entry)

    # ------------------------------------------------------------ pairs
    def paired_tests(self, staged: bool) -> list[dict[str, Any]]:
        """Each result against its reference, on the same users (ranking) / rows (rating)."""
        ok = [r for r in self.results if r["status"] == "ok"]
        pairs: list[tuple[str, str]] = []
        ref = self.metrics.reference
        labels = [r["label"] for r in ok]
        if ref is not None:
            if ref not in labels:
                self.notes.append(f"[metrics] reference {ref!r} is not a completed result; "
                                  "no paired tests")
                return []
            pairs = [(lab, ref) for lab in labels if lab != ref]
        elif staged:
            for r in ok:
                base = f"{r['model']} / retrain"
                if r["arm"] != "retrain" and base in labels:
                    pairs.append((r["label"], base))
        elif labels:
            pairs = [(lab, labels[0]) for lab in labels[1:]]
        main = f"{self.metrics.ranking[0]}@{self.ks[0]}" if self.metrics.ranking else None
        out = []
        seed = self.cfg.experiment.seed
        n_boot = max(self.metrics.n_boot, 1000)
        for a, b in pairs:
            if main and a in self.per_user and b in self.per_user \
                    and np.array_equal(self.users[a], self.users[b]):
                try:
                    t = paired_test(self.per_user[a][main], self.per_user[b][main],
                                    n_boot=n_boot, seed=seed)
                    out.append({"metric": main, "a": a, "b": b, **t.to_dict(),
                                "significant": t.significant})
                except DataError as exc:
                    self.notes.append(f"paired test {a} vs {b} on {main}: {exc}")
            if a in self.sq_errors and b in self.sq_errors:
                t = paired_test(self.sq_errors[a], self.sq_errors[b], n_boot=n_boot, seed=seed)
                out.append({"metric": "squared_error", "a": a, "b": b, **t.to_dict(),
                            "significant": t.significant})
        return out


def _mlflow(cfg: ExperimentConfig, results: dict[str, Any], out: Path | None,
            notes: list[str]) -> None:
    """Log params, metrics and the output files to MLflow when asked and importable."""
    if not cfg.mlflow.enabled:
        return
    try:
        import mlflow  # type: ignore[import-not-found]
    except ImportError:
        notes.append("[mlflow] enabled but mlflow is not importable; nothing was logged")
        return
    if cfg.mlflow.tracking_uri:
        mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    mlflow.set_experiment(cfg.mlflow.experiment or cfg.experiment.name)
    with mlflow.start_run(run_name=cfg.experiment.name):
        mlflow.log_params({"data": results["data"]["label"],
                           "synthetic": results["data"]["synthetic"],
                           "split": results["split"].get("method")})
        for r in results["results"]:
            if r["status"] != "ok":
                continue
            prefix = _slug(r["label"])
            vals: dict[str, float] = {}
            for part in ("rating", "ranking"):
                block = r[part] or {}
                src = block.get("metrics", block) if part == "ranking" else block
                for k, v in src.items():
                    if isinstance(v, int | float) and not isinstance(v, bool) \
                            and math.isfinite(v):
                        vals[f"{prefix}.{_slug(k.replace('@', '_at_'))}"] = float(v)
            mlflow.log_metrics(vals)
        if out is not None:
            mlflow.log_artifacts(str(out))


def run_experiment(
    config: ExperimentConfig | str | Path,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    console: Any = None,
) -> dict[str, Any]:
    """Run an experiment (a parsed config or a TOML path); return the results dict.

    With ``out`` the results are written to ``out/results.json`` and, unless
    ``[report] html = false``, ``out/report.html``. ``progress`` shows a rich
    progress bar on ``console`` (stderr by default).
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    started = time.time()
    t_start = time.perf_counter()
    config_file = None
    if not isinstance(config, ExperimentConfig):
        config_file = str(Path(config).resolve())
        config = load_config(config)
    cfg = config
    con = console or Console(stderr=True)

    def say(msg: str) -> None:
        if progress or console is not None:
            con.print(msg)

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    base_dir = Path(config_file).parent if config_file else None
    loaded: LoadedData = load_data(cfg.data, base_dir, say)
    timings["load_data"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    parts = make_parts(cfg.split, loaded.dataset)
    timings["split"] = time.perf_counter() - t0
    say(f"data: [bold]{loaded.label}[/] ({len(loaded.dataset.interactions):,} interactions); "
        f"split: {parts.info.get('method')} {parts.info.get('sizes')}")

    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    runner = _Runner(cfg, say)
    for j, m in enumerate(cfg.models):
        _arms(m, parts, j)  # arms without a staged split: fail before fitting anything
    runner.check_finetune(parts)
    steps = sum(len(_arms(m, parts, j)) + (1 if "finetune" in _arms(m, parts, j)
                                            and "pretrain" not in _arms(m, parts, j) else 0)
                for j, m in enumerate(cfg.models))
    bar = Progress(TextColumn("[bold blue]{task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                   console=con, transient=False) if progress else None
    t0 = time.perf_counter()
    with bar if bar is not None else nullcontext():
        task = bar.add_task("starting", total=steps) if bar is not None else None
        state = {"first": True}

        def advance(label: str) -> None:
            if bar is not None and task is not None:
                bar.update(task, description=label, advance=0 if state["first"] else 1)
                state["first"] = False

        for j, m in enumerate(cfg.models):
            runner.run_model(j, m, parts, loaded.dataset.item_features, advance, out_dir)
        if bar is not None and task is not None:
            bar.update(task, completed=steps, description="done")
    timings["models"] = time.perf_counter() - t0
    tests = runner.paired_tests(parts.staged)

    data_desc = loaded.describe()
    results: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "experiment": {"name": cfg.experiment.name, "description": cfg.experiment.description,
                       "title": cfg.report.title or cfg.experiment.name,
                       "config": cfg.model_dump(mode="json", by_alias=True)},
        "data": data_desc,
        "split": parts.info,
        "metrics_config": {"k": runner.ks, "relevance_threshold": runner.thr,
                           "n_boot": cfg.metrics.n_boot, "exclude": cfg.metrics.exclude,
                           "ranking": list(cfg.metrics.ranking),
                           "rating": list(cfg.metrics.rating)},
        "results": runner.results,
        "catalogue_share": runner.catalogue_share,
        "paired_tests": tests,
        "notes": runner.notes,
    }
    if loaded.synthetic:
        results["notes"].insert(0, "SYNTHETIC DATA: these numbers come from rectune's "
                                   "MovieLens-shaped generator, not from real users.")
    seeds = {"experiment": cfg.experiment.seed, "split": cfg.split.seed,
             "synthetic": cfg.data.synthetic_seed,
             "models": {m.name: m.params.get("random_state") for m in cfg.models}}
    timings["total"] = time.perf_counter() - t_start
    # the timings dict is shared: the report's time lands in results.json too
    results["manifest"] = manifest(seeds=seeds, data=data_desc["checksums"], timings=timings,
                                   config_file=config_file, started=started)
    if out_dir is not None and cfg.report.html:
        from rectune.evaluate.report import render_report

        t0 = time.perf_counter()
        (out_dir / "report.html").write_text(render_report(results), encoding="utf-8")
        timings["report"] = time.perf_counter() - t0
    if out_dir is not None:
        (out_dir / "results.json").write_text(json.dumps(_clean(results), indent=1),
                                              encoding="utf-8")
    _mlflow(cfg, results, out_dir, results["notes"])
    return results


def _clean(x: Any) -> Any:
    """JSON-safe copy: NaN/inf become null, numpy scalars plain numbers."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
