"""Helpers shared by the benchmark scripts: data, peer adapters, timing, peak memory.

The scripts are run from the repository root (``python benchmarks/<script>.py``);
Python then puts ``benchmarks/`` on ``sys.path``, so ``import _common`` works
without installing anything. Peer libraries (Surprise, implicit, LightFM) are
imported inside the functions that use them: every script still starts, and
says what is missing, when a peer is not installed.

Timing follows PROTOCOLS.md ("Validation slices and timing"): one warm-up run
(numba compilation or its disk-cache load lands there and is reported apart),
then the median of the timed runs. Peak memory is the kernel's own high-water
mark of the process's resident set (``VmHWM`` in ``/proc/self/status``), reset
before each measured call through ``/proc/self/clear_refs`` (Linux >= 4.0), minus
the resident set just before the call (after ``gc.collect()`` and glibc's
``malloc_trim(0)``, so memory freed by earlier runs is not reused unseen). It is
exact, whatever holds the GIL. Where the reset is not available (not Linux), a
thread samples ``psutil``'s RSS every 2 ms instead; a call that holds the GIL
throughout can then be under-sampled, and the result says which method it used.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rectune.data import Dataset, Interactions, load_movielens
from rectune.data.idmap import IdMap
from rectune.evaluate import mae, rmse
from rectune.evaluate.ranking import ranking_metrics, topk_from_scores
from rectune.models.base import FitOptions, Recommender

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")
Scores = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------------ data
def ml100k_dir(arg: str | Path | None = None) -> Path:
    """The folder holding ML-100K's ``u.data``: ``arg``, ``$RECTUNE_DATA/ml-100k`` or
    ``../shared/data/ml-100k`` next to the repository, first match wins."""
    cands = [Path(arg)] if arg else []
    if os.environ.get("RECTUNE_DATA"):
        cands.append(Path(os.environ["RECTUNE_DATA"]) / "ml-100k")
    cands.append(REPO.parent / "shared" / "data" / "ml-100k")
    for c in cands:
        if (c / "u.data").is_file():
            return c
    raise SystemExit("ML-100K not found: pass --data DIR (the folder holding u.data) or set "
                     "RECTUNE_DATA to a folder holding ml-100k/")


def read_ml100k(folder: str | Path | None = None) -> Interactions:
    """``u.data`` in file order, ids mapped in ascending order (the protocol presets'
    assumption), ratings on (1, 5)."""
    df = pd.read_csv(ml100k_dir(folder) / "u.data", sep="\t",
                     names=["user", "item", "rating", "timestamp"])
    return Interactions.from_frame(df, rating_scale=(1, 5))


def load_ml100k(folder: str | Path | None = None) -> Dataset:
    """The whole ML-100K :class:`Dataset` (with the shipped ``u1``..``u5`` folds), no download."""
    return load_movielens("ml-100k", path=ml100k_dir(folder), download=False, progress=False)


def synthetic_implicit(n_events: int = 1_000_000, n_users: int = 50_000, n_items: int = 20_000,
                       seed: int = 0) -> Interactions:
    """``n_events`` distinct (user, item) events, uniform users, Zipf(0.8) item popularity:
    a timing set for implicit-feedback models (its quality means nothing)."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    u = rng.integers(0, n_users, n_events * 12 // 10)
    i = rng.choice(n_items, size=len(u), p=pop / pop.sum())
    key = rng.permutation(np.unique(u.astype(np.int64) * n_items + i))[:n_events]
    return Interactions.from_indices(key // n_items, key % n_items, None,
                                     IdMap.from_values(np.arange(n_users)),
                                     IdMap.from_values(np.arange(n_items)), kind="implicit")


# -------------------------------------------------------------- rating tasks
def rating_errors(pred: np.ndarray, truth: np.ndarray,
                  scale: tuple[float, float] = (1, 5)) -> tuple[float, float]:
    """``(RMSE, MAE)`` with predictions clipped to the rating scale (PROTOCOLS.md)."""
    return (rmse(truth, pred, clip=scale), mae(truth, pred, clip=scale))


