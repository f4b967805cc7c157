"""Neural models (NeuMF, DeepFM) against ALS / BPR / EASE / popularity, plus throughput.

Sections (``--sections``, comma-separated; default all):

* ``ranking`` -- ML-100K top-N on the per-user 80/20 of positives
  (``rectune.data.ml100k_user_8020``; NDCG/Recall@10, full ranking, training
  positives excluded). Every factor model uses the same embedding size
  (``--factors``, 64). NeuMF and DeepFM (with ML-100K's user and item features)
  choose their learning rate and epoch count on ``validation_slice(train)`` (10% of
  the training rows, seed 1) with early stopping on validation NDCG@10, are refitted
  on the whole training part for the chosen number of epochs, and are tested once.
  ALS (15 it, reg 0.05: 0.220 NDCG@10 measured here), BPR, EASE (lambda 400) and
  popularity use their documented settings.
* ``cold`` -- ML-100K cold users (``ml100k_cold``, K = 0: 188 users with no training
  rating; query = their ratings 6 onward, positives = ratings >= 4). DeepFM scores
  them from their features (age, gender, occupation); popularity is the baseline.
  DeepFM's epoch count is chosen on warm users playing cold ones (10% of the warm
  users, seed 1, removed from training), never on the cold users.
* ``throughput`` -- a synthetic MovieLens-shaped set of ``10M x --scale``
  interactions (``rectune.data.synthetic``): training samples/s (one epoch, positives
  plus sampled negatives) and scoring users/s (full catalogue) of NeuMF and DeepFM.

Timings are wall seconds of one run on the machine at hand (noisy on shared cores).
Output: a markdown table per section on stdout and all figures as JSON (``--out``).

Run::

    python benchmarks/bench_neural.py --out neural.json
    python benchmarks/bench_neural.py --sections ranking --max-epochs 3 --scale 0.01  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from rectune.data import (
    Interactions,
    load_movielens,
    ml100k_cold,
    ml100k_user_8020,
    synthetic,
    validation_slice,
)
from rectune.data.dataset import Dataset
from rectune.evaluate.ranking import ndcg_at_k, ranking_metrics, topk_from_scores
from rectune.evaluate.stats import paired_test
from rectune.models import ALS, BPR, EASE, Popularity
from rectune.models.base import FitOptions, Recommender
from rectune.models.neural import DeepFM, NeuMF, NeuralRecommender

ALL_SECTIONS = ("ranking", "cold", "throughput")
METRICS = ["ndcg", "recall", "precision", "map"]


# ---------------------------------------------------------------- evaluation
def evaluate(score: Callable[[np.ndarray], np.ndarray], train: Interactions,
             test: Interactions) -> dict[str, float]:
    """@10 metrics over users with a test positive; candidates exclude training positives."""
    t = test.csr()
    users = np.flatnonzero(np.diff(t.indptr) > 0)
    seen = train.csr()
    tops = []
    for s in range(0, len(users), 256):
        ub = users[s:s + 256]
        tops.append(topk_from_scores(score(ub), 10, exclude=seen[ub])[0])
    return ranking_metrics(np.vstack(tops), t[users], 10, METRICS)


def options(args: argparse.Namespace) -> FitOptions:
    return FitOptions(device=args.device, progress=args.progress)


def tune_neural(make: Callable[..., NeuralRecommender], grid: list[dict[str, Any]],
                train: Interactions, features: Any, args: argparse.Namespace
                ) -> dict[str, Any]:
    """Pick hyper-parameters and epochs on validation_slice(train); refit on all of train."""
    fit_part, valid = validation_slice(train)
    trials: list[dict[str, Any]] = []
    for params in grid:
        m = make(epochs=args.max_epochs, patience=3, **params).fit(
            fit_part, features=features, valid=valid, options=options(args))
        best = max(h["valid"] for h in m.history_)
        trials.append({"params": params, "best_epoch": m.best_epoch_, "valid_ndcg": best})
        print(f"    {params} -> valid NDCG@10 {best:.4f} at epoch {m.best_epoch_}",
              file=sys.stderr)
    win = max(trials, key=lambda t: t["valid_ndcg"])
    t0 = time.perf_counter()
    final = make(epochs=max(1, int(win["best_epoch"])), patience=None, **win["params"]).fit(
        train, features=features, options=options(args))
    return {"model": final, "fit_s": time.perf_counter() - t0, "trials": trials,
            "chosen": {**win["params"], "epochs": int(win["best_epoch"])}}


def ml100k(args: argparse.Namespace) -> Dataset:
    return load_movielens("ml-100k", path=args.data, download=False, progress=False)


def _features(ds: Dataset) -> dict[str, pd.DataFrame | None]:
    return {"user": ds.user_features, "item": ds.item_features}


# ------------------------------------------------------------------- ranking
def section_ranking(args: argparse.Namespace) -> dict[str, Any]:
    ds = ml100k(args)
    train, test = ml100k_user_8020(ds.interactions)
    f = args.factors
    rows: dict[str, dict[str, Any]] = {}
    classic: list[tuple[str, Callable[[], Recommender]]] = [
        ("popularity", Popularity),
        (f"ALS({f}, 15 it, reg 0.05)", lambda: ALS(factors=f, iterations=15,
                                                  regularization=0.05)),
        (f"BPR({f}, 100 it)", lambda: BPR(factors=f)),
        ("EASE(lambda 400)", lambda: EASE(regularization=400.0)),
    ]
    for name, make in classic:
        t0 = time.perf_counter()
        m = make().fit(train)
        fit_s = time.perf_counter() - t0
        rows[name] = {**evaluate(m._score, train, test), "fit_s": fit_s}
        print(f"  {name}: {rows[name]['ndcg@10']:.4f}", file=sys.stderr)
    lrs = [1e-3, 3e-3] if args.grid == "small" else [1e-3]
    neural: list[tuple[str, Callable[..., NeuralRecommender], Any]] = [
        (f"NeuMF({f}, bce, 4 neg)",
         lambda **kw: NeuMF(n_factors=f, layers=(2 * f, f, f // 2), neg_ratio=4,
                            batch_size=256, **kw), None),
        (f"DeepFM({f}, bce, 4 neg, user+item features)",
         lambda **kw: DeepFM(n_factors=f, layers=(2 * f, f), neg_ratio=4, batch_size=256,
                             **kw), _features(ds)),
    ]
    for name, make, feats in neural:
        res = tune_neural(make, [{"lr": lr} for lr in lrs], train, feats, args)
        m = res.pop("model")
        rows[name] = {**evaluate(m._score, train, test), "fit_s": res["fit_s"], **res}
        print(f"  {name}: {rows[name]['ndcg@10']:.4f} ({res['chosen']})", file=sys.stderr)
    return {"protocol": "ml100k_user_8020", "rows": rows}


# ---------------------------------------------------------------------- cold
def _cold_eval(recommend: Callable[[np.ndarray], np.ndarray], test: Interactions,
               users: np.ndarray) -> dict[str, float]:
    """@10 metrics for ``users`` (indices) over their test positives; all items are candidates
    except the user's own training positives (none for a cold user)."""
    t = test.csr()[users]
    top = recommend(users)
    return ranking_metrics(top, t, 10, METRICS)


