"""A self-contained HTML view of an experiment's results (the JSON stays the source of truth).

One file, no network: styles are inline and every plot is a PNG embedded as a
``data:`` URL, so the report can be mailed, archived or opened offline years
later and look the same. It renders only from the results dictionary written to
``results.json`` (:func:`rectune.experiment.run_experiment`), so a report can be
rebuilt from an old run: ``write_report(json.load(open("results.json")), "r.html")``.

Synthetic data is flagged in the title, in a banner and in the data table: a
number measured on generated data must never pass for a MovieLens figure.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rectune.evaluate import plots

__all__ = ["render_report", "write_report"]

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#1d1d1f;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #dde;padding-bottom:.2em;
margin-top:1.8em}table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.86em}
th,td{border:1px solid #d6d6e0;padding:.3em .55em;text-align:right;vertical-align:top}
th{background:#f0f2f8}td.l,th.l{text-align:left}tr:nth-child(even) td{background:#fafafc}
.ci{color:#667;font-size:.85em}.banner{padding:.7em 1em;border-radius:6px;margin:1em 0}
.synthetic{background:#fff3cd;border:1px solid #e0b000;font-weight:600}
.note{background:#eef4ff;border:1px solid #b8cff5}.bad{color:#b00020}.muted{color:#777}
img{max-width:100%;display:block;margin:.5em 0 1.2em}code{background:#f3f3f6;padding:0 .25em}
.badge{background:#e0b000;color:#000;border-radius:4px;padding:.05em .4em;font-size:.8em}
"""

_BEYOND = ("coverage", "gini", "novelty", "diversity", "personalization")


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return _e(v)


def _with_ci(v: Any, ci: Sequence[Any] | None) -> str:
    s = _num(v)
    if ci and len(ci) == 2 and ci[0] is not None and ci[1] is not None:
        s += f' <span class="ci">[{_num(ci[0])}, {_num(ci[1])}]</span>'
    return s


def _table(table_id: str, header: Sequence[str], rows: Sequence[Sequence[str]],
           left: int = 1) -> str:
    """An HTML table; cells are already-escaped HTML; the first ``left`` columns align left."""
    th = "".join(f'<th class="{"l" if j < left else ""}">{_e(h)}</th>'
                 for j, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if j < left else ""}">{c}</td>'
                         for j, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<table id="{_e(table_id)}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{plots.to_base64(png)}">'


def _ok(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in results.get("results", []) if r.get("status") == "ok"]


def _rank(r: dict[str, Any]) -> dict[str, Any]:
    return r.get("ranking") or {}


def _metric_columns(results: dict[str, Any]) -> tuple[list[str], list[str]]:
    mc = results.get("metrics_config", {})
    ks = mc.get("k") or [10]
    rating = [m for m in mc.get("rating", ["rmse", "mae"])
              if any(r.get("rating") for r in _ok(results))]
    ranking = [f"{m}@{k}" for k in ks for m in mc.get("ranking", [])
               if any(_rank(r) for r in _ok(results))]
    return rating, ranking


def _summary(results: dict[str, Any]) -> str:
    """One table per cut-off k (the first also holds RMSE/MAE), one row per result."""
    rating, ranking = _metric_columns(results)
    ks = (results.get("metrics_config") or {}).get("k") or [10]
    out = []
    for j, k in enumerate(ks):
        cols = [m for m in ranking if m.endswith(f"@{k}")]
        rcols = rating if j == 0 else []
        header = ["result", "status", "train rows", "fit s", *[m.upper() for m in rcols], *cols]
        rows = []
        for r in results.get("results", []):
            status = r.get("status", "?")
            cells = [_e(r["label"]),
                     _e(status) if status == "ok" else f'<span class="bad">{_e(status)}</span>',
                     _num(r.get("n_train")), _num(r.get("fit_seconds"), 2)]
            rt = r.get("rating") or {}
            cells += [_with_ci(rt.get(m), rt.get(f"{m}_ci")) for m in rcols]
            rk = _rank(r)
            cells += [_with_ci((rk.get("metrics") or {}).get(m), (rk.get("ci") or {}).get(m))
                      for m in cols]
            rows.append(cells)
        if j and not cols:
            continue
        out.append(_table("metrics" if j == 0 else f"metrics-at-{k}", header, rows, left=2))
    return "".join(out)


def _bars(results: dict[str, Any]) -> str:
    rating, ranking = _metric_columns(results)
    ok = _ok(results)
    out = []
    for m in rating:
        rows = [r for r in ok if r.get("rating")]
        png = plots.metric_bars([r["label"] for r in rows], [r["rating"][m] for r in rows],
                                [r["rating"].get(f"{m}_ci") for r in rows], title=m.upper(),
                                lower_is_better=True)
        out.append(_img(png, f"{m} by model"))
    ks = (results.get("metrics_config") or {}).get("k") or [10]
    for m in ranking:
        if not m.endswith(f"@{ks[0]}"):
            continue  # plots at the first cut-off; the table has every k
        rows = [r for r in ok if _rank(r)]
        png = plots.metric_bars(
            [r["label"] for r in rows], [_rank(r)["metrics"].get(m) for r in rows],
            [(_rank(r).get("ci") or {}).get(m) for r in rows], title=m)
        out.append(_img(png, f"{m} by model"))
    return "".join(out)


