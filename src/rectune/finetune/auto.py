"""``auto(pretrained, new_data, budget_s=...)``: choose how to use a pre-trained model, or not.

Transfer does not always help: when users behave differently in the two domains
(a review set whose categories share users whose mean ratings correlate at 0.13),
fine-tuning the source model is worse than training on the target alone, at every
target size. So :func:`auto` treats "train from scratch" as one candidate among the
transfer strategies and picks on a validation slice of the *new* data only:

* **scratch** — a clone of the pre-trained model's class and hyper-parameters (or
  the overrides of ``scratch_grid``) fitted on the fit part of the new data;
* **plain fine-tuning** over the family's knob (learning-rate factor for SGD
  models, the decay of old events for KNN models);
* **L2-SP** with λ over a grid; **frozen groups** (items fixed / users fixed);
  **new rows only** (old rows pinned by a λ so large they do not move);
* **what to transfer**: biases only, factors only (both = plain fine-tuning);
* **replay** of old data (when ``old_data`` is given).

Stage two (everything after plain fine-tuning) reuses the knob plain fine-tuning
chose, so the grid stays linear in its parts. Candidates a family cannot run are
recorded ``n/a (unsupported)`` (:func:`rectune.finetune.supports`); once the
measured cost of the candidates so far says the next one would overrun
``budget_s``, it and the rest are recorded ``skipped (budget)``. Scratch always
runs first: it is the fallback the guard needs.

**Validation.** 10% of the new rows (seed 1; ``valid_mode="temporal"``: the newest
10%), PROTOCOLS.md's slice. Families that train in epochs early-stop on that slice
(the engine carves the same rows, checked), families that do not are given the fit
part only; scratch early-stops on it when its hyper-parameters ask for early
stopping. The metric is RMSE for rating models and NDCG@10 for ranking models,
kept per validation user so candidates can be compared paired.

**Negative-transfer guard.** A transfer candidate is kept only if it beats scratch
beyond validation noise: in a paired bootstrap over validation users (all of a
user's rows resampled together) of its score minus scratch's, the one-sided 95%
bound must lie on its side of 0 (the question is one-sided: "is transfer better?").
The result is the best such candidate; if there is none, the scratch model, and the
report says so in plain words. With small new data (a slice under 1,000 rows) every
candidate is scored out of fold by 5-fold cross-validation over *all* new rows,
repeated over 3 fold assignments, so the guard has the power to see a real gain
instead of a handful of rows.

**Final model.** With a validation slice, not refitted: the returned model is the
chosen candidate exactly as trained on the fit part (the new data minus the slice),
so its reported validation score is the score of the returned model; the 10% it did
not train on is the price of an honest choice. In cross-validation mode no single
held-out model exists, so the chosen strategy is refitted on all new data.
``report["refit"]`` records which.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from rectune._errors import DataError, RectuneError
from rectune.data.interactions import Interactions
from rectune.finetune.capabilities import supports
from rectune.finetune.config import FinetuneConfig
from rectune.finetune.diagnose import transferability
from rectune.finetune.engine import _handler_for, finetune
from rectune.models.base import Recommender

__all__ = ["AutoResult", "Candidate", "apply_choice", "auto", "auto_pooled", "decide",
           "decide_pooled", "paired_user_bootstrap"]

SKIPPED_BUDGET = "skipped (budget)"
UNSUPPORTED = "n/a (unsupported)"
K = 10
_CHUNK = 1 << 22
#: below either, a validation slice is too small for the guard: validate out of fold
CV_BELOW_ROWS, CV_BELOW_USERS = 1000, 200


@dataclass(eq=False)
class Candidate:
    """One strategy tried by :func:`auto`: its settings, validation score and cost."""

    name: str
    kind: Literal["scratch", "transfer"]
    config: dict[str, Any]
    stage: int = 1
    extra: bool = False  # beyond plain / L2-SP / freezing: must beat those to be chosen
    status: str = "pending"
    score: float | None = None
    cost_s: float | None = None
    vs_scratch: dict[str, Any] | None = None
    model: Recommender | None = None
    values: np.ndarray | None = None  # per-user sums (rating: squared errors) or values
    counts: np.ndarray | None = None  # per-user rows (rating) or ones (ranking)
    fold_epochs: list[int | None] = field(default_factory=list)  # where each fold stopped

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "stage": self.stage,
                               "extra": self.extra, "config": self.config,
                               "status": self.status,
                               "valid_score": self.score, "cost_s": self.cost_s}
        if self.vs_scratch is not None:
            out["vs_scratch"] = self.vs_scratch
        if any(e is not None for e in self.fold_epochs):
            out["fold_epochs"] = list(self.fold_epochs)
        return out


@dataclass(eq=False)
class AutoResult:
    """The chosen model and the report of the choice (also in ``model.meta_["auto"]``)."""

    model: Recommender
    report: dict[str, Any]
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def choice(self) -> str:
        return str(self.report["choice"])

    def summary(self) -> str:
        """The decision in plain words, then one line per candidate."""
        metric = self.report["metric"]
        lines = [self.report["reason"], f"transferability: {self.report['diagnostic']['summary']}",
                 f"candidates (validation {metric}, cost):"]
        for c in self.candidates:
            score = "" if c.score is None else f"{c.score:.4f}"
            cost = "" if c.cost_s is None else f"{c.cost_s:.2f} s"
            mark = "*" if c.name == self.choice else " "
            lines.append(f" {mark} {c.name:<32} {c.status:<18} {score:>8} {cost:>9}")
        return "\n".join(lines)


# ------------------------------------------------------------------ statistics
def paired_user_bootstrap(
    sum_a: np.ndarray, sum_b: np.ndarray, counts: np.ndarray, *, how: Literal["rmse", "mean"],
    n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
) -> dict[str, Any]:
    """Aggregate(A) − aggregate(B) with a percentile interval from resampling users.

    ``sum_a[u]``/``sum_b[u]``: per-user sums of squared errors (``how="rmse"``:
    aggregate = √(Σ sums / Σ counts)) or per-user values with ``counts = 1``
    (``how="mean"``). Both arms are scored on the same resample (paired);
    replicates are drawn in blocks, never one row at a time.
    """
    n_users = len(counts)
    if n_users < 2:
        raise DataError(f"a paired bootstrap needs at least 2 validation users, got {n_users}")

    def agg(sa: np.ndarray, nn: np.ndarray) -> np.ndarray:
        m = sa / np.maximum(nn, 1)
        return np.sqrt(m) if how == "rmse" else m

    tot = np.array([counts.sum()])
    point = float(agg(np.array([sum_a.sum()]), tot)[0] - agg(np.array([sum_b.sum()]), tot)[0])
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    step = max(1, _CHUNK // n_users)
    for lo in range(0, n_boot, step):
        hi = min(n_boot, lo + step)
        idx = rng.integers(0, n_users, size=(hi - lo, n_users))
        nn = counts[idx].sum(axis=1)
        diffs[lo:hi] = agg(sum_a[idx].sum(axis=1), nn) - agg(sum_b[idx].sum(axis=1), nn)
    ci_lo, ci_hi, one_lo, one_hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2, alpha,
                                                       1 - alpha])
    return {"delta": point, "ci": [float(ci_lo), float(ci_hi)], "n_users": int(n_users),
            "n_boot": int(n_boot), "level": 1 - alpha,
            "one_sided": {"lower": float(one_lo), "upper": float(one_hi)},
            "resampling": "validation users (paired bootstrap)"}


# ------------------------------------------------------------------ validation
@dataclass(eq=False)
class _Scorer:
    """Per-user validation values of any model on the validation slice."""

    valid: Interactions
    history: Interactions | None
    rating: bool
    users_raw: np.ndarray = field(init=False)
    items_raw: np.ndarray = field(init=False)
    uids: np.ndarray = field(init=False)
    inv: np.ndarray = field(init=False)
    n_users: int = field(init=False)

    def __post_init__(self) -> None:
        self.users_raw = self.valid.user_map.decode(self.valid.user)
        self.items_raw = self.valid.item_map.decode(self.valid.item)
        self.uids, self.inv = np.unique(self.valid.user, return_inverse=True)
        self.n_users = len(self.uids)

    @property
    def metric(self) -> str:
        return "rmse" if self.rating else f"ndcg@{K}"

    def __call__(self, model: Recommender) -> tuple[float, np.ndarray, np.ndarray]:
        """(score, per-user sums, per-user counts)."""
        if self.rating:
            pred = model.predict(self.users_raw, self.items_raw)
            sq = (self.valid.value.astype(np.float64) - pred) ** 2
            sums = np.bincount(self.inv, weights=sq, minlength=self.n_users)
            counts = np.bincount(self.inv, minlength=self.n_users).astype(np.float64)
            return float(np.sqrt(sq.mean())), sums, counts
        from rectune.evaluate.evaluator import evaluate_ranking

        assert self.history is not None
        r = evaluate_ranking(model, self.history, self.valid, k=K, metrics=("ndcg",),
                             beyond=False, n_boot=1)
        vals = np.nan_to_num(np.asarray(r.per_user[f"ndcg@{K}"], dtype=np.float64))
        return float(vals.mean()), vals, np.ones(len(vals))


# ------------------------------------------------------------------ candidates
def _has_learning_rate(model: Recommender) -> bool:
    return any(p == "learning_rate" or p.startswith("lr_") for p in model.get_params())


def _pin_lambda(model: Recommender, base: Mapping[str, Any]) -> float:
    """An L2-SP λ that pins old rows: stable for SGD (λ·lr = 0.5), exact-ish for solvers."""
    if not _has_learning_rate(model):
        return 1e6
    if base.get("learning_rate") is not None:
        return 0.5 / float(base["learning_rate"])
    lrs = [float(v) for k, v in model.get_params().items()
           if (k == "learning_rate" or k.startswith("lr_")) and isinstance(v, int | float)]
    return 0.5 / (max(lrs) * float(base.get("lr_factor", 0.3))) if lrs else 100.0


def _default_lambdas(model: Recommender) -> tuple[float, ...]:
    return (0.01, 0.1, 1.0) if _has_learning_rate(model) else (1.0, 10.0, 100.0, 1000.0)


def _label(prefix: str, cfg: Mapping[str, Any]) -> str:
    return prefix + ("" if not cfg else " (" + ", ".join(f"{k}={v}" for k, v in cfg.items()
                                                          if k != "verbose") + ")")


def _stage_one(model: Recommender, scratch_grid: Sequence[Mapping[str, Any]],
               plain_grid: Sequence[Mapping[str, Any]] | None, lr_factors: Sequence[float],
               decays: Sequence[float]) -> list[Candidate]:
    out = [Candidate(_label("scratch", g), "scratch", dict(g)) for g in scratch_grid]
    if not supports(model, "finetune"):
        return out
    if plain_grid is not None:
        out += [Candidate(_label("finetune", g), "transfer", dict(g)) for g in plain_grid]
    elif _has_learning_rate(model):
        out += [Candidate(f"finetune (lr x{f:g})", "transfer", {"lr_factor": float(f)})
                for f in lr_factors]
    elif hasattr(model, "update"):  # KNN: sufficient-statistics update, decay of old events
        out += [Candidate(f"finetune (decay {d:g})", "transfer", {"decay": float(d)})
                for d in decays]
    else:
        out.append(Candidate("finetune", "transfer", {}))
    return out


def _stage_two(model: Recommender, base: dict[str, Any], lambdas: Sequence[float],
               replay: Sequence[float], have_old: bool) -> list[Candidate]:
    groups = set(model.parameters())
    out: list[Candidate] = []

    def add(name: str, cfg: dict[str, Any], needs: tuple[str, ...],
            extra: bool = False) -> None:
        c = Candidate(name, "transfer", {**base, **cfg}, stage=2, extra=extra)
        if not all(supports(model, n) for n in needs):
            c.status = UNSUPPORTED
        out.append(c)

    for lam in lambdas:
        add(f"l2sp (lambda {lam:g})", {"l2sp": float(lam)}, ("l2sp",))
    users = {g for g in groups if g.startswith("user_")}
    items = {g for g in groups if g.startswith("item_")}
    if users and items:
        add("freeze item_* (users free)", {"freeze": ["item_*"]}, ("freeze",))
        add("freeze user_* (items free)", {"freeze": ["user_*"]}, ("freeze",))
    add("new rows only (old rows pinned)", {"l2sp": _pin_lambda(model, base)}, ("l2sp",),
        extra=True)
    if {"user_bias", "item_bias"} <= groups and {"user_factors", "item_factors"} <= groups:
        bias = sorted(g for g in groups if g.endswith("_bias"))
        add("transfer biases only", {"transfer": bias}, ("finetune",), extra=True)
        add("transfer factors only", {"transfer": ["user_factors", "item_factors"]},
            ("finetune",), extra=True)
    if have_old:
        for r in replay:
            add(f"replay {r:g}", {"replay": float(r)}, ("replay",), extra=True)
    return out


# ------------------------------------------------------------------ the search
def _carve(new: Interactions, mode: str, fraction: float, seed: int
           ) -> tuple[Interactions, Interactions]:
    from rectune.data.protocols import temporal_validation_slice, validation_slice

    if mode == "temporal":
        if new.timestamp is None:
            raise DataError("valid_mode='temporal' needs timestamps in new_data")
        s = temporal_validation_slice(new, fraction)
    else:
        s = validation_slice(new, fraction, seed=seed)
    if len(s.test) == 0 or len(s.train) == 0:
        raise DataError(f"auto: new_data has {len(new)} rows; a {fraction:g} validation slice "
                        "leaves nothing to fit or nothing to validate on")
    return s.train, s.test


def auto(
    pretrained: Recommender,
    new_data: Interactions,
    *,
    budget_s: float | None = None,
    old_data: Interactions | None = None,
    history: Interactions | None = None,
    valid: Interactions | None = None,
    valid_fraction: float = 0.1,
    valid_mode: Literal["random", "temporal"] = "random",
    valid_seed: int = 1,
    cv_folds: int = 5,
    cv_below_rows: int = CV_BELOW_ROWS,
    cv_below_users: int = CV_BELOW_USERS,
    cv_repeats: int = 3,
    temporal_origins: int = 10,
    scratch_grid: Sequence[Mapping[str, Any]] = ({},),
    plain_grid: Sequence[Mapping[str, Any]] | None = None,
    lr_factors: Sequence[float] = (0.3, 1.0),
    decays: Sequence[float] = (1.0, 0.7, 0.4),
    lambdas: Sequence[float] | None = None,
    replay: Sequence[float] = (0.5,),
    epochs: int = 30,
    stages: int = 2,
    stage_two_base: Mapping[str, Any] | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    diagnose: bool = True,
    progress: Callable[[str], None] | None = None,
) -> AutoResult:
    """Choose between training from scratch and transfer strategies on validation.

    Parameters
    ----------
    pretrained:
        A fitted rectune model (any family; not modified).
    new_data:
        The new task's interactions.
    budget_s:
        Wall-clock budget of the search in seconds (``None``: no limit). Scratch always
        runs; afterwards a candidate whose estimated cost (median of the finished ones
        of its kind) would overrun the budget is recorded ``skipped (budget)``, as is
        every later one.
    old_data:
        The pre-training data: enables replay candidates and the mean-rating part of
        the diagnostic.
    history:
        Ranking models only: extra interactions excluded from the validation
        candidates (e.g. the old positives); the fit part is always excluded.
    valid:
        A validation set carved by the caller (e.g. warm users playing cold ones, when
        K <= 5 ratings per user leave nothing to carve). Then every row of
        ``new_data`` is fitted and nothing early-stops (the engine cannot see this
        set): fine-tuning runs for the grid's fixed ``epochs``.
    valid_fraction, valid_mode, valid_seed:
        Otherwise, the validation slice of ``new_data`` (PROTOCOLS.md: 10%, seed 1, or
        the newest 10%).
    cv_folds, cv_below_rows, cv_below_users:
        Small new data: when a random slice would hold fewer than ``cv_below_rows``
        rows or ``cv_below_users`` users, every candidate is scored out of fold by
        ``cv_folds``-fold cross-validation over all new rows (seed ``valid_seed``), so
        the guard sees every row instead of a handful, and the chosen strategy is then
        refitted on all new data (``report["refit"]`` is True). ``cv_folds=1``
        disables it (and the rolling origins below).
    cv_repeats:
        Cross-validation is repeated over this many fold assignments (seeds
        ``valid_seed``, ``valid_seed + 1``, ...) and each row's squared error (each
        user's value) averaged over them. Which rows share a fold is itself noise; on
        a few hundred rows it hid real gains from the guard (ML-100K cross-domain at 1%:
        ΔRMSE −0.044 with one bound +0.003 in one assignment, −0.050 / −0.0045 averaged
        over three). The unit the guard resamples is still the user.
    temporal_origins:
        ``valid_mode="temporal"`` with a small newest slice (the same thresholds):
        rolling-origin validation. Origin ``o`` fits on everything older than its
        block and validates on the block, the newest ``valid_fraction`` of what the
        newer origins left (origin 0 is the usual newest slice); per-user errors are
        summed over the blocks. The newest 10% of a period often holds few users
        (synthetic temporal: 1,500 rows from 69 users), too few for the guard to see
        a real gain. Origins are added until the blocks together hold
        ``cv_below_users`` users and ``cv_below_rows`` rows (what a single slice
        needs not to count as small), at most ``temporal_origins`` of them; no block
        is ever validated on with a model that trained on its future. A fixed three
        origins (the rule before) stopped at 113 users on ML-100K, where one
        origin's disagreement then decided the guard. The returned model is origin
        0's (not refitted), as without origins.
    scratch_grid:
        Hyper-parameter overrides tried for scratch (default: the pre-trained model's).
    plain_grid:
        FinetuneConfig overrides of the plain fine-tuning candidates; default: the
        family's knob (``lr_factors`` for SGD families, ``decays`` for KNN).
    lambdas, replay, epochs:
        L2-SP λ grid (default 0.01/0.1/1 for SGD, 1..1000 for closed-form solvers),
        replay fractions, and the epoch cap of fine-tuning runs.
    stages, stage_two_base:
        Stage one tries scratch and plain fine-tuning; stage two (``stages=2``) builds
        L2-SP, freezing, new-rows-only, transfer-one-kind and replay candidates on a
        plain configuration: ``stage_two_base`` when given, else this run's best plain
        candidate. Runs whose evidence is pooled (:func:`auto_pooled`) must
        share that base, or same-named candidates would be different configurations.
    n_boot, alpha, seed:
        The guard's paired bootstrap over validation users; ``seed`` is also the
        fine-tuning runs' seed.
    diagnose:
        Compute the transferability diagnostic first (cheap; no training).

    Returns
    -------
    AutoResult
        ``model`` (the chosen candidate as trained on the fit part, not refitted) and
        ``report`` (plain data, also stored in ``model.meta_["auto"]``).
    """
    t_start = time.perf_counter()
    pretrained._check_fitted()
    if not isinstance(new_data, Interactions) or len(new_data) == 0:
        raise DataError("auto: new_data must be non-empty Interactions")
    if budget_s is not None and budget_s <= 0:
        raise RectuneError(f"budget_s must be > 0 seconds, got {budget_s}")
    if cv_repeats < 1:
        raise RectuneError(f"cv_repeats must be >= 1, got {cv_repeats}")
    if temporal_origins < 1:
        raise RectuneError(f"temporal_origins must be >= 1, got {temporal_origins}")
    if stages not in (1, 2):
        raise RectuneError(f"stages must be 1 or 2, got {stages}")
    say = progress or (lambda msg: None)
    rating = bool(pretrained.predicts_ratings)
    explicit_valid = valid is not None
    validates = bool(supports(pretrained, "finetune") and _handler_for(pretrained)[1])
    ft_base: dict[str, Any] = {"epochs": int(epochs), "seed": seed, "verbose": False}
    if valid is not None:
        if not isinstance(valid, Interactions) or len(valid) == 0:
            raise DataError("auto: valid must be non-empty Interactions")
        folds = [_Fold(new_data, valid, new_data, None, None)]
        ft_base["early_stopping"] = False
        mode = "given by the caller"
    else:
        ft_base.update(valid_fraction=valid_fraction, valid_mode=valid_mode,
                       valid_seed=valid_seed)
        fit, slice_ = _carve(new_data, valid_mode, valid_fraction, valid_seed)
        n_slice_users = len(np.unique(slice_.user))
        small = cv_folds > 1 and (len(slice_) < cv_below_rows
                                  or n_slice_users < cv_below_users)
        why = f"the slice would hold {len(slice_)} rows from {n_slice_users} users"
        if small and valid_mode == "random":
            folds = [f for r in range(cv_repeats)
                     for f in _cv_folds(new_data, cv_folds, valid_seed + r)]
            mode = (f"{cv_folds}-fold cross-validation" + (f", repeated {cv_repeats}×"
                    if cv_repeats > 1 else "") + f" ({why})")
        elif small and temporal_origins > 1:
            folds = _rolling_folds(new_data, valid_fraction, temporal_origins, validates,
                                   enough=(cv_below_users, cv_below_rows))
            mode = f"temporal, {len(folds)} rolling origins ({why})"
        else:
            folds = [_Fold(fit, slice_, new_data if validates else fit,
                           len(slice_) if validates else None, slice_)]
            mode = valid_mode
    cv = len(folds) > 1 and not folds[1].rolling  # rolling origins keep origin 0's model
    reps = cv_repeats if cv else 1  # every fold assignment scores each new row once
    for f in folds:
        f.scorer = _Scorer(f.valid, f.fit if history is None else
                           history.concat(f.fit, duplicates="last"), rating)
    metric = "rmse" if rating else f"ndcg@{K}"
    all_users = np.unique(np.concatenate([f.valid.user for f in folds]))
    if len(all_users) < 2:
        raise DataError("auto: the validation data hold fewer than 2 users; the guard's "
                        "paired bootstrap needs more new data")
    diag = (transferability(pretrained, new_data, old_data=old_data, fit=folds[0].fit,
                            valid=folds[0].valid)
            if diagnose else {"summary": "not computed (diagnose=False)"})

    def evaluate(c: Candidate) -> None:
        n_u = new_data.n_users
        sums, counts = np.zeros(n_u), np.zeros(n_u)
        for f in folds:
            if c.kind == "scratch":
                m = _run_scratch(pretrained, f.fit, f.scratch_valid, c.config,
                                 inner=cv, seed=valid_seed)
            else:
                m = _run_transfer(pretrained, f.engine_data, {**ft_base, **c.config},
                                  old_data)
                held = m.meta_["finetune"]["n_valid_rows"]
                if f.check_rows is not None and held != f.check_rows:
                    raise RectuneError(f"auto: the engine held out {held} validation rows, "
                                       f"expected {f.check_rows}: the slices differ")
            if cv:
                c.fold_epochs.append(_stopped_at(m, c.kind))
            assert f.scorer is not None
            _, s_f, n_f = f.scorer(m)
            sums[f.scorer.uids] += s_f
            counts[f.scorer.uids] += n_f
            if f is folds[0]:
                c.model = None if cv else m
        c.values, c.counts = sums[all_users], counts[all_users]
        c.score = _aggregate(c.values, c.counts, rating)

    cands = _stage_one(pretrained, scratch_grid, plain_grid, lr_factors, decays)
    spent: dict[str, list[float]] = {"scratch": [], "transfer": []}
    over = [False]

    def run(c: Candidate) -> None:
        if c.status != "pending":
            return
        if budget_s is not None and (c.kind == "transfer" or spent["scratch"]):
            done = spent[c.kind] or spent["scratch"] or spent["transfer"]
            est = float(np.median(done)) if done else 0.0
            if over[0] or time.perf_counter() - t_start + est > budget_s:
                over[0] = True
                c.status = SKIPPED_BUDGET
                return
        say(f"auto: {c.name}")
        t0 = time.perf_counter()
        try:
            evaluate(c)
            c.status = "ok"
        except RectuneError as exc:
            c.status = f"failed: {exc}"
        c.cost_s = time.perf_counter() - t0
        spent[c.kind].append(c.cost_s)

    for c in cands:
        run(c)
    plain = _best([c for c in cands if c.kind == "transfer"], rating)
    base: dict[str, Any] | None = None
    if supports(pretrained, "finetune") and stages == 2:
        base = (dict(stage_two_base) if stage_two_base is not None
                else dict(plain.config) if plain is not None else dict(cands[-1].config))
        stage2 = _stage_two(pretrained, base, lambdas if lambdas is not None
                            else _default_lambdas(pretrained), replay, old_data is not None)
        for c in stage2:
            run(c)
        cands += stage2
    report, chosen = decide(cands, metric=metric, lower_is_better=rating,
                            how="rmse" if rating else "mean", n_boot=n_boot, alpha=alpha,
                            seed=seed)
    refit_epochs = _refit_epochs(chosen.fold_epochs) if cv else None
    if cv:  # no single held-out model exists: refit the chosen strategy on all new data
        say(f"auto: refitting {chosen.name} on all new data")
        chosen.model = _refit(pretrained, new_data, chosen, ft_base, old_data, refit_epochs,
                              valid_seed)
    report.update(
        diagnostic=diag, budget_s=budget_s, elapsed_s=time.perf_counter() - t_start,
        valid={"mode": mode, "fraction": None if explicit_valid or cv else valid_fraction,
               "seed": None if explicit_valid else valid_seed,
               "n_rows": int(sum(len(f.valid) for f in folds)) // reps,
               "n_users": len(all_users), "n_folds": len(folds) // reps, "n_repeats": reps,
               "n_fit_rows": len(folds[0].fit)},
        refit=cv, refit_epochs=refit_epochs, stages=stages, stage_two_base=base,
        final_model=(
            f"the chosen strategy refitted on all new data for {refit_epochs} epochs, the "
            "median of where its folds early-stopped (cross-validation: each candidate was "
            "scored out of fold, so no single held-out model exists)"
            if cv and refit_epochs is not None else
            "the chosen strategy refitted on all new data (cross-validation: each candidate "
            "was scored out of fold, so no single held-out model exists)" if cv else
            "the chosen candidate as trained on new_data (the validation set was given "
            "apart); not refitted" if explicit_valid else
            "the chosen candidate as trained on the fit part (new data minus the validation "
            "slice); not refitted on all new data"),
        early_stopping=(
            "none: the validation set was given, so runs use fixed epochs" if explicit_valid
            else "inside each fold, on a 10% slice of the fold's training rows" if cv
            else "fine-tuning early-stops on the validation slice (the engine carves the same "
                 "rows)" if validates else
            "this family has no epochs: it is given the fit part only"),
        fixed={"epochs": int(epochs), "seed": seed},
        candidates=[c.to_dict() for c in cands])
    model = chosen.model
    assert model is not None
    meta = dict(getattr(model, "meta_", {}) or {})
    meta["auto"] = report
    model.meta_ = meta
    return AutoResult(model, report, cands)


@dataclass(eq=False)
class _Fold:
    """One (fit, validation) pair: what each candidate trains on and is scored on."""

    fit: Interactions
    valid: Interactions
    engine_data: Interactions  # what finetune() is given (the engine may carve its slice)
    check_rows: int | None  # the engine must hold out exactly this many rows (same slice)
    scratch_valid: Interactions | None  # early-stopping rows of scratch (None: none / inner)
    scorer: _Scorer | None = None
    rolling: bool = False  # a rolling-origin block (temporal), not a CV fold


def _rolling_folds(new: Interactions, fraction: float, origins: int, validates: bool,
                   enough: tuple[int, int] | None = None) -> list[_Fold]:
    """Origin 0: the newest ``fraction`` of ``new``; origin ``o``: the newest ``fraction``
    of the rows older than origin ``o - 1``'s block. Each fits on what is older than its
    block; the engine is given fit + block and carves the block itself (checked).
    At most ``origins``; with ``enough = (users, rows)``, no more once the blocks
    together hold that many distinct users and rows."""
    out: list[_Fold] = []
    rest = new
    users: set[int] = set()
    n_rows = 0
    for _ in range(origins):
        if len(rest) < 20:
            break
        fit, block = _carve(rest, "temporal", fraction, 0)
        out.append(_Fold(fit, block, rest if validates else fit,
                         len(block) if validates else None, block, rolling=True))
        rest = fit
        users.update(np.unique(block.user).tolist())
        n_rows += len(block)
        if enough is not None and len(users) >= enough[0] and n_rows >= enough[1]:
            break
    return out


def _cv_folds(new: Interactions, k: int, seed: int) -> list[_Fold]:
    """``k`` random folds of the new rows; candidates train on the other ``k - 1``."""
    perm = np.random.default_rng(seed).permutation(len(new))
    out = []
    for part in np.array_split(perm, k):
        mask = np.zeros(len(new), dtype=bool)
        mask[part] = True
        fit = new.take(np.flatnonzero(~mask))
        out.append(_Fold(fit, new.take(np.sort(part)), fit, None, None))
    return out


def _run_scratch(pretrained: Recommender, fit: Interactions, valid: Interactions | None,
                 cfg: Mapping[str, Any], *, inner: bool = False, seed: int = 1
                 ) -> Recommender:
    """A clone of the pre-trained model's class fitted on ``fit``.

    Early stopping (when its hyper-parameters ask for it) uses ``valid``; with
    ``inner`` it uses a 10% slice of ``fit`` instead (the rows the engine would carve),
    and with neither it is switched off.
    """
    from rectune.data.protocols import validation_slice

    m = pretrained.clone().set_params(**cfg)
    key = _patience_key(m)
    if key is None:
        return m.fit(fit)
    if valid is None and inner and len(fit) >= 10:
        s = validation_slice(fit, 0.1, seed=seed)
        fit, valid = s.train, s.test
    if valid is None:
        return m.set_params(**{key: None}).fit(fit)
    return m.fit(fit, valid=valid)


#: the early-stopping patience of each family: MF models and the neural models
_PATIENCE_KEYS = ("early_stopping_patience", "patience")


def _patience_key(model: Recommender) -> str | None:
    """The hyper-parameter that switches early stopping on, when it is on (else None).

    MF models call it ``early_stopping_patience``, the neural ones ``patience``; a
    scratch run that misses it trains every epoch without validation and overfits
    (NeuMF: 0.88 validation RMSE against 0.71 early-stopped on synthetic data).
    """
    params = model.get_params()
    return next((k for k in _PATIENCE_KEYS if params.get(k) is not None), None)


#: the epoch-count hyper-parameter that goes with each patience name
_EPOCHS_KEY = {"early_stopping_patience": "n_epochs", "patience": "epochs"}


def _stopped_at(model: Recommender, kind: str) -> int | None:
    """The epoch whose weights an early-stopped run kept (None: it did not early-stop)."""
    if kind == "scratch":
        if _patience_key(model) is None:
            return None
        best = getattr(model, "best_epoch_", None)
        hist = getattr(model, "history_", None)
        if best is None and isinstance(hist, dict):
            best = hist.get("best_epoch")
    else:
        meta = (getattr(model, "meta_", {}) or {}).get("finetune", {})
        if not meta.get("n_valid_rows"):
            return None
        best = meta.get("best_epoch")
        if best is None and isinstance(meta.get("history"), dict):
            best = meta["history"].get("best_epoch")
    return None if best is None else int(best)


def _refit_epochs(stopped: Sequence[int | None]) -> int | None:
    """The median epoch the folds stopped at, when every fold early-stopped at >= 1."""
    if not stopped or any(e is None or e < 1 for e in stopped):
        return None
    return int(np.ceil(np.median(np.asarray(stopped, dtype=np.float64))))


def _refit(pretrained: Recommender, new_data: Interactions, chosen: Candidate,
           ft_base: Mapping[str, Any], old_data: Interactions | None, epochs: int | None,
           seed: int) -> Recommender:
    """The chosen strategy on all new data, after cross-validation.

    With the folds' stopping epochs known, it runs for their median and does not
    early-stop: on a few hundred rows, early stopping on a 10% slice is itself a coin
    toss. NeuMF scratch at 1% of a synthetic target (390 rows): the folds stopped at
    epochs 1-13 (median 9) and scored 0.99-1.01 on the test set; a refit early-stopped
    on one 39-row slice stopped at epoch 1 and scored 1.076; 9 fixed epochs, 0.99-1.03.
    """
    if chosen.kind == "scratch":
        if epochs is None:
            return _run_scratch(pretrained, new_data, None, chosen.config, inner=True,
                                seed=seed)
        m = pretrained.clone().set_params(**chosen.config)
        key = _patience_key(m)
        assert key is not None  # _stopped_at saw it early-stop
        return m.set_params(**{key: None, _EPOCHS_KEY[key]: epochs}).fit(new_data)
    cfg = {**ft_base, **chosen.config}
    if epochs is not None:
        cfg.update(epochs=epochs, early_stopping=False)
    return _run_transfer(pretrained, new_data, cfg, old_data)


def _run_transfer(pretrained: Recommender, data: Interactions, cfg: Mapping[str, Any],
                  old_data: Interactions | None) -> Recommender:
    return finetune(pretrained, data, FinetuneConfig(**cfg), old_data=old_data)


def apply_choice(result: AutoResult | Mapping[str, Any], pretrained: Recommender,
                 new_data: Interactions, *, old_data: Interactions | None = None
                 ) -> Recommender:
    """Run the strategy :func:`auto` chose (``result`` or its report) on other data.

    For a choice made on a stand-in (warm users playing cold ones), then applied to
    the real new data. Scratch fits without early stopping; fine-tuning uses the
    chosen configuration with early stopping off and the search's epochs.
    """
    rep = result.report if isinstance(result, AutoResult) else result
    cand = next((c for c in rep["candidates"] if c["name"] == rep["choice"]), None)
    if cand is None:
        raise RectuneError(f"report has no candidate named {rep.get('choice')!r}")
    if cand["kind"] == "scratch":
        cfg = dict(cand["config"])
        return _run_scratch(pretrained, new_data, None, cfg, inner=True)
    fixed = rep.get("fixed", {})
    cfg = {"epochs": fixed.get("epochs", 30), "seed": fixed.get("seed", 0), "verbose": False,
           **cand["config"], "early_stopping": False}
    return _run_transfer(pretrained, new_data, cfg, old_data)


def _aggregate(values: np.ndarray, counts: np.ndarray, rating: bool) -> float:
    """A candidate's validation score from its per-user sums: RMSE or the mean value."""
    mean = values.sum() / counts.sum()
    return float(np.sqrt(mean) if rating else mean)


def _best(cands: Sequence[Candidate], lower_is_better: bool) -> Candidate | None:
    scored = [(float(c.score), c) for c in cands if c.status == "ok" and c.score is not None]
    if not scored:
        return None
    return min(scored, key=lambda t: t[0] if lower_is_better else -t[0])[1]


def _beyond_noise(cmp: Mapping[str, Any], lower_is_better: bool) -> bool:
    """Whether a :func:`paired_user_bootstrap` of A − B says A is better at its level,
    one-sided (its one-sided bound lies on A's side of 0)."""
    one = cmp["one_sided"]
    return bool(one["upper"] < 0) if lower_is_better else bool(one["lower"] > 0)


def _tiered(wins: list[Candidate], *, how: Literal["rmse", "mean"], lower_is_better: bool,
            n_boot: int, alpha: float, seed: int) -> tuple[Candidate | None, str]:
    """The best guard winner, preferring the core strategies (plain, L2-SP, freezing).

    The extra strategies (new rows only, one kind of group transferred, replay) widen the
    search, and the wider a search the more its validation winner owes to luck (the
    winner's curse). So an extra one is chosen only when it beats the best core winner
    beyond noise as well (the same one-sided paired bootstrap); a validation edge smaller
    than that keeps the simpler, core choice. Returns the choice and a sentence on it.
    """
    core = _best([c for c in wins if not c.extra], lower_is_better)
    extra = _best([c for c in wins if c.extra], lower_is_better)
    if core is None or extra is None:
        return core or extra, ""
    es, cs = float(extra.score or 0.0), float(core.score or 0.0)  # _best: both scored
    better = (es < cs) if lower_is_better else (es > cs)
    if not better:
        return core, ""
    assert extra.values is not None and core.values is not None and extra.counts is not None
    cmp = paired_user_bootstrap(extra.values, core.values, extra.counts, how=how,
                                n_boot=n_boot, alpha=alpha, seed=seed)
    if _beyond_noise(cmp, lower_is_better):
        return extra, (f"It also beat the best core strategy '{core.name}' beyond noise "
                       f"(Δ {cmp['delta']:+.4f}). ")
    return core, (f"The extra strategy '{extra.name}' scored better on validation "
                  f"(Δ {cmp['delta']:+.4f}) but not beyond noise, so the core strategy "
                  f"is kept. ")


def decide(cands: list[Candidate], *, metric: str, lower_is_better: bool,
           how: Literal["rmse", "mean"], n_boot: int = 1000, alpha: float = 0.05,
           seed: int = 0) -> tuple[dict[str, Any], Candidate]:
    """Best scratch vs the transfer candidates, through the guard; a plain-words reason.

    Every candidate with status ``"ok"`` needs ``values``/``counts`` per validation user
    (same users, same order). A transfer candidate *wins* when the paired bootstrap
    interval of its aggregate minus the best scratch's excludes 0 in its favour; the
    result is the best core winner by validation score (an extra strategy only when it
    also beats that beyond noise, see :func:`_tiered`), or the best scratch when none
    wins.
    Usable on its own for strategies :func:`auto` does not run itself.
    """
    ok = [c for c in cands if c.status == "ok"]
    scratch = _best([c for c in ok if c.kind == "scratch"], lower_is_better)
    if scratch is None:
        raise RectuneError("auto: training from scratch failed ("
                           + "; ".join(c.status for c in cands if c.kind == "scratch")
                           + "), so there is no fallback to guard transfer against")
    wins: list[Candidate] = []
    transfer_ok = [c for c in ok if c.kind == "transfer"]
    for c in transfer_ok:
        assert c.values is not None and scratch.values is not None and c.counts is not None
        cmp = paired_user_bootstrap(c.values, scratch.values, c.counts, how=how,
                                    n_boot=n_boot, alpha=alpha, seed=seed)
        # one-sided: "transfer is better than scratch" at 1 − alpha
        cmp["beats_scratch"] = _beyond_noise(cmp, lower_is_better)
        c.vs_scratch = cmp
        if cmp["beats_scratch"]:
            wins.append(c)
    unit = metric.upper() if metric == "rmse" else metric
    lvl = f"{100 * (1 - alpha):g}%"
    best_winner, tier = _tiered(wins, how=how, lower_is_better=lower_is_better,
                                n_boot=n_boot, alpha=alpha, seed=seed)
    if best_winner is not None:
        chosen = best_winner
        d = chosen.vs_scratch or {}
        bound = d["one_sided"]["upper" if lower_is_better else "lower"]
        reason = (f"'{chosen.name}' beat training from scratch on validation beyond noise: "
                  f"Δ{unit} {d['delta']:+.4f} (one-sided {lvl} bound {bound:+.4f}; "
                  f"two-sided interval [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}]; paired "
                  f"bootstrap over {d['n_users']} validation users). {tier}The result is "
                  f"this transfer model.")
        verdict = "transfer"
    elif transfer_ok:
        chosen = scratch
        best = _best(transfer_ok, lower_is_better)
        assert best is not None
        d = best.vs_scratch or {}
        bound = d["one_sided"]["upper" if lower_is_better else "lower"]
        reason = (f"No transfer candidate beat training from scratch beyond validation noise: "
                  f"the best, '{best.name}', changed validation {unit} by {d['delta']:+.4f} "
                  f"(one-sided {lvl} bound {bound:+.4f} does not exclude 0; paired bootstrap "
                  f"over {d['n_users']} validation users). The result is the scratch model "
                  f"(negative-transfer guard).")
        verdict = "scratch (guard)"
    else:
        chosen = scratch
        why = sorted({c.status for c in cands if c.kind == "transfer"}) or ["none planned"]
        reason = ("No transfer candidate ran (" + ", ".join(why) + "). The result is the "
                  "scratch model.")
        verdict = "scratch (no transfer candidate)"
    report: dict[str, Any] = {
        "choice": chosen.name, "choice_kind": chosen.kind, "verdict": verdict,
        "reason": reason, "metric": metric, "lower_is_better": lower_is_better,
        "valid_score": chosen.score, "scratch": scratch.name, "scratch_score": scratch.score,
        "guard": {"test": "paired bootstrap over validation users, one-sided "
                          "(transfer better than scratch)", "level": 1 - alpha,
                  "n_boot": n_boot, "n_significant": len(wins),
                  "n_transfer_candidates": len(transfer_ok)},
    }
    return report, chosen


def decide_pooled(results: Sequence[AutoResult], *, n_boot: int = 1000, alpha: float = 0.05,
                  seed: int = 0) -> dict[str, Any]:
    """Decide again on the pooled validation evidence of several :func:`auto` runs.

    For stand-in validation sets: when the new users have K <= 5 ratings, each run is
    ``auto`` on one rotation of warm users playing cold (its own pre-trained model,
    its own disjoint validation users, the same candidate grid). One rotation holds
    few users and leaves the guard without power (75 users: a one-sided bound ±0.08
    RMSE); pooling the rotations multiplies them. Each candidate's per-user values are
    concatenated over the runs (the users are disjoint, so the bootstrap's unit is
    still one user) and :func:`decide` is applied once, at the same level.

    Returns a report :func:`apply_choice` accepts (the first run's report with the
    pooled decision, pooled candidate scores and ``pooled`` = what was pooled).
    """
    pooled = _pool(results)
    first = results[0]
    metric = str(first.report["metric"])
    lower = bool(first.report["lower_is_better"])
    rep, _ = decide(pooled, metric=metric, lower_is_better=lower,
                    how="rmse" if metric == "rmse" else "mean", n_boot=n_boot, alpha=alpha,
                    seed=seed)
    out = {**first.report, **rep}
    out["candidates"] = [c.to_dict() for c in pooled]
    out["pooled"] = {"n_runs": len(results),
                     "n_users": [int(r.report["valid"]["n_users"]) for r in results],
                     "choices_per_run": [r.report["choice"] for r in results],
                     "rule": "candidates' per-user validation values concatenated over runs "
                             "with disjoint validation users; one guard decision"}
    return out


def _pool(results: Sequence[AutoResult]) -> list[Candidate]:
    """The runs' candidates with their per-user values concatenated (one grid only)."""
    if not results:
        raise RectuneError("decide_pooled: no auto results to pool")
    first = results[0]
    names = [c.name for c in first.candidates]
    for r in results[1:]:
        if [c.name for c in r.candidates] != names:
            raise RectuneError("decide_pooled: the runs tried different candidates ("
                               f"{names} vs {[c.name for c in r.candidates]}); pool runs "
                               "of one grid only")
        if r.report["metric"] != first.report["metric"]:
            raise RectuneError("decide_pooled: the runs used different metrics")
        for c0, c in zip(first.candidates, r.candidates, strict=True):
            if c.config != c0.config:
                raise RectuneError(
                    f"decide_pooled: candidate {c0.name!r} has different configurations in "
                    f"different runs ({c0.config} vs {c.config}); stage two builds on each "
                    "run's best plain fine-tuning unless the runs share stage_two_base "
                    "(auto_pooled does that)")
    rating = first.report["metric"] == "rmse"
    pooled: list[Candidate] = []
    for i, c0 in enumerate(first.candidates):
        group = [r.candidates[i] for r in results]
        c = Candidate(c0.name, c0.kind, dict(c0.config), stage=c0.stage, extra=c0.extra)
        bad = next((g.status for g in group if g.status != "ok"), None)
        c.status = bad or "ok"
        c.cost_s = float(sum(g.cost_s or 0.0 for g in group))
        if c.status == "ok":
            c.values = np.concatenate([np.asarray(g.values, dtype=np.float64) for g in group])
            c.counts = np.concatenate([np.asarray(g.counts, dtype=np.float64) for g in group])
            c.score = _aggregate(c.values, c.counts, rating)
        pooled.append(c)
    return pooled


def auto_pooled(runs: Sequence[tuple[Recommender, Interactions, Interactions]], *,
                n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, **kwargs: Any
                ) -> dict[str, Any]:
    """:func:`auto` over several (pre-trained model, new data, validation set) stand-ins,
    with one guard decision on their pooled evidence (:func:`decide_pooled`).

    Stage two (L2-SP, freezing, ...) builds on the best plain fine-tuning; run per
    stand-in, that base differs between them, and pooling same-named candidates would
    pool different configurations (then apply the first run's). So the search runs in
    two passes: stage one on every stand-in, pooled to pick the plain base; then the
    whole search on every stand-in with that base (stage one runs twice; that is its
    cost). ``kwargs`` go to :func:`auto` (not ``valid``, ``stages`` or
    ``stage_two_base``). Returns the pooled report (:func:`apply_choice` accepts it),
    whose ``pooled["stage_two_base"]`` is the shared base.
    """
    if not runs:
        raise RectuneError("auto_pooled: no stand-ins to search on")
    clash = {"valid", "stages", "stage_two_base"} & set(kwargs)
    if clash:
        raise RectuneError(f"auto_pooled sets {sorted(clash)} itself")
    common = {"n_boot": n_boot, "alpha": alpha, "seed": seed, **kwargs}
    first = [auto(p, new, valid=v, stages=1, **common) for p, new, v in runs]
    if not supports(runs[0][0], "finetune"):  # no stage two: the first pass is the search
        return decide_pooled(first, n_boot=n_boot, alpha=alpha, seed=seed)
    plain = _best([c for c in _pool(first) if c.kind == "transfer"],
                  bool(first[0].report["lower_is_better"]))
    base = plain.config if plain is not None else None
    out = decide_pooled([auto(p, new, valid=v, stage_two_base=base, **common)
                         for p, new, v in runs], n_boot=n_boot, alpha=alpha, seed=seed)
    out["pooled"]["stage_two_base"] = out["stage_two_base"]
    out["pooled"]["stage_two_base_rule"] = (
        "the best plain fine-tuning on the pooled stage-one evidence of every stand-in")
    return out
