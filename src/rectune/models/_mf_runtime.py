"""The small runtime that drives the MF kernels: threads, progress, epochs, interrupts.

Split from :mod:`rectune.models._mf_kernels` (which re-exports every name here) so
each file reads in one sitting. :class:`ChunkRunner` runs a ``nogil`` kernel over
``[start, end)`` ranges in threads (lock-free "Hogwild" SGD when the ranges share
parameter rows, see the kernels' module notes), :func:`resolve_threads` keeps small
fits on one thread (bit-reproducible), and :func:`run_epochs` is the loop every
epoch-trained model and fine-tuning run shares: progress with epoch, loss and ETA,
early stopping on a validation RMSE with the best epoch's parameters restored, and a
clean Ctrl-C (the runner waits for every thread, so parameters are from whole epochs).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Any

import numpy as np

#: below this many training ratings a fit always runs on one thread (bit-reproducible)
PARALLEL_MIN_RATINGS = 200_000


def resolve_threads(requested: int, n_ratings: int) -> int:
    """Threads for a fit: 1 when asked or when the data is small, else as asked (0 = all cores)."""
    if requested == 1 or n_ratings < PARALLEL_MIN_RATINGS:
        return 1
    if requested <= 0:
        return max(1, os.cpu_count() or 1)
    return int(requested)


def even_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ``[start, end)`` ranges covering ``0..n``."""
    cuts = np.linspace(0, n, max(1, parts) + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in itertools.pairwise(cuts)]


