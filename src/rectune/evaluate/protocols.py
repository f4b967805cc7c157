"""Protocol drivers: fit a fresh model on each training part and evaluate it on its test part.

The splits come from :mod:`rectune.data.split` (and the named presets of
:mod:`rectune.data.protocols`); this module only runs them, so every protocol —
k-fold, the predefined ``u1``..``u5`` folds, hold-out, temporal, cold-user — goes
through the same leak-checked evaluator (:mod:`rectune.evaluate.evaluator`).

``model_factory`` is a fitted-or-not model used as a template (it is cloned for
every fold, never refitted in place) or a zero-argument callable returning a new
model. Ranking-only models (``predicts_ratings = False``: ALS, BPR, EASE...) are
fitted on the positives (``value >= positive_threshold``) of explicit data; rating
models on all ratings. Relevance for the ranking metrics is the same threshold.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from rectune._errors import DataError
from rectune.data.interactions import Interactions
from rectune.data.split import Split, TemporalSplit, cold_user_split, random_split, temporal_split
from rectune.evaluate.evaluator import EvalResult, evaluate_ranking, evaluate_ratings
from rectune.evaluate.ranking import PER_USER_METRICS, mean

if TYPE_CHECKING:
    from rectune.models.base import FitOptions, Recommender

__all__ = [
    "FoldResult",
    "ProtocolResult",
    "cold_user",
    "cross_validate",
    "evaluate_split",
    "fit_data",
    "holdout",
    "make_model",
    "summarize_known",
    "temporal",
]

Task = Literal["auto", "rating", "ranking", "both"]
ModelFactory = Any  # Recommender template or Callable[[], Recommender]


def make_model(model_factory: ModelFactory) -> Recommender:
    """A new, unfitted model from a template model or a zero-argument factory."""
    from rectune.models.base import Recommender

    if isinstance(model_factory, Recommender):
        return model_factory.clone()
    if callable(model_factory):
        m = model_factory()
        if not isinstance(m, Recommender):
            raise DataError(f"model_factory returned {type(m).__name__}, not a Recommender")
        return m
    raise DataError(f"model_factory must be a Recommender or a callable, got "
                    f"{type(model_factory).__name__}")


def fit_data(model: Recommender, train: Interactions,
             positive_threshold: float | None) -> Interactions:
    """What ``model`` is fitted on: positives for ranking-only models on explicit data."""
    if (not model.predicts_ratings and positive_threshold is not None
            and train.kind == "explicit"):
        pos = train.binarize(positive_threshold)
        if len(pos) == 0:
            raise DataError(f"no training rating >= {positive_threshold}: a ranking model has "
                            "no positive to learn from")
        return pos
    return train


@dataclass(eq=False)
class FoldResult:
    """One fit + evaluation: rating metrics (dict) and/or a ranking :class:`EvalResult`."""

    name: str
    rating: dict[str, Any] | None
    ranking: EvalResult | None
    fit_seconds: float
    eval_seconds: float
    n_train: int
    n_test: int
    info: dict[str, Any] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """Every headline number of this fold, flat: ``rmse``, ``ndcg@10``, ``coverage@10``..."""
        out: dict[str, float] = {}
        if self.rating is not None:
            out.update({m: float(self.rating[m]) for m in ("rmse", "mae")})
        if self.ranking is not None:
            out.update(self.ranking.metrics)
        return out

    def to_dict(self, *, per_user: bool = False) -> dict[str, Any]:
        rating = None if self.rating is None else {
            k: v for k, v in self.rating.items() if not isinstance(v, np.ndarray)}
        return {
            "name": self.name, "rating": rating,
            "ranking": None if self.ranking is None else self.ranking.to_dict(per_user=per_user),
            "fit_seconds": self.fit_seconds, "eval_seconds": self.eval_seconds,
            "n_train": self.n_train, "n_test": self.n_test, "info": _jsonable(self.info),
        }


@dataclass(eq=False)
class ProtocolResult:
    """All folds of one protocol, with the mean and standard deviation across folds."""

    protocol: str
    model: str
    folds: list[FoldResult]

    def table(self) -> pd.DataFrame:
        """One row per fold, one column per headline metric."""
        return pd.DataFrame([f.scalars() for f in self.folds],
                            index=[f.name for f in self.folds])

    def summary(self) -> dict[str, dict[str, float]]:
        """``{metric: {"mean": .., "std": .. (ddof=1, 0 for one fold), "n_folds": ..}}``."""
        t = self.table()
        return {c: {"mean": float(t[c].mean()),
                    "std": float(t[c].std(ddof=1)) if len(t) > 1 else 0.0,
                    "n_folds": len(t)} for c in t.columns}

    def to_dict(self, *, per_user: bool = False) -> dict[str, Any]:
        return {"protocol": self.protocol, "model": self.model, "summary": self.summary(),
                "folds": [f.to_dict(per_user=per_user) for f in self.folds]}


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist() if x.size <= 64 else f"<array of {x.size}>"
    if isinstance(x, np.generic):
        return x.item()
    return x


def evaluate_split(
    model_factory: ModelFactory,
    train: Interactions,
    test: Interactions,
    *,
    name: str = "holdout",
    task: Task = "auto",
    k: int | Sequence[int] = 10,
    metrics: Sequence[str] = PER_USER_METRICS,
    positive_threshold: float | None = 4.0,
    item_features: pd.DataFrame | None = None,
    exclude: Interactions | Literal["train"] | None = "train",
    options: FitOptions | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> FoldResult:
    """Fit a fresh model on ``train`` and evaluate it on ``test``.

    ``task="auto"``: rating metrics when the model predicts ratings and the test
    data is explicit, ranking metrics always (a rating model ranks by its
    predicted rating). Relevance threshold = ``positive_threshold`` on explicit
    test data (all test rows are relevant on implicit data).
    """
    model = make_model(model_factory)
    data = fit_data(model, train, positive_threshold)
    t0 = time.perf_counter()
    model.fit(data, options=options)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    do_rating = task in ("rating", "both") or (
        task == "auto" and model.predicts_ratings and test.kind == "explicit")
    do_ranking = task in ("ranking", "both", "auto")
    rating = evaluate_ratings(model, test, train=train, n_boot=n_boot, seed=seed,
                              return_errors=True) if do_rating else None
    ranking = None
    if do_ranking:
        thr = positive_threshold if test.kind == "explicit" else None
        ranking = evaluate_ranking(model, train, test, k, metrics, exclude,
                                   relevance_threshold=thr, item_features=item_features,
                                   n_boot=n_boot, seed=seed)
    return FoldResult(name, rating, ranking, fit_s, time.perf_counter() - t0, len(data),
                      len(test))


def _model_name(model_factory: ModelFactory) -> str:
    from rectune.models.base import Recommender

    if isinstance(model_factory, Recommender):
        return repr(model_factory)
    return getattr(model_factory, "__name__", type(model_factory).__name__)


def cross_validate(
    model_factory: ModelFactory,
    folds: Sequence[Split | tuple[Interactions, Interactions]],
    **kwargs: Any,
) -> ProtocolResult:
    """Evaluate on every fold (k-fold from :func:`~rectune.data.split.kfold`, or the shipped
    ``u1``..``u5`` from :func:`~rectune.data.split.predefined_folds`); mean ± std across folds.

    Keyword arguments go to :func:`evaluate_split`.
    """
    if len(folds) == 0:
        raise DataError("cross_validate needs at least one fold")
    out = []
    for j, f in enumerate(folds):
        tr, te = f
        info = getattr(f, "info", {})
        name = str(info.get("fold", j))
        name = name if name.startswith("u") else f"fold {name}"
        out.append(evaluate_split(model_factory, tr, te, name=name, **kwargs))
    return ProtocolResult("cross_validation", _model_name(model_factory), out)


def holdout(
    model_factory: ModelFactory,
    data: Interactions | Split,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    **kwargs: Any,
) -> ProtocolResult:
    """Random hold-out of rows (or a given :class:`Split`), one fit, one evaluation."""
    split = data if isinstance(data, Split) else random_split(data, test_fraction, seed=seed)
    res = evaluate_split(model_factory, split.train, split.test, name="holdout", **kwargs)
    return ProtocolResult("holdout", _model_name(model_factory), [res])


def temporal(
    model_factory: ModelFactory,
    data: Interactions | TemporalSplit,
    *,
    train_fraction: float = 0.7,
    new_fraction: float = 0.15,
    **kwargs: Any,
) -> ProtocolResult:
    """Train on everything before the test period (pre-train + new), test on the newest rows.

    Two results: ``"pretrain only"`` (the stale model, fitted on the oldest slice)
    and ``"pretrain+new"`` (retrained on all past data). The ranking filter is all
    past data in both, so they are ranked over the same candidates. Each fold's
    ``info`` holds ``returning_fraction`` and, for ranking, the metrics of
    returning vs new test users (``by_group``).
    """
    ts = data if isinstance(data, TemporalSplit) else temporal_split(
        data, train_fraction=train_fraction, new_fraction=new_fraction)
    past = ts.to_split(new_as="train").train if len(ts.new) else ts.pretrain
    kwargs.setdefault("exclude", past)
    folds = []
    parts: list[tuple[str, Interactions]] = [("pretrain only", ts.pretrain)]
    if len(ts.new):
        parts.append(("pretrain+new", past))
    for name, tr in parts:
        r = evaluate_split(model_factory, tr, ts.test, name=name, **kwargs)
        r.info["returning_fraction"] = float(ts.info.get("returning_fraction", np.nan))
        folds.append(r)
    return ProtocolResult("temporal", _model_name(model_factory), folds)


def cold_user(
    model_factory: ModelFactory,
    data: Interactions,
    *,
    ks: Sequence[int] = (0, 1, 3, 5),
    cold_fraction: float = 0.2,
    query_start: int | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> ProtocolResult:
    """K-shot cold users: each cold user keeps K training ratings; the query set is fixed.

    ``query_start`` defaults to ``max(ks)`` so every K is tested on the same rows
    (PROTOCOLS.md: ratings 6 onward with K up to 5). One fold per K, named ``K=…``.
    """
    ks = sorted({int(x) for x in ks})
    if not ks or ks[0] < 0:
        raise DataError(f"ks must be non-negative integers, got {ks!r}")
    qs = max(ks) if query_start is None else int(query_start)
    folds = []
    for kk in ks:
        split = cold_user_split(data, cold_fraction=cold_fraction, n_support=kk, seed=seed,
                                query_start=qs)
        r = evaluate_split(model_factory, split.train, split.test, name=f"K={kk}", **kwargs)
        r.info.update(n_cold_users=int(split.info["n_cold_users"]), k_shot=kk)
        folds.append(r)
    return ProtocolResult("cold_user", _model_name(model_factory), folds)


def summarize_known(folds: Sequence[FoldResult], metric: str) -> dict[str, float]:
    """Mean of one ranking metric over known and over unknown users, across folds."""
    known = [f.ranking.by_group["known_users"].get(metric, np.nan) for f in folds if f.ranking]
    unknown = [f.ranking.by_group["unknown_users"].get(metric, np.nan)
               for f in folds if f.ranking]
    return {"known_users": mean(known), "unknown_users": mean(unknown)}

