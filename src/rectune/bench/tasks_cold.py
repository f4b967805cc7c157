"""Task 3: cold-start users with K = 0, 1, 3, 5 support ratings (PROTOCOLS.md "Cold-start").

The pre-trained model has seen the warm users only. Each cold user brings K support
ratings; the query set (the same rows for every K) is the test. Compared:

* bias baselines: the global mean; the item bias (``mu + b_i``, which is also what
  the stale model predicts for a user it never saw); the user bias folded in from
  the support ratings (:class:`~rectune.models.Baseline`); a demographic bias (the
  shrunk mean bias of warm users with the same gender, age band and occupation:
  side features, no ratings);
* fold-in: the user's factors and bias solved in closed form against fixed items
  (:func:`rectune.finetune.foldin.fold_in`);
* the stale, scratch and retrain models, and the fine-tuning arms on the support
  ratings (plain, L2-SP, frozen items);
* feature-regularised fine-tuning, when the engine supports ``feature_reg`` (probed
  at run time; reported as ``n/a`` until then);
* ``auto`` (:func:`rectune.finetune.auto`), searched on warm users playing cold with
  its negative-transfer guard, its choice then applied to the cold users. Its
  stand-ins are sized like the real cold set and rotated (disjoint, up to 4, pooled:
  :class:`_StandIns`), since the guard's scratch learns only from the new users.

Fine-tuning choices cannot use a validation slice of K <= 5 ratings per user, so,
as PROTOCOLS.md prescribes, they are chosen on warm users playing cold ones: 10% of
the warm users (seed 1) keep K ratings, a model pre-trained without them is
fine-tuned on those, and their other ratings (from the 6th on) score each choice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from rectune._errors import RectuneError
from rectune.bench.arms import (
    FT_ARMS,
    NA_UNSUPPORTED,
    Arm,
    ModelSpec,
    json_safe,
    select,
    supported,
    time_runs,
    union,
)
from rectune.bench.auto_arm import AutoPool
from rectune.bench.compare import paired_users, seed_interval, verdict
from rectune.bench.context import Context
from rectune.bench.splits import Protocols
from rectune.data.dataset import Dataset
from rectune.data.interactions import Interactions
from rectune.data.split import cold_user_split
from rectune.evaluate.rating import rmse
from rectune.evaluate.stats import bootstrap_ci
from rectune.models.base import Recommender

__all__ = ["cold_start"]

NO_SUPPORT = "n/a (K=0: no support ratings)"
#: absolute ridge penalties tried for the tuned fold-in
FOLD_IN_LAMBDAS: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0)
_AGE_EDGES = (0, 18, 25, 35, 45, 50, 56, 200)


# ----------------------------------------------------------------- predictions
def _fold_in_predict(model: Recommender, support: Interactions, test: Interactions,
                     lam: float | None = None) -> np.ndarray:
    """Predictions for ``test`` with every support user folded in (one solve per user).

    ``lam=None``: :func:`rectune.finetune.foldin.fold_in` (the model's own per-rating
    regularisation, ``n_u · reg``). A number: the ridge solve of ``[b_u, p_u]`` against
    the fixed items with that absolute penalty, ``argmin Σ_i (r_ui − μ − b_i − b_u −
    p_u·q_i)² + λ (b_u² + ‖p_u‖²)``; with K <= 5 ratings the right λ is not the one SGD
    used on hundreds, so the suite also chooses it on warm users playing cold.
    """
    from rectune.finetune.foldin import fold_in

    q = np.asarray(getattr(model, "item_factors_", np.zeros((model.n_items, 0))),
                   dtype=np.float64)
    bi = np.asarray(getattr(model, "item_bias_", np.zeros(model.n_items)), dtype=np.float64)
    mu = float(np.asarray(getattr(model, "global_bias_", [model.global_mean_])).reshape(-1)[0])
    bu = np.zeros(model.n_users)
    pu = np.zeros((model.n_users, q.shape[1]))
    order = np.argsort(support.user, kind="stable")
    users = support.user[order]
    items = support.item[order]
    cuts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[cuts[1:], len(users)] if len(users) else cuts[:0]
    cuts = cuts if len(users) else cuts[:0]
    raw_items = support.item_map.decode(items)
    vals = support.value[order].astype(np.float64)
    for lo, hi in zip(cuts, ends, strict=True):  # one closed-form solve per user, not per row
        if lam is None:
            f = fold_in(model, raw_items[lo:hi], vals[lo:hi])
            bu[users[lo]] = f.bias
            if q.shape[1]:
                pu[users[lo]] = f.factors
            continue
        x = np.column_stack([np.ones(hi - lo), q[items[lo:hi]]])
        y = vals[lo:hi] - mu - bi[items[lo:hi]]
        w = np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)
        bu[users[lo]], pu[users[lo]] = w[0], w[1:]
    return _bias_predict(model, test, bu) + np.einsum("ij,ij->i", pu[test.user], q[test.item])


def _bias_predict(model: Recommender, test: Interactions, user_bias: np.ndarray) -> np.ndarray:
    """``mu + b_i + b_u`` with the model's ``mu`` and ``b_i`` and the given ``b_u``."""
    mu = float(np.asarray(getattr(model, "global_bias_", [model.global_mean_])).reshape(-1)[0])
    bi = np.asarray(getattr(model, "item_bias_", np.zeros(model.n_items)), dtype=np.float64)
    return mu + bi[test.item] + user_bias[test.user]


