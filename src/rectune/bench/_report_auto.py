"""Markdown of the ``auto`` arm: one verdict per task and model, and the correlation sweep.

"Never significantly worse" is read against the references of
:func:`rectune.bench.auto_arm.auto_comparisons`: the better of scratch and the best
fixed fine-tuning arm, picked on validation (the reference) and on the test set (the
oracle, for scale).
"""

from __future__ import annotations

from typing import Any

__all__ = ["auto_lines", "sweep_md"]


def _ci(c: dict[str, Any], nd: int = 4) -> str:
    lo, hi = c["ci"]
    return f"{c['delta']:+.{nd}f} [{lo:+.{nd}f}, {hi:+.{nd}f}]"


def _single(title: str, model: str, a: dict[str, Any], metric: str) -> str:
    word = "not significantly worse than" if a.get("not_worse") else "**significantly worse** than"
    line = (f"{title}: **{model}**: auto chose *{a.get('choice')}*; {word} the validation "
            f"reference (*{a.get('reference')}*), Δ{metric} {_ci(a)}")
    o = a.get("vs_oracle")
    if o:
        line += f"; vs the test oracle (*{o.get('reference')}*) Δ{metric} {_ci(o)} ({o['verdict']})"
    sc = a.get("vs_scratch")
    if sc:
        line += f"; vs scratch Δ{metric} {_ci(sc)} ({sc['verdict']})"
    return line + "."


def _pooled(p: dict[str, Any] | None, group: str, metric: str) -> str:
    """Pooled over the task's runs (:class:`rectune.bench.auto_arm.AutoPool`), one clause."""
    if not p or "all" not in p:
        return ""
    per = "; ".join(f"{g['group']:g}: {_ci(g, 4)}" + ("" if g["not_worse"] else " **worse**")
                    for g in p["by_group"])
    a = p["all"]
    return (f" Pooled over the task's {a['n_runs']} runs (paired over the shared test "
            f"users): Δ{metric} vs the reference {_ci(a)} — {a['verdict']}; per {group}: "
            f"{per}.")


def auto_lines(results: dict[str, Any]) -> list[str]:
    """One sentence per task and model on the auto arm (empty when no task ran it)."""
    out: list[str] = []
    tasks = results.get("tasks", {})
    for key, metric in (("temporal_explicit", "RMSE"), ("temporal_implicit", "NDCG@10")):
        t = tasks.get(key)
        for m, block in (t or {}).get("models", {}).items():
            a = block.get("headline", {}).get("auto")
            if a:
                out.append(_single(t["title"], m, a, metric))
    for run in tasks.get("cross_domain", []):
        for m, block in run["models"].items():
            a = block.get("headline", {}).get("auto")
            if not a:
                continue
            rows = a["vs_reference_by_fraction"]
            bits = [f"{r['fraction'] * 100:g}%: Δ {r['mean']:+.3f}"
                    + (f" [{r['lo']:+.3f}, {r['hi']:+.3f}]" if r["n"] >= 2 else "")
                    + f", scratch chosen {r['scratch_chosen']}/{r['n']}" for r in rows]
            out.append(f"{run['title']}: **{m}**: auto significantly worse than the validation "
                       f"reference in {a['significantly_worse_than_reference']} of "
                       f"{a['points']} runs (fraction × seed), than the test oracle in "
                       f"{a.get('significantly_worse_than_oracle', '?')}; ΔRMSE vs the "
                       f"reference by fraction — " + "; ".join(bits) + "."
                       + _pooled(a.get("pooled_vs_reference"), "fraction", "RMSE"))
    cold = tasks.get("cold_start")
    for m, block in (cold or {}).get("models", {}).items():
        rows = [r for r in block.get("headline", {}).get("by_k", []) if r.get("auto")]
        if rows:
            bits = [f"K={r['k']}: *{r['auto']['choice']}*, Δ {_ci(r['auto'], 3)} vs "
                    f"*{r['auto']['reference']}*"
                    + ("" if r["auto"]["not_worse"] else " (**worse**)")
                    + (f", vs oracle {_ci(r['auto']['vs_oracle'], 3)} "
                       f"({r['auto']['vs_oracle']['verdict']})" if r["auto"].get("vs_oracle")
                       else "") for r in rows]
            out.append(f"{cold['title']}: **{m}**: " + "; ".join(bits) + "."
                       + _pooled(block["headline"].get("auto_pooled_vs_reference"), "K",
                                 "RMSE"))
    tc = tasks.get("task_change")
    for m, block in (tc or {}).get("models", {}).items():
        a = block.get("headline", {}).get("auto") if isinstance(block, dict) else None
        if a:
            d = a["delta_vs_reference"]
            out.append(f"{tc['title']}: **{m}**: auto (guard over the arms) significantly "
                       f"worse than the reference in {a['significantly_worse_than_reference']}"
                       f" of {a['runs']} seeds (test oracle: "
                       f"{a.get('significantly_worse_than_oracle', '?')}); Δlog-loss vs the "
                       f"reference {d['mean']:+.4f}; choices "
                       f"{', '.join(str(c) for c in a['choices'])}."
                       + _pooled(a.get("pooled_vs_reference"), "label fraction", "log-loss"))
    return out


def sweep_md(t: dict[str, Any], figures: dict[str, str]) -> list[str]:
    """The correlation sweep: gain over scratch per arm and correlation, and auto's choices."""
    title = t.get("title", "Gain of transfer over scratch vs the domains' correlation")
    lines = ["", f"## 5. {title}", ""]
    if "models" not in t:
        return [*lines, t.get("status", ""), ""]
    lines += [f"Protocol: {t['protocol']}. Gain = {t['gain']} (positive: transfer helps); "
              "mean ± half-width of the 95% interval over seeds.", ""]
    diag = t.get("diagnostics", {})
    if diag:
        lines += ["| c | shared users | mean-rating corr. | activity corr. | zero-shot RMSE "
                  "(biases) | target-mean RMSE |", "|---|---|---|---|---|---|"]
        for c, d in diag.items():
            z = d.get("zero_shot") or {}
            mc = d.get("mean_rating_corr")
            lines.append(f"| {c} | {d['overlap']['shared_users']} | "
                         f"{'—' if mc is None else f'{mc:.2f}'} | "
                         f"{d.get('activity_corr') or 0:.2f} | {z.get('value', 0):.4f} | "
                         f"{z.get('target_mean_rmse', 0):.4f} |")
        lines.append("")
    for m, b in t["models"].items():
        for f, block in b["curve"].items():
            arms = [a for a in ("finetune", "l2sp", "frozen", "selected", "auto")
                    if block.get(a)]
            lines += [f"### {m}, {float(f) * 100:g}% of target-train", "",
                      "| c | " + " | ".join(arms) + " | auto chose scratch |",
                      "|---" * (len(arms) + 2) + "|"]
            for c in t["correlations"]:
                cells, sc = [], "—"
                for a in arms:
                    r = next((x for x in block[a] if x["correlation"] == c), None)
                    cells.append("—" if r is None else
                                 f"{r['mean']:+.4f} ± {(r['hi'] - r['lo']) / 2:.4f}")
                    if a == "auto" and r is not None:
                        sc = f"{r['scratch_chosen']}/{r['n_points']}"
                lines.append(f"| {c:g} | " + " | ".join(cells) + f" | {sc} |")
            lines.append("")
    lines += [f"![{k}]({v})" for k, v in figures.items() if k.startswith("correlation_sweep")]
    return [*lines, ""]
