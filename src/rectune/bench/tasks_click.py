"""Task 4: a task change, rating model -> click model.

The rating model is pre-trained on the oldest 70% of the ratings (the temporal
split's pre-training slice). Click labels exist only for the newer 30% (rating >= 4
= click, < 4 = non-click), which the pre-trained model never saw: 20% of those rows
(seed 0) are the click test set, the rest the pool of labelled clicks, of which a
fraction (10% in the headline; nested subsets per seed for the curve) is available.

Arms: the stale rating model's predicted rating used as a click score (AUC only:
it is not a probability); a :class:`~rectune.models.ClickMF` trained from scratch on
the labelled clicks; a ClickMF retrained on old + new (an *oracle*: it reads the old
ratings binarised as clicks, labels the premise says do not exist, so it bounds
what transfer could reach); and the rating model fine-tuned into a click model
(:class:`~rectune.finetune.TaskChange`): plain, L2-SP and with items frozen.
Choices are made by log-loss on a random 10% (seed 1) of the labelled clicks. The
``auto`` arm applies :func:`rectune.finetune.auto`'s negative-transfer guard to
scratch and the fine-tuning arms on that slice (per-user log-loss, paired bootstrap).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from rectune.bench.arms import FT_ARMS, Arm, ModelSpec, carve, finetune_arm, union
from rectune.bench.auto_arm import AutoPool
from rectune.bench.compare import paired_auc, paired_users, seed_interval, verdict
from rectune.bench.context import Context
from rectune.bench.rating import headline, selected_ft, time_arms
from rectune.bench.splits import Protocols
from rectune.data.dataset import Dataset
from rectune.data.interactions import Interactions
from rectune.evaluate.clicks import auc, log_loss
from rectune.models.base import Recommender
from rectune.models.click import ClickMF

__all__ = ["task_change"]

THRESHOLD = 4.0
MAX_EPOCHS = 40


def _labels(x: Interactions) -> np.ndarray:
    return (x.value >= THRESHOLD).astype(np.float64)


def _scratch_grid(ctx: Context) -> list[dict[str, float]]:
    if ctx.quick:
        return [{"learning_rate": 0.02, "reg": 0.1}]
    return [{"learning_rate": lr, "reg": reg} for lr in (0.005, 0.02) for reg in (0.01, 0.1, 0.5)]


def _click_scratch(name: str, fit: Interactions, valid: Interactions, n_factors: int,
                   seed: int, ctx: Context) -> Arm:
    """ClickMF over a (learning rate, reg) grid, the epoch picked by validation log-loss.

    Each configuration is fitted for ``MAX_EPOCHS`` with the validation log-loss
    recorded; the best (configuration, epoch) is refitted for exactly that many epochs
    (the run is deterministic, so this is the same model as at that epoch).
    """
    t0 = time.perf_counter()
    best: tuple[float, dict[str, Any]] | None = None
    grid = _scratch_grid(ctx)
    for g in grid:
        m = ClickMF(n_factors=n_factors, n_epochs=MAX_EPOCHS, random_state=seed, **g)
        m.fit(fit, valid=valid)
        hist = m.history_["valid_logloss"]
        e = int(np.argmin(hist))
        if best is None or hist[e] < best[0] - 1e-12:
            best = (float(hist[e]), {**g, "n_epochs": e + 1})
    assert best is not None
    params = dict(best[1])

    def refit() -> Recommender:
        return ClickMF(n_factors=n_factors, random_state=seed, **params).fit(fit)

    model = refit()
    return Arm(name, model=model, chosen=params, valid_score=best[0], n_candidates=len(grid),
               select_s=time.perf_counter() - t0, refit=refit)


def _valid_logloss(valid: Interactions) -> Any:
    y = _labels(valid)

    def score(m: Recommender) -> float:
        return log_loss(y, m.predict_indices(valid.user, valid.item))

    return score


def task_change(ds: Dataset, protos: Protocols, ctx: Context) -> dict[str, Any]:
    """Headline at ``ctx.click_fraction`` of the labels (all seeds) and a curve over fractions."""
    s = protos.temporal(ds)
    clicks = union(s.new, s.test)
    n = len(clicks)
    perm = np.random.default_rng(0).permutation(n)
    n_test = n // 5
    test = clicks.take(np.sort(perm[:n_test]))
    pool = clicks.take(np.sort(perm[n_test:]))
    old = s.pretrain
    old_rows = old.take(np.sort(np.random.default_rng(0).choice(len(old), min(len(old), 20_000),
                                                                replace=False)))
    out: dict[str, Any] = {
        "title": "Task change: rating model -> click model",
        "protocol": f"{protos.names['temporal']}: pre-train on the oldest 70%; clicks "
                    "(rating >= 4) from the newer 30%, 20% of them (seed 0) as test",
        "metric": "auc", "lower_is_better": False,
        "data": {"n_pretrain": len(old), "n_click_rows": n, "n_test": len(test),
                 "n_pool": len(pool), "click_rate_test": float(_labels(test).mean()),
                 "valid": "random 10% of the labelled clicks, seed 1"},
        "fraction": ctx.click_fraction, "fractions": list(ctx.click_fractions),
        "seeds": list(ctx.seeds), "frozen": ["item_*"], "models": {},
    }
    for name, spec in ctx.rating_specs().items():
        from rectune.finetune import supports

        if not supports(spec.cls, "task_change"):
            out["models"][name] = {"status": "n/a (unsupported: no task change for "
                                             f"{name})"}
            continue
        ctx.say(f"task change: {name}")
        out["models"][name] = _click_model(spec, ctx, old, old_rows, pool, test)
    return out


def _subset(pool: Interactions, fraction: float, seed: int) -> Interactions:
    """Nested subsets: for one seed, a smaller fraction is a prefix of a larger one."""
    perm = np.random.default_rng(seed).permutation(len(pool))
    m = max(10, int(np.floor(round(fraction * len(pool), 6))))
    return pool.take(np.sort(perm[:m]))


def _click_model(spec: ModelSpec, ctx: Context, old: Interactions, old_rows: Interactions,
                 pool: Interactions, test: Interactions) -> dict[str, Any]:
    def pretrain() -> Recommender:
        return spec.make(0).fit(old)

    pre = pretrain()
    n_factors = int(getattr(pre, "n_factors", 32))
    fractions = sorted({*ctx.click_fractions, ctx.click_fraction})
    points: list[dict[str, Any]] = []
    headline_runs: list[dict[str, Any]] = []
    pooled = AutoPool(key="loss", how="mean")
    for f in fractions:
        for seed in ctx.seeds:
            ctx.say(f"task change: {spec.name} labels {f:g} seed {seed}")
            lab = _subset(pool, f, seed)
            timed = f == ctx.click_fraction and seed == ctx.seeds[0]
            arms, comps = _run_point(spec, ctx, pre, old, old_rows, lab, test, n_factors, seed,
                                     pretrain if timed else None,
                                     with_retrain=f == ctx.click_fraction)
            pooled.add(f, test.user, arms, comps)
            point = {"fraction": f, "seed": seed, "n_labels": len(lab),
                     "arms": {a: arm.to_dict() for a, arm in arms.items()},
                     "comparisons": comps}
            points.append(point)
            if f == ctx.click_fraction:
                point["headline"] = headline(arms, comps)
                headline_runs.append(point)
    curve: dict[str, list[dict[str, Any]]] = {}
    for arm in ("stale", "scratch", "retrain", *FT_ARMS, "auto"):
        for f in fractions:
            vals = [p["arms"][arm]["metrics"]["auc"] for p in points
                    if p["fraction"] == f and p["arms"][arm]["status"] == "ok"]
            if vals:
                curve.setdefault(arm, []).append({"fraction": f, **seed_interval(vals)})
    head = _summary(headline_runs)
    if "auto" in head:  # log-loss, auto − reference, over the headline fraction's seeds
        head["auto"]["pooled_vs_reference"] = pooled.compare(n_boot=ctx.n_boot // 2)
    return {"points": points, "curve": {"auc": curve}, "headline": head}


def _run_point(spec: ModelSpec, ctx: Context, pre: Recommender, old: Interactions,
               old_rows: Interactions, lab: Interactions, test: Interactions, n_factors: int,
               seed: int, pretrain: Any, *, with_retrain: bool
               ) -> tuple[dict[str, Arm], dict[str, Any]]:
    """All arms at one (label fraction, seed); intervals and paired tests only at the
    headline fraction (``with_retrain``), where the oracle retrain also runs."""
    from rectune.finetune import TaskChange

    fit, valid = carve(lab, "random")
    score = _valid_logloss(valid)
    y = _labels(test)
    arms: dict[str, Arm] = {
        "stale": Arm("stale", model=pre, chosen=dict(spec.params), n_candidates=1),
        "scratch": _click_scratch("scratch", fit, valid, n_factors, seed, ctx),
        "retrain": (_click_scratch("retrain", union(old, fit), valid, n_factors, seed, ctx)
                    if with_retrain else Arm("retrain", status="not run at this fraction "
                                             "(headline fraction only)")),
    }
    arms["retrain"].notes.append("oracle: old ratings binarised as clicks (labels the task "
                                 "premise says do not exist)")
    lrs = (0.02,) if ctx.quick else (0.005, 0.02, 0.05)
    grid = tuple({"learning_rate": lr, "epochs": MAX_EPOCHS} for lr in lrs)
    lams = spec.l2sp_values  # already cut to one value by a quick run's specs
    grids: dict[str, tuple[dict[str, Any], ...]] = {
        "finetune": grid, "l2sp": tuple({**g, "l2sp": lam} for lam in lams for g in grid),
        "frozen": tuple({**g, "freeze": ["item_*"]} for g in grid)}
    base: dict[str, Any] = {"task": TaskChange(threshold=THRESHOLD), "seed": seed,
                            "verbose": False}
    for a in FT_ARMS:
        arms[a] = (finetune_arm(a, pre, lab, grids[a], base, score, fit_part=fit) if grids[a]
                   else Arm(a, status="n/a (unsupported)"))
        if arms[a].ok:
            arms[a].chosen["task"] = {"head": "click", "threshold": THRESHOLD}
    arms["auto"] = _auto_arm(arms, lab, valid, ctx, pre, base, n_factors, seed)
    y_old = _labels(old_rows)
    for arm in arms.values():
        if not arm.ok or arm.model is None:
            continue
        p = arm.model.predict_indices(test.user, test.item, clip=False)
        arm.arrays["score"] = p
        arm.metrics = {"auc": auc(y, p), "n": len(test),
                       "old_auc": auc(y_old, arm.model.predict_indices(
                           old_rows.user, old_rows.item, clip=False))}
        if with_retrain:  # the headline fraction: intervals (the curve uses seed bands)
            ci = paired_auc(test.user, y, p, np.zeros_like(p), n_boot=200)
            arm.metrics["auc_ci"] = [ci["ci"][0] + 0.5, ci["ci"][1] + 0.5]
        if isinstance(arm.model, ClickMF):
            loss = _row_loss(y, p)
            arm.arrays["loss"] = loss
            arm.metrics["log_loss"] = float(loss.mean())
            if with_retrain:
                c = paired_users(test.user, loss, np.zeros_like(loss), how="mean", n_boot=500)
                arm.metrics["log_loss_ci"] = c["ci"]
        else:
            arm.metrics["log_loss"] = None
            arm.notes.append("log-loss n/a: a predicted rating is not a click probability")
    stale_old = arms["stale"].metrics["old_auc"]
    for arm in arms.values():
        if arm.ok and arm.metrics:
            arm.metrics["forgetting"] = stale_old - arm.metrics["old_auc"]
    if pretrain is not None:
        time_arms(arms, ctx.repeats, pretrain=pretrain)
    if with_retrain:
        return arms, _compare(arms, test, y, ctx)
    sel = selected_ft(arms)
    return arms, {"selected": None if sel is None else sel.name}


def _auto_arm(arms: dict[str, Arm], lab: Interactions, valid: Interactions, ctx: Context,
              pre: Recommender, base: dict[str, Any], n_factors: int, seed: int) -> Arm:
    """The guard of :func:`rectune.finetune.auto` over scratch and the fine-tuning arms.

    Scratch here is a ClickMF, not a clone of the rating model, so ``auto`` cannot run
    the search itself; the arms already chose their configurations by validation
    log-loss, and the guard compares each with scratch paired over validation users.
    With auto's rule for small data (a slice under ``CV_BELOW_ROWS`` rows or
    ``CV_BELOW_USERS`` users), each arm's chosen configuration is scored out of fold
    by 5-fold cross-validation over all labelled clicks, so the guard sees every
    labelled user instead of a 10% slice (synthetic, 10% of the labels: 149 users,
    where l2sp's −0.037 validation gain stayed inside the noise and scratch was kept,
    0.029 log-loss worse on the test set). The returned model is the chosen arm's own.
    """
    from rectune.bench.auto_arm import guarded_arm
    from rectune.finetune.auto import CV_BELOW_ROWS, CV_BELOW_USERS

    n_valid_users = len(np.unique(valid.user))
    oof = len(valid) < CV_BELOW_ROWS or n_valid_users < CV_BELOW_USERS
    scored = lab if oof else valid
    y = _labels(scored)
    _, inv = np.unique(scored.user, return_inverse=True)
    n_users = int(inv.max()) + 1
    counts = np.bincount(inv, minlength=n_users).astype(np.float64)
    per_user: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    folds = _click_folds(lab) if oof else []
    for name in ("scratch", *FT_ARMS):
        a = arms.get(name)
        if a is None or not a.ok or a.model is None:
            continue
        loss = (_out_of_fold_loss(name, a, lab, folds, pre, base, n_factors, seed) if oof else
                _row_loss(y, a.model.predict_indices(valid.user, valid.item, clip=False)))
        per_user[name] = (np.bincount(inv, weights=loss, minlength=n_users), counts)
    out = guarded_arm(arms, per_user, metric="log_loss", lower_is_better=True, how="mean",
                      n_boot=max(200, ctx.n_boot // 2))
    out.chosen["guard_validation"] = (
        f"5-fold out-of-fold over {len(lab)} labelled clicks from {n_users} users (the slice "
        f"would hold {len(valid)} rows from {n_valid_users} users)" if oof else
        f"the validation slice ({len(valid)} rows, {n_valid_users} users)")
    return out


def _click_folds(lab: Interactions, k: int = 5
                 ) -> list[tuple[np.ndarray, Interactions, Interactions]]:
    """``k`` random folds of the labelled clicks (seed 1): (held rows, fit, held)."""
    out = []
    for part in np.array_split(np.random.default_rng(1).permutation(len(lab)), k):
        part = np.sort(part)
        keep = np.ones(len(lab), dtype=bool)
        keep[part] = False
        out.append((part, lab.take(np.flatnonzero(keep)), lab.take(part)))
    return out


def _out_of_fold_loss(name: str, arm: Arm, lab: Interactions,
                      folds: list[tuple[np.ndarray, Interactions, Interactions]],
                      pre: Recommender, base: dict[str, Any], n_factors: int, seed: int
                      ) -> np.ndarray:
    """Per-row log-loss of ``arm``'s chosen configuration, each fold fitted on the others.

    Fine-tuning early-stops on the engine's 10% slice of the fold's training rows;
    scratch keeps the epoch count it chose.
    """
    from rectune.finetune import FinetuneConfig, finetune

    y = _labels(lab)
    loss = np.empty(len(lab))
    for part, fit, held in folds:
        if name == "scratch":
            m: Recommender = ClickMF(n_factors=n_factors, random_state=seed,
                                     **arm.chosen).fit(fit)
        else:  # arm.chosen holds the grid entry and base (its task as a plain dict)
            m = finetune(pre, fit, FinetuneConfig(**{**arm.chosen, **base}))
        loss[part] = _row_loss(y[part], m.predict_indices(held.user, held.item, clip=False))
    return loss


def _row_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-15) -> np.ndarray:
    q = np.clip(p, eps, 1 - eps)
    return -(y * np.log(q) + (1 - y) * np.log1p(-q))


def _compare(arms: dict[str, Arm], test: Interactions, y: np.ndarray,
             ctx: Context) -> dict[str, Any]:
    sel = selected_ft(arms)
    out: dict[str, Any] = {"selected": None if sel is None else sel.name}
    for ft in FT_ARMS:
        a = arms[ft]
        if not a.ok:
            continue
        for other in ("scratch", "retrain", "stale"):
            b = arms[other]
            if not b.ok:
                continue
            c = paired_auc(test.user, y, a.arrays["score"], b.arrays["score"],
                           n_boot=max(100, ctx.n_boot // 8))
            c["verdict"] = verdict(c["ci"], lower_is_better=False)
            c["metric"] = "auc"
            if "loss" in b.arrays:
                ll = paired_users(test.user, a.arrays["loss"], b.arrays["loss"], how="mean",
                                  n_boot=ctx.n_boot)
                ll["verdict"] = verdict(ll["ci"], lower_is_better=True)
                c["log_loss"] = ll
            out[f"{ft} vs {other}"] = c
    from rectune.bench.auto_arm import auto_comparisons

    out.update(auto_comparisons(
        arms, lambda a, b: paired_users(test.user, a.arrays["loss"], b.arrays["loss"],
                                        how="mean", n_boot=ctx.n_boot),
        lambda a: a.metrics.get("log_loss"), lower_is_better=True))
    return out


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline over seeds at the headline fraction: AUC and log-loss deltas vs scratch."""
    if not runs:
        return {"status": "no run"}
    sel = [r["comparisons"].get("selected") for r in runs]
    d_auc, d_ll, wins = [], [], 0
    for r in runs:
        s = r["comparisons"].get("selected")
        c = r["comparisons"].get(f"{s} vs scratch") if s else None
        if c is None:
            continue
        d_auc.append(c["delta"])
        wins += c["verdict"] == "better"
        if "log_loss" in c:
            d_ll.append(c["log_loss"]["delta"])
    out: dict[str, Any] = {"selected_counts": {a: sel.count(a) for a in set(sel) if a},
                           "delta_auc_vs_scratch": seed_interval(d_auc),
                           "delta_log_loss_vs_scratch": seed_interval(d_ll),
                           "significant_auc_wins": wins, "n_seeds": len(runs),
                           "first_seed": runs[0].get("headline", {})}
    ref = [r["comparisons"]["auto vs reference"] for r in runs
           if "auto vs reference" in r["comparisons"]]
    if ref:
        out["auto"] = {"runs": len(ref), "metric": "log_loss",
                       "choices": [r["comparisons"].get("auto_choice") for r in runs],
                       "significantly_worse_than_reference": sum(not c["not_worse"]
                                                                 for c in ref),
                       "delta_vs_reference": seed_interval([c["delta"] for c in ref]),
                       "significantly_worse_than_oracle": sum(
                           not r["comparisons"]["auto vs oracle"]["not_worse"] for r in runs
                           if "auto vs oracle" in r["comparisons"])}
    if not d_auc:
        out["status"] = "n/a (no fine-tuning arm ran: unsupported)"
    return out
