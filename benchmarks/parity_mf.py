"""Parity and speed of rectune's Baseline, SVD, SVD++ and NMF against Surprise.

What it measures (PROTOCOLS.md "ML-100K rating prediction, fixed 80/20" and "timing"):

1. JIT warm-up: the first fit of each model in this process (numba compile, or
   loading its on-disk cache), reported apart from every timing below.
2. Quality on ML-100K, fixed 80/20: Surprise and rectune at the same
   hyper-parameters (the defaults of both), RMSE and MAE over all 20,000 test
   rows (clipped to 1..5), mean over ``--seeds`` seeds (default 5: a single
   seed's RMSE has a standard deviation of ~0.003 in both libraries). Pass:
   |mean RMSE difference| <= 0.005.
3. Exact replay: rectune's kernels driven in float64 with *Surprise's* rating
   order and *Surprise's* initial values (its ``RandomState`` draws) must give
   Surprise's test RMSE to ~1e-6 -- same update rules, not just the same band.
   (rectune itself shuffles each epoch and draws from a numpy ``Generator``.)
4. Speed: fit + predict (raw ids in, ratings out) wall time, median of ``--runs``
   runs after the warm-up, on ML-100K and on a synthetic MovieLens-1M-shaped set
   (``rectune.data.synthetic``, 1,000,000 ratings, 6040 x 3706, 80/20 random
   split). rectune is timed on one thread and with its default threads (all
   cores, lock-free Hogwild once a set has >= 200,000 ratings). Surprise's SVD++
   is too slow to time at 20 epochs on 1M (hours); its time there is
   extrapolated linearly from 1- and 2-epoch fits, and says so.

Usage::

    python benchmarks/parity_mf.py                 # everything (~20 min on 2 busy cores)
    python benchmarks/parity_mf.py --skip-1m --runs 3 --seeds 2
    python benchmarks/parity_mf.py --json out.json

Needs the ``bench`` extra (scikit-surprise) and ML-100K under ``--data``
(default ``$RECTUNE_DATA/ml-100k`` or ``../shared/data/ml-100k``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from _common import Task, median, ml100k_dir, read_ml100k
from _common import rating_errors as errors
from rectune.data.interactions import Interactions
from rectune.models import _mf_kernels as K
from rectune.models.base import FitOptions, Recommender
from rectune.models.baseline import Baseline
from rectune.models.mf import NMF, SVD, SVDpp

#: Surprise's figures on the fixed 80/20 split, as quoted in PROTOCOLS.md
QUOTED = {"Baseline(ALS)": 0.9403, "SVD": 0.9324, "SVD++": 0.9167, "NMF": 0.9649}
TOL = 0.005


# ----------------------------------------------------------------------------- data
def ml100k_task(folder: Path) -> Task:
    data = read_ml100k(folder)
    perm = np.random.default_rng(0).permutation(len(data))
    return Task.from_rows("ML-100K fixed 80/20", data, perm[:20000], perm[20000:])


def synthetic_1m_task() -> Task:
    from rectune.data.synthetic import synthetic

    data = synthetic(1_000_000, seed=0).interactions
    perm = np.random.default_rng(0).permutation(len(data))
    cut = len(data) // 5
    return Task.from_rows("synthetic 1M (6040 x 3706), 80/20", data, perm[:cut], perm[cut:])


# ------------------------------------------------------------------------- the specs
def surprise_algo(name: str, seed: int, n_epochs: int | None = None) -> Any:
    import surprise as s

    kw: dict[str, Any] = {} if n_epochs is None else {"n_epochs": n_epochs}
    if name == "Baseline(ALS)":
        return s.BaselineOnly(verbose=False)
    if name == "Baseline(SGD)":
        return s.BaselineOnly(bsl_options={"method": "sgd"}, verbose=False)
    if name == "SVD":
        return s.SVD(random_state=seed, **kw)
    if name == "SVD++":  # cache_ratings only changes Surprise's speed (its fastest setting)
        return s.SVDpp(random_state=seed, cache_ratings=True, **kw)
    return s.NMF(random_state=seed, **kw)


def rectune_model(name: str, seed: int) -> Recommender:
    if name == "Baseline(ALS)":
        return Baseline()
    if name == "Baseline(SGD)":
        return Baseline(method="sgd", random_state=seed)
    if name == "SVD":
        return SVD(random_state=seed)
    if name == "SVD++":
        return SVDpp(random_state=seed)
    return NMF(random_state=seed)


NAMES = ["Baseline(ALS)", "Baseline(SGD)", "SVD", "SVD++", "NMF"]


def run_surprise(task: Task, name: str, seed: int,
                 n_epochs: int | None = None) -> tuple[float, float, float, float]:
    """(fit+test seconds, rmse, mae, test-only seconds) for Surprise."""
    algo = surprise_algo(name, seed, n_epochs)
    t0 = time.perf_counter()
    algo.fit(task.trainset)
    t1 = time.perf_counter()
    preds = algo.test(task.testset)
    t2 = time.perf_counter()
    est = np.array([p.est for p in preds])
    return (t2 - t0, *errors(est, task.truth), t2 - t1)


def run_rectune(task: Task, name: str, seed: int,
                n_threads: int = 1) -> tuple[float, float, float]:
    """(fit+predict seconds, rmse, mae) for rectune."""
    model = rectune_model(name, seed)
    t0 = time.perf_counter()
    model.fit(task.train, options=FitOptions(n_threads=n_threads))
    pred = model.predict(task.test_users, task.test_items)
    return (time.perf_counter() - t0, *errors(pred, task.truth))


# --------------------------------------------------------------- exact replay (float64)
def surprise_layout(ts: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Surprise's ``all_ratings()`` order (user by inner id, ``ur`` order) and its CSR."""
    lens = np.array([len(ts.ur[u]) for u in range(ts.n_users)])
    u = np.repeat(np.arange(ts.n_users, dtype=np.int32), lens)
    i = np.array([j for uu in range(ts.n_users) for j, _ in ts.ur[uu]], dtype=np.int32)
    r = np.array([x for uu in range(ts.n_users) for _, x in ts.ur[uu]], dtype=np.float64)
    return u, i, r, np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)


