"""The six arms on a rating task (old data, new data, test): fit, choose, time, score.

Shared by the temporal update and the cross-domain transfer: both are "a model
pre-trained on ``old`` meets ``new``; which way of using ``new`` predicts ``test``
best, at what cost, and how much of ``old`` does it forget?"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rectune.bench.arms import (
    ARMS,
    FT_ARMS,
    Arm,
    ModelSpec,
    ValidMode,
    carve,
    finetune_arm,
    select,
    time_runs,
    union,
)
from rectune.bench.compare import paired_users, verdict
from rectune.data.interactions import Interactions
from rectune.evaluate.evaluator import evaluate_ratings
from rectune.evaluate.rating import rmse
from rectune.evaluate.stats import bootstrap_ci
from rectune.models.base import Recommender

__all__ = ["RatingTask", "compare_rating_arms", "headline", "run_rating_arms",
           "score_rating_arms", "selected_ft", "time_arms"]


@dataclass(eq=False)
class RatingTask:
    """Old (pre-training) data, new (fine-tuning) data and the test set, on shared id maps.

    ``groups``: named boolean masks over test rows reported apart (returning / new
    users). ``frozen``: what the ``frozen`` arm freezes. ``forget_sample``: at most
    this many old rows are scored for forgetting (seeded sample; all when smaller).
    """

    name: str
    old: Interactions
    new: Interactions
    test: Interactions
    valid_mode: ValidMode
    frozen: tuple[str, ...]
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    forget_sample: int = 20_000
    _fit_valid: tuple[Interactions, Interactions] | None = None
    _old_rows: Interactions | None = None

    def fit_valid(self) -> tuple[Interactions, Interactions]:
        """The new data without / with only its validation slice (the engine's slice)."""
        if self._fit_valid is None:
            self._fit_valid = carve(self.new, self.valid_mode)
        return self._fit_valid

    def old_rows(self) -> Interactions:
        """The old rows forgetting is measured on (the data the pre-trained model knew)."""
        if self._old_rows is None:
            n = len(self.old)
            rows = (np.arange(n) if n <= self.forget_sample else
                    np.sort(np.random.default_rng(0).choice(n, self.forget_sample,
                                                            replace=False)))
            self._old_rows = self.old.take(rows)
        return self._old_rows


def _valid_rmse(valid: Interactions) -> Callable[[Recommender], float]:
    def score(m: Recommender) -> float:
        return rmse(valid.value, m.predict_indices(valid.user, valid.item))

    return score


def run_rating_arms(
    spec: ModelSpec,
    task: RatingTask,
    pre: Recommender,
    *,
    seed: int = 0,
    arms: tuple[str, ...] = ARMS,
    n_boot: int = 1000,
) -> dict[str, Arm]:
    """Fit and choose every arm of ``spec`` on ``task`` (``pre`` = the stale model).

    ``retrain`` re-runs the pre-training recipe unchanged (same hyper-parameters and
    epochs) on old + new data; ``scratch`` fits the new data alone, so its
    regularisation is chosen and it early-stops (when the family can) on the
    validation slice of the new data. Fine-tuning arms go through
    :func:`rectune.finetune.finetune`, which carves the same slice; the best
    configuration of each arm's grid is kept by its validation RMSE. ``auto`` runs
    :func:`rectune.finetune.auto` over the same grids (``n_boot``: its guard's
    replicates).
    """
    fit, valid = task.fit_valid()
    score = _valid_rmse(valid)
    es = spec.early_stopping
    out: dict[str, Arm] = {}
    if "stale" in arms:
        out["stale"] = Arm("stale", model=pre, chosen=dict(spec.params),
                           valid_score=score(pre), n_candidates=1)
    if "scratch" in arms:
        out["scratch"] = select(
            "scratch", spec.scratch_grid,
            lambda g: spec.make(seed, **es, **g).fit(fit, valid=valid if es else None), score)
    if "retrain" in arms:
        both = union(task.old, fit)
        out["retrain"] = select("retrain", ({},), lambda g: spec.make(seed, **g).fit(both), score)
    base: dict[str, Any] = {"valid_mode": task.valid_mode, "seed": seed, "verbose": False}
    if "finetune" in arms:
        out["finetune"] = finetune_arm("finetune", pre, task.new, spec.ft_grid, base, score,
                                       fit_part=fit)
    if "l2sp" in arms:
        grid = spec.l2sp_grid()
        out["l2sp"] = (finetune_arm("l2sp", pre, task.new, grid, base, score, fit_part=fit)
                       if grid else Arm("l2sp", status="n/a (unsupported)"))
    if "frozen" in arms:
        out["frozen"] = finetune_arm("frozen", pre, task.new, spec.ft_grid,
                                     {**base, "freeze": list(task.frozen)}, score,
                                     fit_part=fit)
    if "auto" in arms:
        from rectune.bench.auto_arm import auto_arm

        out["auto"] = auto_arm(spec, pre, task.new, old=task.old, seed=seed,
                               valid_mode=task.valid_mode, n_boot=n_boot)
    return out


def score_rating_arms(arms: dict[str, Arm], task: RatingTask, *, n_boot: int = 500,
                      stale_old: float | None = None) -> None:
    """Test RMSE (overall, per group, 95% interval), unknown counts and forgetting, in place.

    Forgetting is the RMSE on the old rows (the pre-training data) and its rise over
    the stale model's: how much of what the model knew the arm lost.
    """
    old = task.old_rows()
    for arm in arms.values():
        if not arm.ok or arm.model is None:
            continue
        m = arm.model
        r = evaluate_ratings(m, task.test, return_errors=True, n_boot=n_boot)
        sq = np.asarray(r.pop("squared_errors"))
        r.pop("abs_errors", None)
        arm.arrays["sq"] = sq
        metrics: dict[str, Any] = {k: r[k] for k in ("rmse", "mae", "rmse_ci", "n",
                                                       "n_unknown_user", "n_unknown_item",
                                                       "rmse_known")}
        for g, mask in task.groups.items():
            metrics[f"n_{g}"] = int(mask.sum())
            if mask.any():
                metrics[f"rmse_{g}"] = float(np.sqrt(sq[mask].mean()))
                ci = bootstrap_ci(sq[mask], n_boot=n_boot)
                metrics[f"rmse_{g}_ci"] = [float(np.sqrt(ci.lo)), float(np.sqrt(ci.hi))]
        metrics["old_rmse"] = rmse(old.value, m.predict_indices(old.user, old.item))
        arm.metrics = metrics
    ref = stale_old
    if ref is None and "stale" in arms and arms["stale"].ok:
        ref = arms["stale"].metrics["old_rmse"]
    for arm in arms.values():
        if arm.ok and arm.metrics and ref is not None:
            arm.metrics["forgetting"] = arm.metrics["old_rmse"] - ref


def selected_ft(arms: dict[str, Arm]) -> Arm | None:
    """The fine-tuning arm a user would deploy: best *validation* score among those that ran."""
    ok = [arms[a] for a in FT_ARMS if a in arms and arms[a].ok
          and arms[a].valid_score is not None]
    return min(ok, key=lambda a: float(a.valid_score or 0.0)) if ok else None


def arm_comparisons(arms: dict[str, Arm], task: RatingTask, name: str, *, n_boot: int,
                    groups: tuple[str, ...] = ()) -> dict[str, Any]:
    """Paired ΔRMSE of arm ``name`` against scratch / retrain / stale (and per group)."""
    a = arms.get(name)
    out: dict[str, Any] = {}
    if a is None or not a.ok:
        return out
    users = task.test.user
    for other in ("scratch", "retrain", "stale"):
        b = arms.get(other)
        if b is None or not b.ok:
            continue
        c = paired_users(users, a.arrays["sq"], b.arrays["sq"], n_boot=n_boot)
        c["verdict"] = verdict(c["ci"], lower_is_better=True)
        for g in groups:
            mask = task.groups[g]
            if mask.sum() > 1 and len(np.unique(users[mask])) > 1:
                cg = paired_users(users[mask], a.arrays["sq"][mask], b.arrays["sq"][mask],
                                  n_boot=n_boot)
                cg["verdict"] = verdict(cg["ci"], lower_is_better=True)
                c[f"group_{g}"] = cg
        out[f"{name} vs {other}"] = c
    return out


def compare_rating_arms(arms: dict[str, Arm], task: RatingTask, *, n_boot: int = 2000,
                        groups: tuple[str, ...] = ()) -> dict[str, Any]:
    """Paired ΔRMSE (fine-tuned − scratch / retrain / stale) over test users, with verdicts.

    Keys ``"<ft arm> vs <other>"``; ``"selected"`` names the validation-chosen fine-tuning
    arm. ``groups`` adds the same comparisons restricted to those test-row groups.
    """
    users = task.test.user
    out: dict[str, Any] = {}
    sel = selected_ft(arms)
    out["selected"] = None if sel is None else sel.name
    for ft in FT_ARMS:
        out.update(arm_comparisons(arms, task, ft, n_boot=n_boot, groups=groups))
    from rectune.bench.auto_arm import auto_comparisons

    out.update(auto_comparisons(
        arms, lambda a, b: paired_users(users, a.arrays["sq"], b.arrays["sq"], n_boot=n_boot),
        lambda a: a.metrics.get("rmse"), lower_is_better=True))
    return out


def headline(arms: dict[str, Arm], comps: dict[str, Any]) -> dict[str, Any]:
    """The selected fine-tuning arm against scratch and retrain: quality delta and cost ratio.

    Cost ratios divide median wall times (PROTOCOLS.md's timing rule); a ratio below 1
    means fine-tuning is cheaper.
    """
    sel = comps.get("selected")
    out: dict[str, Any] = {"selected": sel}
    if sel is None:
        out["status"] = "n/a (no fine-tuning arm ran: unsupported)"
        _auto_headline(out, arms, comps)
        return out
    ft = arms[sel]
    for other in ("scratch", "retrain", "stale"):
        c = comps.get(f"{sel} vs {other}")
        if c is None:
            continue
        entry = {k: c.get(k) for k in ("delta", "ci", "p_value", "verdict")}
        b = arms[other]
        if ft.time is not None and b.time is not None and b.time.median_s > 0:
            entry["time_ratio"] = ft.time.median_s / b.time.median_s
        out[f"vs_{other}"] = entry
    if ft.time is not None:
        out["median_s"] = ft.time.median_s
    _auto_headline(out, arms, comps)
    return out


def _auto_headline(out: dict[str, Any], arms: dict[str, Arm], comps: dict[str, Any]) -> None:
    """The auto arm's choice, its verdict against the oracle reference, and its cost."""
    ref = comps.get("auto vs reference")
    if ref is None:
        return
    entry: dict[str, Any] = {"choice": comps.get("auto_choice"),
                             "reference": ref.get("reference"),
                             **{k: ref.get(k) for k in ("delta", "ci", "verdict", "not_worse")}}
    for key in ("scratch", "oracle"):
        sc = comps.get(f"auto vs {key}")
        if sc is not None:
            entry[f"vs_{key}"] = {k: sc.get(k) for k in ("delta", "ci", "verdict",
                                                         "reference")}
    a = arms.get("auto")
    if a is not None and a.time is not None:
        entry["median_s"] = a.time.median_s
    out["auto"] = entry


def time_arms(arms: dict[str, Arm], repeats: int, *, pretrain: Callable[[], Any] | None = None
              ) -> None:
    """Warm-up + median of ``repeats`` runs of every arm's chosen recipe, in place.

    The stale arm's cost is its pre-training run (``pretrain``), so the table shows what
    fine-tuning saves against retraining and against pre-training itself.
    """
    for arm in arms.values():
        if not arm.ok:
            continue
        fn = pretrain if arm.name == "stale" else arm.refit
        if fn is not None:
            arm.time = time_runs(fn, repeats)
