"""The ``auto`` arm: :func:`rectune.finetune.auto` run as one more arm of every task.

``auto`` chooses on the validation slice of the new data among scratch and every
transfer strategy (plain, L2-SP, frozen groups, new rows only, partial transfer,
replay), with a negative-transfer guard. The suite hands it the fixed arms' grids
(the spec's scratch grid with its early stopping, its fine-tuning grid and λ
values; see :func:`auto_kwargs`), so the question the arm answers is only: *does choosing
automatically, with a guard, cost anything against the best fixed recipe?*

The comparison that answers it (:func:`auto_comparisons`) is paired over test users
against the **better of scratch and the best fixed fine-tuning arm**, the better one
picked on validation like every other choice (``reference``), and, for scale, picked
on the test set (``oracle``: a bound no validation-driven procedure can promise).
"Never significantly worse" means the 95% interval of auto − reference does not lie
entirely on the losing side.

Where a task cannot hand ``auto`` a model and new data of the same kind (the task
change: scratch there is a different model class, a ClickMF), :func:`guarded_arm`
applies the same guard (:func:`rectune.finetune.auto.decide`) to the arms the task
already ran, on their per-user validation values.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

from rectune.bench.arms import FT_ARMS, Arm, ModelSpec
from rectune.bench.compare import pooled_users, verdict
from rectune.data.interactions import Interactions
from rectune.finetune.auto import AutoResult, Candidate, auto, decide
from rectune.models.base import Recommender

__all__ = ["AUTO", "AutoPool", "auto_arm", "auto_comparisons", "auto_kwargs", "guarded_arm",
           "not_worse"]

AUTO = "auto"


def auto_kwargs(spec: ModelSpec, seed: int, *, with_early_stopping: bool = True
                ) -> dict[str, Any]:
    """The fixed arms' grids as :func:`auto` arguments.

    Scratch and plain fine-tuning get the fixed arms' grids in full; L2-SP (the same λ
    values) and the frozen groups start from the best plain configuration, where the
    fixed arms cross them with every step size. Trying every step size there too
    doubles those candidates and, on ML-100K cross-domain (SVD, 6 runs at 1-25 %, the
    four where auto lost to the reference among them), changed no choice, so auto
    keeps the linear grid.
    """
    takes_seed = "random_state" in inspect.signature(spec.cls.__init__).parameters
    es = dict(spec.early_stopping) if with_early_stopping else {}
    scratch = [{**es, **g, **({"random_state": seed} if takes_seed else {})}
               for g in spec.scratch_grid]
    plain = [dict(g) for g in spec.ft_grid]
    return {"scratch_grid": scratch, "plain_grid": plain,
            "lambdas": tuple(spec.l2sp_values), "seed": seed}


def _summary(res: AutoResult) -> dict[str, Any]:
    rep = res.report
    return {"choice": rep["choice"], "verdict": rep["verdict"],
            "valid_metric": rep["metric"], "scratch_valid": rep["scratch_score"],
            "diagnostic": rep["diagnostic"].get("summary"),
            "mean_rating_corr": rep["diagnostic"].get("mean_rating_corr"),
            "candidates": [{"name": c.name, "status": c.status, "valid": c.score,
                            "cost_s": c.cost_s,
                            "beats_scratch": (c.vs_scratch or {}).get("beats_scratch")}
                           for c in res.candidates]}


def auto_arm(spec: ModelSpec, pre: Recommender, new: Interactions, *,
             old: Interactions | None, seed: int, valid_mode: Literal["random", "temporal"],
             history: Interactions | None = None, n_boot: int = 1000) -> Arm:
    """Run :func:`auto` as the ``auto`` arm; its cost is the whole search (refit = search)."""
    kw = auto_kwargs(spec, seed)

    def search() -> AutoResult:
        return auto(pre, new, old_data=old, history=history, valid_mode=valid_mode,
                    n_boot=n_boot, **kw)

    t0 = time.perf_counter()
    res = search()
    arm = Arm(AUTO, model=res.model, chosen=_summary(res),
              valid_score=res.report["valid_score"],
              n_candidates=sum(c.status == "ok" for c in res.candidates),
              select_s=time.perf_counter() - t0, refit=search)
    arm.notes.append(res.report["reason"])
    return arm


def guarded_arm(arms: Mapping[str, Arm], per_user: Mapping[str, tuple[np.ndarray, np.ndarray]],
                *, metric: str, lower_is_better: bool, how: Literal["rmse", "mean"],
                n_boot: int = 1000) -> Arm:
    """The ``auto`` arm over arms a task already ran: scratch vs the fine-tuning arms.

    ``per_user[name] = (sums, counts)`` over the same validation users for every arm
    that ran; the arm returned *is* the chosen arm's model, with the guard's report.
    """
    t0 = time.perf_counter()
    cands: list[Candidate] = []
    for name in ("scratch", *FT_ARMS):
        a = arms.get(name)
        if a is None:
            continue
        c = Candidate(name, "scratch" if name == "scratch" else "transfer",
                      dict(a.chosen), status="ok" if a.ok and name in per_user else a.status)
        if c.status == "ok":
            c.values, c.counts = per_user[name]
            c.score, c.model = a.valid_score, a.model
        cands.append(c)
    rep, chosen = decide(cands, metric=metric, lower_is_better=lower_is_better, how=how,
                         n_boot=n_boot)
    src = arms[chosen.name]
    out = Arm(AUTO, model=src.model, valid_score=src.valid_score,
              n_candidates=sum(c.status == "ok" for c in cands),
              select_s=time.perf_counter() - t0 + sum(arms[c.name].select_s for c in cands
                                                        if c.status == "ok"),
              refit=src.refit, metrics=dict(src.metrics), arrays=dict(src.arrays))
    out.chosen = {"choice": chosen.name, "verdict": rep["verdict"], "valid_metric": metric,
                  "candidates": [{"name": c.name, "status": c.status, "valid": c.score,
                                  "beats_scratch": (c.vs_scratch or {}).get("beats_scratch")}
                                 for c in cands]}
    out.notes.append(rep["reason"])
    out.notes.append("guard applied to the arms this task ran (scratch here is another "
                     "model class), with rectune.finetune.auto.decide")
    return out


def not_worse(c: dict[str, Any], *, lower_is_better: bool) -> bool:
    """Whether A − B's interval does not lie wholly on A's losing side."""
    return verdict(c["ci"], lower_is_better=lower_is_better) != "worse"


def auto_comparisons(arms: Mapping[str, Arm], pair: Callable[[Arm, Arm], dict[str, Any]],
                     test_score: Callable[[Arm], float | None], *, lower_is_better: bool
                     ) -> dict[str, Any]:
    """auto − scratch, auto − the validation-chosen reference, and auto − the test oracle.

    ``pair(a, b)`` returns the paired comparison (``delta``, ``ci``, ...) of two arms on
    the test set. Two references, both "the better of scratch and the best fixed
    fine-tuning arm":

    * ``reference`` — picked on **validation** (each arm's ``valid_score``), as every
      choice in the suite is: the unguarded validation choice auto competes with;
    * ``oracle`` — picked on the **test set** (``test_score``): a bound no procedure
      that chooses on validation can be expected to reach, reported for scale.
    """
    a = arms.get(AUTO)
    if a is None or not a.ok:
        return {}
    out: dict[str, Any] = {}
    pool = [arms[n] for n in ("scratch", *FT_ARMS) if n in arms and arms[n].ok]
    sign = 1.0 if lower_is_better else -1.0
    by_test = [x for x in pool if test_score(x) is not None]
    by_valid = [x for x in pool if x.valid_score is not None]
    refs: list[tuple[str, Arm | None, str]] = [
        ("scratch", arms.get("scratch"), ""),
        ("reference", min(by_valid, key=lambda x: sign * float(x.valid_score or 0.0))
         if by_valid else None,
         "better of scratch and the best fixed fine-tuning arm, picked on validation"),
        ("oracle", min(by_test, key=lambda x: sign * float(test_score(x) or 0.0))
         if by_test else None,
         "better of scratch and the best fixed fine-tuning arm, picked on the test set"),
    ]
    for name, b, rule in refs:
        if b is None or not b.ok:
            continue
        c = pair(a, b)
        c["verdict"] = verdict(c["ci"], lower_is_better=lower_is_better)
        c["not_worse"] = c["verdict"] != "worse"
        if rule:
            c["reference"] = b.name
            c["reference_rule"] = rule
        out[f"auto vs {name}"] = c
    out["auto_choice"] = a.chosen.get("choice")
    return out


class AutoPool:
    """auto and its validation reference over the runs of one task, for a pooled verdict.

    A task that runs many times on one test set (a learning curve: fractions × seeds)
    gets a verdict per run *and* one per task: the runs' auto − reference differences
    averaged, paired over the test users they share (:func:`pooled_users`), per
    fraction and over every run. Runs whose test rows differ from the first run's are
    not pooled (counted in ``n_skipped``).
    """

    def __init__(self, key: str = "sq", how: Literal["rmse", "mean"] = "rmse") -> None:
        self.key, self.how = key, how
        self.users: np.ndarray | None = None
        self.runs: list[tuple[float, np.ndarray, np.ndarray]] = []
        self.n_skipped = 0

    def add(self, group: float, users: np.ndarray, arms: Mapping[str, Arm],
            comps: Mapping[str, Any]) -> None:
        ref = comps.get("auto vs reference")
        a = arms.get(AUTO)
        if not ref or a is None or not a.ok or ref.get("reference") not in arms:
            return
        b = arms[ref["reference"]]
        if self.key not in a.arrays or self.key not in b.arrays:
            return
        if self.users is None:
            self.users = np.asarray(users).copy()
        elif len(users) != len(self.users) or not np.array_equal(users, self.users):
            self.n_skipped += 1
            return
        self.runs.append((float(group), np.asarray(a.arrays[self.key], dtype=np.float64),
                          np.asarray(b.arrays[self.key], dtype=np.float64)))

    def compare(self, *, n_boot: int = 1000) -> dict[str, Any]:
        """``{"all": ..., "by_group": [...], "rule": ...}`` (empty without runs)."""
        if self.users is None or not self.runs:
            return {}

        def one(runs: list[tuple[float, np.ndarray, np.ndarray]]) -> dict[str, Any]:
            assert self.users is not None
            c = pooled_users(self.users, [r[1] for r in runs], [r[2] for r in runs],
                             how=self.how, n_boot=n_boot)
            c["verdict"] = verdict(c["ci"], lower_is_better=True)
            c["not_worse"] = c["verdict"] != "worse"
            return c

        groups = sorted({g for g, _, _ in self.runs})
        return {"rule": "auto − the validation reference, averaged over the task's runs; "
                        "paired bootstrap over the test users every run shares",
                "all": one(self.runs), "n_skipped": self.n_skipped,
                "by_group": [{"group": g, **one([r for r in self.runs if r[0] == g])}
                             for g in groups]}
