"""Views of the transfer results: ``results.json``, ``results.md`` with one verdict per task,
and PNG plots (learning curves with 95% bands, bars with 95% intervals, costs).

The results dictionary is the source of truth; this module only reads it, so a
report can be rebuilt from a saved ``results.json`` (:func:`write_report`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rectune.bench.arms import ARM_TITLES, ARMS

__all__ = ["markdown", "verdict_sentences", "write_report"]

_VERB = {"better": "beats", "worse": "loses to",
         "no significant difference": "does not significantly differ from"}


def _t(arm: str) -> str:
    return ARM_TITLES.get(arm, arm)


def _f(x: Any, nd: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _ci(ci: Any, nd: int = 4) -> str:
    return f"[{_f(ci[0], nd)}, {_f(ci[1], nd)}]" if ci and ci[0] is not None else ""


def _d(c: dict[str, Any], nd: int = 4) -> str:
    """A delta with its interval and p-value: ``-0.0123 [-0.02, -0.004], p=0.001``."""
    p = c.get("p_value")
    ps = "" if p is None else (", p<0.001" if p < 0.001 else f", p={p:.3f}")
    return f"{c['delta']:+.{nd}f} {_ci(c['ci'], nd)}{ps}"


def _secs(x: Any) -> str:
    if x is None:
        return "—"
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def _chosen(ch: dict[str, Any]) -> str:
    if "choice" in ch:  # the auto arm: its choice (candidates are in results.json)
        return f"{ch['choice']} ({ch.get('verdict', '')})"
    keep = {k: v for k, v in ch.items() if k not in ("valid_mode", "seed", "verbose", "task",
                                                      "early_stopping")}
    return ", ".join(f"{k}={v}" for k, v in keep.items()) or "—"


# ------------------------------------------------------------------ verdicts
def _cost(h: dict[str, Any]) -> str:
    parts = []
    for other in ("scratch", "retrain"):
        r = h.get(f"vs_{other}", {}).get("time_ratio")
        if r is not None:
            parts.append(f"{r:.2f}× the wall time of {other}")
    return ("; cost: median " + _secs(h.get("median_s")) + " = " + " and ".join(parts)) \
        if parts else ""


def _single_verdict(model: str, h: dict[str, Any], metric: str) -> str:
    if h.get("selected") is None:
        return f"**{model}**: fine-tuning n/a (unsupported by the engine for this family)."
    s = f"**{model}**: fine-tuning (validation picked *{_t(h['selected'])}*)"
    bits = []
    for other in ("scratch", "retrain", "stale"):
        c = h.get(f"vs_{other}")
        if c:
            bits.append(f"{_VERB[c['verdict']]} {other} (Δ{metric} {_d(c)})")
    return s + " " + "; ".join(bits) + _cost(h) + "."


def _curve_verdict(model: str, rows: list[dict[str, Any]], *, lower: bool = True,
                   what: str = "fraction") -> str:
    if not rows:
        return f"**{model}**: fine-tuning n/a (unsupported by the engine for this family)."
    parts = []
    for r in rows:
        if r["n"] >= 2:
            v = ("no significant difference" if r["lo"] <= 0 <= r["hi"]
                 else "better" if (r["hi"] < 0) == lower else "worse")
        else:
            v = ("better" if r.get("significant_wins") else
                 "worse" if r.get("significant_losses") else "no significant difference")
        word = {"better": "beats", "worse": "loses", "no significant difference": "ties"}[v]
        band = f" [{r['lo']:+.3f}, {r['hi']:+.3f}]" if r["n"] >= 2 else ""
        parts.append(f"{r['fraction'] * 100:g}%: {word} (Δ {r['mean']:+.3f}{band})")
    return f"**{model}**: fine-tuning vs scratch by {what} — " + "; ".join(parts) + "."


def verdict_sentences(results: dict[str, Any]) -> list[str]:
    """One line per task and model: does fine-tuning beat scratch, by how much, at what cost."""
    out: list[str] = []
    tasks = results.get("tasks", {})
    for key, metric in (("temporal_explicit", "RMSE"), ("temporal_implicit", "NDCG@10")):
        t = tasks.get(key)
        if t:
            for m, block in t["models"].items():
                if "headline" in block:
                    out.append(f"{t['title']}: " + _single_verdict(m, block["headline"], metric))
                else:
                    out.append(f"{t['title']}: **{m}**: {block.get('status')}")
    for run in tasks.get("cross_domain", []):
        for m, block in run["models"].items():
            if "headline" not in block:
                out.append(f"{run['title']}: **{m}**: {block.get('status')}")
                continue
            h = block["headline"]
            line = _curve_verdict(m, h["vs_scratch_by_fraction"], what="target fraction")
            if h.get("time_ratio_vs_scratch") is not None:
                top = max((float(r["fraction"]) for r in h["vs_scratch_by_fraction"]),
                          default=1.0)
                line += (f" Cost at {top * 100:g}%: {h['time_ratio_vs_scratch']:.2f}× scratch, "
                         f"{h.get('time_ratio_vs_retrain', float('nan')):.2f}× retrain.")
            out.append(f"{run['title']}: {line}")
    cold = tasks.get("cold_start")
    if cold:
        for m, block in cold["models"].items():
            rows = [r for r in block["headline"]["by_k"] if r.get("selected")]
            if not rows:
                out.append(f"{cold['title']}: **{m}**: fine-tuning n/a (unsupported).")
                continue
            bits = []
            for r in rows:
                parts = [f"{_VERB[r[f'vs_{o}']['verdict']]} {name} (Δ {_d(r[f'vs_{o}'], 3)})"
                         for o, name in (("scratch", "scratch"), ("fold_in_tuned",
                                                                  "tuned fold-in"),
                                         ("bias_fold_in", "the bias baseline"),
                                         ("retrain", "retrain")) if f"vs_{o}" in r]
                bits.append(f"K={r['k']} ({_t(r['selected'])}): " + ", ".join(parts))
            tm = block.get("timing", {})
            cost = ""
            sel = rows[-1]["selected"]
            if sel in tm and "retrain" in tm and "fold_in_tuned" in tm:
                cost = (f" Cost at K={rows[-1]['k']}: {_secs(tm[sel]['median_s'])} vs "
                        f"{_secs(tm['retrain']['median_s'])} to retrain "
                        f"({tm[sel]['median_s'] / tm['retrain']['median_s']:.2f}×) and "
                        f"{_secs(tm['fold_in_tuned']['median_s'])} to fold in.")
            out.append(f"{cold['title']}: **{m}**: " + "; ".join(bits) + "." + cost)
    tc = tasks.get("task_change")
    if tc:
        for m, block in tc["models"].items():
            if "headline" not in block:
                out.append(f"{tc['title']}: **{m}**: {block.get('status')}")
                continue
            h = block["headline"]
            if h.get("status"):
                out.append(f"{tc['title']}: **{m}**: {h['status']}")
                continue
            da, dl = h["delta_auc_vs_scratch"], h["delta_log_loss_vs_scratch"]
            first = h.get("first_seed", {})
            cost = first.get("vs_scratch", {}).get("time_ratio")
            out.append(
                f"{tc['title']}: **{m}** at {tc['fraction'] * 100:g}% of the click labels: "
                f"fine-tuned vs scratch ClickMF ΔAUC {da['mean']:+.4f} "
                f"[{da['lo']:+.4f}, {da['hi']:+.4f}] over {h['n_seeds']} seed(s) "
                f"({h['significant_auc_wins']} significant wins), Δlog-loss "
                f"{_f(dl['mean'])}" + (f"; cost {cost:.2f}× scratch" if cost else "") + ".")
    return out


# ------------------------------------------------------------------ markdown
def _arm_table(arms: dict[str, Any], cols: list[tuple[str, Callable[[dict[str, Any]], str]]]
               ) -> list[str]:
    head = "| arm | " + " | ".join(c for c, _ in cols) + " |"
    lines = [head, "|---" * (len(cols) + 1) + "|"]
    for a, d in arms.items():
        if d["status"] != "ok":
            lines.append(f"| {_t(a)} | {d['status']} |" + " |" * (len(cols) - 1))
            continue
        lines.append(f"| {_t(a)} | " + " | ".join(fn(d) for _, fn in cols) + " |")
    return lines


def _m(key: str, nd: int = 4, ci: str | None = None) -> Callable[[dict[str, Any]], str]:
    def fn(d: dict[str, Any]) -> str:
        v = d.get("metrics", {}).get(key)
        c = d.get("metrics", {}).get(ci) if ci else None
        return _f(v, nd) + (f" {_ci(c, nd)}" if c else "")

    return fn


def _time_col(d: dict[str, Any]) -> str:
    return _secs(d.get("time", {}).get("median_s")) if d.get("time") else "—"


def _select_col(d: dict[str, Any]) -> str:
    n = d.get("n_candidates") or 0
    return f"{_secs(d.get('select_s'))} ({n})" if n > 1 else "—"


def _comparisons(comps: dict[str, Any], metric: str) -> list[str]:
    lines = []
    for k, c in comps.items():
        if not isinstance(c, dict) or "delta" not in c:
            continue
        line = f"- {k}: Δ{metric} {_d(c)} → **{c['verdict']}**"
        g = c.get("group_returning")
        if g:
            line += f"; returning users {_d(g)} → {g['verdict']}"
        if "log_loss" in c:
            line += f"; Δlog-loss {_d(c['log_loss'])} → {c['log_loss']['verdict']}"
        lines.append(line)
    return lines


def markdown(results: dict[str, Any], figures: dict[str, str]) -> str:
    """The whole report as markdown; ``figures`` maps plot keys to relative PNG paths."""
    meta = results.get("meta", {})
    man = meta.get("manifest", {})
    st = meta.get("settings", {})
    data = man.get("data", {})
    lines = [f"# Transfer benchmark: {data.get('name', '?')}", "",
             f"- command: `{man.get('command_line') or ' '.join(man.get('command', []))}`",
             f"- started: {man.get('started')}; {man.get('cpu_count')} CPUs; "
             f"python {man.get('python')}",
             f"- data: {data.get('n_ratings')} ratings, {data.get('n_users')} users, "
             f"{data.get('n_items')} items (sha256 {str(data.get('sha256'))[:12]}…)",
             f"- seeds {st.get('seeds')}, quick={st.get('quick')}; "
             f"timing: {meta.get('timing_rule')}",
             "- selection: every λ / learning rate / epoch / regulariser is chosen on the "
             "validation slice of the new data (cold start: warm users playing cold); the "
             "test rows are read once, after.",
             "- intervals: 95%; paired deltas resample test users (A − B; negative ΔRMSE = A "
             "better).", "", "## Verdicts", ""]
    lines += [f"- {s}" for s in verdict_sentences(results)]
    from rectune.bench._report_auto import auto_lines, sweep_md

    auto = auto_lines(results)
    if auto:
        lines += ["", "## The auto arm (rectune.finetune.auto)", "",
                  "Reference: the better of scratch and the best fixed fine-tuning arm, "
                  "picked on validation like every choice here; oracle: the same picked on "
                  "the test set (for scale). Every choice of auto is made on validation.",
                  ""]
        lines += [f"- {s}" for s in auto]
    jit = results.get("jit", {})
    if jit:
        lines += ["", "JIT warm-up (first call minus second, excluded from every timing):", ""]
        lines += [f"- {m}: " + ", ".join(f"{k} {_secs(v['jit_s'])}" for k, v in d.items())
                  for m, d in jit.items()]
    tasks = results.get("tasks", {})
    rating_cols = [("RMSE [95% CI]", _m("rmse", ci="rmse_ci")),
                   ("returning users", _m("rmse_returning", ci="rmse_returning_ci")),
                   ("new users", _m("rmse_new_users")),
                   ("old-data RMSE", _m("old_rmse")), ("forgetting", _m("forgetting")),
                   ("valid", lambda d: _f(d.get("valid_score"))),
                   ("chosen", lambda d: _chosen(d.get("chosen", {}))),
                   ("median time", _time_col), ("selection (configs)", _select_col)]
    t = tasks.get("temporal_explicit")
    if t:
        lines += _task_head(t, "1")
        for m, b in t["models"].items():
            lines += [f"### {m}", ""]
            if "arms" not in b:
                lines += [b.get("status", ""), ""]
                continue
            lines += [*_arm_table(b["arms"], rating_cols), "",
                      *_comparisons(b["comparisons"], "RMSE"), ""]
        lines += _figs(figures, "temporal_explicit")
    t = tasks.get("temporal_implicit")
    if t:
        lines += _task_head(t, "1b")
        cols = [("NDCG@10 [95% CI]", _m("ndcg@10", ci="ndcg@10_ci")),
                ("returning", _m("ndcg@10_returning")), ("new users", _m("ndcg@10_new_users")),
                ("Recall@10", _m("recall@10")), ("old-data NDCG@10", _m("old_ndcg@10")),
                ("forgetting", _m("forgetting")), ("valid", lambda d: _f(d.get("valid_score"))),
                ("chosen", lambda d: _chosen(d.get("chosen", {}))),
                ("median time", _time_col), ("selection (configs)", _select_col)]
        for m, b in t["models"].items():
            lines += [f"### {m}", "", *_arm_table(b["arms"], cols), "",
                      *_comparisons(b["comparisons"], "NDCG@10"), ""]
        lines += _figs(figures, "temporal_implicit")
    for j, run in enumerate(tasks.get("cross_domain", [])):
        lines += _task_head(run, "2")
        lines += _xdomain_md(run)
        lines += _figs(figures, f"cross_domain_{j}")
    if tasks.get("cold_start"):
        lines += _cold_md(tasks["cold_start"]) + _figs(figures, "cold_start")
    if tasks.get("task_change"):
        lines += _click_md(tasks["task_change"]) + _figs(figures, "task_change")
    if tasks.get("correlation_sweep"):
        lines += sweep_md(tasks["correlation_sweep"], figures)
    lines += _figs(figures, "cost")
    return "\n".join(lines) + "\n"


def _task_head(t: dict[str, Any], num: str) -> list[str]:
    d = ", ".join(f"{k} {_f(v, 3) if isinstance(v, float) else v}"
                  for k, v in t.get("data", {}).items())
    return ["", f"## {num}. {t['title']}", "", f"Protocol: {t.get('protocol')}. {d}.", ""]


def _figs(figures: dict[str, str], prefix: str) -> list[str]:
    return [f"![{k}]({v})" for k, v in figures.items() if k.startswith(prefix)] + [""]


def _xdomain_md(run: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for m, b in run["models"].items():
        lines += [f"### {m}", ""]
        if "curve" not in b:
            lines += [b.get("status", ""), ""]
            continue
        rm = b["curve"]["rmse"]
        arms = [a for a in ARMS if a in rm and rm[a] and "mean" in rm[a][0]]
        lines += ["| fraction | " + " | ".join(_t(a) for a in arms)
                  + " | Δ selected − scratch | sig. wins/losses |",
                  "|---" * (len(arms) + 3) + "|"]
        delta = {r["fraction"]: r for r in b["curve"]["delta"]["selected vs scratch"]}
        for f in run["fractions"]:
            cells = []
            for a in arms:
                r = next((x for x in rm[a] if x.get("fraction") == f), None)
                cells.append("—" if r is None else f"{r['mean']:.4f} ± "
                             f"{(r['hi'] - r['lo']) / 2:.4f}")
            d = delta.get(f)
            dcell = "—" if d is None else f"{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]"
            wl = "—" if d is None else f"{d['significant_wins']}/{d['significant_losses']}"
            lines.append(f"| {f * 100:g}% | " + " | ".join(cells) + f" | {dcell} | {wl} |")
        na = [f"{_t(a)}: {rm[a][0].get('status')}" for a in ARMS
              if a in rm and rm[a] and "status" in rm[a][0]]
        lines += [""] + ([f"Not run: {'; '.join(na)}.", ""] if na else [])
        tm = b.get("timing", {})
        if tm:
            top = max(run.get("fractions") or [1.0])
            lines += [f"Median wall time at {top * 100:g}%: " + ", ".join(
                f"{_t(a)} {_secs(v['median_s'])}" for a, v in tm.items()) + ".", ""]
    return lines


def _cold_md(t: dict[str, Any]) -> list[str]:
    lines = _task_head(t, "3")
    ks = t["ks"]
    for m, b in t["models"].items():
        lines += [f"### {m}", "", "| arm | " + " | ".join(f"K={k}" for k in ks)
                  + " | median time (K=" + str(max(ks)) + ") |", "|---" * (len(ks) + 2) + "|"]
        names: list[str] = list(t["baselines"][str(ks[0])])
        names += [a for a in b["by_k"][str(ks[-1])]["arms"] if a not in names]
        for a in names:
            cells = []
            for k in ks:
                d = (t["baselines"][str(k)].get(a) or b["by_k"][str(k)]["arms"].get(a) or {})
                if d.get("status") == "ok":
                    cells.append(f"{d['metrics']['rmse']:.4f} {_ci(d['metrics']['rmse_ci'])}")
                else:
                    cells.append(d.get("status", "—"))
            tm = b["timing"].get(a) or t["baselines"][str(max(ks))].get(a, {}).get("time")
            lines.append(f"| {_t(a)} | " + " | ".join(cells)
                         + f" | {_secs(tm['median_s']) if tm else '—'} |")
        lines.append("")
        for k in ks:
            comps = b["by_k"][str(k)]["comparisons"]
            cl = _comparisons(comps, "RMSE")
            if cl:
                lines += [f"K={k} (selected: {comps.get('selected')}):", *cl, ""]
        notes = {n for k in ks for d in b["by_k"][str(k)]["arms"].values()
                 for n in d.get("notes", []) if d.get("status") != "ok"}
        lines += [f"Note: {n}" for n in sorted(notes)] + [""]
    return lines


def _click_md(t: dict[str, Any]) -> list[str]:
    lines = _task_head(t, "4")
    cols = [("AUC [95% CI]", _m("auc", ci="auc_ci")),
            ("log-loss [95% CI]", _m("log_loss", ci="log_loss_ci")),
            ("old-data AUC", _m("old_auc")), ("forgetting", _m("forgetting")),
            ("valid log-loss", lambda d: _f(d.get("valid_score"))),
            ("chosen", lambda d: _chosen(d.get("chosen", {}))), ("median time", _time_col),
            ("selection (configs)", _select_col)]
    for m, b in t["models"].items():
        lines += [f"### {m}", ""]
        if "points" not in b:
            lines += [b.get("status", ""), ""]
            continue
        p = next(x for x in b["points"] if x["fraction"] == t["fraction"])
        lines += [f"At {t['fraction'] * 100:g}% of the labels ({p['n_labels']} clicks), "
                  f"seed {p['seed']}:", ""]
        lines += [*_arm_table(p["arms"], cols), "", *_comparisons(p["comparisons"], "AUC")]
        curve = b["curve"]["auc"]
        if curve:
            fr = sorted({r["fraction"] for rows in curve.values() for r in rows})
            lines += ["", "AUC by label fraction (mean ± 95% interval over seeds):", "",
                      "| arm | " + " | ".join(f"{f * 100:g}%" for f in fr) + " |",
                      "|---" * (len(fr) + 1) + "|"]
            for a, rows in curve.items():
                by = {r["fraction"]: r for r in rows}
                lines.append(f"| {_t(a)} | " + " | ".join(
                    f"{by[f]['mean']:.4f} ± {(by[f]['hi'] - by[f]['lo']) / 2:.4f}" if f in by
                    else "—" for f in fr) + " |")
        lines.append("")
    return lines


# ------------------------------------------------------------------ files
def write_report(results: dict[str, Any], out: Path, *, plots: bool = True) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and the PNGs into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    figures: dict[str, str] = {}
    if plots:
        from rectune.bench import _plots

        for key, png in _plots.all_figures(results).items():
            p = out / f"{key}.png"
            p.write_bytes(png)
            figures[key] = p.name
            paths[key] = p
    paths["json"] = out / "results.json"
    paths["json"].write_text(json.dumps(results, indent=1, allow_nan=False))
    paths["md"] = out / "results.md"
    paths["md"].write_text(markdown(results, figures))
    return paths
