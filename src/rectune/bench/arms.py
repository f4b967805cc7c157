"""The arms of the transfer benchmark, the models they run, and how each arm is chosen.

An *arm* is one way of using new data with one model family:

* ``stale``    — the pre-trained model, untouched;
* ``scratch``  — a fresh model fitted on the new data only;
* ``retrain``  — the pre-training recipe re-run on old + new data;
* ``finetune`` — :func:`rectune.finetune.finetune` with ``l2sp = 0`` (plain fine-tuning);
* ``l2sp``     — fine-tuning with the L2-SP pull towards the pre-trained parameters;
* ``frozen``   — fine-tuning with one side frozen (items in a temporal update, users in
  a cross-domain transfer);
* ``l2sp_replay`` — temporal update only: L2-SP fine-tuning that also replays the
  pre-training ratings of the users it updates, early-stopped and chosen on a random
  slice of the new data (rows of users with data), see
  :mod:`rectune.bench.tasks_rating`;
* ``als_replay`` — the same objective and validation, solved by anchored ALS sweeps
  (``solver="als"``): a few closed-form block solves instead of tens of SGD epochs (the
  implicit temporal task's ``l2sp_replay`` is the implicit ALS model's counterpart).

Honesty rules the code enforces:

* An arm whose model does not support the operation is reported as
  ``"n/a (unsupported)"`` (from :func:`rectune.finetune.supports`, checked at run time,
  so support that lands later is picked up without touching the suite); it is never
  replaced by something else.
* Every choice (λ, learning-rate factor, epochs, regularisation) is made on a
  validation slice of the *new* data carved exactly as the engine carves it
  (PROTOCOLS.md: random 10% with seed 1, or the newest 10% in the temporal task); the
  test rows are only read after the choice.
* Wall times follow PROTOCOLS.md: one warm-up run, then the median of ``repeats``
  runs of the chosen configuration; the one-off JIT compile is measured apart.
"""

from __future__ import annotations

import inspect
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from rectune._errors import RectuneError
from rectune.data.interactions import Interactions
from rectune.models.base import Recommender

__all__ = [
    "ARMS",
    "ARM_TITLES",
    "FT_ARMS",
    "NA_UNSUPPORTED",
    "Arm",
    "ModelSpec",
    "TimeStats",
    "carve",
    "default_specs",
    "finetune_arm",
    "json_safe",
    "select",
    "time_runs",
    "union",
]

ARMS: tuple[str, ...] = ("stale", "scratch", "retrain", "finetune", "l2sp", "frozen", "auto",
                         "l2sp_replay", "als_replay")
FT_ARMS: tuple[str, ...] = ("finetune", "l2sp", "frozen")
ARM_TITLES: dict[str, str] = {
    "stale": "stale pre-trained",
    "scratch": "scratch (new data only)",
    "retrain": "retrain (old + new)",
    "finetune": "fine-tune (plain, λ=0)",
    "l2sp": "fine-tune (L2-SP)",
    "frozen": "fine-tune (frozen side)",
    "auto": "auto (chosen on validation, guarded)",
    "l2sp_replay": "fine-tune (L2-SP + user replay, per-user valid.)",
    "als_replay": "fine-tune (L2-SP + user replay, ALS solves, per-user valid.)",
    # cold-start extras
    "feature_reg": "fine-tune (feature-reg.)",
    "fold_in": "fold-in (model's own reg.)",
    "fold_in_tuned": "fold-in (λ chosen on warm-as-cold)",
    "global_mean": "global mean",
    "item_bias": "item bias (mu + b_i)",
    "bias_fold_in": "user bias folded in (Baseline)",
    "demographic_bias": "demographic bias (side features)",
}
#: capability of :func:`rectune.finetune.supports` each fine-tuning arm needs
ARM_CAPABILITY: dict[str, tuple[str, ...]] = {
    "finetune": ("finetune",),
    "l2sp": ("finetune", "l2sp"),
    "frozen": ("finetune", "freeze"),
    "l2sp_replay": ("finetune", "l2sp", "replay"),
    "als_replay": ("finetune", "l2sp", "replay", "als_solver"),
}
NA_UNSUPPORTED = "n/a (unsupported)"

