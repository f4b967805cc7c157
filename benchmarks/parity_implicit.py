"""Parity of rectune's ALS, BPR and EASE with ``implicit`` (0.7, CPU) on quality and fit time.

Protocol (PROTOCOLS.md, "ML-100K top-N ranking, per-user 80/20 of positives"):
``rectune.data.protocols.ml100k_user_8020``; full ranking of every item except
the user's training positives; NDCG@10 (binary) over the 942 evaluated users.
The same top-k code (``rectune.evaluate.ranking.topk_from_scores``) ranks the
scores of both libraries, so only the models differ.

Settings compared (quoted figures: implicit ALS 0.220, BPR 0.203, EASE 0.31-0.32):

* implicit ALS(64 factors, 15 iterations, reg 0.05, alpha 1) vs rectune ALS at
  the same factors/iterations/reg, with ``alpha=0`` -- the same model, because
  implicit's confidence is ``alpha·r`` and ours ``1 + alpha·r`` -- and with our
  default ``alpha=1``;
* implicit BPR(64 factors, defaults) vs rectune BPR(64 factors, defaults:
  uniform negatives) and rectune BPR with implicit's popularity negatives;
* rectune EASE for λ in {100, 200, 300, 400, 500};
* fit time of ALS (64 and 128 factors; BPR too with ``--big-bpr``) on a synthetic
  set of 1M events (50k users x 20k items, Zipf(0.8) item popularity), where
  only time is meaningful.

Timing: PROTOCOLS.md "Validation slices and timing": one warm-up fit (numba JIT
or cache load, reported apart), then the median of ``--runs`` fits; the two
libraries' runs are interleaved so that a busy machine slows both alike. Both
use every core (implicit ``num_threads=0``, rectune ``FitOptions(n_threads=0)``)
or ``--threads N``.
``OPENBLAS_NUM_THREADS=1`` is set before numpy loads, as implicit recommends
(its per-user BLAS calls otherwise fight OpenBLAS's own threads); this also
makes EASE's LAPACK solve single-threaded.

Tuning (``--tune``): hyper-parameters of EASE (λ) and ALS (factors, alpha,
reg, reg_exponent) are chosen on a validation slice carved from the TRAIN part
only (``validation_slice``: 10% of training rows, seed 1); the chosen setting is
refitted on the whole train part and evaluated once on test.

Run: ``python benchmarks/parity_implicit.py [--runs 5] [--tune] [--no-big] [--big-bpr]
[--out f.json]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy is imported

import argparse
import itertools
import json
import platform
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import _common
from _common import Runner, compare, implicit_models, ndcg10, read_ml100k, synthetic_implicit
from rectune.data import Interactions
from rectune.data.protocols import ml100k_user_8020, validation_slice
from rectune.models.als import ALS
from rectune.models.base import Recommender
from rectune.models.bpr import BPR
from rectune.models.ease import EASE


def load_ml100k() -> Interactions:
    """``u.data`` in file order from $RECTUNE_DATA/ml-100k or ../shared/data/ml-100k."""
    return read_ml100k()


def synthetic_1m(seed: int = 0) -> Interactions:
    """1,000,000 distinct (user, item) events, uniform users, Zipf(0.8) items."""
    return synthetic_implicit(1_000_000, 50_000, 20_000, seed)


THREADS = 0  # --threads: 0 = every core, for both libraries


def rectune_runner(name: str, make: Callable[[], Recommender]) -> Runner:
    return _common.rectune_runner(name, make, THREADS)


def implicit_runner(name: str, make: Callable[[], Any]) -> Runner:
    return _common.implicit_runner(name, make, THREADS)


# -------------------------------------------------------------------- tuning
def tune(train: Interactions, test: Interactions) -> dict[str, Any]:
    """Choose EASE λ and ALS settings on a validation slice of TRAIN; test the winners once."""
    fit_part, valid = validation_slice(train)

    def valid_score(make: Callable[[], Recommender]) -> float:
        return ndcg10(make().fit(fit_part)._score, fit_part, valid)

    tried: list[dict[str, Any]] = []
    for lam in (50, 100, 150, 200, 300, 400, 500, 700):
        kw: dict[str, Any] = {"regularization": float(lam)}
        tried.append({"model": "EASE", "params": kw,
                      "valid": valid_score(partial(EASE, **kw))})
    # λ_u = reg · W_u^ν with W_u ~ n_items (1,682): each exponent needs its own reg range
    regs = {0.0: (10.0, 30.0, 50.0, 100.0), 0.5: (0.3, 1.0, 3.0), 1.0: (0.01, 0.02, 0.03, 0.05)}
    for f, alpha, nu in itertools.product((64, 128), (1.0, 3.0, 5.0, 10.0), regs):
        for reg in regs[nu]:
            kw = {"factors": f, "alpha": alpha, "regularization": reg, "reg_exponent": nu}
            tried.append({"model": "ALS", "params": kw,
                          "valid": valid_score(partial(ALS, **kw))})
    best: dict[str, Any] = {}
    for name, make in (("EASE", EASE), ("ALS", ALS)):
        cands = [t for t in tried if t["model"] == name]
        win = max(cands, key=lambda t: t["valid"])
        model = make(**win["params"]).fit(train)
        best[name] = {**win, "test": ndcg10(model._score, train, test), "n_tried": len(cands)}
        print(f"  best {name} on validation: {win['params']}  valid {win['valid']:.4f}  "
              f"-> test NDCG@10 {best[name]['test']:.4f}  ({len(cands)} settings)", flush=True)
    return {"validation": "validation_slice(train, 0.1, seed=1)", "tried": tried, "best": best}


# ---------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--big-runs", type=int, default=3)
    ap.add_argument("--no-big", action="store_true", help="skip the 1M-event timing")
    ap.add_argument("--big-bpr", action="store_true", help="also time BPR on 1M events (slow)")
    ap.add_argument("--tune", action="store_true", help="validation-tuned EASE/ALS")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for both libraries (0 = all cores; 1 is steadier on a busy box)")
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    args = ap.parse_args()
    global THREADS
    THREADS = args.threads

    import numba

    import rectune

    peers = implicit_models()
    env = {"python": platform.python_version(), "rectune": rectune.__version__,
           "numba": numba.__version__, "cpus": os.cpu_count(),
           "numba_threads": numba.get_num_threads(), "threads": args.threads,
           "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")}
    if peers is not None:
        import implicit

        env["implicit"] = implicit.__version__
    print("environment:", env)
    train, test = ml100k_user_8020(load_ml100k())
    print(f"ML-100K per-user 80/20: {len(train)} train / {len(test)} test positives")

    runners: list[Runner] = []
    if peers is not None:
        imp_als, imp_bpr = peers
        runners.append(implicit_runner("implicit ALS(64, 15 it, reg .05, alpha 1)", lambda: imp_als(
            factors=64, iterations=15, regularization=0.05, random_state=0)))
    runners += [
        rectune_runner("rectune ALS(64, 15 it, reg .05, alpha 0)", lambda: ALS(
            factors=64, iterations=15, regularization=0.05, alpha=0.0)),
        rectune_runner("rectune ALS(64, 15 it, reg .05, alpha 1)", lambda: ALS(
            factors=64, iterations=15, regularization=0.05, alpha=1.0)),
    ]
    if peers is not None:
        runners.append(implicit_runner("implicit BPR(64, defaults)", lambda: imp_bpr(
            factors=64, random_state=0)))
    runners += [
        rectune_runner("rectune BPR(64, defaults: uniform)", lambda: BPR(factors=64)),
        rectune_runner("rectune BPR(64, popularity negatives)", lambda: BPR(
            factors=64, negative_sampling="popularity")),
    ]
    runners += [rectune_runner(f"rectune EASE(lambda {lam})",
                               partial(EASE, regularization=float(lam)))
                for lam in (100, 200, 300, 400, 500)]
    results: dict[str, Any] = {"environment": env, "protocol": "ml100k_user_8020"}
    print(f"\nML-100K (median of {args.runs} fits after a warm-up):")
    results["ml100k"] = compare(runners, train, test, args.runs)

    if not args.no_big:
        big = synthetic_1m()
        print(f"\nsynthetic {len(big):,} events, {big.n_users:,} users x {big.n_items:,} items "
              f"(median of {args.big_runs}; time only):")
        big_runners: list[Runner] = []
        if peers is not None:
            big_runners.append(implicit_runner("implicit ALS(64, 15 it)", lambda: peers[0](
                factors=64, iterations=15, regularization=0.05, random_state=0)))
        big_runners.append(rectune_runner("rectune ALS(64, 15 it)", lambda: ALS(
            factors=64, iterations=15, regularization=0.05, alpha=0.0)))
        if peers is not None:
            big_runners.append(implicit_runner("implicit ALS(128, 15 it)", lambda: peers[0](
                factors=128, iterations=15, regularization=0.05, random_state=0)))
        big_runners.append(rectune_runner("rectune ALS(128, 15 it)", lambda: ALS(
            factors=128, iterations=15, regularization=0.05, alpha=0.0)))
        if args.big_bpr:
            if peers is not None:
                big_runners.append(implicit_runner("implicit BPR(64, 100 epochs)",
                                                   lambda: peers[1](factors=64, random_state=0)))
            big_runners.append(rectune_runner("rectune BPR(64, 100 epochs)", lambda: BPR(
                factors=64)))
            big_runners.append(rectune_runner("rectune BPR(64, 100 epochs, hogwild)",
                                              lambda: BPR(factors=64, hogwild=True)))
        results["synthetic_1m"] = compare(big_runners, big, None, args.big_runs)

    if args.tune:
        print("\ntuning on a validation slice of the train part:")
        results["tuning"] = tune(train, test)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
