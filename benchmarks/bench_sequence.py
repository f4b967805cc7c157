"""Next-item recommendation on ML-100K: GRU4Rec and Caser against popularity and item-KNN.

Protocol (PROTOCOLS.md, "Leave-last-one-out"; ``rectune.data.ml100k_last_one``): each
user's ratings sorted by timestamp, ties broken by file order (415 of 943 users'
last two ratings share a timestamp); the last one is the test item, the one
before it the validation item, the rest train. Every rating counts as an event.

1. **Selection, on the validation item only.** Each model's hyper-parameter grid is
   fitted on ``train`` and scored on ``valid`` (NDCG@10, full ranking over the
   catalogue, the user's training items excluded). The neural models also choose
   their number of epochs there (early stopping with ``patience``; the best epoch is
   kept). The test item is never looked at.
2. **Test.** The chosen configuration is refitted on ``train + valid`` (rows in file
   order) with the chosen epoch count, and ranks the whole catalogue for each user
   with the user's earlier items (train + valid) excluded: HR@10 and NDCG@10 over the
   943 test items, with 95% bootstrap intervals, and a paired bootstrap test of each
   sequence model against the best baseline.

Models: ``Popularity``, ``ImplicitItemKNN`` (k, weighting), ``GRU4Rec`` (full
softmax), ``Caser`` (loss, L). ``--quick`` shrinks the grids and epochs to a smoke
run (its figures are *not* the tuned ones); ``--max-users N`` keeps the first N users
(a slice for smoke tests).

Run from the repository root::

    python benchmarks/bench_sequence.py --out sequence.json          # ~30-60 min on 2 cores
    python benchmarks/bench_sequence.py --quick --max-users 200      # smoke, ~1 min

Markdown goes to stdout, the raw figures (grids, curves, CIs) to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import read_ml100k
from rectune.data import Interactions
from rectune.data.protocols import ml100k_last_one
from rectune.evaluate.evaluator import EvalResult, evaluate_ranking
from rectune.evaluate.stats import paired_test
from rectune.models import ImplicitItemKNN, Popularity
from rectune.models.base import Recommender
from rectune.models.neural.caser import Caser
from rectune.models.neural.gru4rec import GRU4Rec

METRICS = ("hit_rate", "ndcg")
SELECT = "ndcg@10"


def grids(quick: bool) -> dict[str, tuple[Callable[..., Recommender], list[dict[str, Any]]]]:
    """Model name -> (class, hyper-parameter configurations to try on validation)."""
    if quick:
        return {
            "Popularity": (Popularity, [{}]),
            "ItemKNN": (ImplicitItemKNN, [{"k": 20}, {"k": 100}]),
            "GRU4Rec": (GRU4Rec, [{"epochs": 8, "patience": 3}]),
            "Caser": (Caser, [{"loss": "ce", "n_targets": 1, "epochs": 6, "patience": 3}]),
        }
    return {
        "Popularity": (Popularity, [{}]),
        "ItemKNN": (ImplicitItemKNN, [{"k": k, "weighting": w}
                                      for w in ("none", "bm25") for k in (20, 50, 100, 200)]),
        "GRU4Rec": (GRU4Rec, [{"dropout": p, "epochs": 40, "patience": 5} for p in (0.1, 0.3)]),
        "Caser": (Caser, [
            {"loss": "ce", "n_targets": 1, "max_len": 5, "epochs": 30, "patience": 5},
            {"loss": "ce", "n_targets": 1, "max_len": 10, "epochs": 30, "patience": 5},
            {"loss": "bce", "n_targets": 3, "max_len": 5, "epochs": 30, "patience": 5},
        ]),
    }


def rank(model: Recommender, train: Interactions, test: Interactions) -> EvalResult:
    """Full ranking, the user's ``train`` items excluded, HR@10 and NDCG@10."""
    return evaluate_ranking(model, train, test, k=10, metrics=METRICS, exclude="train",
                            beyond=False, n_boot=1000, seed=0)


def select(name: str, cls: Callable[..., Recommender], configs: list[dict[str, Any]],
           train: Interactions, valid: Interactions) -> dict[str, Any]:
    """Fit every configuration on ``train``; the best NDCG@10 on ``valid`` wins."""
    tried = []
    for cfg in configs:
        model = cls(**cfg)
        t0 = time.perf_counter()
        neural = isinstance(model, GRU4Rec | Caser)
        model.fit(train, valid=valid if neural else None)
        seconds = time.perf_counter() - t0
        res = rank(model, train, valid)
        row: dict[str, Any] = {"params": cfg, "valid": {m: res.metrics[f"{m}@10"]
                                                        for m in METRICS},
                               "fit_seconds": seconds}
        if neural:
            row["best_epoch"] = int(model.best_epoch_)  # type: ignore[attr-defined]
            row["curve"] = [h.get("valid") for h in model.history_]  # type: ignore[attr-defined]
        tried.append(row)
        print(f"  {name} {cfg}: valid NDCG@10 {row['valid']['ndcg']:.4f} "
              f"HR@10 {row['valid']['hit_rate']:.4f} ({seconds:.0f}s"
              + (f", best epoch {row['best_epoch']}" if neural else "") + ")",
              file=sys.stderr, flush=True)
    best = max(tried, key=lambda r: r["valid"]["ndcg"])
    return {"tried": tried, "best": best}