class Task:
    """One train/test split in both rectune's and Surprise's formats.

    Surprise's trainset is built from the training rows in rectune's order, so both
    libraries see the ratings arrive in the same order (KNN ties are broken by it).
    It is built on first use: at 10M ratings it takes minutes and gigabytes.
    """

    def __init__(self, name: str, train: Interactions, test: Interactions) -> None:
        self.name = name
        self.train, self.test = train, test
        frame = test.to_frame()
        self.test_users = frame["user"].to_numpy()
        self.test_items = frame["item"].to_numpy()
        self.truth = frame["rating"].to_numpy(dtype=np.float64)
        self.scale: tuple[float, float] = train.rating_scale or (1, 5)

    @classmethod
    def from_rows(cls, name: str, data: Interactions, test_rows: np.ndarray,
                  train_rows: np.ndarray) -> Task:
        return cls(name, data.take(train_rows), data.take(test_rows))

    @cached_property
    def trainset(self) -> Any:
        from surprise import Dataset as SDataset
        from surprise import Reader

        df = self.train.to_frame()[["user", "item", "rating"]]
        return SDataset.load_from_df(df, Reader(rating_scale=self.scale)).build_full_trainset()

    @cached_property
    def testset(self) -> list[tuple[Any, Any, float]]:
        return list(zip(self.test_users.tolist(), self.test_items.tolist(),
                        self.truth.tolist(), strict=True))

    def errors(self, pred: np.ndarray) -> tuple[float, float]:
        return rating_errors(pred, self.truth, self.scale)


def surprise_fit_predict(algo: Any, task: Task) -> np.ndarray:
    """Fit a Surprise algorithm and predict the test rows (raw ids in, estimates out)."""
    algo.fit(task.trainset)
    return np.array([p.est for p in algo.test(task.testset)])


def rectune_fit_predict(model: Recommender, task: Task, n_threads: int = 0) -> np.ndarray:
    """Fit a rectune model and predict the test rows (raw ids in, ratings out)."""
    model.fit(task.train, options=FitOptions(n_threads=n_threads))
    return model.predict(task.test_users, task.test_items)


# ------------------------------------------------------- rating comparisons
@dataclass(frozen=True)
class Algo:
    """One Surprise algorithm and rectune's model at the same hyper-parameters."""

    name: str
    surprise: Callable[[int], Any]
    rectune: Callable[[int], Recommender]
    seeded: bool



class Runs:
    """The timed runs of one library on one task, made one at a time (so that runs of
    several libraries can be interleaved and share the machine's load alike)."""

    def __init__(self, fn: Callable[[int], np.ndarray], task: Task, seeded: bool) -> None:
        self.fn, self.task, self.seeded = fn, task, seeded
        self.secs: list[float] = []
        self.rmses: list[float] = []
        self.maes: list[float] = []
        self.peak = 0.0

    def run(self) -> None:
        """One more run: seed = run index when seeded; the first also measures peak memory."""
        k = len(self.secs)
        seed = k if self.seeded else 0
        if k == 0:
            pred, sec, self.peak = peak_memory(lambda: self.fn(seed))
        else:
            t = time.perf_counter()
            pred = self.fn(seed)
            sec = time.perf_counter() - t
        self.secs.append(sec)
        r, m = self.task.errors(pred)
        self.rmses.append(r)
        self.maes.append(m)

    def summary(self) -> dict[str, Any]:
        """Median seconds, mean RMSE/MAE, peak MiB of the first run."""
        return {"s": median(self.secs), "runs_s": self.secs, "rmse": float(np.mean(self.rmses)),
                "rmse_runs": self.rmses, "mae": float(np.mean(self.maes)),
                "peak_mb": self.peak, "n": len(self.secs)}


def measure_interleaved(fns: dict[str, Callable[[int], np.ndarray]], task: Task, runs: int,
                        budget: float, seeded: bool) -> dict[str, dict[str, Any]]:
    """Up to ``runs`` runs of each library, taking turns (run k of every library, then run
    k + 1, ...); a library stops once its runs so far took ``budget`` seconds. Seeded runs
    stay paired: all libraries stop together, so their mean RMSEs cover the same seeds
    (at 1M, NMF's RMSE moves by ~0.01 from seed to seed)."""
    todo = {name: Runs(fn, task, seeded) for name, fn in fns.items()}
    for k in range(runs):
        over = [k > 0 and sum(r.secs) > budget for r in todo.values()]
        if seeded and any(over):
            break
        for runs_, done in zip(todo.values(), over, strict=True):
            if not done:
                runs_.run()
    return {name: r.summary() for name, r in todo.items()}