ValidMode = Literal["random", "temporal"]


# ----------------------------------------------------------------------------- timing
@dataclass
class TimeStats:
    """Wall times of one training recipe: warm-up run first, then ``runs`` (seconds)."""

    warmup_s: float
    runs: list[float]

    @property
    def median_s(self) -> float:
        return float(statistics.median(self.runs)) if self.runs else self.warmup_s

    def to_dict(self) -> dict[str, Any]:
        return {"median_s": self.median_s, "warmup_s": self.warmup_s, "runs_s": self.runs,
                "n_runs": len(self.runs)}


def time_runs(fn: Callable[[], Any], repeats: int) -> TimeStats:
    """One warm-up call of ``fn`` (not counted), then ``repeats`` timed calls.

    The warm-up absorbs one-off costs (numba compile or cache load, cold memory);
    the median of the others is the figure PROTOCOLS.md quotes.
    """
    t0 = time.perf_counter()
    fn()
    warm = time.perf_counter() - t0
    runs = []
    for _ in range(max(0, repeats)):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return TimeStats(warm, runs)


# ------------------------------------------------------------------------------ arms
@dataclass(eq=False)
class Arm:
    """One arm's outcome: the chosen model, how it was chosen, its cost and its metrics.

    ``model`` and ``refit`` (a zero-argument callable that re-runs the chosen recipe,
    for timing) and ``arrays`` (per-row test outputs for paired tests) stay in memory;
    :meth:`to_dict` keeps the JSON-safe rest.
    """

    name: str
    status: str = "ok"
    model: Recommender | None = None
    chosen: dict[str, Any] = field(default_factory=dict)
    valid_score: float | None = None
    n_candidates: int = 0
    select_s: float = 0.0
    refit: Callable[[], Any] | None = None
    time: TimeStats | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"arm": self.name, "title": ARM_TITLES.get(self.name, self.name),
                               "status": self.status}
        if self.notes:
            out["notes"] = self.notes
        if not self.ok:
            return json_safe(out)
        out.update(chosen=self.chosen, valid_score=self.valid_score,
                   n_candidates=self.n_candidates, select_s=self.select_s,
                   metrics=self.metrics)
        if self.time is not None:
            out["time"] = self.time.to_dict()
        return json_safe(out)


def na(name: str, reason: str = NA_UNSUPPORTED) -> Arm:
    """An arm that does not run, with the reason shown in every report."""
    return Arm(name, status=reason)


def select(
    name: str,
    grid: Sequence[Mapping[str, Any]],
    build: Callable[[dict[str, Any]], Recommender],
    score: Callable[[Recommender], float] | None,
    *,
    lower_is_better: bool = True,
    max_build_s: float | None = None,
) -> Arm:
    """Fit every configuration of ``grid`` and keep the one with the best validation score.

    ``score`` reads the validation slice only (never the test rows); with ``None`` (or
    a single configuration) the first candidate is kept. Ties keep the earlier
    candidate, so a grid is ordered from the default outwards.

    ``max_build_s``: a time budget. Each candidate's build is timed, and only those that
    took at most this long are eligible (the best of them is kept); when none fits, the
    fastest is kept and the notes say so. Every candidate is still fitted and scored.
    """
    if not grid:
        raise RectuneError(f"arm {name!r}: empty configuration grid")
    # kept as it goes (never every fitted model): the best eligible and the fastest
    Entry = tuple[float, float, dict[str, Any], Recommender]
    best: Entry | None = None
    fastest: Entry | None = None
    n_eligible = 0
    t0 = time.perf_counter()
    for cfg in grid:
        params = dict(cfg)
        tb = time.perf_counter()
        model = build(params)
        took = time.perf_counter() - tb
        s = float(score(model)) if score is not None else 0.0
        entry: Entry = (s if lower_is_better else -s, took, params, model)
        if fastest is None or took < fastest[1]:
            fastest = entry
        if max_build_s is None or took <= max_build_s:
            n_eligible += 1
            if best is None or entry[0] < best[0] - 1e-12:
                best = entry
    elapsed = time.perf_counter() - t0
    notes: list[str] = []
    if max_build_s is not None:
        if best is None:
            best = fastest
            assert best is not None
            notes.append(f"no candidate fitted within the {max_build_s * 1e3:.0f} ms budget; "
                         f"kept the fastest ({best[1] * 1e3:.0f} ms)")
        else:
            notes.append(f"{n_eligible} of {len(grid)} candidates fitted within the "
                         f"{max_build_s * 1e3:.0f} ms budget; kept the best of them")
    assert best is not None
    key, _, params, model = best
    valid = (key if lower_is_better else -key) if score is not None else None
    chosen = dict(params)
    return Arm(name, model=model, chosen=chosen, valid_score=valid, n_candidates=len(grid),
               select_s=elapsed, refit=lambda: build(dict(chosen)), notes=notes)


