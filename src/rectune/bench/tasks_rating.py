"""Tasks 1 (explicit) and 2 of the transfer suite: temporal update and cross-domain transfer.

Temporal update (online learning). Sort by time; pre-train on the oldest 70%, adapt
on the next 15%, test on the newest 15%. Returning test users (a rating in the first
85%) and new ones are reported apart: a model can only adapt to users it has
data for, and on ML-100K 83% of test ratings come from users it has none for.
The frozen arm freezes items (tastes drift; what a movie is does not).

The temporal task adds one arm, ``l2sp_replay``, for the returning users. The newest
10% of the new data (the validation slice of every other arm) covers a few days: on
ML-100K 83% of its rows come from users with no earlier rating and the rest from 4
users, so early stopping on it measures how item and bias drift carry over to unseen
users and stops after 1-2 epochs, before a returning user's factors move (measured: on
that slice the 4 users' RMSE *rises* with every epoch while the returning test users'
falls). And a run that only sees new ratings pulls a returning user away from the
history that retraining still fits. So this arm

1. trains on the new data minus that slice (held out, as for scratch and retrain);
2. validates on each user's own future: the newest 10% of every user's rows in what is
   left (users with >= 5 rows), so every validation row comes from a user with data;
3. replays the pre-training ratings of the users it updates (``replay`` × the new
   rows, sampled from their history), the part of retraining that keeps them whole;
4. picks λ, learning rate, replay and a fixed epoch count on that validation (a grid:
   the engine's early stopping only knows random or global-temporal slices) among the
   recipes whose fit took at most ``RETURNING_BUDGET`` (20%) of a retrain on the same
   rows (old + step 2's fit rows, timed at selection) — the issue's cost bound — then
   refits the chosen recipe on all of step 1's rows. That refit is the timed recipe.

A second arm, ``als_replay``, solves the same objective by anchored ALS sweeps
(``solver="als"``: per row a ridge system with the other side fixed, a few conjugate-
gradient steps warm-started at θ_pre): one to three sweeps over the new rows plus the
replayed history instead of up to 30 SGD epochs, chosen on the same per-user slice.

Over that grid the per-user slice ranks configurations as the returning test users do
(Spearman 0.97 on ML-100K, seeds 0-2); a random slice of the same rows does not (it
prefers no replay). Test rows are never read before the choice.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rectune._errors import DataError
from rectune.bench.arms import (
    ARMS,
    Arm,
    ModelSpec,
    finetune_arm,
    na,
    supported,
    time_runs,
    union,
)
from rectune.bench.auto_arm import AutoPool
from rectune.bench.compare import seed_interval
from rectune.bench.context import Context
from rectune.bench.rating import (
    RatingTask,
    arm_comparisons,
    compare_rating_arms,
    headline,
    run_rating_arms,
    score_rating_arms,
    time_arms,
)
from rectune.bench.splits import Protocols
from rectune.data.dataset import Dataset
from rectune.data.interactions import Interactions
from rectune.evaluate.rating import rmse
from rectune.models.base import Recommender

__all__ = ["cross_domain", "neural_placeholder", "per_user_newest", "replay_setup",
           "returning_arm", "temporal_explicit", "temporal_task"]

NO_REPLAY_GRID = "n/a (no replay grid for this family)"

#: the returning-user arms choose among recipes that fit in this fraction of a retrain
RETURNING_BUDGET = 0.2

NO_NEURAL = "n/a (no neural rating model in rectune.models yet)"


def neural_placeholder(ctx: Context) -> dict[str, Any] | None:
    """The row that says the neural model is missing (None once one is discovered)."""
    if any(getattr(s.cls, "family", "") == "neural" for s in ctx.specs.values()):
        return None
    return {"status": NO_NEURAL}


def _model_block(arms: dict[str, Arm], comps: dict[str, Any]) -> dict[str, Any]:
    return {"arms": {a: arm.to_dict() for a, arm in arms.items()}, "comparisons": comps,
            "headline": headline(arms, comps)}


def temporal_task(ds: Dataset, protos: Protocols) -> RatingTask:
    """The temporal update as a rating task, returning and new test users as groups."""
    s = protos.temporal(ds)
    returning = np.asarray(s.info["test_returning"], dtype=bool)
    return RatingTask("temporal", s.pretrain, s.new, s.test, "temporal", ("item_*",),
                      groups={"returning": returning, "new_users": ~returning})


def temporal_explicit(ds: Dataset, protos: Protocols, ctx: Context) -> dict[str, Any]:
    """Temporal update on explicit ratings: RMSE overall, for returning and for new users."""
    task = temporal_task(ds, protos)
    returning = task.groups["returning"]
    out: dict[str, Any] = {
        "title": "Temporal update (explicit ratings)",
        "protocol": protos.names["temporal"],
        "metric": "rmse", "lower_is_better": True,
        "data": {"n_pretrain": len(task.old), "n_new": len(task.new), "n_test": len(task.test),
                 "returning_fraction": float(returning.mean()),
                 "n_valid": len(task.fit_valid()[1]), "valid": "newest 10% of the new data"},
        "frozen": list(task.frozen), "models": {},
    }
    for name, spec in ctx.rating_specs().items():
        ctx.say(f"temporal/explicit: {name}")
        out["models"][name] = _temporal_model(spec, task, ctx)
    missing = neural_placeholder(ctx)
    if missing is not None:
        out["models"]["neural"] = missing
    return out


def _temporal_model(spec: ModelSpec, task: RatingTask, ctx: Context) -> dict[str, Any]:
    def pretrain() -> Recommender:
        return spec.make(0).fit(task.old)

    pre = pretrain()
    arms = run_rating_arms(spec, task, pre, seed=0)
    arms["l2sp_replay"] = returning_arm(spec, task, pre, seed=0)
    arms["als_replay"] = returning_arm(spec, task, pre, seed=0, solver="als")
    score_rating_arms(arms, task, n_boot=ctx.n_boot // 4)
    ctx.say(f"temporal/explicit: {spec.name} timing (warm-up + {ctx.repeats} runs)")
    time_arms(arms, ctx.repeats, pretrain=pretrain)
    comps = compare_rating_arms(arms, task, n_boot=ctx.n_boot, groups=("returning",))
    for name in ("l2sp_replay", "als_replay"):
        comps.update(arm_comparisons(arms, task, name, n_boot=ctx.n_boot,
                                      groups=("returning",)))
    block = _model_block(arms, comps)
    block["headline"]["returning"] = _returning_headline(arms, comps)
    return block


def per_user_newest(data: Interactions, fraction: float = 0.1,
                    min_rows: int = 5) -> tuple[Interactions, Interactions]:
    """``(fit, valid)``: the newest ``fraction`` of each user's rows (at least one, for users
    with ``min_rows`` or more; stable by time, then row order) as validation.

    A temporal slice *per user*: it asks what a user who has data rates next, which is
    the returning users' question, where a global temporal slice asks about whoever
    rates next (mostly people never seen).
    """
    if data.timestamp is None:
        raise DataError("per_user_newest needs timestamps in the new data")
    n = len(data)
    order = np.lexsort((np.arange(n), np.asarray(data.timestamp), data.user))
    users = data.user[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, counts)
    n_valid = np.where(counts >= min_rows, np.maximum(1, np.floor(fraction * counts)), 0)
    is_valid = np.empty(n, dtype=bool)
    is_valid[order] = rank >= np.repeat(counts - n_valid, counts)
    return data.take(np.flatnonzero(~is_valid)), data.take(np.flatnonzero(is_valid))


def replay_setup(spec: ModelSpec, old: Interactions, fit: Interactions, inner: Interactions,
                 seed: int) -> tuple[Interactions, float, float]:
    """What the returning-user arms share: ``(pool, replay_all, budget)``.

    ``pool``: the old rows of the users in ``fit`` (what is replayed); ``replay_all``: a
    replay fraction of ``inner`` large enough to draw the whole pool (and so, on the
    larger refit data, still all of it); ``budget``: ``RETURNING_BUDGET`` of a retrain's
    median time on old + ``inner`` (the rows selection fits on).
    """
    pool = old.take(np.flatnonzero(np.isin(old.user, np.unique(fit.user))))
    replay_all = float(np.ceil(len(pool) / max(len(inner), 1)))
    budget = RETURNING_BUDGET * time_runs(lambda: spec.make(seed).fit(union(old, inner)),
                                          2).median_s
    return pool, replay_all, budget


def returning_arm(spec: ModelSpec, task: RatingTask, pre: Recommender, *,
                  seed: int = 0, solver: str = "sgd") -> Arm:
    """L2-SP with replay of the updated users' history, chosen on each user's newest rows.

    See the module notes: the grid is ``spec.replay_grid()`` (λ × learning rate × replay
    × fixed epochs), fitted on the new data minus the task's validation slice and minus
    each user's newest 10%, scored on the latter; the chosen recipe is refitted on the
    new data minus the task's slice. The replay pool is the pre-training rows of the
    users who rated in the new data. ``valid_score`` is the per-user slice's RMSE; the
    task slice's RMSE is in the notes.

    ``solver="als"`` is the ``als_replay`` arm: the same objective solved by anchored
    ALS sweeps, over ``spec.als_replay_grid`` (λ × sweeps × replay of none or all of the
    pool × the new rows' weight).
    """
    from rectune.finetune import FinetuneConfig, finetune

    name = "als_replay" if solver == "als" else "l2sp_replay"
    has_grid = spec.als_l2sp if solver == "als" else spec.replay_values
    if not has_grid or (solver != "als" and not spec.replay_epochs):
        return na(name, NO_REPLAY_GRID)
    if not supported(pre, name):
        return na(name)
    fit, task_valid = task.fit_valid()
    if fit.timestamp is None:
        return na(name, "n/a (the new data has no timestamps)")
    inner, valid = per_user_newest(fit)
    pool, replay_all, budget = replay_setup(spec, task.old, fit, inner, seed)

    def score(m: Recommender) -> float:
        return rmse(valid.value, m.predict_indices(valid.user, valid.item))

    base = {"seed": seed, "verbose": False}
    grid = spec.als_replay_grid(replay_all) if solver == "als" else spec.replay_grid()
    arm = finetune_arm(name, pre, inner, grid, base, score, old=pool, max_build_s=budget)
    if not arm.ok:
        return arm
    recipe = {**arm.chosen, "verbose": False}

    def refit() -> Recommender:
        return finetune(pre, fit, FinetuneConfig(**recipe), old_data=pool)

    arm.model, arm.refit = refit(), refit
    t_rmse = rmse(task_valid.value, arm.model.predict_indices(task_valid.user,
                                                              task_valid.item))
    arm.chosen["validation"] = "newest 10% of each user's new rows (users with >= 5)"
    arm.chosen["replay_pool"] = "pre-training rows of the users in the new data"
    arm.notes.append(
        f"chosen on {len(valid)} rows from {len(np.unique(valid.user))} users (each user's "
        f"newest 10% of the new data minus its newest-10% slice), then refitted on those "
        f"{len(fit)} rows; replay pool {len(pool)} rows; RMSE on the newest-10% slice "
        f"{t_rmse:.4f}")
    return arm


def _returning_headline(arms: dict[str, Arm], comps: dict[str, Any]) -> dict[str, Any]:
    """Each fine-tuning arm against retraining on the returning users: Δ, interval, cost."""
    out: dict[str, Any] = {}
    rt = arms.get("retrain")
    for name in ("finetune", "l2sp", "frozen", "l2sp_replay", "als_replay"):
        c = comps.get(f"{name} vs retrain", {}).get("group_returning")
        a = arms.get(name)
        if c is None or a is None or rt is None:
            continue
        entry = {k: c.get(k) for k in ("delta", "ci", "verdict")}
        if a.time is not None and rt.time is not None and rt.time.median_s > 0:
            entry["time_ratio"] = a.time.median_s / rt.time.median_s
        out[name] = entry
    return out


def cross_domain(ds: Dataset, protos: Protocols, ctx: Context, *,
                 label: str | None = None) -> dict[str, Any]:
    """Learning curves of every arm over target-train fractions and seeds (nested subsets)."""
    full = protos.xdomain(ds, 1.0, ctx.seeds[0])
    info = full.info
    out: dict[str, Any] = {
        "title": "Cross-domain transfer (shared users)" + (f", {label}" if label else ""),
        "protocol": protos.names["xdomain"], "metric": "rmse", "lower_is_better": True,
        "data": {"n_source": len(full.source), "n_target_test": len(full.target_test),
                 "n_target_train_full": len(full.target_train),
                 "n_source_items": len(info.get("source_items", [])),
                 "n_target_items": len(info.get("target_items", [])),
                 "shared_users": info.get("shared_users"),
                 "valid": "random 10% of the target-train rows, seed 1"},
        "fractions": list(ctx.fractions), "seeds": list(ctx.seeds), "frozen": ["user_*"],
        "models": {},
    }
    if ds.info.get("domain_correlation") is not None and ds.synthetic:
        out["data"]["domain_correlation"] = ds.info["domain_correlation"]
    for name, spec in ctx.rating_specs().items():
        out["models"][name] = _xdomain_model(ds, protos, ctx, spec, full.source)
    missing = neural_placeholder(ctx)
    if missing is not None:
        out["models"]["neural"] = missing
    return out


def _xdomain_model(ds: Dataset, protos: Protocols, ctx: Context, spec: ModelSpec,
                   source: Any) -> dict[str, Any]:
    def pretrain() -> Recommender:
        return spec.make(0).fit(source)

    pre = pretrain()
    points: list[dict[str, Any]] = []
    timing: dict[str, Any] = {}
    stale_old: float | None = None
    pool = AutoPool()
    for f in ctx.fractions:
        for seed in ctx.seeds:
            ctx.say(f"cross-domain: {spec.name} fraction {f:g} seed {seed}")
            split = protos.xdomain(ds, f, seed)
            task = RatingTask("xdomain", source, split.target_train, split.target_test,
                              "random", ("user_*",))
            arms = run_rating_arms(spec, task, pre, seed=seed)
            score_rating_arms(arms, task, n_boot=200, stale_old=stale_old)
            stale_old = arms["stale"].metrics["old_rmse"]
            if f == ctx.fractions[-1] and seed == ctx.seeds[0]:
                ctx.say(f"cross-domain: {spec.name} timing at fraction {f:g}")
                time_arms(arms, ctx.repeats, pretrain=pretrain)
                timing = {a: arm.time.to_dict() for a, arm in arms.items()
                          if arm.ok and arm.time is not None}
            comps = compare_rating_arms(arms, task, n_boot=ctx.n_boot // 2)
            pool.add(f, task.test.user, arms, comps)
            points.append({"fraction": f, "seed": seed, "n_target_train": len(task.new),
                           "arms": {a: arm.to_dict() for a, arm in arms.items()},
                           "comparisons": comps})
    head = _xdomain_headline(points, ctx, timing)
    if "auto" in head:
        head["auto"]["pooled_vs_reference"] = pool.compare(n_boot=ctx.n_boot // 2)
    return {"points": points, "curve": _curves(points, ctx), "timing": timing,
            "headline": head}


def _curves(points: list[dict[str, Any]], ctx: Context) -> dict[str, Any]:
    """Mean ± 95% interval over seeds of each arm's RMSE and of each paired delta."""
    rmse: dict[str, list[dict[str, Any]]] = {}
    for arm in ARMS:
        rows = []
        for f in ctx.fractions:
            vals = [p["arms"][arm].get("metrics", {}).get("rmse") for p in points
                    if p["fraction"] == f and arm in p["arms"] and p["arms"][arm]["status"] == "ok"]
            if vals:
                rows.append({"fraction": f, **seed_interval(vals)})
        status = next((p["arms"][arm]["status"] for p in points if arm in p["arms"]), None)
        if status is None:  # an arm this task does not have (l2sp_replay: temporal only)
            continue
        rmse[arm] = rows if rows else [{"status": status}]
    deltas: dict[str, list[dict[str, Any]]] = {}
    for key in ("selected vs scratch", "selected vs retrain", "selected vs stale"):
        other = key.split(" vs ")[1]
        rows = []
        for f in ctx.fractions:
            ds_, wins, losses = [], 0, 0
            for p in points:
                if p["fraction"] != f or p["comparisons"].get("selected") is None:
                    continue
                c = p["comparisons"].get(f"{p['comparisons']['selected']} vs {other}")
                if c is None:
                    continue
                ds_.append(c["delta"])
                wins += c["verdict"] == "better"
                losses += c["verdict"] == "worse"
            if ds_:
                rows.append({"fraction": f, **seed_interval(ds_), "significant_wins": wins,
                             "significant_losses": losses})
        deltas[key] = rows
    for key in ("auto vs scratch", "auto vs reference", "auto vs oracle"):
        rows = []
        for f in ctx.fractions:
            cs = [p["comparisons"][key] for p in points
                  if p["fraction"] == f and key in p["comparisons"]]
            if cs:
                rows.append({"fraction": f, **seed_interval([c["delta"] for c in cs]),
                             "significant_wins": sum(c["verdict"] == "better" for c in cs),
                             "significant_losses": sum(c["verdict"] == "worse" for c in cs),
                             "scratch_chosen": sum(
                                 str(p["arms"]["auto"].get("chosen", {}).get("choice", ""))
                                 .startswith("scratch") for p in points
                                 if p["fraction"] == f and "auto" in p["arms"])})
        deltas[key] = rows
    return {"rmse": rmse, "delta": deltas}


def _xdomain_headline(points: list[dict[str, Any]], ctx: Context,
                      timing: dict[str, Any]) -> dict[str, Any]:
    curve_all = _curves(points, ctx)["delta"]
    curve = curve_all["selected vs scratch"]
    sel = [p["comparisons"].get("selected") for p in points]
    chosen = {a: sel.count(a) for a in set(sel) if a is not None}
    out: dict[str, Any] = {"selected_counts": chosen, "vs_scratch_by_fraction": curve}
    ft_times = [timing[a]["median_s"] for a in ("finetune", "l2sp", "frozen") if a in timing]
    if ft_times and "scratch" in timing:
        out["time_ratio_vs_scratch"] = float(np.median(ft_times)) / timing["scratch"]["median_s"]
    if ft_times and "retrain" in timing:
        out["time_ratio_vs_retrain"] = float(np.median(ft_times)) / timing["retrain"]["median_s"]
    ref = [p["comparisons"]["auto vs reference"] for p in points
           if "auto vs reference" in p["comparisons"]]
    if ref:
        auto_sel = [str(p["arms"]["auto"].get("chosen", {}).get("choice")) for p in points
                    if p["arms"].get("auto", {}).get("status") == "ok"]
        oracle = [p["comparisons"]["auto vs oracle"] for p in points
                  if "auto vs oracle" in p["comparisons"]]
        out["auto"] = {"points": len(ref),
                       "significantly_worse_than_reference": sum(not c["not_worse"]
                                                                 for c in ref),
                       "significantly_worse_than_oracle": sum(not c["not_worse"]
                                                              for c in oracle),
                       "vs_oracle_by_fraction": curve_all["auto vs oracle"],
                       "scratch_chosen": sum(c.startswith("scratch") for c in auto_sel),
                       "choices": {c: auto_sel.count(c) for c in sorted(set(auto_sel))},
                       "vs_reference_by_fraction": curve_all["auto vs reference"],
                       "vs_scratch_by_fraction": curve_all["auto vs scratch"]}
    if not chosen:
        out["status"] = "n/a (no fine-tuning arm ran: unsupported)"
    return out