def _beyond(results: dict[str, Any]) -> str:
    ks = (results.get("metrics_config") or {}).get("k") or [10]
    k = ks[0]
    rows_r = [r for r in _ok(results) if _rank(r)]
    if not rows_r:
        return ""
    names = [f"{b}@{k}" for b in _BEYOND
             if any(f"{b}@{k}" in _rank(r)["metrics"] for r in rows_r)]
    rows = []
    for r in rows_r:
        met, ci = _rank(r)["metrics"], _rank(r).get("ci") or {}
        pop = _rank(r).get("popularity_bias") or {}
        rows.append([_e(r["label"]), *[_with_ci(met.get(n), ci.get(n)) for n in names],
                     _num(pop.get("mean_rec_popularity"), 1),
                     _num(pop.get("mean_catalogue_popularity"), 1)])
    table = _table("beyond", ["result", *names, "mean pop. of recommended",
                              "mean pop. of catalogue item"], rows)
    cov = plots.coverage_bars([r["label"] for r in rows_r],
                              [_rank(r)["metrics"].get(f"coverage@{k}") for r in rows_r],
                              [_rank(r)["metrics"].get(f"gini@{k}") for r in rows_r], k=k)
    shares = {r["label"]: _rank(r)["popularity_bias"]["rec_share"] for r in rows_r
              if _rank(r).get("popularity_bias")}
    pop_png = plots.popularity_bias(shares, results["catalogue_share"]) \
        if shares and results.get("catalogue_share") else None
    return (f"<h2>Beyond accuracy @{k}</h2>"
            "<p>Coverage: share of the catalogue recommended to anyone. Gini: concentration "
            "of recommendation slots (0 = even). Novelty: mean self-information "
            "−log2 p(item) in bits. Diversity: mean pairwise genre distance within a list. "
            "Personalization: 1 − mean overlap between users' lists.</p>"
            + table + _img(cov, "coverage and Gini") + _img(pop_png, "popularity bias"))


def _counts(results: dict[str, Any]) -> str:
    rows = []
    ks = (results.get("metrics_config") or {}).get("k") or [10]
    main = (results.get("metrics_config") or {}).get("ranking") or ["ndcg"]
    m = f"{main[0]}@{ks[0]}"
    for r in _ok(results):
        rt, rk = r.get("rating") or {}, _rank(r)
        c = rk.get("counts") or {}
        g = rk.get("by_group") or {}
        rows.append([
            _e(r["label"]), _num(rt.get("n")), _num(rt.get("n_unknown")),
            _num(rt.get("rmse_known")), _num(c.get("n_users_evaluated")),
            _num(c.get("n_users_unknown")), _num((g.get("known_users") or {}).get(m)),
            _num((g.get("unknown_users") or {}).get(m)),
            _num(c.get("n_relevant_unrecommendable"))])
    if not rows:
        return ""
    return ("<h2>Unknown users and items</h2><p>Rows and users the model had no training data "
            "for are scored by the model's own fallback and <em>kept</em> in every average; "
            "this table shows how many there were and how each part fared.</p>"
            + _table("counts", ["result", "test ratings", "unknown rows", "RMSE known rows",
                                "users evaluated", "users unknown", f"{m} known users",
                                f"{m} unknown users", "relevant items not in catalogue"], rows))


def _curves(results: dict[str, Any]) -> str:
    ok = _ok(results)
    hist = {r["label"]: r["history"] for r in ok if r.get("history")}
    out = []
    if hist:
        out.append(_img(plots.learning_curves(hist, title="per-epoch metrics"),
                        "learning curves"))
    models = sorted({r["model"] for r in ok})
    for model in models:
        pair = {r["label"]: r["history"] for r in ok if r["model"] == model
                and r.get("arm") in ("finetune", "scratch") and r.get("history")}
        if len(pair) == 2:
            out.append(_img(plots.learning_curves(pair, title=f"{model}: fine-tune vs scratch"),
                            f"{model} fine-tune vs scratch"))
    if not out:
        return ("<h2>Learning curves</h2><p class=\"muted\">No model of this run exposes "
                "per-epoch metrics (<code>history_</code>).</p>")
    return "<h2>Learning curves</h2>" + "".join(out)