def measure(fn: Callable[[int], np.ndarray], task: Task, runs: int, budget: float,
            seeded: bool) -> dict[str, Any]:
    """:func:`measure_interleaved` for one library."""
    return measure_interleaved({"one": fn}, task, runs, budget, seeded)["one"]


def compare_rating(algo: Algo, task: Task, runs: int, budget: float, threads: int,
                   surprise: bool = True, skip_reason: str | None = None,
                   tol: float = 0.005) -> dict[str, Any]:
    """Both libraries on one task (Surprise only when ``surprise``), their runs interleaved:
    RMSE difference (``pass_rmse``: within ``tol``), time and memory ratios; ``speedup`` is
    the ratio of the median times, ``speedup_runs`` the median of the per-round ratios."""
    row: dict[str, Any] = {"model": algo.name, "task": task.name}
    fns: dict[str, Callable[[int], np.ndarray]] = {
        "rectune": lambda s: rectune_fit_predict(algo.rectune(s), task, threads)}
    if surprise:
        fns["surprise"] = lambda s: surprise_fit_predict(algo.surprise(s), task)
    row.update(measure_interleaved(fns, task, runs, budget, algo.seeded))
    if surprise:
        s, r = row["surprise"], row["rectune"]
        row["rmse_diff"] = r["rmse"] - s["rmse"]
        row["pass_rmse"] = bool(abs(row["rmse_diff"]) <= tol)
        row["time_ratio"] = r["s"] / s["s"]
        row["speedup"] = s["s"] / r["s"]
        rounds = min(len(s["runs_s"]), len(r["runs_s"]))
        row["speedup_runs"] = median([a / b for a, b in zip(s["runs_s"][:rounds],
                                                             r["runs_s"][:rounds],
                                                             strict=True)])
        row["mem_ratio"] = r["peak_mb"] / s["peak_mb"] if s["peak_mb"] > 0 else None
    else:
        row["surprise_skipped"] = skip_reason
    show(row)
    return row


def show(row: dict[str, Any]) -> None:
    r = row["rectune"]
    msg = (f"  {row['model']:44s} rectune RMSE {r['rmse']:.4f} {r['s']:8.2f} s "
           f"{r['peak_mb']:7.0f} MiB")
    if "surprise" in row:
        s = row["surprise"]
        msg += (f" | Surprise {s['rmse']:.4f} {s['s']:8.2f} s {s['peak_mb']:7.0f} MiB"
                f" | diff {row['rmse_diff']:+.4f} x{row['speedup']:.1f}"
                f" (per round x{row['speedup_runs']:.1f})")
    else:
        msg += f" | Surprise skipped: {row.get('surprise_skipped')}"
    print(msg, flush=True)


# ------------------------------------------------------------------- timing
def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def timed(fn: Callable[[], T], repeats: int, warmup: bool = True) -> tuple[T, float, float]:
    """``(result of the last run, warm-up seconds, median seconds of the repeats)``."""
    warm = 0.0
    if warmup:
        t = time.perf_counter()
        fn()
        warm = time.perf_counter() - t
    t = time.perf_counter()
    out = fn()
    runs = [time.perf_counter() - t]
    for _ in range(repeats - 1):
        t = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t)
    return out, warm, median(runs)


# ------------------------------------------------------------------- memory
_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int:
    m = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.M)
    return int(m.group(1)) if m else 0


def _trim() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so a run starts
    from its live memory rather than reusing what an earlier run freed unseen."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def _hwm_resettable() -> bool:
    try:
        _CLEAR.write_text("5")
        return _status_kib("VmHWM") > 0
    except OSError:
        return False


MEMORY_METHOD = ("VmHWM (kernel RSS high-water mark, reset per call) minus RSS before"
                 if sys.platform.startswith("linux") and _hwm_resettable()
                 else "psutil RSS sampled every 2 ms minus RSS before")


