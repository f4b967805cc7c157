"""Plots for reports, as PNG bytes or base64 strings (matplotlib, no display needed).

Why no ``pyplot``: pyplot keeps global figure state and picks a GUI backend when
one is around; a report written from a server thread or a headless job must not
depend on either. Every function here builds a :class:`matplotlib.figure.Figure`
directly (rendered by the Agg canvas), returns the encoded image and lets the
figure be garbage-collected. Functions return ``None`` when there is nothing to
draw, so a report simply leaves the plot out.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "coverage_bars",
    "figure_png",
    "learning_curves",
    "metric_bars",
    "popularity_bias",
    "to_base64",
]

DPI = 96


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def figure_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes with the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def to_base64(png: bytes) -> str:
    """PNG bytes as an ASCII string for a ``data:image/png;base64,`` URL."""
    return base64.b64encode(png).decode("ascii")


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def metric_bars(
    labels: Sequence[str],
    means: Sequence[float],
    ci: Sequence[tuple[float, float] | None] | None = None,
    *,
    title: str,
    ylabel: str = "",
    lower_is_better: bool = False,
) -> bytes | None:
    """Horizontal bars, one per result, with 95% intervals as error bars.

    Horizontal so long labels ("SVD / finetune") stay readable; the best bar is
    drawn darker. NaN means (a metric a model does not report) are skipped.
    """
    rows = [(lab, float(m), None if ci is None else ci[j])
            for j, (lab, m) in enumerate(zip(labels, means, strict=True))
            if m is not None and math.isfinite(float(m))]
    if not rows:
        return None
    fig = _figure(7.5, 0.9 + 0.34 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    vals = np.array([r[1] for r in rows])
    lo = np.array([r[1] - r[2][0] if r[2] else 0.0 for r in rows])
    hi = np.array([r[2][1] - r[1] if r[2] else 0.0 for r in rows])
    best = int(np.argmin(vals) if lower_is_better else np.argmax(vals))
    colors = ["#1f4e79" if j == best else "#7fa7cc" for j in range(len(rows))]
    ax.barh(y, vals, xerr=np.vstack([np.maximum(lo, 0), np.maximum(hi, 0)]), color=colors,
            ecolor="#333333", capsize=3)
    ax.set_yticks(y, [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_title(title + ("  (lower is better)" if lower_is_better else ""))
    ax.set_xlabel(ylabel or title)
    if lower_is_better:  # errors cluster near each other: zoom on the range that matters
        span = float(np.max(vals + hi) - np.min(vals - lo)) or 1.0
        ax.set_xlim(max(0.0, float(np.min(vals - lo)) - 0.5 * span),
                    float(np.max(vals + hi)) + 0.2 * span)
    ax.grid(axis="x", alpha=0.3)
    for j, v in enumerate(vals):  # the value just right of its error bar, not on it
        ax.text(v + max(hi[j], 0.0), j, f" {v:.4f}", va="center", ha="left", fontsize=8)
    lo_x, hi_x = ax.get_xlim()
    ax.set_xlim(lo_x, hi_x + 0.12 * (hi_x - lo_x))  # room for the labels
    return figure_png(fig)


def learning_curves(
    curves: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    title: str = "learning curves",
    max_panels: int = 3,
) -> bytes | None:
    """Per-epoch metrics (a model's ``history_``: a list of dicts per epoch), one panel per
    metric, one line per model. Keys that are not finite numbers are ignored; ``epoch``
    gives the x axis when present.
    """
    series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for label, hist in curves.items():
        if not hist:
            continue
        keys: list[str] = []
        for rec in hist:
            for key, v in rec.items():
                if key != "epoch" and key not in keys and _is_number(v):
                    keys.append(key)
        for key in keys:
            xs, ys = [], []
            for j, rec in enumerate(hist):
                val: Any = rec.get(key)
                if _is_number(val):
                    xs.append(float(rec.get("epoch", j + 1)))
                    ys.append(float(val))
            if ys:
                series.setdefault(key, {})[label] = (np.array(xs), np.array(ys))
    if not series:
        return None
    names = list(series)[:max_panels]
    fig = _figure(4.2 * len(names), 3.4)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    labels = list(curves)
    colors = dict(zip(labels, _colors(len(labels)), strict=True))
    for ax, key in zip(axes, names, strict=True):
        for label, (x, y) in series[key].items():
            ax.plot(x, y, marker="o", ms=3, label=label, color=colors[label])
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    return figure_png(fig)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool) \
        and math.isfinite(float(v))


def popularity_bias(
    rec_share: Mapping[str, Sequence[float]],
    catalogue_share: Sequence[float],
    *,
    title: str = "popularity bias: where recommendations land",
) -> bytes | None:
    """Cumulative share of recommendation slots over item-popularity deciles, vs the users'.

    Items are ranked by training popularity and cut into 10 groups of equal size
    (decile 1 = the most popular tenth). The dashed line is the cumulative share of
    training interactions; a curve above it concentrates on popular items more
    than the users themselves do. Labels ``"model / arm"`` are drawn in one small
    panel per model, so arms of the same model are compared on the same axes.
    """
    if not rec_share:
        return None
    groups: dict[str, dict[str, Sequence[float]]] = {}
    for label, share in rec_share.items():
        model, sep, arm = label.partition(" / ")
        groups.setdefault(model, {})[arm if sep else label] = share
    n = len(groups)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = _figure(3.6 * cols, 2.9 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    x = np.arange(1, len(catalogue_share) + 1)
    cat = np.cumsum(np.asarray(catalogue_share, dtype=np.float64))
    arms = sorted({a for g in groups.values() for a in g})
    color = dict(zip(arms, _colors(len(arms)), strict=True))
    for ax, (model, series) in zip(axes, groups.items(), strict=False):
        ax.plot(x, cat, "k--", lw=1.5, label="users (training)")
        for arm, share in series.items():
            ax.plot(x, np.cumsum(np.asarray(share, dtype=np.float64)), marker="o", ms=3,
                    label=arm, color=color[arm])
        ax.set_title(model, fontsize=10)
        ax.set_ylim(0, 1.02)
        ax.set_xticks(x)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax in axes[:n:cols]:
        ax.set_ylabel("cumulative share")
    for ax in axes[max(0, n - cols):n]:
        ax.set_xlabel("popularity decile (1 = most popular)")
    fig.suptitle(title)
    return figure_png(fig)


def coverage_bars(
    labels: Sequence[str],
    coverage: Sequence[float],
    gini: Sequence[float],
    *,
    k: int,
) -> bytes | None:
    """Catalogue coverage@k and Gini@k side by side, one bar pair per result."""
    rows = [(lab, c, g) for lab, c, g in zip(labels, coverage, gini, strict=True)
            if c is not None and math.isfinite(float(c))]
    if not rows:
        return None
    fig = _figure(7.5, 0.9 + 0.4 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r[1] for r in rows], height=0.4, label=f"coverage@{k}", color="#2a9d8f")
    ax.barh(y + 0.2, [r[2] if r[2] is not None else np.nan for r in rows], height=0.4,
            label=f"Gini@{k} (concentration)", color="#e76f51")
    ax.set_yticks(y, [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_title(f"catalogue coverage and concentration @{k}")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return figure_png(fig)
