"""Hyper-parameter search: grid, random and Optuna TPE, scored on data carved from train.

The test split never enters: :func:`tune` receives training data only and scores
each trial on a validation slice of it (PROTOCOLS.md: 10% of the training rows,
``default_rng(1)``; :func:`rectune.data.protocols.validation_slice`) or by k-fold
cross-validation *within* the training data. Pick the best parameters here, refit
on the whole training set, and only then look at the test split, once.

Search spaces map a hyper-parameter name to

* a list — categorical choices (the only kind a grid accepts), e.g. ``[16, 32, 64]``;
* a dict ``{"low": a, "high": b, "log": bool, "type": "int" | "float", "step": s}`` —
  a range, sampled uniformly (log-uniformly with ``log``), or enumerated by a grid
  when it is an int range or has a ``step``.

:func:`parse_space` reads the command-line form ``name=v1,v2,v3`` (choices) or
``name=low:high[:log][:int]`` (a range).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from rectune._errors import DataError, RectuneError
from rectune.data.interactions import Interactions

__all__ = ["TuneResult", "parse_space", "parse_value", "tune"]

Method = Literal["grid", "random", "tpe"]
Validation = Literal["holdout", "cv"]
_LOWER_IS_BETTER = ("rmse", "mae")


@dataclass(eq=False)
class TuneResult:
    """Best parameters, its validation score, and one row per trial."""

    best_params: dict[str, Any]
    best_score: float
    metric: str
    direction: str
    method: str
    validation: str
    trials: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        trials = self.trials.astype(object).where(self.trials.notna(), None)
        return {"best_params": self.best_params, "best_score": self.best_score,
                "metric": self.metric, "direction": self.direction, "method": self.method,
                "validation": self.validation, "trials": trials.to_dict(orient="records")}


def parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"0.1"`` -> 0.1, ``"true"`` -> True, ``"none"`` -> None, else the string."""
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            continue
    return t


