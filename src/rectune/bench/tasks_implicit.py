"""Task 1 on implicit feedback: the temporal update for ALS and BPR, scored by NDCG@10.

The ``auto`` arm chooses among the same strategies on the same slice (newest 10%,
NDCG@10, old positives excluded from the candidates), with its negative-transfer
guard; for BPR, which cannot be fine-tuned, it is scratch and says so.

Events are ratings >= 4 of the temporal split's slices (oldest 70% / next 15% /
newest 15%). Test users are ranked over the full catalogue; every arm gets the
same candidate filter, each user's positives before the test period (pre-training
and new slices), so arms differ only in their scores. Choices (regularisation, λ)
are made on the newest 10% of the new positives by NDCG@10.

The ``l2sp_replay`` arm is for returning users: L2-SP fine-tuning that also replays
the updated users' earlier positives (one anchored ALS sweep sees each user's whole
history, as retraining does), chosen on each user's newest new positives.

Forgetting on implicit data: NDCG@10 of the old positives themselves, ranked
without filtering (how well the model still puts what it learned first), for a
seeded sample of old users, and its change against the stale model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from rectune.bench.arms import (
    FT_ARMS,
    Arm,
    ModelSpec,
    carve,
    finetune_arm,
    select,
    union,
)
from rectune.bench.auto_arm import auto_arm, auto_comparisons
from rectune.bench.compare import paired_per_user, verdict
from rectune.bench.context import Context
from rectune.bench.rating import headline, selected_ft, time_arms
from rectune.bench.splits import Protocols
from rectune.data.dataset import Dataset
from rectune.data.interactions import Interactions
from rectune.evaluate.evaluator import evaluate_ranking
from rectune.evaluate.ranking import mean, ranking_metrics_per_user
from rectune.models.base import Recommender

__all__ = ["Positives", "temporal_implicit", "temporal_positives"]

THRESHOLD = 4.0
K = 10


def _valid_ndcg(hist: Interactions, valid: Interactions) -> Callable[[Recommender], float]:
    def score(m: Recommender) -> float:
        r = evaluate_ranking(m, hist, valid, k=K, metrics=("ndcg",), beyond=False, n_boot=1)
        return float(r.metrics[f"ndcg@{K}"])

    return score


def _old_ndcg(m: Recommender, old: Interactions, users: np.ndarray) -> float:
    """Mean NDCG@10 of each sampled user's old positives, ranked with nothing filtered."""
    truth = sp.csr_array((np.ones(len(old)), (old.user, old.item)),
                         shape=(old.n_users, old.n_items))
    top, _ = m.recommend_indices(users, K, exclude_seen=False)
    per = ranking_metrics_per_user(top, truth[users], K, ("ndcg",))
    return mean(per[f"ndcg@{K}"])


class Positives(NamedTuple):
    """The temporal split's slices as positives (ratings >= 4), plus what scoring needs."""

    pre: Interactions  # pre-training positives
    new: Interactions  # new positives
    test: Interactions
    hist: Interactions  # pre + new: every user's positives before the test period
    fit: Interactions  # new minus its newest-10% validation slice
    valid: Interactions
    before: np.ndarray  # bool per test-map user: rated (anything) before the test period


def temporal_positives(ds: Dataset, protos: Protocols) -> Positives:
    """:class:`Positives` of the dataset's temporal split."""
    s = protos.temporal(ds)
    pre_pos, new_pos = s.pretrain.binarize(THRESHOLD), s.new.binarize(THRESHOLD)
    fit, valid = carve(new_pos, "temporal")
    before = np.zeros(s.test.n_users, dtype=bool)
    before[s.pretrain.user] = True
    before[s.new.user] = True
    return Positives(pre_pos, new_pos, s.test.binarize(THRESHOLD), union(pre_pos, new_pos),
                     fit, valid, before)