def _paired(results: dict[str, Any]) -> str:
    tests = results.get("paired_tests") or []
    if not tests:
        return ""
    rows = [[_e(t["a"]), _e(t["b"]), _e(t["metric"]), _num(t.get("mean_a")),
             _num(t.get("mean_b")), _with_ci(t.get("mean_diff"), [t.get("ci_low"),
                                                                 t.get("ci_high")]),
             _num(t.get("p_value")), _num(t.get("n")),
             "yes" if t.get("significant") else "no"] for t in tests]
    return ("<h2>Paired tests</h2><p>A − B on the same users (ranking) or test rows "
            "(squared error), bootstrap 95% interval and two-sided p-value.</p>"
            + _table("paired", ["A", "B", "metric", "mean A", "mean B", "A − B [95% CI]",
                                "p", "n", "p < α"], rows, left=3))


def _manifest(results: dict[str, Any]) -> str:
    man = results.get("manifest")
    if not man:
        return ""
    rows = [["command", f"<code>{_e(' '.join(man.get('command') or []))}</code>"],
            ["python / platform", _e(f"{man.get('python')} / {man.get('platform')}")],
            ["cpus", _e(man.get("cpu_count"))],
            ["git", _e(man.get("git") or "not a git work tree")],
            ["seeds", _e(man.get("seeds"))], ["started", _e(man.get("started"))]]
    rows += [[f"data {_e(k)}", f"<code>{_e(v)}</code>"]
             for k, v in (man.get("data") or {}).items()]
    rows += [[f"package {_e(k)}", _e(v)] for k, v in (man.get("packages") or {}).items()]
    rows += [[f"wall time: {_e(k)}", _num(v, 2) + " s"]
             for k, v in (man.get("wall_seconds") or {}).items()]
    return "<h2>Reproducibility</h2>" + _table("manifest", ["field", "value"], rows, left=2)


def _data(results: dict[str, Any]) -> str:
    d, s = results.get("data") or {}, results.get("split") or {}
    label = _e(d.get("label"))
    if d.get("synthetic"):
        label += ' <span class="badge">SYNTHETIC</span>'
    rows = [["data", label], ["ratings / users / items",
                              f"{_num(d.get('n_ratings'))} / {_num(d.get('n_users'))} / "
                              f"{_num(d.get('n_items'))}"],
            ["split", _e(s.get("protocol") or s.get("method"))],
            ["sizes", _e(s.get("sizes"))]]
    if "returning_fraction" in s:
        rows.append(["test rows from returning users", _num(s.get("returning_fraction"))])
    mc = results.get("metrics_config") or {}
    rows.append(["relevance", _e(f"rating >= {mc.get('relevance_threshold')}"
                                 if mc.get("relevance_threshold") is not None
                                 else "every test interaction")])
    rows.append(["candidate filter", _e("each user's training items (never test items)"
                                        if mc.get("exclude") == "train" else "none")])
    return _table("data", ["", ""], rows, left=2)


def render_report(results: dict[str, Any]) -> str:
    """The report as one HTML string (inline CSS and base64 PNG plots, no external request)."""
    exp = results.get("experiment") or {}
    synthetic = bool((results.get("data") or {}).get("synthetic"))
    title = str(exp.get("title") or exp.get("name") or "rectune experiment")
    if synthetic:
        title += " (synthetic data)"
    banners = []
    if synthetic:
        reason = (results.get("data") or {}).get("fallback_reason")
        banners.append('<div class="banner synthetic">SYNTHETIC DATA: every number below was '
                       "measured on rectune's MovieLens-shaped generator, not on real users."
                       + (f"<br>Reason: {_e(reason)}" if reason else "") + "</div>")
    notes = [n for n in results.get("notes") or [] if not str(n).startswith("SYNTHETIC")]
    by_msg: dict[str, list[str]] = {}
    for r in results.get("results", []):
        if r.get("status") != "ok":
            key = f"{r.get('status')}: {r.get('message')}"
            by_msg.setdefault(key, []).append(str(r["label"]))
    notes += [f"{', '.join(labels)} — {msg}" for msg, labels in by_msg.items()]
    if notes:
        banners.append('<div class="banner note">' + "<br>".join(_e(n) for n in notes)
                       + "</div>")
    sections: list[Callable[[dict[str, Any]], str]] = [_beyond, _counts, _curves, _paired,
                                                         _manifest]
    body = (f"<h1>{_e(title)}</h1><p class=\"muted\">{_e(exp.get('description') or '')}</p>"
            + "".join(banners) + _data(results)
            + "<h2>Metrics</h2><p>Means over test users (ranking) or test ratings (RMSE/MAE) "
              "with 95% bootstrap intervals in brackets.</p>"
            + _summary(results) + _bars(results) + "".join(f(results) for f in sections))
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>{body}"
            "<p class=\"muted\">Generated by rectune.</p></body></html>")


def write_report(results: dict[str, Any], path: str | Path) -> Path:
    """Render and write the report; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_report(results), encoding="utf-8")
    return p