def replay_predict(task: Task, est: Callable[[np.ndarray, np.ndarray], np.ndarray],
                   bias: tuple[np.ndarray, np.ndarray] | None, mu: float) -> np.ndarray:
    """Surprise's estimate rules for a replayed model (inner ids, -1 = unknown)."""
    ts = task.trainset
    u = np.array([ts._raw2inner_id_users.get(x, -1) for x in task.test_users])
    i = np.array([ts._raw2inner_id_items.get(x, -1) for x in task.test_items])
    both = (u >= 0) & (i >= 0)
    out = np.full(len(u), mu)
    if bias is not None:
        out[u >= 0] += bias[0][u[u >= 0]]
        out[i >= 0] += bias[1][i[i >= 0]]
        out[both] += est(u[both], i[both])
    else:  # unbiased NMF: impossible pairs get the global mean
        out[both] = est(u[both], i[both])
    return out


def replay(task: Task, name: str, seed: int) -> float:
    """Test RMSE of rectune's kernels replaying Surprise's run (same order, same init)."""
    ts = task.trainset
    u, i, r, indptr = surprise_layout(ts)
    mu, n = ts.global_mean, len(r)
    rng = np.random.RandomState(seed)
    bu, bi = np.zeros(ts.n_users), np.zeros(ts.n_items)
    if name == "Baseline(SGD)":
        for _ in range(20):
            K.bias_sgd_epoch(0, n, u, i, r, mu, bu, bi, 0.005, 0.02)
        return errors(replay_predict(task, lambda a, b: 0 * a, (bu, bi), mu), task.truth)[0]
    if name == "SVD":
        p = rng.normal(0, 0.1, (ts.n_users, 100))
        q = rng.normal(0, 0.1, (ts.n_items, 100))
        for _ in range(20):
            K.svd_epoch(0, n, u, i, r, mu, bu, bi, p, q, True, *[0.005] * 4, *[0.02] * 4)
        return errors(replay_predict(task, lambda a, b: (p[a] * q[b]).sum(1), (bu, bi), mu),
                      task.truth)[0]
    if name == "SVD++":
        p = rng.normal(0, 0.1, (ts.n_users, 20))
        q = rng.normal(0, 0.1, (ts.n_items, 20))
        y = rng.normal(0, 0.1, (ts.n_items, 20))
        order = np.arange(ts.n_users, dtype=np.int32)
        for _ in range(20):
            K.svdpp_epoch(0, ts.n_users, order, indptr, i, r, mu, bu, bi, p, q, y,
                          *[0.007] * 5, *[0.02] * 5)
        z = np.stack([y[i[indptr[x]:indptr[x + 1]]].sum(0) / np.sqrt(indptr[x + 1] - indptr[x])
                      for x in range(ts.n_users)])
        return errors(replay_predict(task, lambda a, b: ((p[a] + z[a]) * q[b]).sum(1),
                                     (bu, bi), mu), task.truth)[0]
    if name == "NMF":
        p = rng.uniform(0, 1, (ts.n_users, 15))
        q = rng.uniform(0, 1, (ts.n_items, 15))
        un, ud = np.zeros_like(p), np.zeros_like(p)
        inum, iden = np.zeros_like(q), np.zeros_like(q)
        cu = np.diff(indptr).astype(np.float64)
        ci = np.bincount(i, minlength=ts.n_items).astype(np.float64)
        for _ in range(50):
            K.nmf_accumulate(0, ts.n_users, indptr, i, r, p, q, un, ud, inum, iden)
            K.nmf_apply(p, un, ud, cu, 0.06, q, inum, iden, ci, 0.06)
        return errors(replay_predict(task, lambda a, b: (p[a] * q[b]).sum(1), None, mu),
                      task.truth)[0]
    raise ValueError(name)


