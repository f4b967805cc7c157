"""Returning users of the temporal update over several seeds: fine-tuning vs retraining.

The transfer suite (``rectune bench transfer -t temporal -t implicit``) runs the
temporal task once, with seed 0. On ML-100K only 91 test users (77 for implicit
feedback) are returning ones, and a retrain itself moves by about ±0.008 RMSE on them
from one seed to the next, so one seed cannot say whether fine-tuning is within 0.005
of retraining. This script repeats, for seeds 0..n-1, pre-training (seed s),
retraining (seed s) and the suite's returning-user arms (``als_replay`` /
``l2sp_replay`` for SVD, ``l2sp_replay`` for implicit ALS: the users' history replayed,
the recipe chosen on each user's newest new rows among those that fit within 20 % of a
retrain), and reports per seed and as a mean with a t-interval over seeds:

* the returning users' RMSE (SVD) or NDCG@10 (ALS) of each arm and of retraining,
* the difference to retraining (SVD: + is worse; ALS: relative, − is worse),
* each arm's median wall time over ``--repeats`` runs as a fraction of retraining's.

Usage::

    RECTUNE_DATA=/work/shared/data python benchmarks/bench_returning.py --seeds 5

Results go to stdout (markdown) and ``--json``. Every choice is made on validation
slices of the new data; the test rows are read once per arm, after.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from rectune.bench.arms import Arm, default_specs, time_runs, union
from rectune.bench.compare import seed_interval
from rectune.bench.rating import score_rating_arms
from rectune.bench.splits import protocols_for
from rectune.bench.tasks_rating import returning_arm, temporal_task
from rectune.cli import load_source


def explicit(ds: Any, seeds: list[int], repeats: int) -> list[dict[str, Any]]:
    spec = default_specs()["SVD"]
    task = temporal_task(ds, protocols_for(ds))
    fit, _ = task.fit_valid()
    both = union(task.old, fit)
    rows = []
    for seed in seeds:
        pre = spec.make(seed).fit(task.old)
        arms: dict[str, Arm] = {"retrain": Arm("retrain", model=spec.make(seed).fit(both))}
        arms["retrain"].refit = lambda seed=seed: spec.make(seed).fit(both)
        for solver, name in (("als", "als_replay"), ("sgd", "l2sp_replay")):
            arms[name] = returning_arm(spec, task, pre, seed=seed, solver=solver)
        score_rating_arms(arms, task, n_boot=200)
        t_rt = time_runs(arms["retrain"].refit, repeats).median_s
        row: dict[str, Any] = {"seed": seed, "retrain": arms["retrain"].metrics["rmse_returning"],
                               "retrain_s": t_rt}
        for name in ("als_replay", "l2sp_replay"):
            a = arms[name]
            row[name] = a.metrics["rmse_returning"]
            row[f"{name}_delta"] = row[name] - row["retrain"]
            assert a.refit is not None
            row[f"{name}_time_ratio"] = time_runs(a.refit, repeats).median_s / t_rt
            row[f"{name}_chosen"] = {k: v for k, v in a.chosen.items()
                                     if k not in ("validation", "replay_pool", "seed")}
        print(f"  SVD seed {seed}: retrain {row['retrain']:.4f}; als_replay "
              f"{row['als_replay']:.4f} ({row['als_replay_delta']:+.4f}, "
              f"{row['als_replay_time_ratio']:.2f}x); l2sp_replay {row['l2sp_replay']:.4f} "
              f"({row['l2sp_replay_delta']:+.4f}, {row['l2sp_replay_time_ratio']:.2f}x)",
              flush=True)
        rows.append(row)
    return rows


def implicit(ds: Any, seeds: list[int], repeats: int) -> list[dict[str, Any]]:
    from rectune.bench.tasks_implicit import K, _replay_arm, temporal_positives
    from rectune.evaluate.evaluator import evaluate_ranking

    spec = default_specs()["ALS"]
    pre_pos, _, test_pos, hist, fit, _, before = temporal_positives(ds,
                                                                    protocols_for(ds))
    both = union(pre_pos, fit)

    def returning_ndcg(m: Any) -> float:
        r = evaluate_ranking(m, hist, test_pos, k=K, metrics=("ndcg",), beyond=False, n_boot=1)
        ret = before[test_pos.user_map.encode(r.users)]
        return float(np.mean(r.per_user[f"ndcg@{K}"][ret]))

    def retrain(seed: int) -> Any:
        return spec.make(seed).fit(both)

    rows = []
    for seed in seeds:
        pre = spec.make(seed).fit(pre_pos)
        rt = retrain(seed)
        arm = _replay_arm(spec, pre, pre_pos, fit)
        assert arm.model is not None and arm.refit is not None
        t_rt = time_runs(partial(retrain, seed), repeats).median_s
        row: dict[str, Any] = {
            "seed": seed, "retrain": returning_ndcg(rt), "retrain_s": t_rt,
            "l2sp_replay": returning_ndcg(arm.model),
            "l2sp_replay_time_ratio": time_runs(arm.refit, repeats).median_s / t_rt,
            "l2sp_replay_chosen": {k: v for k, v in arm.chosen.items()
                                   if k not in ("validation", "replay_pool", "seed")}}
        row["l2sp_replay_rel"] = row["l2sp_replay"] / row["retrain"] - 1
        print(f"  ALS seed {seed}: retrain {row['retrain']:.4f}; l2sp_replay "
              f"{row['l2sp_replay']:.4f} ({100 * row['l2sp_replay_rel']:+.1f} %, "
              f"{row['l2sp_replay_time_ratio']:.2f}x)", flush=True)
        rows.append(row)
    return rows


def _summary(rows: list[dict[str, Any]], key: str) -> str:
    si = seed_interval([r[key] for r in rows])
    return f"{si['mean']:+.4f} [{si['lo']:+.4f}, {si['hi']:+.4f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="ml-100k")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs (median)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    ds = load_source(args.data)
    seeds = list(range(args.seeds))
    print("== explicit (SVD)", flush=True)
    ex = explicit(ds, seeds, args.repeats)
    print("== implicit (ALS)", flush=True)
    im = implicit(ds, seeds, args.repeats)
    print("\n| arm | Δ returning vs retrain (mean [95 % t-interval] over seeds) | "
          "time vs retrain (median of seeds) |\n|---|---|---|")
    for name in ("als_replay", "l2sp_replay"):
        print(f"| SVD {name} (RMSE; + = worse) | {_summary(ex, f'{name}_delta')} | "
              f"{np.median([r[f'{name}_time_ratio'] for r in ex]):.2f}x |")
    print(f"| ALS l2sp_replay (NDCG@10, relative; − = worse) | {_summary(im, 'l2sp_replay_rel')} "
          f"| {np.median([r['l2sp_replay_time_ratio'] for r in im]):.2f}x |")
    print(f"\nretrain, returning users: SVD RMSE {_summary(ex, 'retrain')}, ALS NDCG@10 "
          f"{_summary(im, 'retrain')}")
    if args.json:
        args.json.write_text(json.dumps({"explicit": ex, "implicit": im}, indent=1,
                                        default=float))


if __name__ == "__main__":
    main()
