"""Benchmark suites: ``rectune bench transfer`` (fine-tuning vs scratch, retraining and the
stale model on four transfer tasks; see :mod:`rectune.bench.transfer`)."""

from __future__ import annotations

from rectune.bench.transfer import TASKS, run_transfer

__all__ = ["TASKS", "run_transfer"]
