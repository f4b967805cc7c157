"""Task 5 (synthetic only): gain of transfer over scratch against the domains' correlation.

``synthetic(n, second_domain=True, domain_correlation=c)`` draws each user's domain-1
bias, factors and drift as ``c x + sqrt(1 - c^2) x'`` with ``x'`` independent of the
domain-0 ``x``: at ``c = 0`` the two domains share nothing but the users' ids, at
``c = 1`` the same taste rules both. For each ``c`` the cross-domain task is run at a
few target fractions and seeds (source = domain 0, target = domain 1, the carving of
``ml100k_xdomain``), with the scratch, fine-tuning and ``auto`` arms, and the
transferability diagnostic of the source model on the target (before any training).

The gain of an arm is ``RMSE(scratch) − RMSE(arm)`` on the target test set (positive
= transfer helps), paired over test users; the plot shows it against ``c``. Negative
transfer is a negative gain; the ``auto`` arm should track the better of the two
sides: near 0 (scratch, through its guard) where transfer hurts, the fine-tuning gain
where it helps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rectune.bench.arms import FT_ARMS, ModelSpec
from rectune.bench.compare import paired_users, seed_interval, verdict
from rectune.bench.context import Context
from rectune.bench.rating import (
    RatingTask,
    compare_rating_arms,
    run_rating_arms,
    score_rating_arms,
)
from rectune.bench.splits import protocols_for
from rectune.finetune.diagnose import transferability

__all__ = ["SWEEP_CORRELATIONS", "SWEEP_FRACTIONS", "correlation_sweep"]

SWEEP_CORRELATIONS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
SWEEP_FRACTIONS: tuple[float, ...] = (0.1,)
GAIN_ARMS: tuple[str, ...] = (*FT_ARMS, "auto")


def correlation_sweep(ctx: Context, *, n_ratings: int = 100_000,
                      correlations: Sequence[float] = SWEEP_CORRELATIONS,
                      fractions: Sequence[float] = SWEEP_FRACTIONS) -> dict[str, Any]:
    """Gain over scratch of each fine-tuning arm and of ``auto`` for every correlation."""
    from rectune.data.synthetic import synthetic

    out: dict[str, Any] = {
        "title": "Gain of transfer over scratch vs the domains' correlation (synthetic)",
        "protocol": f"synthetic({n_ratings}, second_domain=True, domain_correlation=c, "
                    "seed=0); item domain 0 -> 1; target test 20% (seed 0); nested "
                    "target-train fractions per seed; validation: random 10% (seed 1)",
        "metric": "rmse", "lower_is_better": True, "gain": "RMSE(scratch) - RMSE(arm)",
        "correlations": [float(c) for c in correlations], "fractions": list(fractions),
        "seeds": list(ctx.seeds), "models": {}, "diagnostics": {},
    }
    specs = ctx.rating_specs()
    per_model: dict[str, list[dict[str, Any]]] = {m: [] for m in specs}
    for c in correlations:
        ds = synthetic(n_ratings, second_domain=True, domain_correlation=float(c), seed=0)
        protos = protocols_for(ds)
        full = protos.xdomain(ds, 1.0, ctx.seeds[0])
        for name, spec in specs.items():
            ctx.say(f"correlation sweep: c={c:g} {name}")
            pre = spec.make(0).fit(full.source)
            if name == next(iter(specs)):
                out["diagnostics"][f"{c:g}"] = transferability(
                    pre, full.target_train, old_data=full.source)
            per_model[name] += _points(spec, pre, ds, protos, float(c), fractions, ctx)
    for name, points in per_model.items():
        out["models"][name] = {"points": points, "curve": _curve(points, correlations,
                                                                 fractions)}
    out["headline"] = _headline(out)
    return out


def _points(spec: ModelSpec, pre: Any, ds: Any, protos: Any, c: float,
            fractions: Sequence[float], ctx: Context) -> list[dict[str, Any]]:
    rows = []
    for f in fractions:
        for seed in ctx.seeds:
            split = protos.xdomain(ds, f, seed)
            task = RatingTask("sweep", split.source, split.target_train, split.target_test,
                              "random", ("user_*",), forget_sample=2000)
            arms = run_rating_arms(spec, task, pre, seed=seed,
                                   arms=("scratch", *FT_ARMS, "auto"),
                                   n_boot=max(200, ctx.n_boot // 2))
            score_rating_arms(arms, task, n_boot=100)
            comps = compare_rating_arms(arms, task, n_boot=max(200, ctx.n_boot // 4))
            users = task.test.user
            gains: dict[str, Any] = {}
            scratch = arms["scratch"]
            for a in GAIN_ARMS:
                arm = arms.get(a)
                if arm is None or not arm.ok:
                    gains[a] = {"status": "n/a" if arm is None else arm.status}
                    continue
                # scratch − arm: positive = transfer helps
                g = paired_users(users, scratch.arrays["sq"], arm.arrays["sq"],
                                 n_boot=max(200, ctx.n_boot // 4))
                g["verdict"] = verdict(g["ci"], lower_is_better=False)
                gains[a] = {"gain": g["delta"], "ci": g["ci"], "verdict": g["verdict"],
                            "rmse": arm.metrics["rmse"]}
            sel = comps.get("selected")
            rows.append({
                "correlation": c, "fraction": f, "seed": seed, "n_target_train": len(task.new),
                "scratch_rmse": scratch.metrics["rmse"], "gains": gains, "selected": sel,
                "auto_choice": arms["auto"].chosen.get("choice"),
                "auto_vs_reference": comps.get("auto vs reference"),
                "auto_vs_oracle": comps.get("auto vs oracle")})
    return rows


def _curve(points: list[dict[str, Any]], correlations: Sequence[float],
           fractions: Sequence[float]) -> dict[str, Any]:
    """Mean ± 95% interval over seeds of each arm's gain, per (fraction, correlation)."""
    out: dict[str, Any] = {}
    for f in fractions:
        block: dict[str, list[dict[str, Any]]] = {}
        for a in (*GAIN_ARMS, "selected"):
            rows = []
            for c in correlations:
                pts = [p for p in points if p["fraction"] == f and p["correlation"] == c]
                vals = []
                for p in pts:
                    arm = p["selected"] if a == "selected" else a
                    g = p["gains"].get(arm or "", {})
                    if "gain" in g:
                        vals.append(g["gain"])
                if vals:
                    rows.append({"correlation": float(c), **seed_interval(vals),
                                 "scratch_chosen": sum(str(p["auto_choice"]).startswith(
                                     "scratch") for p in pts) if a == "auto" else None,
                                 "n_points": len(pts)})
            block[a] = rows
        out[f"{f:g}"] = block
    return out


def _headline(out: dict[str, Any]) -> dict[str, Any]:
    """Per model and fraction: where plain fine-tuning hurts, and what auto did there."""
    res: dict[str, Any] = {}
    for name, b in out["models"].items():
        for f, block in b["curve"].items():
            plain = {r["correlation"]: r for r in block.get("finetune", [])}
            auto_ = {r["correlation"]: r for r in block.get("auto", [])}
            rows = []
            for c in out["correlations"]:
                pts = [p for p in b["points"] if p["correlation"] == c
                       and f"{p['fraction']:g}" == f]
                worse = sum(1 for p in pts if p["auto_vs_reference"] is not None
                            and not p["auto_vs_reference"]["not_worse"])
                rows.append({"correlation": c,
                             "plain_gain": plain.get(c, {}).get("mean"),
                             "auto_gain": auto_.get(c, {}).get("mean"),
                             "auto_scratch_chosen": auto_.get(c, {}).get("scratch_chosen"),
                             "n_points": len(pts),
                             "auto_significantly_worse_than_reference": worse,
                             "negative_transfer_plain": bool(
                                 np.any([p["gains"].get("finetune", {}).get("verdict")
                                         == "worse" for p in pts]))})
            res[f"{name} @ {f}"] = rows
    return res