def supported(model: Any, arm: str) -> bool:
    """Whether ``model`` supports every capability the fine-tuning ``arm`` needs."""
    from rectune.finetune import supports

    return all(supports(model, c) for c in ARM_CAPABILITY.get(arm, ("finetune",)))


def finetune_arm(
    name: str,
    pre: Recommender,
    new: Interactions,
    grid: Sequence[Mapping[str, Any]],
    base: Mapping[str, Any],
    score: Callable[[Recommender], float] | None,
    *,
    fit_part: Interactions | None = None,
    old: Interactions | None = None,
    features: Any = None,
    lower_is_better: bool = True,
    max_build_s: float | None = None,
) -> Arm:
    """Run :func:`rectune.finetune.finetune` over ``grid`` (merged into ``base``) and select
    (``max_build_s``: only candidates that fit within that time, see :func:`select`).

    Reports ``n/a (unsupported)`` when the model's family lacks the capability. The
    engine carves the validation slice itself for families that train in epochs; a
    family it hands every new row to (KNN: no epochs) would then be scored on rows it
    was fitted on, so for those ``fit_part`` (the new data minus the slice, what
    scratch and retrain get) is passed instead, and the arm says so in its notes.
    """
    from rectune.finetune import FinetuneConfig, finetune

    if not supported(pre, name):
        return na(name)
    data = [new]
    notes: list[str] = []

    def build(g: dict[str, Any]) -> Recommender:
        cfg = FinetuneConfig(**{**base, **g})
        m = finetune(pre, data[0], cfg, old_data=old, features=features)
        held_out = (getattr(m, "meta_", {}) or {}).get("finetune", {}).get("n_valid_rows", 0)
        if (fit_part is not None and data[0] is new and not held_out and cfg.early_stopping
                and cfg.valid_fraction > 0):
            data[0] = fit_part
            notes.append("the engine holds no validation slice out for this family: it was "
                         "given the new data minus the validation slice (as scratch/retrain)")
            m = finetune(pre, fit_part, cfg, old_data=old, features=features)
        return m

    arm = select(name, grid, build, score, lower_is_better=lower_is_better,
                 max_build_s=max_build_s)
    arm.chosen = {**{k: v for k, v in base.items() if k != "verbose"}, **arm.chosen}
    arm.notes.extend(notes)
    return arm


