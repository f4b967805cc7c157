"""Loader speed: rectune building validated Interactions vs a bare pandas read of the same file.

Two synthetic files are written to a temporary folder (synthetic values, not MovieLens data):

* an ML-1M-format ``ratings.dat`` (``::``-separated, 1M rows by default, rows grouped by
  user like the real file) plus small synthetic ``users.dat``/``movies.dat`` so that
  :func:`rectune.data.load_movielens` accepts the folder;
* a 10M-row ``ratings.csv`` (``userId,movieId,rating,timestamp``, rows in random order,
  the hardest case for the duplicate check).

Each contender runs once as a warm-up, then ``--repeats`` times interleaved with its
baseline (the order alternates), so that a busy machine slows both alike. The table
reports median seconds, the ratio of the medians, the median of the per-pair ratios and
the ratio of median CPU seconds (all threads). The baseline is the fastest bare read of
the same file with pandas' C parser (``sep=":"`` keeping the even columns for ``.dat``;
plain ``read_csv`` for ``.csv``); the common ``sep="::", engine="python"`` idiom and the
pyarrow engine are shown for reference. Two more rows isolate building the Interactions:
the same ``ratings.dat`` alone in a folder, loaded as the ML-10M layout (no movies/users
files to read), and ``read_interactions`` with its pyarrow fast path switched off (the
pandas parser path every fallback takes).
``--breakdown`` times the stages of the fast path on the 10M-row file.

Run: ``python benchmarks/bench_load.py [--rows-dat N] [--rows-csv N] [--repeats 5]
[--repeats-large 3] [--breakdown] [--markdown out.md]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _unique_pairs(rng: np.random.Generator, n: int, n_users: int, n_items: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct (user, item) pairs with 1-based ids, in random order."""
    keys = np.unique(rng.integers(0, n_users * n_items, int(n * 1.05) + 1000))
    if len(keys) < n:
        raise SystemExit(f"cannot draw {n} distinct pairs from {n_users} x {n_items}")
    keys = rng.permutation(rng.choice(keys, n, replace=False))
    return keys // n_items + 1, keys % n_items + 1


def make_dat(folder: Path, n: int, rng: np.random.Generator) -> Path:
    """ML-1M-format ratings.dat (+ users.dat, movies.dat) with synthetic values."""
    n_users, n_items = 6040, 3952
    u, i = _unique_pairs(rng, n, n_users, n_items)
    order = np.argsort(u, kind="stable")  # grouped by user, like the real file
    df = pd.DataFrame({"u": u[order], "a": None, "i": i[order], "b": None,
                       "r": rng.integers(1, 6, n), "c": None,
                       "t": rng.integers(956_703_932, 1_046_454_590, n)})
    df.to_csv(folder / "ratings.dat", sep=":", header=False, index=False, na_rep="")
    users = pd.DataFrame({"u": np.arange(1, n_users + 1), "a": None,
                          "g": rng.choice(["M", "F"], n_users), "b": None,
                          "age": rng.choice([1, 18, 25, 35, 45, 50, 56], n_users), "c": None,
                          "occ": rng.integers(0, 21, n_users), "d": None,
                          "zip": [f"{z:05d}" for z in rng.integers(0, 99_999, n_users)]})
    users.to_csv(folder / "users.dat", sep=":", header=False, index=False, na_rep="")
    titles = [f"{k}::Movie {k} (19{k % 100:02d})::Drama|Comedy" for k in range(1, n_items + 1)]
    (folder / "movies.dat").write_text("\n".join(titles) + "\n", encoding="latin-1")
    return folder / "ratings.dat"


