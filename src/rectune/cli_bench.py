"""Benchmark commands of the ``rectune`` CLI: ``rectune bench transfer``.

:func:`register` adds a ``bench`` group to the main Typer app. Heavy imports happen
inside the command, so ``rectune --help`` stays instant.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rectune._errors import RectuneError

__all__ = ["register"]

console = Console()
err = Console(stderr=True)

bench_app = typer.Typer(no_args_is_help=True,
                        help="Benchmark suites (transfer: fine-tuning vs scratch).")


@bench_app.command("transfer")
def transfer_cmd(
    data: Annotated[str, typer.Option(help="ml-100k (or another MovieLens name / folder) or "
                                           "'synthetic' (two-domain synthetic sets).")]
    = "ml-100k",
    out: Annotated[Path, typer.Option(help="Output folder: results.json, results.md, PNGs.")]
    = Path("runs/bench_transfer"),
    quick: Annotated[bool, typer.Option("--quick", help="CI-speed smoke run: 1 seed, fewer "
                                                        "fractions, smaller grids.")] = False,
    task: Annotated[list[str] | None, typer.Option(
        "--task", "-t", help="temporal | implicit | xdomain | cold | click | sweep (repeatable; "
                             "default all).")] = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="SVD | ItemKNN | ALS | BPR | a neural model (repeatable; "
                              "default all).")] = None,
    seeds: Annotated[int | None, typer.Option(help="Learning-curve seeds (default 5, "
                                                   "quick 1).")] = None,
    repeats: Annotated[int | None, typer.Option(help="Timed runs after the warm-up (default "
                                                     "5, quick 2).")] = None,
    correlation: Annotated[list[float] | None, typer.Option(
        "--correlation", "-c", help="Synthetic cross-domain: domain correlation(s) "
                                    "(default 0, 0.5, 0.9).")] = None,
    fraction: Annotated[list[float] | None, typer.Option(
        "--fraction", "-f", help="Cross-domain target fraction(s) in (0, 1] (repeatable; "
                                 "default 0.01 0.05 0.1 0.25 0.5 1).")] = None,
    drift: Annotated[float, typer.Option(help="Synthetic temporal data: taste drift.")] = 1.0,
    ratings: Annotated[int, typer.Option(help="Synthetic data: number of ratings.")]
    = 100_000,
    plots: Annotated[bool, typer.Option(help="Write PNG plots.")] = True,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
) -> None:
    """Fine-tuning vs scratch, retraining and the stale model on four transfer tasks."""
    from rectune.bench.report import verdict_sentences
    from rectune.bench.transfer import DEFAULT_CORRELATIONS, TASKS, run_transfer

    command = shlex.join(["rectune", *sys.argv[1:]]) if sys.argv else None
    try:
        source: object = "synthetic"
        if data != "synthetic":
            from rectune.cli import load_source

            source = load_source(data)
        results = run_transfer(
            source,  # type: ignore[arg-type]
            out=out, quick=quick, tasks=tuple(task) if task else TASKS,
            models=tuple(model) if model else None, seeds=seeds, repeats=repeats,
            correlations=tuple(correlation) if correlation else DEFAULT_CORRELATIONS,
            drift=drift, synthetic_ratings=ratings, progress=progress, plots=plots,
            fractions=tuple(fraction) if fraction else None, command=command)
    except RectuneError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=2) from None
    for line in verdict_sentences(results):
        console.print(f"- {line}", markup=False)
    console.print(f"wrote {out / 'results.json'}, {out / 'results.md'} and the plots")


def register(app: typer.Typer) -> None:
    """Add the ``bench`` group (``rectune bench transfer``) to ``app``."""
    app.add_typer(bench_app, name="bench")