def temporal_implicit(ds: Dataset, protos: Protocols, ctx: Context) -> dict[str, Any]:
    """ALS / BPR on positives: stale, scratch, retrain and the fine-tuning arms."""
    pre_pos, new_pos, test_pos, hist, fit, valid, before = temporal_positives(ds, protos)
    valid_hist = union(pre_pos, fit)
    old_users = np.unique(pre_pos.user)
    if len(old_users) > 500:
        old_users = np.sort(np.random.default_rng(0).choice(old_users, 500, replace=False))
    out: dict[str, Any] = {
        "title": "Temporal update (implicit feedback: ratings >= 4 as events)",
        "protocol": protos.names["temporal"] + ", positives only",
        "metric": f"ndcg@{K}", "lower_is_better": False,
        "data": {"n_pretrain": len(pre_pos), "n_new": len(new_pos), "n_test": len(test_pos),
                 "n_valid": len(valid), "valid": "newest 10% of the new positives",
                 "candidates": "full catalogue minus each user's positives before the test "
                               "period (same for every arm)"},
        "frozen": ["item_*"], "models": {},
    }
    for name, spec in ctx.implicit_specs().items():
        ctx.say(f"temporal/implicit: {name}")
        out["models"][name] = _model(spec, ctx, pre_pos, new_pos, fit, valid, valid_hist,
                                     hist, test_pos, before, old_users)
    return out