def _recommender(m: Recommender, ds: Dataset, data: Interactions
                 ) -> Callable[[np.ndarray], np.ndarray]:
    def rec(users: np.ndarray) -> np.ndarray:
        raw = data.user_map.decode(users)
        if isinstance(m, DeepFM):
            ids, _ = m.recommend(raw, 10, user_features=ds.user_features)
        else:
            ids, _ = m.recommend(raw, 10)
        out = np.full(ids.shape, -1, dtype=np.int64)
        ok = ids >= 0
        out[ok] = data.item_map.encode(ids[ok])
        return out
    return rec


def _cold_deepfm(args: argparse.Namespace, epochs: int, id_dropout: float = 0.3) -> DeepFM:
    f = args.factors
    return DeepFM(n_factors=f, layers=(2 * f, f), neg_ratio=4, batch_size=256,
                  id_dropout=id_dropout, epochs=epochs, patience=None)


def section_cold(args: argparse.Namespace) -> dict[str, Any]:
    ds = ml100k(args)
    data = ds.interactions
    split = ml100k_cold(data, 0)
    train = split.train.binarize(4.0)
    test = split.test.binarize(4.0)
    cold = np.flatnonzero(np.diff(test.csr().indptr) > 0)
    # validation: 10% of the warm users (seed 1) play cold users, removed from training
    warm = np.flatnonzero(np.diff(train.csr().indptr) > 0)
    pseudo = np.sort(np.random.default_rng(1).choice(warm, max(1, len(warm) // 10),
                                                     replace=False))
    is_pseudo = np.isin(train.user, pseudo)
    v_train, v_test = train.take(np.flatnonzero(~is_pseudo)), train.take(np.flatnonzero(
        is_pseudo))
    trials: dict[str, float] = {}
    for drop in args.cold_id_dropout:
        for ep in args.cold_epochs:
            m = _cold_deepfm(args, ep, drop).fit(v_train, features=_features(ds),
                                                 options=options(args))
            key = f"{ep} epochs, id_dropout {drop:g}"
            trials[key] = _cold_eval(_recommender(m, ds, data), v_test, pseudo)["ndcg@10"]
            print(f"    cold DeepFM {key} -> pseudo-cold NDCG@10 {trials[key]:.4f}",
                  file=sys.stderr)
    best_key = max(trials, key=lambda e: trials[e])
    best = int(best_key.split()[0])
    best_drop = float(best_key.rsplit(" ", 1)[1])
    v_pop = _cold_eval(_recommender(Popularity().fit(v_train), ds, data), v_test, pseudo)
    print(f"    popularity -> pseudo-cold NDCG@10 {v_pop['ndcg@10']:.4f}", file=sys.stderr)
    rows: dict[str, dict[str, Any]] = {}
    pop = Popularity().fit(train)
    rows["popularity"] = _cold_eval(_recommender(pop, ds, data), test, cold)
    m = _cold_deepfm(args, best, best_drop).fit(train, features=_features(ds),
                                                options=options(args))
    rows["DeepFM (user features)"] = {**_cold_eval(_recommender(m, ds, data), test, cold),
                                      "epochs": best, "id_dropout": best_drop,
                                      "validation": trials}
    # paired test over the cold users: per-user NDCG@10, DeepFM - popularity
    t = test.csr()[cold]
    per = {name: ndcg_at_k(_recommender(mod, ds, data)(cold), t, 10)
           for name, mod in (("deepfm", m), ("popularity", pop))}
    res = paired_test(per["deepfm"], per["popularity"], n_boot=10000, seed=0)
    paired = {"delta_ndcg": res.mean_diff, "ci": [res.ci_low, res.ci_high],
              "p_value": res.p_value, "relative": res.mean_diff / float(np.mean(per["popularity"]))}
    print(f"    DeepFM - popularity NDCG@10 over cold users: {paired}", file=sys.stderr)
    return {"protocol": "ml100k_cold (K=0), positives >= 4", "n_cold_users": len(cold),
            "validation_popularity_ndcg": v_pop["ndcg@10"], "rows": rows,
            "deepfm_vs_popularity": paired}


# ---------------------------------------------------------------- throughput
def section_throughput(args: argparse.Namespace) -> dict[str, Any]:
    n = max(10_000, int(10_000_000 * args.scale))
    t0 = time.perf_counter()
    ds = synthetic(n, seed=0)
    gen_s = time.perf_counter() - t0
    data = ds.interactions.binarize(4.0)
    f = args.factors
    rows: dict[str, dict[str, Any]] = {}
    for name, m, feats in (
            (f"NeuMF({f})", NeuMF(n_factors=f, layers=(2 * f, f, f // 2), epochs=1,
                                  batch_size=1024, neg_ratio=4), None),
            (f"DeepFM({f}, features)", DeepFM(n_factors=f, layers=(2 * f, f), epochs=1,
                                             batch_size=1024, neg_ratio=4), _features(ds))):
        t0 = time.perf_counter()
        m.fit(data, features=feats, options=FitOptions(device=args.device))
        wall = time.perf_counter() - t0
        samples = len(data) * (1 + 4)
        epoch_s = m.history_[0]["seconds"]
        users = np.arange(min(args.score_users, data.n_users))
        if args.device is not None:
            m.to(args.device)
        t0 = time.perf_counter()
        m._score(users)
        score_s = time.perf_counter() - t0
        rows[name] = {"train_samples_per_s": samples / epoch_s, "epoch_s": epoch_s,
                      "fit_wall_s": wall, "score_users_per_s": len(users) / score_s,
                      "device": str(m._module_device())}
        print(f"  {name}: {rows[name]}", file=sys.stderr)
    return {"n_interactions": len(ds.interactions), "n_positives": len(data),
            "n_users": data.n_users, "n_items": data.n_items, "generate_s": gen_s, "rows": rows}


# -------------------------------------------------------------------- output
def render(results: dict[str, Any]) -> str:
    out = []
    if "ranking" in results:
        r = results["ranking"]
        out += [f"### ML-100K ranking ({r['protocol']}, @10, full ranking)", "",
                "| model | NDCG | Recall | Precision | MAP | fit s | chosen on validation |",
                "|---|---:|---:|---:|---:|---:|---|"]
        for name, v in r["rows"].items():
            out.append(f"| {name} | {v['ndcg@10']:.4f} | {v['recall@10']:.4f} | "
                       f"{v['precision@10']:.4f} | {v['map@10']:.4f} | {v['fit_s']:.1f} | "
                       f"{v.get('chosen', '')} |")
        out.append("")
    if "cold" in results:
        r = results["cold"]
        out += [f"### Cold users ({r['protocol']}, {r['n_cold_users']} users, @10)", "",
                "| model | NDCG | Recall | Precision | MAP |", "|---|---:|---:|---:|---:|"]
        for name, v in r["rows"].items():
            out.append(f"| {name} | {v['ndcg@10']:.4f} | {v['recall@10']:.4f} | "
                       f"{v['precision@10']:.4f} | {v['map@10']:.4f} |")
        d = r["deepfm_vs_popularity"]
        out += ["", f"DeepFM − popularity, NDCG@10 over the cold users (paired bootstrap): "
                f"{d['delta_ndcg']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}], "
                f"p = {d['p_value']:.3f} ({100 * d['relative']:+.1f} %)", ""]
    if "throughput" in results:
        r = results["throughput"]
        out += [f"### Throughput (synthetic, {r['n_positives']:,} positives, "
                f"{r['n_users']:,} x {r['n_items']:,})", "",
                "| model | device | train samples/s | epoch s | scoring users/s |",
                "|---|---|---:|---:|---:|"]
        for name, v in r["rows"].items():
            out.append(f"| {name} | {v['device']} | {v['train_samples_per_s']:,.0f} | "
                       f"{v['epoch_s']:.1f} | {v['score_users_per_s']:,.0f} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sections", default=",".join(ALL_SECTIONS))
    p.add_argument("--data", default=os.environ.get("RECTUNE_ML100K",
                                                    str(Path(__file__).resolve().parents[2]
                                                        / "shared" / "data" / "ml-100k")))
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--grid", choices=("small", "none"), default="small")
    p.add_argument("--cold-id-dropout", type=lambda s: [float(x) for x in s.split(",")],
                   default=[0.3, 0.5], help="DeepFM id_dropout values tried for the cold arm")
    p.add_argument("--cold-epochs", type=lambda s: [int(x) for x in s.split(",")],
                   default=[5, 10, 20])
    p.add_argument("--scale", type=float, default=1.0, help="throughput set = 10M x scale")
    p.add_argument("--score-users", type=int, default=2000)
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(ALL_SECTIONS))
    if unknown:
        p.error(f"unknown section(s) {unknown}; choose from {ALL_SECTIONS}")
    results: dict[str, Any] = {
        "command": " ".join(sys.argv), "python": platform.python_version(),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available()}
    for s in sections:
        print(f"[{s}]", file=sys.stderr)
        t0 = time.perf_counter()
        results[s] = globals()[f"section_{s}"](args)
        results[s]["section_s"] = time.perf_counter() - t0
    print(render(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