def _demographic_bias(ds: Dataset, base: Recommender, warm: Interactions) -> np.ndarray | None:
    """Per-user bias from side features: warm users' mean bias in the same cell, shrunk.

    Cells are (gender, age band, occupation), shrunk towards (gender, age band), shrunk
    towards 0 (weights n / (n + 10)). None without the needed user columns.
    """
    uf = ds.user_features
    if uf is None or not {"gender", "age", "occupation"} <= set(uf.columns):
        return None
    users = warm.user_map.ids
    f = uf.reindex(users)
    band = pd.cut(pd.to_numeric(f["age"], errors="coerce"), _AGE_EDGES, right=False)
    coarse = f["gender"].astype(str) + "|" + band.astype(str)
    fine = coarse + "|" + f["occupation"].astype(str)
    has = np.zeros(len(users), dtype=bool)
    has[np.unique(warm.user)] = True
    user_bias: Any = base.parameters()["user_bias"]
    bu = pd.Series(np.asarray(user_bias, dtype=np.float64),
                   index=np.arange(len(users)))

    def shrunk(keys: pd.Series, prior: pd.Series) -> pd.Series:
        g = pd.DataFrame({"k": keys[has].to_numpy(), "r": (bu - prior)[has].to_numpy()})
        agg = g.groupby("k")["r"].agg(["sum", "count"])
        eff = agg["sum"] / (agg["count"] + 10.0)
        return prior + pd.Series(keys.map(eff).fillna(0.0).to_numpy(), index=keys.index)

    zero = pd.Series(np.zeros(len(users)), index=bu.index)
    coarse.index = fine.index = bu.index
    level1 = shrunk(coarse, zero)
    return shrunk(fine, level1).to_numpy()