def make_csv(path: Path, n: int, rng: np.random.Generator) -> Path:
    """A ratings.csv with ML-10M-like dimensions and half-star ratings, in random row order."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    u, i = _unique_pairs(rng, n, 71_567, 10_681)
    table = pa.table({"userId": u, "movieId": i, "rating": rng.integers(1, 11, n) / 2,
                      "timestamp": rng.integers(789_652_009, 1_231_131_736, n)})
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))
    return path


def _time(fn: Callable[[], Any]) -> float:
    return _clock(fn)[0]


def _clock(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call; CPU time sums all threads of this process."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


Result = tuple[float, float, float, float]


def compare(loader: Callable[[], Any], baseline: Callable[[], Any], repeats: int) -> Result:
    """Median wall seconds of loader and baseline, median per-pair ratio, CPU ratio.

    One warm-up each (numba's kernel load, arrow's thread pool), then interleaved runs
    whose order alternates, so that a busy machine slows both alike.
    """
    loader()
    baseline()
    a: list[tuple[float, float]] = []
    b: list[tuple[float, float]] = []
    for k in range(repeats):
        if k % 2:
            b.append(_clock(baseline))
            a.append(_clock(loader))
        else:
            a.append(_clock(loader))
            b.append(_clock(baseline))
    pair = statistics.median(x[0] / y[0] for x, y in zip(a, b, strict=True))
    cpu = statistics.median(c for _, c in a) / statistics.median(c for _, c in b)
    return statistics.median(w for w, _ in a), statistics.median(w for w, _ in b), pair, cpu


def breakdown(csv: Path) -> list[tuple[str, float]]:
    """Seconds spent in the stages of ``read_interactions`` on the 10M-row CSV (one run each).

    Each stage runs with only its inputs alive: the memory a stage allocates is part
    of its cost, and touching fresh memory is what varies most on a shared machine.
    """
    from rectune.data import Interactions, readers

    cols = ["userId", "movieId", "rating", "timestamp"]
    out = [("read_interactions (total)",
            _time(lambda: readers.read_interactions(csv, user="userId", item="movieId")))]
    out.append(("quote scan (mmap + memchr)", _time(lambda: readers._quoted_rows(csv))))
    tables: list[Any] = []
    out.append(("pyarrow.csv parse, 2 threads, + equivalence checks",
                _time(lambda: tables.append(readers._arrow_table(
                    csv, sep=",", header=True, names=None, wanted=cols, text_cols=[],
                    encoding="utf-8")))))
    out.append(("interactions_from_arrow (encode, check, build)",
                _time(lambda: readers.interactions_from_arrow(
                    tables[0], readers.RowOrigin(str(csv), first_line=2), user="userId",
                    item="movieId", value="rating", timestamp="timestamp"))))
    out += _encode_stages(tables.pop(), cols[:2])
    df = pd.read_csv(csv)
    out.append(("Interactions.from_frame on the pandas frame (fallback path)",
                _time(lambda: Interactions.from_frame(df, user="userId", item="movieId"))))
    return out


def _encode_stages(table: Any, ids: list[str]) -> list[tuple[str, float]]:
    """The id encoding and duplicate check inside ``interactions_from_arrow``, timed apart."""
    from rectune.data import IdMap
    from rectune.data.interactions import _has_duplicate_pair

    chunks = [[c.to_numpy() for c in table[name].chunks] for name in ids]
    codes: list[Any] = []
    out = [("  of which IdMap._factorize_ints (dense table), users + items",
            _time(lambda: codes.extend(IdMap._factorize_ints(c) for c in chunks)))]
    (_, u), (imap, i) = codes
    out.append(("  of which duplicate check, random row order (compiled counting scan)",
                _time(lambda: _has_duplicate_pair(u, i, len(imap)))))
    order = np.lexsort((i, u))
    su, si = u[order], i[order]
    out.append(("duplicate check, rows in (user, item) order as in ML-20M/25M",
                _time(lambda: _has_duplicate_pair(su, si, len(imap)))))
    return out


def _pandas_path(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` run with read_interactions' pyarrow fast path switched off."""
    from rectune.data import readers

    def run() -> Any:
        saved = readers._fast_interactions
        readers._fast_interactions = lambda *a, **k: None
        try:
            return fn()
        finally:
            readers._fast_interactions = saved
    return run