# ----------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelSpec:
    """A model family as the suite runs it: pre-training recipe and the grids of each arm.

    ``params``: hyper-parameters of the pre-trained model, also ``retrain``'s recipe
    (retraining re-runs the pre-training recipe on old + new data).
    ``scratch_grid``: overrides tried for ``scratch`` (small data needs more
    regularisation; choosing it on validation keeps the comparison fair).
    ``early_stopping``: overrides that make ``fit(train, valid=...)`` early-stop, used by
    ``scratch`` on the same validation slice the engine uses.
    ``ft_grid``: :class:`~rectune.finetune.FinetuneConfig` overrides for the plain and
    frozen arms; ``l2sp_values``: the λ tried by the L2-SP arm (crossed with ``ft_grid``).
    ``replay_values``, ``replay_epochs``: replay fractions (relative to the new rows) and
    fixed epoch counts crossed with the L2-SP grid by the temporal task's ``l2sp_replay``
    arm (no early stopping: epochs are a grid choice there); empty = that arm does not run.
    """

    name: str
    cls: type[Recommender]
    params: dict[str, Any] = field(default_factory=dict)
    scratch_grid: tuple[dict[str, Any], ...] = ({},)
    early_stopping: dict[str, Any] = field(default_factory=dict)
    ft_grid: tuple[dict[str, Any], ...] = ({},)
    l2sp_values: tuple[float, ...] = (0.01, 0.1, 1.0)
    implicit: bool = False
    replay_values: tuple[float, ...] = ()
    replay_epochs: tuple[int, ...] = (5, 10, 20, 30)
    als_l2sp: tuple[float, ...] = ()
    als_epochs: tuple[int, ...] = (1, 2, 3)
    implicit_replay_l2sp: tuple[float, ...] = ()

    @property
    def rating(self) -> bool:
        """Whether the model predicts ratings (RMSE) rather than ranking scores."""
        flag = self.cls.predicts_ratings
        if isinstance(flag, property):  # decided per instance (neural models: by loss)
            return bool(self.make(0).predicts_ratings)
        return bool(flag)

    def make(self, seed: int, **overrides: Any) -> Recommender:
        """A new, unfitted model with the spec's parameters, ``overrides`` and the seed."""
        params = {**self.params, **overrides}
        if "random_state" in inspect.signature(self.cls.__init__).parameters:
            params["random_state"] = seed
        return self.cls(**params)

    def l2sp_grid(self) -> tuple[dict[str, Any], ...]:
        return tuple({**g, "l2sp": lam} for lam in self.l2sp_values for g in self.ft_grid)

    def replay_grid(self) -> tuple[dict[str, Any], ...]:
        """The L2-SP grid × ``replay_values`` × ``replay_epochs`` (fixed epochs, no early
        stopping; no replay and fewer epochs first, so ties keep the cheaper run)."""
        grid = [{**g, "replay": rp, "epochs": e, "early_stopping": False}
                for rp in self.replay_values for e in self.replay_epochs
                for g in self.l2sp_grid()]
        # cheapest first (rows visited: (1 + replay) × epochs)
        return tuple(sorted(grid, key=lambda g: (1 + g["replay"]) * g["epochs"]))

    def als_replay_grid(self, replay_all: float) -> tuple[dict[str, Any], ...]:
        """ALS sweeps (``solver="als"``, 3 CG steps): ``als_l2sp`` × ``als_epochs`` × replay
        of none or all of the updated users' history (``replay_all``) × the new rows' weight
        (the model's own or 0.1); cheaper settings first, so ties keep them."""
        return tuple({"solver": "als", "cg_steps": 3, "l2sp": lam, "epochs": e,
                      "early_stopping": False, "replay": rp, "new_row_reg": nr}
                     for e in self.als_epochs for rp in (0.0, replay_all)
                     for lam in self.als_l2sp for nr in (None, 0.1))

    def implicit_replay_grid(self, replay_all: float) -> tuple[dict[str, Any], ...]:
        """Implicit ALS with the updated users' history replayed: ``implicit_replay_l2sp`` ×
        one or two sweeps × 3 CG steps or exact solves, cheapest first."""
        return tuple({"l2sp": lam, "epochs": e, "replay": replay_all, "cg_steps": cg}
                     for e in (1, 2) for cg in (3, None) for lam in self.implicit_replay_l2sp)

    def describe(self) -> dict[str, Any]:
        return json_safe({"class": f"{self.cls.__module__}.{self.cls.__qualname__}",
                          "params": self.params, "scratch_grid": list(self.scratch_grid),
                          "early_stopping": self.early_stopping,
                          "ft_grid": list(self.ft_grid), "l2sp_values": list(self.l2sp_values),
                          "replay_values": list(self.replay_values),
                          "replay_epochs": list(self.replay_epochs),
                          "als_l2sp": list(self.als_l2sp), "als_epochs": list(self.als_epochs),
                          "implicit_replay_l2sp": list(self.implicit_replay_l2sp)})