def final_params(cls: Callable[..., Recommender], best: dict[str, Any]) -> dict[str, Any]:
    """The chosen configuration; neural models train exactly the chosen epoch count."""
    params = dict(best["params"])
    if cls in (GRU4Rec, Caser):
        params["epochs"] = max(1, int(best["best_epoch"]))
        params["patience"] = None
    return params


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = read_ml100k(args.data)
    if args.max_users:
        data = data.take(data.user < args.max_users)
    split = ml100k_last_one(data)
    assert split.valid is not None
    train, valid, test = split.train, split.valid, split.test
    rows = np.sort(np.concatenate([split.info["train_rows"], split.info["valid_rows"]]))
    trainval = data.take(rows)  # file order kept: the same tie rule as the split
    print(f"ML-100K leave-last-one-out: {len(train)} train, {len(valid)} valid, "
          f"{len(test)} test rows; tied_at_cut={split.info['tied_at_cut']}",
          file=sys.stderr, flush=True)
    out: dict[str, Any] = {"protocol": "ml100k_last_one", "split": {
        "train": len(train), "valid": len(valid), "test": len(test),
        "tied_at_cut": split.info["tied_at_cut"], "users": len(np.unique(test.user)),
        "items": data.n_items}, "models": {}}
    per_user: dict[str, dict[str, np.ndarray]] = {}
    for name, (cls, configs) in grids(args.quick).items():
        sel = select(name, cls, configs, train, valid)
        params = final_params(cls, sel["best"])
        model = cls(**params)
        t0 = time.perf_counter()
        model.fit(trainval)
        seconds = time.perf_counter() - t0
        res = rank(model, trainval, test)
        per_user[name] = res.per_user
        out["models"][name] = {
            "selection": sel, "final_params": params, "fit_seconds": seconds,
            "test": {m: res.metrics[f"{m}@10"] for m in METRICS},
            "ci": {m: list(res.ci[f"{m}@10"]) for m in METRICS},
            "counts": res.counts,
        }
        print(f"{name}: test NDCG@10 {res.metrics['ndcg@10']:.4f} HR@10 "
              f"{res.metrics['hit_rate@10']:.4f}", file=sys.stderr, flush=True)
    baselines = ("Popularity", "ItemKNN")
    out["paired"] = {}
    for seq in ("GRU4Rec", "Caser"):
        for base in baselines:
            for m in METRICS:
                t = paired_test(per_user[seq][f"{m}@10"], per_user[base][f"{m}@10"],
                                n_boot=10000, seed=0)
                out["paired"][f"{seq} vs {base} {m}@10"] = t.to_dict()
    out["goal_met"] = all(
        out["models"][s]["test"][m] > out["models"][b]["test"][m]
        for s in ("GRU4Rec", "Caser") for b in baselines for m in METRICS)
    return out


def markdown(res: dict[str, Any], command: str) -> str:
    s = res["split"]
    lines = [
        "## Next-item recommendation, ML-100K leave-last-one-out",
        "",
        f"Protocol `{res['protocol']}`: {s['train']:,} train / {s['valid']:,} validation / "
        f"{s['test']:,} test events, {s['users']} users, {s['items']:,} items "
        f"({s['tied_at_cut']} users' last two events share a timestamp; ties in file order). "
        "Full ranking over the catalogue, the user's earlier items excluded. "
        "Hyper-parameters and epochs chosen on the validation item, then refitted on "
        "train + validation and tested once. 95% bootstrap intervals over users.",
        "",
        "| model | chosen | valid NDCG@10 | test HR@10 | test NDCG@10 | final fit (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, r in res["models"].items():
        chosen = ", ".join(f"{k}={v}" for k, v in r["final_params"].items()) or "-"
        hr, nd = r["test"]["hit_rate"], r["test"]["ndcg"]
        hci, nci = r["ci"]["hit_rate"], r["ci"]["ndcg"]
        lines.append(
            f"| {name} | {chosen} | {r['selection']['best']['valid']['ndcg']:.4f} | "
            f"{hr:.4f} [{hci[0]:.3f}, {hci[1]:.3f}] | {nd:.4f} [{nci[0]:.3f}, {nci[1]:.3f}] | "
            f"{r['fit_seconds']:.1f} |")
    lines += ["", "Paired bootstrap (per-user differences, 10,000 resamples):", "",
              "| comparison | mean diff | 95% CI | p |", "|---|---:|---:|---:|"]
    for key, t in res["paired"].items():
        lines.append(f"| {key} | {t['mean_diff']:+.4f} | [{t['ci_low']:+.4f}, "
                     f"{t['ci_high']:+.4f}] | {t['p_value']:.4f} |")
    lines += ["", f"Goal (both sequence models beat popularity and item-KNN on both "
              f"metrics): **{'met' if res['goal_met'] else 'not met'}**.", "",
              f"Command: `{command}` ({res['date']}, {res['machine']}, torch "
              f"{res['torch']}, {res['threads']} torch threads)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small grids and few epochs (smoke)")
    ap.add_argument("--max-users", type=int, default=0, help="keep the first N users only")
    ap.add_argument("--data", default=None, help="folder holding ML-100K's u.data")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--out", type=Path, default=None, help="write the raw figures as JSON")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    t0 = time.perf_counter()
    res = run(args)
    res.update(date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
               machine=f"{platform.machine()}, {platform.system()}",
               torch=torch.__version__, threads=torch.get_num_threads(),
               seconds=time.perf_counter() - t0, command=command, quick=args.quick)
    print(markdown(res, command))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1, default=float))


if __name__ == "__main__":
    main()