# ------------------------------------------------------------------------ task
def cold_start(ds: Dataset, protos: Protocols, ctx: Context) -> dict[str, Any]:
    """Every arm and baseline at each K; curves of RMSE over K; paired comparisons."""
    from rectune.models.baseline import Baseline

    splits = {k: protos.cold(ds, k) for k in ctx.cold_k}
    first = splits[ctx.cold_k[0]]
    is_cold = np.zeros(first.train.n_users, dtype=bool)
    is_cold[first.info["cold_users"]] = True
    test = first.test
    warm = first.train.take(~is_cold[first.train.user])
    old = warm.take(np.sort(np.random.default_rng(0).choice(len(warm), min(len(warm), 20_000),
                                                            replace=False)))
    sim = cold_user_split(warm, cold_fraction=0.1, n_support=0, seed=1, query_start=5)
    sim_cold = np.zeros(warm.n_users, dtype=bool)
    sim_cold[sim.info["cold_users"]] = True
    sim_warm = warm.take(~sim_cold[warm.user])
    base = Baseline().fit(warm)
    demo = _demographic_bias(ds, base, warm)
    out: dict[str, Any] = {
        "title": "Cold-start users with side features",
        "protocol": protos.names["cold"], "metric": "rmse", "lower_is_better": True,
        "data": {"n_cold_users": int(is_cold.sum()), "n_query": len(test), "n_warm": len(warm),
                 "selection": "warm users playing cold (10% of warm users, seed 1; "
                              "query from their 6th rating)",
                 "n_sim_cold_users": int(sim_cold.sum()),
                 "auto_selection": "disjoint rotations of warm users playing cold, each "
                                   "as many as the real cold users (up to 4 rotations, "
                                   "seed 1), pooled for the guard"},
        "ks": list(ctx.cold_k), "baselines": {}, "models": {},
    }
    baselines: dict[int, dict[str, Arm]] = {}
    for k in ctx.cold_k:
        support = splits[k].train.take(is_cold[splits[k].train.user])
        b = {"global_mean": _pred_arm("global_mean", np.full(len(test), warm.value.mean()),
                                      test),
             "item_bias": _pred_arm("item_bias", _bias_predict(base, test,
                                                               np.zeros(base.n_users)), test),
             "bias_fold_in": _pred_arm("bias_fold_in", _fold_in_predict(base, support, test)
                                       if len(support) else
                                       _bias_predict(base, test, np.zeros(base.n_users)), test)}
        b["demographic_bias"] = (Arm("demographic_bias", status="n/a (no user features)")
                                 if demo is None else
                                 _pred_arm("demographic_bias", _bias_predict(base, test, demo),
                                           test))
        if k == max(ctx.cold_k) and len(support):
            b["bias_fold_in"].time = time_runs(partial(_fold_in_predict, base, support, test),
                                               ctx.repeats)
        baselines[k] = b
        out["baselines"][str(k)] = {a: arm.to_dict() for a, arm in b.items()}
    for name, spec in ctx.rating_specs().items():
        ctx.say(f"cold start: {name}")
        out["models"][name] = _cold_model(ds, spec, ctx, splits, is_cold, warm, old, sim,
                                          sim_cold, sim_warm, test, baselines)
    return out


def _pred_arm(name: str, pred: np.ndarray, test: Interactions, *, lo: float = 1.0,
              hi: float = 5.0) -> Arm:
    scale = test.rating_scale or (lo, hi)
    p = np.clip(pred, float(scale[0]), float(scale[1]))
    sq = (p - test.value) ** 2
    ci = bootstrap_ci(sq, n_boot=500)
    arm = Arm(name, n_candidates=1)
    arm.metrics = {"rmse": float(np.sqrt(sq.mean())),
                   "rmse_ci": [float(np.sqrt(ci.lo)), float(np.sqrt(ci.hi))], "n": len(test)}
    arm.arrays["sq"] = sq
    return arm


def _model_arm(name: str, model: Recommender, test: Interactions, old: Interactions) -> Arm:
    arm = _pred_arm(name, model.predict_indices(test.user, test.item), test)
    arm.model = model
    arm.metrics["old_rmse"] = rmse(old.value, model.predict_indices(old.user, old.item))
    return arm