def default_specs(*, quick: bool = False) -> dict[str, ModelSpec]:
    """The model families of the suite: SVD, ItemKNN and NeuMF (explicit), ALS and BPR
    (implicit)."""
    from rectune.models.als import ALS
    from rectune.models.bpr import BPR
    from rectune.models.knn import ItemKNN
    from rectune.models.mf_svd import SVD

    lr_grid: tuple[dict[str, Any], ...] = ({"lr_factor": 0.3, "epochs": 30},
                                           {"lr_factor": 1.0, "epochs": 30})
    specs = {
        "SVD": ModelSpec(
            "SVD", SVD, {"n_factors": 50, "n_epochs": 20},
            scratch_grid=({"reg_all": 0.02}, {"reg_all": 0.05}, {"reg_all": 0.1}),
            early_stopping={"n_epochs": 60, "early_stopping_patience": 3},
            # replay of the updated users' pre-training ratings: what closes the gap to
            # retraining on returning users (docs/transfer.md, temporal update)
            ft_grid=lr_grid, replay_values=(0.0, 0.5, 1.0, 2.0),
            # the same objective solved by anchored ALS sweeps (docs/transfer.md)
            als_l2sp=(0.1, 0.3, 1.0, 3.0)),
        "ItemKNN": ModelSpec(
            "ItemKNN", ItemKNN, {"k": 40, "similarity": "cosine", "rule": "mean"},
            ft_grid=({"decay": 1.0}, {"decay": 0.7}, {"decay": 0.4}), l2sp_values=()),
        "ALS": ModelSpec(
            "ALS", ALS, {"factors": 64, "iterations": 15, "regularization": 0.05},
            scratch_grid=({"regularization": 0.05}, {"regularization": 1.0}),
            l2sp_values=(1.0, 10.0, 100.0, 1000.0), implicit=True,
            implicit_replay_l2sp=(1.0, 10.0, 100.0)),
        "BPR": ModelSpec(
            "BPR", BPR, {"factors": 64, "iterations": 100, "learning_rate": 0.01,
                         "regularization": 0.01},
            ft_grid=({"lr_factor": 0.3}, {"lr_factor": 1.0}), implicit=True),
    }
    from rectune.models.neural.ncf import NeuMF

    # the suite's neural model: NeuMF on ratings (MSE). Without a validation slice it
    # trains 3 epochs (where early stopping on ML-100K's validation stops); scratch and
    # fine-tuning early-stop on the same validation slice of the new data
    specs["NeuMF"] = ModelSpec(
        "NeuMF", NeuMF, {"n_factors": 32, "loss": "mse", "lr": 3e-3, "batch_size": 256,
                         "epochs": 3, "patience": None},
        early_stopping={"epochs": 40, "patience": 3},
        ft_grid=({"lr_factor": 0.3, "epochs": 20}, {"lr_factor": 1.0, "epochs": 20}),
        l2sp_values=(0.001, 0.01, 0.1))
    if quick:  # CI-speed smoke runs: the grids' first points only
        specs = {k: ModelSpec(s.name, s.cls, s.params, s.scratch_grid[:1], s.early_stopping,
                              s.ft_grid[:1], s.l2sp_values[1:2] or s.l2sp_values, s.implicit,
                              s.replay_values[-1:], s.replay_epochs[:1], s.als_l2sp[2:3],
                              s.als_epochs[:1], s.implicit_replay_l2sp[:1])
                 for k, s in specs.items()}
    return specs


# ------------------------------------------------------------------------------ data
def carve(new: Interactions, mode: ValidMode, fraction: float = 0.1,
          seed: int = 1) -> tuple[Interactions, Interactions]:
    """``(fit, valid)`` of the new data, row for row the slice the engine carves itself."""
    from rectune.data.protocols import temporal_validation_slice, validation_slice

    s = (temporal_validation_slice(new, fraction) if mode == "temporal"
         else validation_slice(new, fraction, seed=seed))
    return s.train, s.test


def union(*parts: Interactions) -> Interactions:
    """Rows of every part in order (same id maps, disjoint pairs)."""
    out = parts[0]
    for p in parts[1:]:
        out = out.concat(p)
    return out


# ------------------------------------------------------------------------------ json
def json_safe(x: Any) -> Any:
    """Plain JSON data: numpy scalars and arrays converted, NaN/inf as None."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return [json_safe(v) for v in x.tolist()]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        return x if np.isfinite(x) else None
    if x is None or isinstance(x, bool | int | str):
        return x
    return str(x)