def weighted_bounds(ptr: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Split rows ``0..len(ptr)-1`` so each range holds about the same ``ptr`` mass.

    ``ptr`` is a CSR-style offset array (rows ``b`` span ``ptr[b]..ptr[b+1]``).
    """
    n_rows = len(ptr) - 1
    if parts <= 1 or n_rows <= 1:
        return [(0, n_rows)]
    targets = np.linspace(0, ptr[-1], parts + 1)[1:-1]
    cuts = np.concatenate([[0], np.searchsorted(ptr, targets), [n_rows]]).astype(np.int64)
    cuts = np.maximum.accumulate(np.clip(cuts, 0, n_rows))
    return [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]


class ChunkRunner:
    """Runs a ``nogil`` kernel ``fn(start, end, *args) -> float`` over ranges in threads.

    The calling thread runs the first range; results are summed. If anything
    (including KeyboardInterrupt) interrupts the caller, every thread is waited
    for before the exception propagates, so no kernel still writes parameters.
    """

    def __init__(self, n_threads: int) -> None:
        self.n_threads = max(1, int(n_threads))
        self._pool = ThreadPoolExecutor(self.n_threads - 1) if self.n_threads > 1 else None

    def __enter__(self) -> ChunkRunner:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def run(self, fn: Callable[..., float], bounds: Sequence[tuple[int, int]],
            *args: Any) -> float:
        """``sum(fn(start, end, *args))`` over ``bounds``, one range per thread."""
        return self.run_each(fn, [(s, e, *args) for s, e in bounds])

    def run_pulled(self, fn: Callable[..., float], bounds: Sequence[tuple[int, int]],
                   *args: Any) -> float:
        """``sum(fn(start, end, *args))`` over ``bounds``, each range run by whichever thread
        is free next.

        Why: with one fixed range per thread an epoch lasts as long as its slowest
        thread, and on a shared machine one thread is often descheduled for a while;
        with a few ranges per thread the others take up its share. (For Hogwild
        kernels only: which thread runs which range varies from run to run.) An
        interrupt of the caller waits for the other threads, which first run the
        ranges left (a kernel call itself is never interrupted).
        """
        if self._pool is None or len(bounds) == 1:
            return float(sum(fn(s, e, *args) for s, e in bounds))
        todo = iter(bounds)
        lock = threading.Lock()

        def work() -> float:
            total = 0.0
            while True:
                with lock:
                    nxt = next(todo, None)
                if nxt is None:
                    return total
                total += float(fn(nxt[0], nxt[1], *args))

        futures = [self._pool.submit(work) for _ in range(self.n_threads - 1)]
        try:
            total = work()
            return total + float(sum(f.result() for f in futures))
        except BaseException:
            wait(futures)
            raise

    def run_each(self, fn: Callable[..., float], calls: Sequence[tuple[Any, ...]]) -> float:
        """``sum(fn(*call))`` over ``calls`` (per-range arguments), one call per thread."""
        if self._pool is None or len(calls) == 1:
            return float(sum(fn(*c) for c in calls))
        futures: list[Future[float]] = [self._pool.submit(fn, *c) for c in calls[1:]]
        try:
            total = float(fn(*calls[0]))
            return total + float(sum(f.result() for f in futures))
        except BaseException:
            wait(futures)
            raise


class EpochProgress:
    """Per-epoch rich progress bar (epoch m/n, metrics, ETA); a no-op when disabled."""

    def __init__(self, enabled: bool, label: str, n_epochs: int) -> None:
        self.enabled = enabled
        self.label = label
        self.n_epochs = n_epochs
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> EpochProgress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("{task.fields[metrics]}"),
                                      TimeElapsedColumn(), TimeRemainingColumn())
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.n_epochs, metrics="")
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def epoch_done(self, metrics: dict[str, float]) -> None:
        if self._progress is not None:
            text = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            self._progress.update(self._task, advance=1, metrics=text)


def run_epochs(
    hist: dict[str, Any],
    n_epochs: int,
    step: Callable[[int], float],
    *,
    n_ratings: int,
    label: str,
    progress: bool,
    valid_rmse: Callable[[], float] | None = None,
    patience: int | None = None,
    snapshot: Callable[[], Any] | None = None,
    restore: Callable[[Any], None] | None = None,
) -> None:
    """Drive ``n_epochs`` calls of ``step(epoch) -> SSE`` with progress and early stopping.

    Fills ``hist`` in place (so a caller still has it after a Ctrl-C):
    ``train_rmse`` (running RMSE of the errors each epoch saw), ``valid_rmse`` when
    ``valid_rmse`` is given, ``epochs`` run, ``best_epoch`` (1-based; with early
    stopping the parameters are restored to it), ``seconds`` and, after a
    KeyboardInterrupt (which is re-raised), ``interrupted``. ``patience`` epochs
    without a lower validation RMSE stop training.
    """
    hist.update(train_rmse=[], epochs=0, best_epoch=0, seconds=0.0)
    if valid_rmse is not None:
        hist["valid_rmse"] = []
    best, best_state, since = math.inf, None, 0
    t0 = time.perf_counter()
    try:
        with EpochProgress(progress, label, n_epochs) as bar:
            for epoch in range(n_epochs):
                sse = step(epoch)
                metrics = {"train RMSE": math.sqrt(sse / max(n_ratings, 1))}
                hist["train_rmse"].append(metrics["train RMSE"])
                hist["epochs"] = hist["best_epoch"] = epoch + 1
                if valid_rmse is not None:
                    v = valid_rmse()
                    hist["valid_rmse"].append(v)
                    metrics["valid RMSE"] = v
                bar.epoch_done(metrics)
                if patience is None or valid_rmse is None:
                    continue
                if v < best - 1e-7:
                    best, since = v, 0
                    best_state = snapshot() if snapshot is not None else None
                    hist["best_epoch"] = epoch + 1
                else:
                    since += 1
                    hist["best_epoch"] = epoch + 1 - since
                    if since >= patience:
                        break
        if best_state is not None and restore is not None and hist["best_epoch"] < hist["epochs"]:
            restore(best_state)
    except KeyboardInterrupt:
        hist["interrupted"] = True
        hist["best_epoch"] = hist["epochs"]
        raise
    finally:
        hist["seconds"] = time.perf_counter() - t0