def _cold_model(ds: Dataset, spec: ModelSpec, ctx: Context, splits: dict[int, Any],
                is_cold: np.ndarray, warm: Interactions, old: Interactions, sim: Any,
                sim_cold: np.ndarray, sim_warm: Interactions, test: Interactions,
                baselines: dict[int, dict[str, Arm]]) -> dict[str, Any]:
    def pretrain() -> Recommender:
        return spec.make(0).fit(warm)

    pre = pretrain()
    sim_pre = spec.make(0).fit(sim_warm)
    stand_ins = _StandIns(spec, warm, int(is_cold.sum()))
    stale = _model_arm("stale", pre, test, old)
    by_k: dict[str, Any] = {}
    curve: dict[str, list[dict[str, Any]]] = {}
    timing: dict[str, Any] = {}
    pooled = AutoPool()
    for k in ctx.cold_k:
        support = splits[k].train.take(is_cold[splits[k].train.user])
        sim_split = cold_user_split(warm, cold_fraction=0.1, n_support=k, seed=1,
                                    query_start=5)
        sim_support = sim_split.train.take(sim_cold[sim_split.train.user])
        arms: dict[str, Arm] = {"stale": stale}
        if k == 0:
            for a in ("scratch", "retrain", *FT_ARMS, "auto"):
                arms[a] = Arm(a, status=NO_SUPPORT)
            arms["feature_reg"] = _feature_prior_arm(ds, pre, test)
        else:
            both = union(warm, support)
            arms["scratch"] = _model_arm("scratch", spec.make(0).fit(support), test, old)
            arms["scratch"].refit = partial(_fit, spec, support)
            arms["retrain"] = _model_arm("retrain", spec.make(0).fit(both), test, old)
            arms["retrain"].refit = partial(_fit, spec, both)
            for a in FT_ARMS:
                arms[a] = _ft_arm(a, spec, ctx, pre, support, sim_pre, sim_support,
                                  sim_split.test, test, old)
            arms["auto"] = _auto_arm(spec, ctx, pre, support, stand_ins, k, test, old)
            arms["feature_reg"] = _feature_reg_arm(ds, spec, ctx, pre, support, sim_pre,
                                                   sim_support, sim_split.test, test, old)
        if _has_fold_in(pre):
            arms["fold_in"] = _pred_arm("fold_in", _fold_in_predict(pre, support, test), test)
            if len(support):
                arms["fold_in"].refit = partial(_fold_in_predict, pre, support, test)
            arms["fold_in_tuned"] = _tuned_fold_in(pre, support, sim_pre, sim_support,
                                                   sim_split.test, test)
        else:
            arms["fold_in"] = Arm("fold_in", status=NA_UNSUPPORTED)
            arms["fold_in_tuned"] = Arm("fold_in_tuned", status=NA_UNSUPPORTED)
        forget_ref = stale.metrics["old_rmse"]
        for arm in arms.values():
            if arm.ok and "old_rmse" in arm.metrics:
                arm.metrics["forgetting"] = arm.metrics["old_rmse"] - forget_ref
        if k == max(ctx.cold_k):
            ctx.say(f"cold start: {spec.name} timing at K={k}")
            for a, arm in arms.items():
                fn = pretrain if a == "stale" else arm.refit
                if arm.ok and fn is not None:
                    arm.time = time_runs(fn, ctx.repeats)
                    timing[a] = arm.time.to_dict()
        comps = _compare(arms, baselines[k], test, ctx)
        pooled.add(k, test.user, arms, comps)
        by_k[str(k)] = {"arms": {a: arm.to_dict() for a, arm in arms.items()},
                        "comparisons": comps}
        for a, arm in {**baselines[k], **arms}.items():
            if arm.ok:
                ci = arm.metrics["rmse_ci"]
                curve.setdefault(a, []).append({"k": k, "rmse": arm.metrics["rmse"],
                                                "lo": ci[0], "hi": ci[1]})
    head = _headline(by_k, ctx)
    head["auto_pooled_vs_reference"] = pooled.compare(n_boot=ctx.n_boot // 2)  # over K
    return {"by_k": by_k, "curve": curve, "timing": timing, "headline": head}


def _tuned_fold_in(pre: Recommender, support: Interactions, sim_pre: Recommender,
                   sim_support: Interactions, sim_query: Interactions,
                   test: Interactions) -> Arm:
    """Ridge fold-in with λ chosen on warm users playing cold (the fair closed-form rival)."""
    t0 = time.perf_counter()
    scores = {lam: rmse(sim_query.value, np.clip(_fold_in_predict(sim_pre, sim_support,
                                                                   sim_query, lam), 1, 5))
              for lam in FOLD_IN_LAMBDAS}
    lam = min(scores, key=lambda k: scores[k])
    arm = _pred_arm("fold_in_tuned", _fold_in_predict(pre, support, test, lam), test)
    arm.chosen, arm.valid_score = {"lambda": lam}, scores[lam]
    arm.n_candidates, arm.select_s = len(FOLD_IN_LAMBDAS), time.perf_counter() - t0
    if len(support):
        arm.refit = partial(_fold_in_predict, pre, support, test, lam)
    arm.notes.append("λ chosen on warm users playing cold (valid_score = their query RMSE)")
    return arm


def _fit(spec: ModelSpec, data: Interactions) -> Recommender:
    return spec.make(0).fit(data)


def _has_fold_in(model: Recommender) -> bool:
    from rectune.finetune import supports

    return supports(model, "fold_in")


def _ft_arm(name: str, spec: ModelSpec, ctx: Context, pre: Recommender,
            support: Interactions, sim_pre: Recommender, sim_support: Interactions,
            sim_query: Interactions, test: Interactions, old: Interactions,
            extra: dict[str, Any] | None = None, features: Any = None) -> Arm:
    """Choose the recipe on warm users playing cold, then apply it to the real cold users."""
    from rectune.finetune import FinetuneConfig, finetune

    if not supported(pre, name):
        return Arm(name, status=NA_UNSUPPORTED)
    grid = _cold_grid(spec, name, ctx, extra)

    def recipe(p: Recommender, data: Interactions) -> Callable[[dict[str, Any]], Recommender]:
        def build(g: dict[str, Any]) -> Recommender:
            return finetune(p, data, FinetuneConfig(**g), features=features)

        return build

    def sim_score(m: Recommender) -> float:
        return rmse(sim_query.value, m.predict_indices(sim_query.user, sim_query.item))

    chosen = select(name, grid, recipe(sim_pre, sim_support), sim_score)
    cfg = dict(chosen.chosen)
    arm = _model_arm(name, recipe(pre, support)(cfg), test, old)
    arm.chosen = {k: v for k, v in cfg.items() if k != "verbose"}
    arm.valid_score, arm.n_candidates, arm.select_s = (chosen.valid_score, chosen.n_candidates,
                                                       chosen.select_s)
    arm.refit = lambda: recipe(pre, support)(cfg)
    arm.notes.append("chosen on warm users playing cold (valid_score = their query RMSE)")
    return arm


class _StandIns:
    """auto's stand-in cold users: rotations of warm users playing cold, sized like the real.

    The fixed arms choose on PROTOCOLS.md's stand-in (10% of warm users). auto's guard
    compares transfer with scratch, and scratch learns only from the new users' support
    ratings, so its quality depends on how many new users there are: a stand-in with
    75 users where the real task has 188 made scratch look better than it is (ItemKNN,
    K = 1, synthetic: 1.045 on the stand-in, 1.114 on the real cold users). So each
    stand-in holds as many users as the real cold set (a fraction of the warm users,
    clipped to [5%, 50%]), and up to ``MAX`` disjoint rotations of them (seed 1) are
    pooled (:func:`rectune.finetune.auto.decide_pooled`) so the guard sees up to every
    warm user once instead of 75. Each rotation pre-trains its own model without its
    stand-in users (cost reported as ``stand_in_pretrain_s``).
    """

    MAX = 4

    def __init__(self, spec: ModelSpec, warm: Interactions, n_cold: int) -> None:
        n_warm = len(np.unique(warm.user))
        self.fraction = float(np.clip(n_cold / max(n_warm, 1), 0.05, 0.5))
        self.rotations = max(1, min(self.MAX, int(1.0 / self.fraction + 1e-9)))
        self.warm = warm
        self.pres: list[Recommender] = []
        self.cold: list[np.ndarray] = []
        t0 = time.perf_counter()
        for r in range(self.rotations):
            split = cold_user_split(warm, cold_fraction=self.fraction, n_support=0, seed=1,
                                    query_start=5, rotation=r)
            is_c = np.zeros(warm.n_users, dtype=bool)
            is_c[split.info["cold_users"]] = True
            self.cold.append(is_c)
            self.pres.append(spec.make(0).fit(warm.take(~is_c[warm.user])))
        self.pretrain_s = time.perf_counter() - t0

    def at(self, k: int) -> list[tuple[Recommender, Interactions, Interactions]]:
        """(pre-trained model, support, query) of every rotation at K = ``k``."""
        out = []
        for r, (pre, is_c) in enumerate(zip(self.pres, self.cold, strict=True)):
            s = cold_user_split(self.warm, cold_fraction=self.fraction, n_support=k, seed=1,
                                query_start=5, rotation=r)
            out.append((pre, s.train.take(is_c[s.train.user]), s.test))
        return out


def _auto_arm(spec: ModelSpec, ctx: Context, pre: Recommender, support: Interactions,
              stand_ins: _StandIns, k: int, test: Interactions, old: Interactions) -> Arm:
    """``rectune.finetune.auto`` on stand-in cold users, its choice applied to the cold.

    The search space is the fixed arms' (the same fixed-epoch grid, λ values and the
    spec's scratch regularisers) plus auto's own candidates, searched on every
    rotation of :class:`_StandIns` with one stage-two base and one guard decision on
    their pooled per-user query errors (:func:`rectune.finetune.auto.auto_pooled`).
    """
    from rectune.bench.auto_arm import AUTO, auto_kwargs
    from rectune.finetune.auto import apply_choice, auto_pooled

    kw = auto_kwargs(spec, 0, with_early_stopping=False)
    kw["plain_grid"] = _cold_grid(spec, "finetune", ctx, None)
    n_boot = max(200, ctx.n_boot // 4)

    def search_and_apply() -> tuple[dict[str, Any], Recommender]:
        rep = auto_pooled(stand_ins.at(k), old_data=None, n_boot=n_boot, diagnose=False,
                          **kw)
        return rep, apply_choice(rep, pre, support)

    t0 = time.perf_counter()
    rep, model = search_and_apply()
    arm = _model_arm(AUTO, model, test, old)
    arm.select_s = time.perf_counter() - t0
    arm.chosen = {"choice": rep["choice"], "verdict": rep["verdict"],
                  "stand_ins": {"rotations": stand_ins.rotations,
                                "fraction_of_warm": stand_ins.fraction,
                                "n_users": rep["pooled"]["n_users"],
                                "choices_per_rotation": rep["pooled"]["choices_per_run"],
                                "stage_two_base": rep["pooled"].get("stage_two_base")},
                  "candidates": [{"name": c["name"], "status": c["status"],
                                  "valid": c["valid_score"]} for c in rep["candidates"]]}
    arm.valid_score = rep["valid_score"]
    arm.n_candidates = sum(c["status"] == "ok" for c in rep["candidates"])
    arm.metrics["stand_in_pretrain_s"] = stand_ins.pretrain_s
    arm.refit = search_and_apply
    arm.notes += [rep["reason"], f"chosen on {stand_ins.rotations} rotation(s) of warm users "
                  f"playing cold ({stand_ins.fraction:.0%} of warm users each, sized like the "
                  "real cold set; disjoint, pooled), then applied to the cold users' support "
                  "ratings (rectune.finetune.auto.apply_choice)"]
    return arm


def _cold_grid(spec: ModelSpec, name: str, ctx: Context,
               extra: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Fixed-epoch recipes (no early stopping: K ratings leave nothing to validate on)."""
    if (extra or {}).get("solver") == "als":  # closed-form solves: no step size to choose
        steps: list[dict[str, Any]] = [{"epochs": 3}]
    elif spec.rating and "lr_factor" in (spec.ft_grid[0] if spec.ft_grid else {}):
        steps = [{"learning_rate": lr, "epochs": e} for lr in (0.005, 0.02)
                 for e in (5, 20, 50)]
        if ctx.quick:
            steps = [{"learning_rate": 0.02, "epochs": 20}]
    else:
        steps = [{k: v for k, v in g.items() if k != "epochs"} for g in spec.ft_grid]
    base = {"early_stopping": False, "verbose": False, "seed": 0, **(extra or {})}
    if name == "l2sp":
        return [{**base, **s, "l2sp": lam} for lam in spec.l2sp_values for s in steps]
    if name == "frozen":
        return [{**base, **s, "freeze": ["item_*"]} for s in steps]
    return [{**base, **s} for s in steps]


def _feature_reg_arm(ds: Dataset, spec: ModelSpec, ctx: Context, pre: Recommender,
                     support: Interactions, sim_pre: Recommender, sim_support: Interactions,
                     sim_query: Interactions, test: Interactions, old: Interactions) -> Arm:
    """Feature-regularised fine-tuning if the engine takes ``feature_reg`` for this model."""
    from rectune.finetune import FinetuneConfig, finetune

    if ds.user_features is None:
        return Arm("feature_reg", status="n/a (no user features)")
    probe = support.take(np.arange(min(len(support), 20)))
    try:  # a probe: the engine says whether it can, in its own words
        with_f = finetune(pre, probe, FinetuneConfig(feature_reg=1.0, epochs=2,
                                                     early_stopping=False, verbose=False),
                          features=ds.user_features)
    except RectuneError as exc:
        arm = Arm("feature_reg", status=NA_UNSUPPORTED)
        arm.notes.append(str(exc))
        return arm
    without = finetune(pre, probe, FinetuneConfig(epochs=2, early_stopping=False,
                                                  verbose=False))
    if np.array_equal(with_f.predict_indices(test.user[:200], test.item[:200]),
                      without.predict_indices(test.user[:200], test.item[:200])):
        arm = Arm("feature_reg", status=NA_UNSUPPORTED)
        arm.notes.append(f"the engine accepts feature_reg for {type(pre).__name__} but it "
                         "changes nothing (ignored)")
        return arm
    best: Arm | None = None
    # λ_f on the fold-in scale (the prior counts once per row, not per rating), with
    # and without frozen items; every choice made on warm users playing cold
    lams = (1.0, 10.0) if ctx.quick else (0.3, 1.0, 3.0, 10.0, 30.0)
    # ... and solved in closed form (solver="als", items frozen): each cold user's ridge
    # fold-in shrunk towards W f_u instead of towards 0 (new_row_reg = 0: only the prior;
    # None: plus the model's own per-rating weight decay) -- the tuned fold-in's rival
    # with the features added, and nothing else changed
    als: list[dict[str, Any]] = [{"solver": "als", "cg_steps": 0, "freeze": ["item_*"],
                                  "new_row_reg": nr} for nr in (0.0, None)]
    for extra in ({}, {"freeze": ["item_*"]}, *als):
        for lam in lams:
            a = _ft_arm("feature_reg", spec, ctx, pre, support, sim_pre, sim_support,
                        sim_query, test, old, extra={"feature_reg": lam, **extra},
                        features=ds.user_features)
            if a.ok and (best is None or (a.valid_score or 0) < (best.valid_score or 0)):
                best = a
    return best if best is not None else Arm("feature_reg", status=NA_UNSUPPORTED)


def _feature_prior_arm(ds: Dataset, pre: Recommender, test: Interactions) -> Arm:
    """K = 0: cold users scored from their profile alone, ``W f_u + c`` for factors and
    bias (W: ridge fit of the warm users' pre-trained rows on their features)."""
    from rectune.finetune.features import attach_feature_prior, embed_new_users

    if ds.user_features is None:
        return Arm("feature_reg", status="n/a (no user features)")
    try:
        m = attach_feature_prior(pre, ds.user_features)
    except RectuneError as exc:
        arm = Arm("feature_reg", status=NA_UNSUPPORTED)
        arm.notes.append(str(exc))
        return arm
    cold_raw = np.unique(test.user_map.decode(np.unique(test.user)))
    uf = ds.user_features
    m = embed_new_users(m, uf.loc[uf.index.intersection(pd.Index(cold_raw))])
    pred = m.predict(test.user_map.decode(test.user), test.item_map.decode(test.item))
    arm = _pred_arm("feature_reg", np.asarray(pred, dtype=np.float64), test)
    arm.notes.append("K=0: no training; rows embedded from user features "
                     "(rectune.finetune.features.embed_new_users)")
    return arm


def _compare(arms: dict[str, Arm], base: dict[str, Arm], test: Interactions,
             ctx: Context) -> dict[str, Any]:
    """Paired ΔRMSE over cold users: the chosen fine-tuning arm and fold-in against the rest."""
    ft = [arms[a] for a in (*FT_ARMS, "feature_reg") if arms[a].ok
          and arms[a].valid_score is not None]
    sel = min(ft, key=lambda a: float(a.valid_score or 0.0)) if ft else None
    out: dict[str, Any] = {"selected": None if sel is None else sel.name}
    pool = {**base, **arms}
    fr = arms.get("feature_reg")
    leads = [a for a in (sel, arms.get("fold_in_tuned"), None if fr is sel else fr)
             if a is not None and a.ok]
    for a in leads:
        for other in ("fold_in_tuned", "fold_in", "bias_fold_in", "demographic_bias",
                      "item_bias", "retrain", "scratch"):
            b = pool.get(other)
            if b is None or not b.ok or b is a:
                continue
            c = paired_users(test.user, a.arrays["sq"], b.arrays["sq"], n_boot=ctx.n_boot)
            c["verdict"] = verdict(c["ci"], lower_is_better=True)
            out[f"{a.name} vs {other}"] = c
    from rectune.bench.auto_arm import auto_comparisons

    out.update(auto_comparisons(
        arms, lambda a, b: paired_users(test.user, a.arrays["sq"], b.arrays["sq"],
                                        n_boot=ctx.n_boot),
        lambda a: a.metrics.get("rmse"), lower_is_better=True))
    return json_safe(out)


def _headline(by_k: dict[str, Any], ctx: Context) -> dict[str, Any]:
    rows = []
    for k in ctx.cold_k:
        comps = by_k[str(k)]["comparisons"]
        sel = comps.get("selected")
        row: dict[str, Any] = {"k": k, "selected": sel}
        for other in ("scratch", "fold_in_tuned", "fold_in", "bias_fold_in", "retrain"):
            c = comps.get(f"{sel} vs {other}") if sel else None
            if c is not None:
                row[f"vs_{other}"] = {x: c.get(x) for x in ("delta", "ci", "p_value", "verdict")}
        ref = comps.get("auto vs reference")
        if ref is not None:
            row["auto"] = {"choice": comps.get("auto_choice"), "reference": ref["reference"],
                           **{x: ref.get(x) for x in ("delta", "ci", "verdict", "not_worse")}}
            orc = comps.get("auto vs oracle")
            if orc is not None:
                row["auto"]["vs_oracle"] = {x: orc.get(x) for x in ("reference", "delta", "ci",
                                                                    "verdict")}
        rows.append(row)
    deltas = [r["vs_fold_in_tuned"]["delta"] for r in rows if "vs_fold_in_tuned" in r]
    return {"by_k": rows, "mean_delta_vs_fold_in_tuned": seed_interval(deltas)["mean"]}