def main(argv: list[str] | None = None) -> None:
    from rectune.data.movielens import load_movielens
    from rectune.data.readers import read_interactions

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows-dat", type=int, default=1_000_000)
    ap.add_argument("--rows-csv", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--repeats-large", type=int, default=3)
    ap.add_argument("--breakdown", action="store_true")
    ap.add_argument("--markdown", type=Path, default=None, help="write the table to this file")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="write the synthetic files here (reused when present) instead of a "
                         "temporary folder")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    rows: list[tuple[str, str, Result]] = []
    notes: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="rectune-bench-") as tmp:
        work = args.workdir or Path(tmp)
        folder = work / f"ml-1m-{args.rows_dat}"
        dat = folder / "ratings.dat"
        if not dat.exists():
            folder.mkdir(parents=True, exist_ok=True)
            make_dat(folder, args.rows_dat, rng)
        res = compare(lambda: load_movielens("ml-1m", path=folder),
                      lambda: pd.read_csv(dat, sep=":", header=None, usecols=[0, 2, 4, 6]),
                      args.repeats)
        rows.append((f"ML-1M ratings.dat, {args.rows_dat:,} rows",
                     'load_movielens("ml-1m", path=...) vs read_csv(sep=":", usecols=[0,2,4,6])',
                     res))
        alone = work / f"ml-10m-layout-{args.rows_dat}"  # ratings.dat only: Interactions only
        if not (alone / "ratings.dat").exists():
            alone.mkdir(parents=True, exist_ok=True)
            (alone / "ratings.dat").write_bytes(dat.read_bytes())
        res = compare(lambda: load_movielens("ml-10m", path=alone),
                      lambda: pd.read_csv(dat, sep=":", header=None, usecols=[0, 2, 4, 6]),
                      args.repeats)
        rows.append((f"same ratings.dat alone, {args.rows_dat:,} rows",
                     'load_movielens("ml-10m", path=<folder with only ratings.dat>): '
                     "Interactions only, no movies/users", res))
        notes.append(("ratings.dat with read_csv(sep='::', engine='python')",
                      _time(lambda: pd.read_csv(dat, sep="::", engine="python", header=None))))
        csv = work / f"ratings-{args.rows_csv}.csv"
        if not csv.exists():
            make_csv(csv, args.rows_csv, np.random.default_rng(1))
        read = lambda: read_interactions(csv, user="userId", item="movieId")  # noqa: E731
        res = compare(read, lambda: pd.read_csv(csv), args.repeats_large)
        rows.append((f"ratings.csv, {args.rows_csv:,} rows",
                     'read_interactions(..., user="userId", item="movieId") vs read_csv(path)',
                     res))
        res = compare(_pandas_path(read), lambda: pd.read_csv(csv), args.repeats_large)
        rows.append((f"ratings.csv, {args.rows_csv:,} rows, pandas parser path",
                     "same, pyarrow fast path off (the path every fallback takes)", res))
        notes.append(("ratings.csv with read_csv(engine='pyarrow')",
                      _time(lambda: pd.read_csv(csv, engine="pyarrow"))))
        stages = breakdown(csv) if args.breakdown else []

    lines = ["| file | rectune vs baseline | rectune (s) | baseline (s) | ratio | pair ratio "
             "| CPU ratio |", "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {f} | `{what}` | {lo:.3f} | {ba:.3f} | {lo / ba:.2f}x | {pair:.2f}x | "
              f"{cpu:.2f}x |" for f, what, (lo, ba, pair, cpu) in rows]
    lines += ["", "| reference (one run) | seconds |", "|---|---:|"]
    lines += [f"| {what} | {s:.3f} |" for what, s in notes]
    if stages:
        lines += ["", f"| stage, {args.rows_csv:,} rows (one run each) | seconds |", "|---|---:|"]
        lines += [f"| {what} | {s:.3f} |" for what, s in stages]
    stamp = (f"{dt.date.today().isoformat()}, Python {platform.python_version()}, "
             f"pandas {pd.__version__}, numpy {np.__version__}, {platform.machine()}, "
             f"median of {args.repeats} runs ({args.rows_dat:,} rows) / {args.repeats_large} "
             f"runs ({args.rows_csv:,} rows) after a warm-up")
    text = "\n".join(lines) + f"\n\n{stamp}\n"
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