# ------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="folder holding ML-100K's u.data")
    ap.add_argument("--seeds", type=int, default=5,
                    help="seeds for the quality comparison (one seed's RMSE has sd ~0.003)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs (median) per library")
    ap.add_argument("--runs-1m", type=int, default=3, help="timed runs on the 1M set")
    ap.add_argument("--skip-1m", action="store_true", help="skip the synthetic 1M timing")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    out: dict[str, Any] = {"threads_default": os.cpu_count()}

    # 1. warm-up: compile (or load from numba's cache) every kernel once
    rng = np.random.default_rng(0)
    tiny_df = pd.DataFrame({"user": rng.integers(0, 50, 600), "item": rng.integers(0, 40, 600),
                            "rating": rng.integers(1, 6, 600).astype(float)})
    tiny = Interactions.from_frame(tiny_df, timestamp=None, rating_scale=(1, 5),
                                   duplicates="last")
    print("== JIT warm-up (first fit in this process: numba compile, or its disk cache) ==")
    out["warmup_s"] = {}
    for name in NAMES:
        t0 = time.perf_counter()
        rectune_model(name, 0).fit(tiny)
        out["warmup_s"][name] = time.perf_counter() - t0
        print(f"  {name:14s} {out['warmup_s'][name]:6.2f} s")

    # 2-4. ML-100K
    task = ml100k_task(ml100k_dir(args.data))
    print(f"\n== {task.name}: RMSE / MAE, mean over seeds (Surprise quoted in PROTOCOLS.md) ==")
    out["ml100k"] = {}
    for name in NAMES:
        seeds = [0] if name == "Baseline(ALS)" else list(range(args.seeds))
        sur = [run_surprise(task, name, s) for s in seeds]
        ours = [run_rectune(task, name, s) for s in seeds]
        s_rmse, o_rmse = np.mean([x[1] for x in sur]), np.mean([x[1] for x in ours])
        s_mae, o_mae = np.mean([x[2] for x in sur]), np.mean([x[2] for x in ours])
        ok = abs(o_rmse - s_rmse) <= TOL
        row: dict[str, Any] = {"surprise_rmse": float(s_rmse), "rectune_rmse": float(o_rmse),
                               "surprise_mae": float(s_mae), "rectune_mae": float(o_mae),
                               "seeds": seeds, "surprise_rmse_per_seed": [x[1] for x in sur],
                               "rectune_rmse_per_seed": [x[1] for x in ours], "pass": bool(ok)}
        if name == "Baseline(ALS)":
            row["max_abs_bias_diff"] = als_bias_diff(task)
            exact = f"biases max |diff| {row['max_abs_bias_diff']:.1e}"
        else:
            row["replay_rmse"] = replay(task, name, 0)
            row["replay_minus_surprise_seed0"] = row["replay_rmse"] - sur[0][1]
            exact = f"replay-seed0 diff {row['replay_minus_surprise_seed0']:+.1e}"
        quoted = f" (quoted {QUOTED[name]:.4f})" if name in QUOTED else ""
        print(f"  {name:14s} Surprise {s_rmse:.4f} / {s_mae:.4f}{quoted}   "
              f"rectune {o_rmse:.4f} / {o_mae:.4f}   diff {o_rmse - s_rmse:+.4f} "
              f"{'PASS' if ok else 'FAIL'}   {exact}")
        out["ml100k"][name] = row

    print(f"\n== {task.name}: fit+predict seconds, median of {args.runs} (after warm-up) ==")
    for name in NAMES:
        out["ml100k"][name].update(timing(task, name, args.runs))
        show_timing(name, out["ml100k"][name])

    # 4. synthetic 1M
    if not args.skip_1m:
        big = synthetic_1m_task()
        print(f"\n== {big.name}: fit+predict seconds, median of {args.runs_1m} ==")
        out["synthetic_1m"] = {}
        for name in NAMES:
            row = timing(big, name, args.runs_1m, extrapolate=name == "SVD++")
            out["synthetic_1m"][name] = row
            show_timing(name, row)

    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"\nwrote {args.json}")


