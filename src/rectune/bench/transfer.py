"""``rectune bench transfer``: does fine-tuning beat scratch training, by how much, at what cost?

:func:`run_transfer` runs the four transfer tasks of the suite on one data set,
writes ``results.json`` (plain data), ``results.md`` (tables and one verdict per
task) and PNG plots into an output folder, and returns the results.

1. temporal update (explicit ratings: RMSE; implicit ALS/BPR: NDCG@10), returning
   and new users apart (:mod:`rectune.bench.tasks_rating`, :mod:`.tasks_implicit`);
2. cross-domain transfer with shared users, learning curves over target fractions
   with 5 seeds on nested subsets (:mod:`.tasks_rating`);
3. cold-start users with K support ratings (:mod:`.tasks_cold`);
4. task change, rating -> click (:mod:`.tasks_click`);
5. ``sweep`` (synthetic data only): gain over scratch against the domains' correlation
   (:mod:`.sweep`).

Every task has an ``auto`` arm (:func:`rectune.finetune.auto`, see
:mod:`.auto_arm`), compared with the better of scratch and the best fixed
fine-tuning arm on the test set.

Data: a MovieLens :class:`~rectune.data.Dataset` (the PROTOCOLS.md presets), or
``"synthetic"``: the temporal, cold-start and click tasks on
``synthetic(n, drift=...)`` and the cross-domain task on
``synthetic(n, second_domain=True, domain_correlation=c)`` for each ``c``, so the
benefit of transfer can be watched as the domains grow apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from rectune._errors import RectuneError
from rectune.bench.arms import ModelSpec, default_specs, json_safe, time_runs
from rectune.bench.context import FRACTIONS, QUICK_FRACTIONS, Context
from rectune.bench.splits import Protocols, protocols_for
from rectune.data.dataset import Dataset
from rectune.data.interactions import Interactions

__all__ = ["TASKS", "jit_warmup", "run_transfer"]

#: task names accepted by ``tasks=`` / ``--task``
TASKS: tuple[str, ...] = ("temporal", "implicit", "xdomain", "cold", "click", "sweep")
DEFAULT_CORRELATIONS: tuple[float, ...] = (0.0, 0.5, 0.9)


def jit_warmup(specs: dict[str, ModelSpec], data: Interactions) -> dict[str, Any]:
    """First-call cost of each model's compiled kernels, measured apart (PROTOCOLS.md).

    Each model is fitted (and fine-tuned, when supported) twice on a small slice; the
    first run minus the second is the one-off compile or cache-load time. Everything
    timed afterwards is warm.
    """
    from rectune.finetune import FinetuneConfig, TaskChange, finetune, supports
    from rectune.models.click import ClickMF

    n = min(len(data), 5000)
    sub = data.take(np.arange(n))
    out: dict[str, Any] = {}

    def measure(fn: Callable[[], Any]) -> dict[str, float]:
        t = time_runs(fn, 1)
        return {"first_s": t.warmup_s, "second_s": t.runs[0],
                "jit_s": max(0.0, t.warmup_s - t.runs[0])}

    plain = FinetuneConfig(epochs=2, early_stopping=False, verbose=False)
    click = FinetuneConfig(task=TaskChange(), epochs=2, early_stopping=False, verbose=False)
    for name, spec in specs.items():
        d = sub.binarize(4.0) if spec.implicit else sub
        out[name] = {"fit": measure(partial(_fit, spec, d))}
        if supports(spec.cls, "finetune"):
            pre = spec.make(0).fit(d)
            out[name]["finetune"] = measure(partial(finetune, pre, d, plain))
            if supports(spec.cls, "task_change"):
                out[name]["task_change"] = measure(partial(finetune, pre, d, click))
    out["ClickMF"] = {"fit": measure(lambda: ClickMF(n_epochs=2).fit(sub))}
    return out


def _fit(spec: ModelSpec, data: Interactions) -> Any:
    return spec.make(0).fit(data)


def _progress(enabled: bool) -> tuple[AbstractContextManager[Any], Callable[[str], None]]:
    """A rich status line (step count, current step, elapsed time), or a no-op."""
    if not enabled:
        return nullcontext(), lambda msg: None
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    prog = Progress(SpinnerColumn(), TextColumn("[bold]bench transfer[/]"),
                    TextColumn("step {task.completed:.0f}"), TextColumn("{task.description}"),
                    TimeElapsedColumn(), console=Console(stderr=True))
    task = prog.add_task("starting", total=None)

    def advance(msg: str) -> None:
        prog.update(task, advance=1, description=msg)

    return prog, advance


def run_transfer(
    data: Dataset | str = "ml-100k",
    *,
    out: str | Path | None = None,
    quick: bool = False,
    tasks: Sequence[str] = TASKS,
    models: Sequence[str] | None = None,
    seeds: int | None = None,
    repeats: int | None = None,
    n_boot: int | None = None,
    correlations: Sequence[float] = DEFAULT_CORRELATIONS,
    drift: float = 1.0,
    synthetic_ratings: int = 100_000,
    sweep_correlations: Sequence[float] | None = None,
    sweep_fractions: Sequence[float] | None = None,
    fractions: Sequence[float] | None = None,
    progress: bool = True,
    plots: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Run the transfer suite; write ``results.json``, ``results.md`` and plots into ``out``.

    Parameters
    ----------
    data:
        A MovieLens :class:`Dataset`, or ``"synthetic"`` (see the module docs).
    quick:
        CI-speed smoke run: 1 seed, 3 target fractions, the grids' first points, 2 timed
        runs. Results are real but have wide intervals.
    tasks:
        Subset of :data:`TASKS`.
    models:
        Model names of :func:`~rectune.bench.arms.default_specs` (default: all; the
        implicit task uses ALS/BPR, the others the rating models).
    seeds, repeats, n_boot:
        Learning-curve seeds (default 5; quick 1), timed runs after the warm-up
        (default 5; quick 2), paired-bootstrap replicates (default 2000; quick 300).
    correlations, drift, synthetic_ratings:
        Synthetic data only: the domain correlations of the cross-domain runs, the
        taste drift of the temporal set, and the number of ratings.
    sweep_correlations, sweep_fractions:
        The ``sweep`` task (synthetic data only; skipped with a status otherwise): the
        domain correlations (default 0, 0.25, 0.5, 0.75, 1) and target fractions
        (default 10%).
    fractions:
        Cross-domain target fractions (default 1, 5, 10, 25, 50, 100%; quick 5, 25,
        100%), e.g. one point of the learning curve with every seed.
    """
    bad = sorted(set(tasks) - set(TASKS))
    if bad:
        raise RectuneError(f"unknown task(s) {bad}; choose from {', '.join(TASKS)}")
    specs = default_specs(quick=quick)
    if models is not None:
        unknown = sorted(set(models) - set(specs))
        if unknown:
            raise RectuneError(f"unknown model(s) {unknown}; the suite runs {sorted(specs)}")
        specs = {k: v for k, v in specs.items() if k in set(models)}
    n_seeds = seeds if seeds is not None else (1 if quick else 5)
    if n_seeds < 1:
        raise RectuneError(f"seeds must be >= 1, got {n_seeds}")
    fr = tuple(float(f) for f in fractions) if fractions else (
        QUICK_FRACTIONS if quick else FRACTIONS)
    if any(not 0 < f <= 1 for f in fr):
        raise RectuneError(f"target fractions must be in (0, 1], got {list(fr)}")
    ctx = Context(specs=specs, seeds=tuple(range(n_seeds)), fractions=tuple(sorted(fr)),
                  repeats=repeats if repeats is not None else (2 if quick else 5),
                  n_boot=n_boot if n_boot is not None else (300 if quick else 2000),
                  quick=quick)
    if quick:
        ctx.click_fractions = (0.1, 1.0)
    started = time.time()
    results: dict[str, Any] = {"tasks": {}}
    bar, ctx.advance = _progress(progress)
    wall: dict[str, float] = {}
    with bar:
        datasets = _datasets(data, drift, synthetic_ratings, correlations, tasks)
        datasets["sweep"] = {"n_ratings": synthetic_ratings,
                             "correlations": sweep_correlations, "fractions": sweep_fractions}
        main = datasets["main"]
        ctx.say("JIT warm-up (compile times are reported apart)")
        results["jit"] = jit_warmup(specs, main.interactions)
        protos = protocols_for(main)
        for name in tasks:
            t0 = time.perf_counter()
            results["tasks"].update(_run_task(name, datasets, protos, ctx))
            wall[name] = time.perf_counter() - t0
    results["meta"] = _meta(main, datasets, ctx, started, wall, command)
    results = json_safe(results)
    if out is not None:
        from rectune.bench.report import write_report

        write_report(results, Path(out), plots=plots)
    return results


