"""PNG figures of the transfer results (matplotlib ``Figure`` + Agg canvas, no pyplot).

Learning curves draw mean ± 95% interval over seeds as a band; bars carry their 95%
bootstrap intervals; the cost chart shows median wall times with the range of the
timed runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rectune.bench.arms import ARM_TITLES, ARMS
from rectune.evaluate.plots import figure_png, metric_bars

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["all_figures"]

_STYLE = {"stale": ("#7f7f7f", "--"), "scratch": ("#d62728", "-"), "retrain": ("#2ca02c", ":"),
          "finetune": ("#1f77b4", "-"), "l2sp": ("#9467bd", "-"), "frozen": ("#ff7f0e", "-"),
          "auto": ("#000000", "-"),
          "fold_in": ("#17becf", "-"), "fold_in_tuned": ("#17becf", "--"),
          "feature_reg": ("#8c564b", "-"),
          "global_mean": ("#bcbd22", ":"), "item_bias": ("#000000", ":"),
          "bias_fold_in": ("#e377c2", "-."), "demographic_bias": ("#8c564b", ":")}


def _figure(w: float, h: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=96, layout="constrained")


def _panels(n: int, w: float = 4.6, h: float = 3.4, extra: float = 0.0
            ) -> tuple[Figure, list[Axes]]:
    fig = _figure(w * n + extra, h)
    axes = fig.subplots(1, n, squeeze=False)[0]
    return fig, list(axes)


def _ok(d: dict[str, Any]) -> bool:
    return d.get("status") == "ok"


def _bars(arms_by_model: dict[str, dict[str, Any]], key: str, ci_key: str | None,
          title: str, lower: bool) -> bytes | None:
    labels, means, cis = [], [], []
    for m, arms in arms_by_model.items():
        for a, d in arms.items():
            v = d.get("metrics", {}).get(key) if _ok(d) else None
            if v is None:
                continue
            labels.append(f"{m} / {ARM_TITLES.get(a, a)}")
            means.append(float(v))
            c = d["metrics"].get(ci_key) if ci_key else None
            cis.append(tuple(c) if c and c[0] is not None else None)
    if not labels:
        return None
    return metric_bars(labels, means, cis, title=title, ylabel=key, lower_is_better=lower)


def _curves(run: dict[str, Any]) -> bytes | None:
    models = {m: b for m, b in run["models"].items() if "curve" in b}
    if not models:
        return None
    fig, axes = _panels(len(models))
    for ax, (m, b) in zip(axes, models.items(), strict=True):
        for a in ARMS:
            rows = [r for r in b["curve"]["rmse"].get(a, []) if "mean" in r]
            if not rows:
                continue
            x = np.array([r["fraction"] * 100 for r in rows])
            y = np.array([r["mean"] for r in rows])
            color, ls = _STYLE[a]
            ax.plot(x, y, ls, marker="o", ms=3, color=color, label=ARM_TITLES[a])
            ax.fill_between(x, [r["lo"] for r in rows], [r["hi"] for r in rows], color=color,
                            alpha=0.15, lw=0)
        ax.set_xscale("log")
        ax.set_xlabel("target training data (% of target-train ratings)")
        ax.set_ylabel("target test RMSE")
        ax.set_title(m)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(run["title"] + ": mean ± 95% interval over seeds", fontsize=10)
    return figure_png(fig)


def _cold(t: dict[str, Any]) -> bytes | None:
    models = t["models"]
    if not models:
        return None
    fig, axes = _panels(len(models), extra=2.6)
    names = sorted({a for b in models.values() for a in b["curve"]})
    offsets = {a: 0.12 * (j / max(len(names) - 1, 1) - 0.5) for j, a in enumerate(names)}
    for ax, (m, b) in zip(axes, models.items(), strict=True):
        for a, rows in b["curve"].items():
            if not rows:
                continue
            x = np.array([r["k"] for r in rows], dtype=float)
            y = np.array([r["rmse"] for r in rows])
            err = np.vstack([y - [r["lo"] for r in rows], [r["hi"] for r in rows] - y])
            color, ls = _STYLE.get(a, ("#333333", "-"))
            ax.errorbar(x + offsets.get(a, 0.0), y, yerr=np.maximum(err, 0), fmt="o", ls=ls,
                        ms=3, capsize=2, color=color, label=ARM_TITLES.get(a, a))
        ax.set_xticks(t["ks"])
        ax.set_xlabel("support ratings per cold user (K)")
        ax.set_ylabel("query RMSE")
        ax.set_title(m)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="outside right center")
    fig.suptitle("Cold-start users: query RMSE with 95% intervals (x jittered)", fontsize=10)
    return figure_png(fig)


def _click_curve(t: dict[str, Any]) -> bytes | None:
    models = {m: b for m, b in t["models"].items() if "curve" in b}
    if not models:
        return None
    fig, axes = _panels(len(models))
    for ax, (m, b) in zip(axes, models.items(), strict=True):
        for a, rows in b["curve"]["auc"].items():
            x = np.array([r["fraction"] * 100 for r in rows])
            y = np.array([r["mean"] for r in rows])
            color, ls = _STYLE[a]
            ax.plot(x, y, ls, marker="o", ms=3, color=color, label=ARM_TITLES[a])
            ax.fill_between(x, [r["lo"] for r in rows], [r["hi"] for r in rows], color=color,
                            alpha=0.15, lw=0)
        ax.axvline(t["fraction"] * 100, color="#999999", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("click labels used (% of the labelled pool)")
        ax.set_ylabel("test AUC")
        ax.set_title(m)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Task change rating -> click: AUC, mean ± 95% interval over seeds",
                 fontsize=10)
    return figure_png(fig)


def _cost(results: dict[str, Any]) -> bytes | None:
    rows: list[tuple[str, float, float, float]] = []

    def add(prefix: str, arms: dict[str, Any]) -> None:
        for a, d in arms.items():
            tm = d.get("time") if isinstance(d, dict) else None
            if tm and tm.get("runs_s"):
                rows.append((f"{prefix} / {ARM_TITLES.get(a, a)}", tm["median_s"],
                             min(tm["runs_s"]), max(tm["runs_s"])))

    tasks = results.get("tasks", {})
    for key, short in (("temporal_explicit", "temporal"), ("temporal_implicit", "implicit")):
        for m, b in tasks.get(key, {}).get("models", {}).items():
            add(f"{short} {m}", b.get("arms", {}))
    for run in tasks.get("cross_domain", [])[:1]:
        for m, b in run["models"].items():
            pt = next((p for p in b.get("points", []) if any(
                d.get("time") for d in p["arms"].values())), None)
            if pt:
                add(f"x-domain {m}", pt["arms"])
    for m, b in tasks.get("task_change", {}).get("models", {}).items():
        pt = next((p for p in b.get("points", []) if any(
            d.get("time") for d in p["arms"].values())), None)
        if pt:
            add(f"click {m}", pt["arms"])
    if not rows:
        return None
    fig = _figure(8.0, 0.9 + 0.22 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    med = np.array([r[1] for r in rows])
    lo = med - np.array([r[2] for r in rows])
    hi = np.array([r[3] for r in rows]) - med
    ax.barh(y, med, xerr=np.vstack([np.maximum(lo, 0), np.maximum(hi, 0)]), color="#7fa7cc",
            ecolor="#333333", capsize=2)
    ax.set_yticks(y, [r[0] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("seconds (median of the timed runs; whiskers: min..max)")
    ax.set_title("Wall time of each arm's chosen recipe (after warm-up)")
    ax.grid(axis="x", alpha=0.3)
    return figure_png(fig)


def sweep_gain(t: dict[str, Any]) -> bytes | None:
    """Gain over scratch (RMSE(scratch) − RMSE(arm)) against the domain correlation."""
    models = {m: b for m, b in t.get("models", {}).items() if "curve" in b}
    panels = [(m, f, block) for m, b in models.items() for f, block in b["curve"].items()]
    if not panels:
        return None
    fig, axes = _panels(len(panels))
    for ax, (m, f, block) in zip(axes, panels, strict=True):
        for a, rows in block.items():
            rows = [r for r in rows if r.get("mean") is not None]
            if not rows or a == "selected":
                continue
            x = np.array([r["correlation"] for r in rows])
            y = np.array([r["mean"] for r in rows])
            color, ls = _STYLE.get(a, ("#333333", "-"))
            err = np.vstack([y - [r["lo"] for r in rows], [r["hi"] for r in rows] - y])
            ax.errorbar(x, y, yerr=np.maximum(err, 0), fmt="o", ls=ls, ms=4 if a == "auto"
                        else 3, lw=2.2 if a == "auto" else 1.2, capsize=2, color=color,
                        label=ARM_TITLES.get(a, a), zorder=3 if a == "auto" else 2)
        ax.axhline(0.0, color="#d62728", lw=1, ls="--", label="scratch (gain 0)")
        ax.set_xlabel("cross-domain correlation of user parameters (generator knob c)")
        ax.set_ylabel("test RMSE gain over scratch")
        ax.set_title(f"{m}, {float(f) * 100:g}% of target-train")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Transfer gain vs domain correlation: mean ± 95% interval over seeds "
                 "(negative = negative transfer)", fontsize=10)
    return figure_png(fig)


def all_figures(results: dict[str, Any]) -> dict[str, bytes]:
    """Every figure the results support, keyed by file stem."""
    out: dict[str, bytes | None] = {}
    tasks = results.get("tasks", {})
    t = tasks.get("temporal_explicit")
    if t:
        arms = {m: b["arms"] for m, b in t["models"].items() if "arms" in b}
        out["temporal_explicit_rmse"] = _bars(arms, "rmse", "rmse_ci",
                                              "Temporal: test RMSE, all users", True)
        out["temporal_explicit_rmse_returning"] = _bars(
            arms, "rmse_returning", "rmse_returning_ci",
            "Temporal: test RMSE, returning users", True)
    t = tasks.get("temporal_implicit")
    if t:
        arms = {m: b["arms"] for m, b in t["models"].items() if "arms" in b}
        out["temporal_implicit_ndcg"] = _bars(arms, "ndcg@10", "ndcg@10_ci",
                                              "Temporal (implicit): NDCG@10", False)
    for j, run in enumerate(tasks.get("cross_domain", [])):
        out[f"cross_domain_{j}_curves"] = _curves(run)
    if tasks.get("cold_start"):
        out["cold_start_rmse"] = _cold(tasks["cold_start"])
    tc = tasks.get("task_change")
    if tc:
        first = {m: next(p for p in b["points"] if p["fraction"] == tc["fraction"])["arms"]
                 for m, b in tc["models"].items() if "points" in b}
        out["task_change_auc"] = _bars(first, "auc", "auc_ci",
                                       f"Click AUC at {tc['fraction']:.0%} of labels",
                                       False)
        out["task_change_curve"] = _click_curve(tc)
    sw = tasks.get("correlation_sweep")
    if sw and "models" in sw:
        out["correlation_sweep_gain"] = sweep_gain(sw)
    out["cost_wall_time"] = _cost(results)
    return {k: v for k, v in out.items() if v is not None}