def als_bias_diff(task: Task) -> float:
    """Max |b_ours - b_Surprise| over users and items for ALS (deterministic, same maths)."""
    algo = surprise_algo("Baseline(ALS)", 0)
    algo.fit(task.trainset)
    m = Baseline().fit(task.train)
    ts = task.trainset
    uraw = [ts.to_raw_uid(x) for x in range(ts.n_users)]
    iraw = [ts.to_raw_iid(x) for x in range(ts.n_items)]
    du = m.user_bias_[task.train.user_map.encode(np.array(uraw))] - algo.bu
    di = m.item_bias_[task.train.item_map.encode(np.array(iraw))] - algo.bi
    return float(max(np.abs(du).max(), np.abs(di).max()))


def timing(task: Task, name: str, runs: int, extrapolate: bool = False) -> dict[str, Any]:
    """Median fit+predict time of both libraries; rectune on 1 thread and default threads."""
    row: dict[str, Any] = {}
    if extrapolate:  # Surprise SVD++: linear in epochs; fit 1 and 2 epochs, extend to 20
        one, two = run_surprise(task, name, 0, n_epochs=1), run_surprise(task, name, 0, 2)
        per_epoch = (two[0] - two[3]) - (one[0] - one[3])
        row["surprise_s"] = (one[0] - one[3]) + 19 * per_epoch + one[3]
        row["surprise_note"] = (f"extrapolated to 20 epochs from 1-/2-epoch fits "
                                f"({per_epoch:.1f} s/epoch)")
    else:
        sur = [run_surprise(task, name, 0) for _ in range(runs)]
        row["surprise_s"] = median([x[0] for x in sur])
        row["surprise_timed_rmse"] = sur[0][1]
    for label, threads in (("rectune_1t", 1), ("rectune_default", 0)):
        ours = [run_rectune(task, name, 0, n_threads=threads) for _ in range(runs)]
        row[f"{label}_s"] = median([x[0] for x in ours])
        row[f"{label}_rmse"] = ours[0][1]
        row[f"speedup_{label}"] = row["surprise_s"] / row[f"{label}_s"]
    row["threads_used_default"] = K.resolve_threads(0, len(task.train))
    return row


def show_timing(name: str, row: dict[str, Any]) -> None:
    note = f"  [{row['surprise_note']}]" if "surprise_note" in row else ""
    print(f"  {name:14s} Surprise {row['surprise_s']:8.2f}   "
          f"rectune 1 thread {row['rectune_1t_s']:6.2f} (x{row['speedup_rectune_1t']:5.1f}, "
          f"RMSE {row['rectune_1t_rmse']:.4f})   "
          f"default={row['threads_used_default']} threads {row['rectune_default_s']:6.2f} "
          f"(x{row['speedup_rectune_default']:5.1f}, RMSE {row['rectune_default_rmse']:.4f})"
          f"{note}")


if __name__ == "__main__":
    main()