def _model(spec: ModelSpec, ctx: Context, pre_pos: Interactions, new_pos: Interactions,
           fit: Interactions, valid: Interactions, valid_hist: Interactions,
           hist: Interactions, test_pos: Interactions, before: np.ndarray,
           old_users: np.ndarray) -> dict[str, Any]:
    score = _valid_ndcg(valid_hist, valid)

    def pretrain() -> Recommender:
        return spec.make(0).fit(pre_pos)

    pre = pretrain()
    both = union(pre_pos, fit)
    arms: dict[str, Arm] = {
        "stale": Arm("stale", model=pre, chosen=dict(spec.params), valid_score=score(pre),
                     n_candidates=1),
        "scratch": select("scratch", spec.scratch_grid,
                          lambda g: spec.make(0, **g).fit(fit), score, lower_is_better=False),
        "retrain": select("retrain", ({},), lambda g: spec.make(0, **g).fit(both), score,
                          lower_is_better=False),
    }
    base: dict[str, Any] = {"valid_mode": "temporal", "seed": 0, "verbose": False}
    grids = {"finetune": spec.ft_grid, "l2sp": spec.l2sp_grid(),
             "frozen": tuple({**g, "freeze": ["item_*"]} for g in spec.ft_grid)}
    for a in FT_ARMS:
        arms[a] = (finetune_arm(a, pre, new_pos, grids[a], base, score, fit_part=fit,
                                lower_is_better=False)
                   if grids[a] else Arm(a, status="n/a (unsupported)"))
    arms["auto"] = auto_arm(spec, pre, new_pos, old=pre_pos, seed=0, valid_mode="temporal",
                            history=pre_pos, n_boot=ctx.n_boot // 2)
    arms["l2sp_replay"] = _replay_arm(spec, pre, pre_pos, fit)
    stale_old: float | None = None
    for arm in arms.values():
        if not arm.ok or arm.model is None:
            continue
        r = evaluate_ranking(arm.model, hist, test_pos, k=K, metrics=("ndcg", "recall"),
                             beyond=False, n_boot=ctx.n_boot // 4)
        nd = r.per_user[f"ndcg@{K}"]
        users = test_pos.user_map.encode(r.users)
        ret = before[users]
        arm.arrays["ndcg"] = nd
        arm.arrays["returning"] = ret
        arm.metrics = {f"ndcg@{K}": r.metrics[f"ndcg@{K}"], f"ndcg@{K}_ci": r.ci[f"ndcg@{K}"],
                       f"recall@{K}": r.metrics[f"recall@{K}"],
                       f"ndcg@{K}_returning": mean(nd[ret]),
                       f"ndcg@{K}_new_users": mean(nd[~ret]),
                       "n_users": len(nd), "n_returning": int(ret.sum()),
                       "n_users_unknown": r.counts["n_users_unknown"],
                       f"old_ndcg@{K}": _old_ndcg(arm.model, pre_pos, old_users)}
        if arm.name == "stale":
            stale_old = arm.metrics[f"old_ndcg@{K}"]
    for arm in arms.values():
        if arm.ok and arm.metrics and stale_old is not None:
            arm.metrics["forgetting"] = stale_old - arm.metrics[f"old_ndcg@{K}"]
    ctx.say(f"temporal/implicit: {spec.name} timing (warm-up + {ctx.repeats} runs)")
    time_arms(arms, ctx.repeats, pretrain=pretrain)
    comps = _compare(arms, ctx)
    return {"arms": {a: arm.to_dict() for a, arm in arms.items()}, "comparisons": comps,
            "headline": headline(arms, comps)}


def _replay_arm(spec: ModelSpec, pre: Recommender, pre_pos: Interactions,
                fit: Interactions) -> Arm:
    """L2-SP fine-tuning that replays the updated users' earlier positives, for the
    returning users: the explicit task's ``l2sp_replay`` (see
    :mod:`rectune.bench.tasks_rating`) on implicit feedback.

    Validation: each user's newest 10% of the new positives (users with >= 5), NDCG@10
    with their earlier positives excluded; among the grid's recipes
    (``spec.implicit_replay_grid``: one or two anchored sweeps, exact or 3
    conjugate-gradient steps) that fit within ``RETURNING_BUDGET`` of a retrain on the
    same rows, the best is refitted on the new positives minus the task's slice.
    """
    from rectune.bench.tasks_rating import per_user_newest, replay_setup
    from rectune.finetune import FinetuneConfig, finetune

    if not spec.implicit_replay_l2sp:
        return Arm("l2sp_replay", status="n/a (no replay grid for this family)")
    if fit.timestamp is None:
        return Arm("l2sp_replay", status="n/a (the new data has no timestamps)")
    inner, pv = per_user_newest(fit)
    pool, replay_all, budget = replay_setup(spec, pre_pos, fit, inner, 0)
    score = _valid_ndcg(union(pre_pos, inner), pv)
    grid = spec.implicit_replay_grid(replay_all)
    arm = finetune_arm("l2sp_replay", pre, inner, grid, {"seed": 0, "verbose": False}, score,
                       old=pool, lower_is_better=False, max_build_s=budget)
    if not arm.ok:
        return arm
    recipe = {**arm.chosen, "seed": 0, "verbose": False}

    def refit() -> Recommender:
        return finetune(pre, fit, FinetuneConfig(**recipe), old_data=pool)

    arm.model, arm.refit = refit(), refit
    arm.chosen["validation"] = "newest 10% of each user's new positives (users with >= 5)"
    arm.chosen["replay_pool"] = "pre-training positives of the users in the new data"
    arm.notes.append(f"chosen on {len(pv)} positives of {len(np.unique(pv.user))} users, "
                     f"refitted on {len(fit)}; replay pool {len(pool)} positives")
    return arm


def _compare(arms: dict[str, Arm], ctx: Context) -> dict[str, Any]:
    """Paired per-user ΔNDCG@10 (fine-tuned − other), overall and for returning users."""
    sel = selected_ft({a: _neg(arm) for a, arm in arms.items()})
    out: dict[str, Any] = {"selected": None if sel is None else sel.name}
    for ft in (*FT_ARMS, "l2sp_replay"):
        a = arms.get(ft)
        if a is None or not a.ok:
            continue
        for other in ("scratch", "retrain", "stale"):
            b = arms[other]
            if not b.ok:
                continue
            c = paired_per_user(a.arrays["ndcg"], b.arrays["ndcg"], n_boot=ctx.n_boot)
            c["verdict"] = verdict(c["ci"], lower_is_better=False)
            ret = a.arrays["returning"]
            if ret.sum() > 1:
                cg = paired_per_user(a.arrays["ndcg"][ret], b.arrays["ndcg"][ret],
                                     n_boot=ctx.n_boot)
                cg["verdict"] = verdict(cg["ci"], lower_is_better=False)
                c["group_returning"] = cg
            out[f"{ft} vs {other}"] = c
    out.update(auto_comparisons(
        arms, lambda a, b: paired_per_user(a.arrays["ndcg"], b.arrays["ndcg"],
                                           n_boot=ctx.n_boot),
        lambda a: a.metrics.get(f"ndcg@{K}"), lower_is_better=False))
    return out


def _neg(arm: Arm) -> Arm:
    """A view with the validation score negated, so "lowest is best" picks the top NDCG."""
    if not arm.ok or arm.valid_score is None:
        return arm
    return Arm(arm.name, arm.status, valid_score=-arm.valid_score)