def peak_memory(fn: Callable[[], T]) -> tuple[T, float, float]:
    """``(result, seconds, peak MiB above the resident set at the start)`` of ``fn()``."""
    _trim()
    if MEMORY_METHOD.startswith("VmHWM"):
        _CLEAR.write_text("5")
        base = _status_kib("VmRSS")
        t = time.perf_counter()
        out = fn()
        sec = time.perf_counter() - t
        return out, sec, max(_status_kib("VmHWM") - base, 0) / 1024
    import psutil  # type: ignore[import-untyped]

    proc = psutil.Process()
    base_b = proc.memory_info().rss
    peak = [base_b]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.002):
            peak[0] = max(peak[0], proc.memory_info().rss)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t = time.perf_counter()
    try:
        out = fn()
    finally:
        sec = time.perf_counter() - t
        stop.set()
        th.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    return out, sec, (peak[0] - base_b) / 2**20


# ------------------------------------------------------------- ranking runs
def ndcg10(scores: Scores, train: Interactions, truth: Interactions) -> float:
    """NDCG@10 over users with a held-out positive; candidates exclude training positives."""
    return ranking_at10(scores, train, truth)["ndcg@10"]


def ranking_at10(scores: Scores, train: Interactions, truth: Interactions) -> dict[str, float]:
    """NDCG/precision/recall/MAP@10 (binary, full ranking) from a model's score function; the
    same top-k code ranks every library's scores, so only the models differ."""
    t = truth.csr()
    users = np.flatnonzero(np.diff(t.indptr) > 0)
    top, _ = topk_from_scores(scores(users), 10, exclude=train.csr()[users])
    return ranking_metrics(top, t[users], 10, ["ndcg", "precision", "recall", "map"])


class Runner:
    """One model setting: ``fit(train) -> scores(users)`` for any library."""

    def __init__(self, name: str, fit: Callable[[Interactions], Scores]) -> None:
        self.name = name
        self.fit = fit


def rectune_runner(name: str, make: Callable[[], Recommender], threads: int = 0) -> Runner:
    def fit(train: Interactions) -> Scores:
        m = make().fit(train, options=FitOptions(n_threads=threads))
        return m._score

    return Runner(name, fit)


def implicit_runner(name: str, make: Callable[[], Any], threads: int = 0) -> Runner:
    """implicit 0.7 factor models (ALS, BPR): scores are ``U V^T`` (BPR's item bias rides in
    the last factor column, with a constant 1 on the user side)."""
    def fit(train: Interactions) -> Scores:
        m = make()
        m.num_threads = threads
        m.fit(sp.csr_matrix(train.csr()), show_progress=False)  # users x items (0.7 API)
        uf, vf = np.asarray(m.user_factors), np.asarray(m.item_factors)
        return lambda users: uf[users] @ vf.T

    return Runner(name, fit)


def implicit_models() -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    """implicit's CPU ALS and BPR classes, or None when implicit is not installed."""
    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking
    except ImportError:
        return None
    return AlternatingLeastSquares, BayesianPersonalizedRanking


def compare(runners: list[Runner], train: Interactions, test: Interactions | None,
            runs: int, *, memory: bool = False) -> list[dict[str, Any]]:
    """Warm-up fit of each, then ``runs`` interleaved rounds (a busy machine slows all alike);
    median fit seconds, ranking quality from the warm-up fit, and with ``memory`` the peak
    MiB of the first timed fit."""
    times: dict[str, list[float]] = {r.name: [] for r in runners}
    first: dict[str, float] = {}
    quality: dict[str, dict[str, float] | None] = {}
    peak: dict[str, float | None] = {r.name: None for r in runners}
    for r in runners:
        t0 = time.perf_counter()
        scores = r.fit(train)
        first[r.name] = time.perf_counter() - t0
        quality[r.name] = None if test is None else ranking_at10(scores, train, test)
    for k in range(runs):
        for r in runners:
            if memory and k == 0:
                _, sec, peak[r.name] = peak_memory(lambda r=r: r.fit(train))  # type: ignore[misc]
            else:
                t0 = time.perf_counter()
                r.fit(train)
                sec = time.perf_counter() - t0
            times[r.name].append(sec)
    rows = []
    for r in runners:
        q = quality[r.name]
        rows.append({"model": r.name, "ndcg@10": None if q is None else q["ndcg@10"],
                     "metrics": q, "fit_s_median": median(times[r.name]),
                     "fit_s_runs": times[r.name], "first_fit_s": first[r.name],
                     "peak_mb": peak[r.name]})
        shown = "   -  " if q is None else f"{q['ndcg@10']:.4f}"
        print(f"  {r.name:<44} NDCG@10 {shown}  "
              f"fit {median(times[r.name]):7.3f} s  (first {first[r.name]:.2f} s)", flush=True)
    return rows