def _datasets(data: Dataset | str, drift: float, n: int, correlations: Sequence[float],
              tasks: Sequence[str]) -> dict[str, Any]:
    from rectune.data.synthetic import synthetic

    if isinstance(data, Dataset):
        return {"main": data, "xdomain": [(None, data)]}
    if data != "synthetic":
        raise RectuneError(f"data must be a Dataset or 'synthetic', got {data!r}")
    main = synthetic(n, drift=drift, seed=0)
    xd = [(float(c), synthetic(n, second_domain=True, domain_correlation=float(c), seed=0))
          for c in correlations] if "xdomain" in tasks else []
    return {"main": main, "xdomain": xd}


def _run_task(name: str, datasets: dict[str, Any], protos: Protocols, ctx: Context
              ) -> dict[str, Any]:
    from rectune.bench.tasks_click import task_change
    from rectune.bench.tasks_cold import cold_start
    from rectune.bench.tasks_implicit import temporal_implicit
    from rectune.bench.tasks_rating import cross_domain, temporal_explicit

    main = datasets["main"]
    if name == "sweep":
        from rectune.bench.sweep import SWEEP_CORRELATIONS, SWEEP_FRACTIONS, correlation_sweep

        if not main.synthetic:
            return {"correlation_sweep": {"status": "n/a (synthetic data only: run with "
                                                    "--data synthetic --task sweep)"}}
        sw = datasets["sweep"]
        return {"correlation_sweep": correlation_sweep(
            ctx, n_ratings=sw["n_ratings"],
            correlations=sw["correlations"] or SWEEP_CORRELATIONS,
            fractions=sw["fractions"] or SWEEP_FRACTIONS)}
    if name == "temporal":
        return {"temporal_explicit": temporal_explicit(main, protos, ctx)}
    if name == "implicit":
        return {"temporal_implicit": temporal_implicit(main, protos, ctx)}
    if name == "cold":
        return {"cold_start": cold_start(main, protos, ctx)}
    if name == "click":
        return {"task_change": task_change(main, protos, ctx)}
    runs = []
    for c, ds in datasets["xdomain"]:
        label = None if c is None else f"synthetic, domain correlation {c:g}"
        runs.append(cross_domain(ds, protocols_for(ds), ctx, label=label))
    return {"cross_domain": runs}


