"""Parity of rectune's neighbourhood models with Surprise and implicit on MovieLens 100K.

Rating prediction (PROTOCOLS.md "ML-100K rating prediction, fixed 80/20"):
Surprise's KNNBasic / KNNWithMeans / KNNWithZScore / KNNBaseline against
rectune's ``UserKNN`` / ``ItemKNN`` with ``rule`` plain / mean / zscore /
baseline, user- and item-based, for the cosine, pearson and pearson_baseline
similarities (and Surprise's default KNNBaseline: msd, user-based). Surprise's
trainset is built from the training rows in the same order as ours, so both
see the ratings arrive in the same order (Surprise breaks ties between equally
similar neighbours by that order, and so do we).

Top-N ranking (PROTOCOLS.md "per-user 80/20 of positives"): implicit's
CosineRecommender(K=20) against ``ImplicitItemKNN(k=19)`` (implicit counts the
item itself among its K neighbours).

Fine-tuning: fit on 90% of the training rows, ``update`` with the other 10%
(new users, new items and re-rated pairs included), against a refit.

Timing: median of ``--repeats`` runs of fit + predict after one warm-up run
(numba compilation is in the warm-up and reported apart).

Usage::

    python benchmarks/parity_knn.py [--repeats 5] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from _common import ml100k_dir, rating_errors, timed
from rectune.data import Interactions
from rectune.models.knn import ImplicitItemKNN, ItemKNN, UserKNN

RULES = {"plain": "KNNBasic", "mean": "KNNWithMeans", "zscore": "KNNWithZScore",
         "baseline": "KNNBaseline"}


def rmse(p: np.ndarray, y: np.ndarray) -> float:
    return rating_errors(p, y)[0]


def rating_parity(df: pd.DataFrame, repeats: int, quick: bool) -> list[dict[str, Any]]:
    import surprise

    data = Interactions.from_frame(df, rating_scale=(1, 5))
    perm = np.random.default_rng(0).permutation(len(df))
    test_rows, train_rows = perm[:20000], perm[20000:]
    train = data.take(train_rows)
    test = df.iloc[test_rows]
    tu, ti, y = test.user.to_numpy(), test.item.to_numpy(), test.rating.to_numpy(float)
    tdf = df.iloc[train_rows][["user", "item", "rating"]]
    trainset = surprise.Dataset.load_from_df(
        tdf, surprise.Reader(rating_scale=(1, 5))).build_full_trainset()
    configs = [(ub, sim, rule) for ub in (True, False)
               for sim in ("cosine", "pearson", "pearson_baseline") for rule in RULES]
    configs.append((True, "msd", "baseline"))  # Surprise's KNNBaseline defaults
    if quick:
        configs = [c for c in configs if c[2] in ("mean", "baseline")]
    rows = []
    for ub, sim, rule in configs:
        algo_cls = getattr(surprise, RULES[rule])

        def run_surprise(algo_cls: Any = algo_cls, ub: bool = ub, sim: str = sim) -> np.ndarray:
            algo = algo_cls(sim_options={"name": sim, "user_based": ub}, verbose=False)
            algo.fit(trainset)
            return np.array([algo.predict(u, i).est for u, i in zip(tu, ti, strict=True)])

        def run_ours(ub: bool = ub, sim: str = sim, rule: str = rule) -> np.ndarray:
            model = (UserKNN if ub else ItemKNN)(similarity=sim, rule=rule)
            return model.fit(train).predict(tu, ti)

        ps, _, ts = timed(run_surprise, repeats, warmup=False)  # nothing to compile
        pr, warm, tr = timed(run_ours, repeats)
        row = {"model": f"{'User' if ub else 'Item'}KNN", "similarity": sim, "rule": rule,
               "surprise": RULES[rule], "rmse_surprise": rmse(ps, y), "rmse_rectune": rmse(pr, y),
               "max_abs_pred_diff": float(np.max(np.abs(np.clip(ps, 1, 5) - pr))),
               "seconds_surprise": ts, "seconds_rectune": tr, "rectune_warmup_s": warm,
               "speedup": ts / tr}
        rows.append(row)
        print(f"{row['model']:8s} {sim:17s} {rule:8s} RMSE surprise {row['rmse_surprise']:.4f} "
              f"rectune {row['rmse_rectune']:.4f} max|diff| {row['max_abs_pred_diff']:.1e} "
              f"time {ts:6.2f}s vs {tr:5.2f}s (x{row['speedup']:.1f})", flush=True)
    return rows


def ranking_parity(df: pd.DataFrame, repeats: int) -> dict[str, Any]:
    from implicit.nearest_neighbours import CosineRecommender

    from rectune.data.protocols import ml100k_user_8020
    from rectune.evaluate import ranking_metrics

    data = Interactions.from_frame(df, rating_scale=(1, 5))
    split = ml100k_user_8020(data)
    train, test = split.train, split.test
    truth = test.csr()
    users = np.arange(train.n_users)
    user_items = train.csr(dtype=np.float32)

    def run_implicit() -> np.ndarray:
        import scipy.sparse as sp

        m = CosineRecommender(K=20)
        m.fit(sp.csr_matrix(user_items), show_progress=False)
        ids, _ = m.recommend(users, sp.csr_matrix(user_items), N=10)
        return np.asarray(ids)

    def run_ours(k: int) -> Callable[[], np.ndarray]:
        return lambda: ImplicitItemKNN(k=k).fit(train).recommend_indices(users, 10)[0]

    out: dict[str, Any] = {"protocol": "ml100k_user_8020"}
    for name, fn in (("implicit CosineRecommender(K=20)", run_implicit),
                     ("rectune ImplicitItemKNN(k=19)", run_ours(19)),
                     ("rectune ImplicitItemKNN(k=20)", run_ours(20))):
        top, _, sec = timed(fn, repeats)
        metrics = ranking_metrics(top, truth, k=10)
        out[name] = {"ndcg@10": metrics["ndcg@10"], "precision@10": metrics["precision@10"],
                     "recall@10": metrics["recall@10"], "map@10": metrics["map@10"],
                     "seconds": sec}
        print(f"{name:35s} NDCG@10 {metrics['ndcg@10']:.4f} P@10 {metrics['precision@10']:.4f} "
              f"MAP@10 {metrics['map@10']:.4f} time {sec:.2f}s", flush=True)
    return out


def finetune_check(df: pd.DataFrame) -> dict[str, Any]:
    """``update`` with new events against a refit on old + new (exactness and time)."""
    perm = np.random.default_rng(0).permutation(len(df))
    train_df = df.iloc[perm[20000:]]
    test = df.iloc[perm[:20000]]
    newest = train_df.timestamp.rank(method="first") > 0.9 * len(train_df)
    scenarios = {"random 10% of train": np.random.default_rng(1).random(len(train_df)) < 0.1,
                 "newest 10% of train": newest.to_numpy()}
    out: dict[str, Any] = {}
    for label, is_new in scenarios.items():
        old_df, new_df = train_df[~is_new], train_df[is_new]
        rerate = old_df.sample(200, random_state=0).assign(
            rating=lambda d: 6 - d.rating, timestamp=lambda d: d.timestamp + 10**9)
        old = Interactions.from_frame(old_df, rating_scale=(1, 5))
        new = Interactions.from_frame(pd.concat([new_df, rerate]), rating_scale=(1, 5))
        both = old.concat(new, duplicates="last")
        res: dict[str, Any] = {"new_events": len(new), "re_rated": len(rerate),
                               "new_users": int(both.n_users - old.n_users),
                               "new_items": int(both.n_items - old.n_items)}
        for cls, sim in ((ItemKNN, "pearson"), (UserKNN, "cosine")):
            model = cls(similarity=sim).fit(old)
            t = time.perf_counter()
            model.update(new)
            t_upd = time.perf_counter() - t
            t = time.perf_counter()
            ref = cls(similarity=sim).fit(both)
            t_fit = time.perf_counter() - t
            diff = model.statistics.similarity(sim) - ref.statistics.similarity(sim)
            diff_s = float(abs(diff).max())
            pu, pr = (m.predict(test.user.to_numpy(), test.item.to_numpy())
                      for m in (model, ref))
            key = f"{cls.__name__}({sim})"
            res[key] = {"update_s": t_upd, "refit_s": t_fit, "max_sim_diff": diff_s,
                        "max_pred_diff": float(np.max(np.abs(pu - pr)))}
            print(f"{label}: update {key} {t_upd:.2f}s vs refit {t_fit:.2f}s, max |sim diff| "
                  f"{diff_s:.1e}, max |pred diff| {res[key]['max_pred_diff']:.1e}", flush=True)
        out[label] = res
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="mean and baseline rules only")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--skip", nargs="*", default=[], choices=["rating", "ranking", "finetune"])
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="Method expects CSR input")  # implicit internals
    data_file = ml100k_dir() / "u.data"
    df = pd.read_csv(data_file, sep="\t", names=["user", "item", "rating", "timestamp"])
    result: dict[str, Any] = {"data": str(data_file), "repeats": args.repeats}
    if "rating" not in args.skip:
        result["rating"] = rating_parity(df, args.repeats, args.quick)
    if "ranking" not in args.skip:
        result["ranking"] = ranking_parity(df, args.repeats)
    if "finetune" not in args.skip:
        result["finetune"] = finetune_check(df)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