def implicit_knn_runner(name: str, make: Callable[[], Any], threads: int = 0) -> Runner:
    """implicit's item-item recommenders: scores are ``X_u S`` (row i of ``S`` holds item i's
    kept neighbours), which is what its scorer accumulates."""
    def fit(train: Interactions) -> Scores:
        m = make()
        m.num_threads = threads
        x = sp.csr_matrix(train.csr())
        m.fit(x, show_progress=False)
        s = sp.csr_matrix(m.similarity)
        return lambda users: np.asarray((x[users] @ s).toarray())

    return Runner(name, fit)


def lightfm_runner(name: str, make: Callable[[], Any], epochs: int, threads: int = 0) -> Runner:
    """LightFM (no side features): fit on the binary user x item COO matrix, score every
    item with ``predict`` on the (user, item) grid."""
    n_threads = threads if threads > 0 else (os.cpu_count() or 1)

    def fit(train: Interactions) -> Scores:
        m = make()
        c = sp.coo_matrix(train.csr())  # LightFM's Cython wants int32 indices, float32 values
        x = sp.coo_matrix((c.data.astype(np.float32), (c.row.astype(np.int32),
                                                       c.col.astype(np.int32))), shape=c.shape)
        m.fit(x, epochs=epochs, num_threads=n_threads)
        n_items = train.n_items

        def scores(users: np.ndarray) -> np.ndarray:
            uu = np.repeat(np.asarray(users, dtype=np.int32), n_items)
            ii = np.tile(np.arange(n_items, dtype=np.int32), len(users))
            return np.asarray(m.predict(uu, ii, num_threads=n_threads)).reshape(len(users), -1)

        return scores

    return Runner(name, fit)


# ----------------------------------------------------------------- markdown
def md_table(headers: list[str], rows: list[list[Any]], right: set[int] | None = None) -> str:
    """A GitHub markdown table; columns in ``right`` (default: all but the first) align right."""
    right = set(range(1, len(headers))) if right is None else right
    rule = ["---:" if j in right else "---" for j in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def replace_block(path: Path, tag: str, key: str, text: str, order: list[str],
                  title: str) -> None:
    """Put ``text`` between ``<!-- tag:key:start -->`` and ``<!-- tag:key:end -->`` in
    ``path`` and leave everything else as it is; a new block goes after the blocks that
    precede it in ``order`` (or at the end). The file is created with ``title``."""
    doc = path.read_text() if path.is_file() else f"# {title}\n\n"
    start, end = f"<!-- {tag}:{key}:start -->", f"<!-- {tag}:{key}:end -->"
    block = f"{start}\n{text.rstrip()}\n{end}\n"
    if start in doc and end in doc:
        a, b = doc.index(start), doc.index(end) + len(end)
        doc = doc[:a] + block.rstrip("\n") + doc[b:]
    else:
        after = [doc.index(f"<!-- {tag}:{k}:end -->") for k in order[: order.index(key)]
                 if f"<!-- {tag}:{k}:end -->" in doc] if key in order else []
        before = [doc.index(f"<!-- {tag}:{k}:start -->") for k in order
                  if f"<!-- {tag}:{k}:start -->" in doc]
        if after:
            pos = doc.index("\n", max(after)) + 1
            doc = doc[:pos] + "\n" + block + doc[pos:]
        elif before:
            pos = min(before)
            doc = doc[:pos] + block + "\n" + doc[pos:]
        else:
            doc = doc.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc.rstrip("\n") + "\n")