def _meta(main: Dataset, datasets: dict[str, Any], ctx: Context, started: float,
          wall: dict[str, float], command: str | None) -> dict[str, Any]:
    from rectune.experiment.manifest import interactions_sha256, manifest
    from rectune.finetune import capability_table

    info = {"name": main.name, "synthetic": main.synthetic, "n_ratings": len(main.interactions),
            "n_users": main.interactions.n_users, "n_items": main.interactions.n_items,
            "sha256": interactions_sha256(main.interactions),
            "source": main.info.get("source") or main.info.get("path")}
    if main.synthetic:
        info["synthetic_args"] = {k: main.info.get(k) for k in ("seed", "drift", "n_factors",
                                                                "noise")}
        info["xdomain_correlations"] = [c for c, _ in datasets["xdomain"]]
    m = manifest(seeds={"seeds": list(ctx.seeds), "split_seed": 0, "valid_seed": 1},
                 data=info, timings=wall, config_file=None, started=started)
    if command:
        m["command_line"] = command
    return {"manifest": m, "settings": ctx.describe(), "capabilities":
            capability_table(fmt="dict"), "timing_rule": (
                f"median of {ctx.repeats} runs after one warm-up run; numba JIT compile "
                "measured apart (results['jit'])"),
            "log": ctx.log[-50:]}
