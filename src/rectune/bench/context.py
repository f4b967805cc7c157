"""Run-wide settings of the transfer suite and its rich progress display."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rectune.bench.arms import ModelSpec

__all__ = ["FRACTIONS", "QUICK_FRACTIONS", "Context"]

#: target-train fractions of the cross-domain learning curves (issue: 1, 5, 10, 25, 50, 100%)
FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
QUICK_FRACTIONS: tuple[float, ...] = (0.05, 0.25, 1.0)


@dataclass
class Context:
    """What every task needs besides its data.

    ``seeds``: learning-curve seeds (nested subsets per seed; seed 0 is also the seed
    of single-run tasks). ``repeats``: timed runs after the warm-up (PROTOCOLS.md: 5).
    ``n_boot``: bootstrap replicates of the paired intervals. ``advance`` moves the
    progress display (a no-op when there is none).
    """

    specs: dict[str, ModelSpec]
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    fractions: tuple[float, ...] = FRACTIONS
    cold_k: tuple[int, ...] = (0, 1, 3, 5)
    click_fraction: float = 0.1
    click_fractions: tuple[float, ...] = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
    repeats: int = 5
    n_boot: int = 2000
    quick: bool = False
    advance: Callable[[str], None] = field(default=lambda msg: None)
    log: list[str] = field(default_factory=list)

    def say(self, msg: str) -> None:
        """Record a line for the report and show it on the progress display."""
        self.log.append(msg)
        self.advance(msg)

    def rating_specs(self) -> dict[str, ModelSpec]:
        return {k: s for k, s in self.specs.items() if not s.implicit and s.rating}

    def implicit_specs(self) -> dict[str, ModelSpec]:
        return {k: s for k, s in self.specs.items() if s.implicit}

    def describe(self) -> dict[str, Any]:
        return {"seeds": list(self.seeds), "fractions": list(self.fractions),
                "cold_k": list(self.cold_k), "click_fraction": self.click_fraction,
                "click_fractions": list(self.click_fractions), "repeats": self.repeats,
                "n_boot": self.n_boot, "quick": self.quick,
                "models": {k: s.describe() for k, s in self.specs.items()}}