def f_s(x: float | None) -> str:
    """Seconds with three significant figures."""
    return "" if x is None else (f"{x:.3g}" if x < 100 else f"{x:.0f}")


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "**FAIL**")


def rating_table(rows: list[dict[str, Any]], speed: bool) -> str:
    """Markdown table of :func:`compare_rating` rows (``speed``: with the 10x verdict); what
    was not run is marked in the table and explained in numbered notes under it."""
    head = ["algorithm", "Surprise RMSE", "rectune RMSE", "diff", "within 0.005",
            "Surprise s", "rectune s", "rectune/Surprise", "speed-up"]
    head += [">= 10x"] if speed else []
    head += ["Surprise MiB", "rectune MiB", "runs S/r"]
    out, notes = [], []
    for row in rows:
        r, s = row.get("rectune"), row.get("surprise")
        if r is None or s is None:
            notes.append(row.get("skipped") or row.get("surprise_skipped"))
            mark = f"not run ({len(notes)})"
            cells = [row["model"], mark, mark if r is None else f"{r['rmse']:.4f}",
                     "", "", "", "" if r is None else f_s(r["s"]), "", ""]
            cells += [""] if speed else []
            cells += ["", "" if r is None else f"{r['peak_mb']:.0f}",
                      "" if r is None else f"0/{r['n']}"]
        else:
            cells = [row["model"], f"{s['rmse']:.4f}", f"{r['rmse']:.4f}",
                     f"{row['rmse_diff']:+.4f}", verdict(row["pass_rmse"]), f_s(s["s"]),
                     f_s(r["s"]), f"{row['time_ratio']:.3f}", f"x{row['speedup']:.1f}"]
            cells += [verdict(row.get("pass_speed"))] if speed else []
            cells += [f"{s['peak_mb']:.0f}", f"{r['peak_mb']:.0f}", f"{s['n']}/{r['n']}"]
        out.append(cells)
    text = md_table(head, out)
    return text + ("\n" if notes else "") + "".join(f"- ({k}) {n}\n"
                                                    for k, n in enumerate(notes, 1))


def judge(rows: list[dict[str, Any]], vs: dict[str, str], max_ratio: float = 1.2,
          timed: set[str] | None = None) -> None:
    """Add each row's verdicts against its peer row (``vs``: row -> peer): NDCG@10 at least
    the peer's and, for the rows in ``timed`` (default: all), fit time at most
    ``max_ratio`` times the peer's; other rows get the ratio without a verdict."""
    by = {r["model"]: r for r in rows}
    for r in rows:
        peer = by.get(vs.get(r["model"], ""))
        if peer is None:
            continue
        r["peer"] = peer["model"]
        r["fit_ratio"] = r["fit_s_median"] / peer["fit_s_median"]
        if timed is None or r["model"] in timed:
            r["pass_time"] = bool(r["fit_ratio"] <= max_ratio)
        if r["ndcg@10"] is not None and peer["ndcg@10"] is not None:
            r["ndcg_diff"] = r["ndcg@10"] - peer["ndcg@10"]
            r["pass_quality"] = bool(r["ndcg_diff"] >= 0)


def ranking_rows(rows: list[dict[str, Any]], quality: bool) -> list[list[Any]]:
    """Table rows for :func:`compare` results judged by :func:`judge`."""
    out = []
    for r in rows:
        m = r.get("metrics") or {}
        cells = [r["model"]]
        if quality:
            cells += [f"{m['ndcg@10']:.4f}", f"{m['precision@10']:.4f}",
                      f"{m['recall@10']:.4f}", f"{m['map@10']:.4f}"]
        cells += [f_s(r["fit_s_median"]), f_s(r["first_fit_s"]),
                  "" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}", r.get("peer", "")]
        if quality:
            cells += ["" if "ndcg_diff" not in r else f"{r['ndcg_diff']:+.4f}",
                      verdict(r.get("pass_quality"))]
        cells += ["" if "fit_ratio" not in r else f"{r['fit_ratio']:.2f}",
                  verdict(r.get("pass_time"))]
        out.append(cells)
    return out