def parse_space(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``name=v1,v2`` (choices) and ``name=low:high[:log][:int]`` (ranges)."""
    space: dict[str, Any] = {}
    for item in items:
        name, sep, rhs = item.partition("=")
        if not sep or not name.strip() or not rhs.strip():
            raise DataError(f"search space entry {item!r}: expected name=v1,v2 or "
                            "name=low:high[:log][:int]")
        name = name.strip()
        if ":" in rhs:
            parts = rhs.split(":")
            flags = {p.strip().lower() for p in parts[2:]}
            bad = flags - {"log", "int", "float"}
            if len(parts) < 2 or bad:
                raise DataError(f"search space entry {item!r}: a range is low:high, then "
                                "optional :log and :int flags")
            lo, hi = parse_value(parts[0]), parse_value(parts[1])
            space[name] = {"low": lo, "high": hi, "log": "log" in flags,
                           "type": "int" if "int" in flags else "float"}
        else:
            space[name] = [parse_value(v) for v in rhs.split(",")]
    return space


def _check_space(space: Mapping[str, Any]) -> dict[str, Any]:
    if not space:
        raise DataError("the search space is empty")
    out: dict[str, Any] = {}
    for name, spec in space.items():
        if isinstance(spec, list | tuple):
            if not spec:
                raise DataError(f"search space {name!r}: empty list of choices")
            out[name] = list(spec)
        elif isinstance(spec, Mapping):
            extra = set(spec) - {"low", "high", "log", "type", "step"}
            if extra or "low" not in spec or "high" not in spec:
                raise DataError(f"search space {name!r}: a range needs low and high (and "
                                f"optional log, type, step); got {sorted(spec)}")
            lo, hi = spec["low"], spec["high"]
            kind = spec.get("type") or ("int" if isinstance(lo, int) and isinstance(hi, int)
                                        and not spec.get("log") else "float")
            if kind not in ("int", "float"):
                raise DataError(f"search space {name!r}: type must be 'int' or 'float'")
            if not (isinstance(lo, int | float) and isinstance(hi, int | float) and lo < hi):
                raise DataError(f"search space {name!r}: need numbers low < high, got "
                                f"{lo!r}, {hi!r}")
            if spec.get("log") and lo <= 0:
                raise DataError(f"search space {name!r}: a log range needs low > 0")
            out[name] = {"low": lo, "high": hi, "log": bool(spec.get("log", False)),
                         "type": kind, "step": spec.get("step")}
        else:
            raise DataError(f"search space {name!r}: expected a list of choices or a range "
                            f"dict, got {type(spec).__name__}")
    return out


def _grid_values(name: str, spec: Any) -> list[Any]:
    if isinstance(spec, list):
        return spec
    if spec["log"]:
        raise DataError(f"grid search cannot enumerate the log range {name!r}; give a list")
    if spec["type"] == "int":
        return list(range(int(spec["low"]), int(spec["high"]) + 1, int(spec["step"] or 1)))
    if spec["step"]:
        n = math.floor((spec["high"] - spec["low"]) / spec["step"] + 1e-9)
        return [spec["low"] + j * spec["step"] for j in range(n + 1)]
    raise DataError(f"grid search cannot enumerate the continuous range {name!r}; give a "
                    "list or a step")


def _sample(spec: Any, rng: np.random.Generator) -> Any:
    if isinstance(spec, list):
        v = spec[int(rng.integers(len(spec)))]
        return v.item() if isinstance(v, np.generic) else v
    lo, hi = float(spec["low"]), float(spec["high"])
    x = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if spec["log"] \
        else float(rng.uniform(lo, hi))
    if spec["type"] == "int":
        return int(min(max(round(x), spec["low"]), spec["high"]))
    return x


def _suggest(trial: Any, name: str, spec: Any) -> Any:
    if isinstance(spec, list):
        return trial.suggest_categorical(name, spec)
    if spec["type"] == "int":
        return trial.suggest_int(name, int(spec["low"]), int(spec["high"]),
                                 step=int(spec["step"] or 1), log=spec["log"])
    return trial.suggest_float(name, float(spec["low"]), float(spec["high"]),
                               step=spec["step"], log=spec["log"])


def _direction(metric: str) -> Literal["minimize", "maximize"]:
    return "minimize" if metric.split("@")[0] in _LOWER_IS_BETTER else "maximize"


def _scorer(
    cls: type, fixed: Mapping[str, Any], metric: str, folds: list[tuple[Interactions,
                                                                         Interactions]],
    relevance_threshold: float | None,
) -> Callable[[dict[str, Any]], float]:
    """Mean validation score of one parameter set over the folds."""
    from rectune.evaluate.evaluator import evaluate_ranking, evaluate_ratings
    from rectune.evaluate.protocols import fit_data

    name, _, k = metric.partition("@")

    def score(params: dict[str, Any]) -> float:
        vals = []
        for fit_part, valid in folds:
            model = cls(**{**fixed, **params})
            model.fit(fit_data(model, fit_part, relevance_threshold))
            if name in _LOWER_IS_BETTER:
                vals.append(float(evaluate_ratings(model, valid, n_boot=10)[name]))
            else:
                thr = relevance_threshold if valid.kind == "explicit" else None
                res = evaluate_ranking(model, fit_part, valid, int(k or 10), [name],
                                       relevance_threshold=thr, beyond=False, n_boot=10)
                vals.append(res.metrics[f"{name}@{int(k or 10)}"])
        return float(np.mean(vals))

    return score


def tune(
    model_class: type | str,
    train: Interactions,
    space: Mapping[str, Any],
    *,
    method: Method = "tpe",
    n_trials: int = 20,
    metric: str = "rmse",
    fixed: Mapping[str, Any] | None = None,
    validation: Validation = "holdout",
    valid_fraction: float = 0.1,
    seed: int = 1,
    cv_folds: int = 3,
    relevance_threshold: float | None = 4.0,
    timeout: float | None = None,
    on_trial: Callable[[int, dict[str, Any], float], None] | None = None,
) -> TuneResult:
    """Search ``space`` for the best hyper-parameters of ``model_class`` on ``train`` only.

    ``metric``: ``"rmse"``/``"mae"`` (minimised) or a ranking metric at a cut-off,
    e.g. ``"ndcg@10"`` (maximised; relevant = validation rows ``>=
    relevance_threshold``). ``validation="holdout"`` scores on a ``valid_fraction``
    slice of ``train`` drawn with ``default_rng(seed)`` (PROTOCOLS.md: 10%, seed 1);
    ``"cv"`` averages ``cv_folds`` folds of ``train``. ``method``: ``"grid"`` (every
    combination; ``n_trials`` is ignored), ``"random"`` or ``"tpe"`` (Optuna's
    Tree-structured Parzen Estimator, seeded). A trial whose parameters the model
    rejects is recorded as failed and the search goes on.
    """
    from rectune.data.protocols import validation_slice
    from rectune.data.split import kfold
    from rectune.experiment.config import resolve_model_class

    cls: Any = resolve_model_class(model_class) if isinstance(model_class, str) else model_class
    sp = _check_space(space)
    fixed = dict(fixed or {})
    if method not in ("grid", "random", "tpe"):
        raise DataError(f"method must be 'grid', 'random' or 'tpe', not {method!r}")
    name = metric.partition("@")[0]
    if name not in (*_LOWER_IS_BETTER, "precision", "recall", "ndcg", "map", "mrr", "hit_rate"):
        raise DataError(f"unknown metric {metric!r}: use rmse, mae or e.g. ndcg@10")
    rating_model = cls.predicts_ratings
    if isinstance(rating_model, property):  # decided per instance (neural models: by loss)
        try:
            rating_model = cls(**fixed).predicts_ratings
        except TypeError:
            rating_model = True  # let the trials report a bad parameter
    if name in _LOWER_IS_BETTER and not rating_model:
        raise DataError(f"{cls.__name__} is a ranking model; tune it on a ranking metric "
                        "such as ndcg@10")
    if isinstance(n_trials, bool) or n_trials < 1:
        raise DataError(f"n_trials must be a positive integer, got {n_trials!r}")
    if validation == "holdout":
        vs = validation_slice(train, valid_fraction, seed=seed)
        folds = [(vs.train, vs.test)]
        vdesc = f"holdout {valid_fraction:g} of train (seed {seed})"
    elif validation == "cv":
        folds = [(f.train, f.test) for f in kfold(train, cv_folds, seed=seed)]
        vdesc = f"{cv_folds}-fold CV on train (seed {seed})"
    else:
        raise DataError(f"validation must be 'holdout' or 'cv', not {validation!r}")
    score = _scorer(cls, fixed, metric, folds, relevance_threshold)
    direction = _direction(metric)
    rows: list[dict[str, Any]] = []

    def run_trial(params: dict[str, Any]) -> float:
        t0 = time.perf_counter()
        try:
            val, status = score(params), "ok"
        except (RectuneError, ValueError, TypeError) as exc:
            val, status = float("nan"), f"failed: {exc}"
        rows.append({"trial": len(rows), **params, "score": val,
                     "seconds": time.perf_counter() - t0, "status": status})
        if on_trial is not None:
            on_trial(len(rows) - 1, params, val)
        return val

    t_start = time.perf_counter()
    if method == "grid":
        names = list(sp)
        for combo in itertools.product(*(_grid_values(n, sp[n]) for n in names)):
            run_trial(dict(zip(names, combo, strict=True)))
    elif method == "random":
        rng = np.random.default_rng(seed)
        for _ in range(n_trials):
            if timeout is not None and time.perf_counter() - t_start > timeout:
                break
            run_trial({n: _sample(s, rng) for n, s in sp.items()})
    else:
        try:
            import optuna
        except ImportError:
            raise RectuneError("method='tpe' needs optuna (pip install optuna); or use "
                               "method='random'") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction=direction,
                                    sampler=optuna.samplers.TPESampler(seed=seed))

        def objective(trial: Any) -> float:
            v = run_trial({n: _suggest(trial, n, s) for n, s in sp.items()})
            return v if math.isfinite(v) else (math.inf if direction == "minimize"
                                               else -math.inf)

        study.optimize(objective, n_trials=n_trials, timeout=timeout)
    trials = pd.DataFrame(rows)
    good = trials[np.isfinite(trials["score"].to_numpy(dtype=float))]
    if good.empty:
        raise RectuneError(f"every trial failed; first error: {rows[0]['status']}")
    best = good["score"].idxmin() if direction == "minimize" else good["score"].idxmax()
    best_params = {n: _plain(trials.loc[best, n]) for n in sp}
    return TuneResult(best_params, float(trials.loc[best, "score"]), metric, direction, method,
                      vdesc, trials)


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v
