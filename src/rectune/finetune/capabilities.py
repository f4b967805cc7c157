"""The published family × capability table, and the check that enforces it.

One dict is the source of truth: the engine refuses a configuration that asks
a model for something its family cannot do, with a message that says what
*is* possible, instead of silently ignoring the request.
"""

from __future__ import annotations

from typing import Any

from rectune._errors import RectuneError
from rectune.finetune.config import FinetuneConfig

CAPABILITIES_ORDER = ("finetune", "l2sp", "freeze", "growth", "task_change", "fold_in",
                      "replay", "feature_reg", "als_solver")

#: class name -> capabilities it supports (see :func:`capability_table`)
CAPABILITIES: dict[str, frozenset[str]] = {
    "Baseline": frozenset({"finetune", "l2sp", "freeze", "growth", "task_change", "fold_in",
                           "replay", "feature_reg", "als_solver"}),
    "SVD": frozenset({"finetune", "l2sp", "freeze", "growth", "task_change", "fold_in",
                      "replay", "feature_reg", "als_solver"}),
    # closed-form implicit models: anchored solves (ALS), anchored closed form (EASE)
    "ALS": frozenset({"finetune", "l2sp", "freeze", "growth", "fold_in", "replay"}),
    "EASE": frozenset({"finetune", "l2sp", "growth"}),
    # KNN: exact sufficient-statistics updates (new ids grow the model; decay optional)
    "UserKNN": frozenset({"finetune", "growth"}),
    # not (yet) fine-tunable: refit them, or fine-tune a supported family instead
    "Popularity": frozenset(),
    "RP3beta": frozenset(),
    # SGD / multiplicative updates on the new data with a proximal L2-SP anchor
    "SVDpp": frozenset({"finetune", "l2sp", "freeze", "growth", "replay"}),
    "NMF": frozenset({"finetune", "l2sp", "freeze", "growth", "replay"}),
    "BPR": frozenset({"finetune", "l2sp", "freeze", "growth", "replay"}),
    "ClickMF": frozenset(),
    "ItemKNN": frozenset({"finetune", "growth"}),
    # PyTorch models: the model's own loss + L2-SP penalty through the shared Trainer
    "GMF": frozenset({"finetune", "l2sp", "freeze", "growth", "replay"}),
    "MLP": frozenset({"finetune", "l2sp", "freeze", "growth", "replay"}),
    "NeuMF": frozenset({"finetune", "l2sp", "freeze", "growth", "replay"}),
    "DeepFM": frozenset({"finetune", "l2sp", "freeze", "growth", "replay"}),
    # sequence models train on each user's stored history extended by the new events
    # (old events are already replayed as context, so no separate replay)
    "Caser": frozenset({"finetune", "l2sp", "freeze", "growth"}),
    "GRU4Rec": frozenset({"finetune", "l2sp", "freeze", "growth"}),
    "ImplicitItemKNN": frozenset({"finetune", "growth"}),
}

_NOTES = {
    "finetune": "fine-tuning on new data at all",
    "l2sp": "λ‖θ − θ_pre‖² towards the pre-trained parameters",
    "freeze": "freeze parameter groups by name pattern",
    "growth": "append rows for users/items first seen in the new data",
    "task_change": "new head and loss (rating -> click)",
    "fold_in": "solve a user's factors from their history, no training run",
    "replay": "mix a sample of old data into fine-tuning",
    "feature_reg": "λ_f‖p_u − W f_u‖² towards a learned projection of side features; "
                   "new rows start at W f_u (rectune.finetune.features)",
    "als_solver": "solver='als': anchored ridge solves per row (users, then items) of the "
                  "same L2-SP objective instead of SGD epochs",
}


def supports(model: Any, capability: str) -> bool:
    """Whether ``model`` (instance or class) supports ``capability``."""
    cls = model if isinstance(model, type) else type(model)
    for klass in cls.__mro__:
        if klass.__name__ in CAPABILITIES:
            return capability in CAPABILITIES[klass.__name__]
    return False


def check_config(model: Any, cfg: FinetuneConfig) -> None:
    """Raise a clear error when ``cfg`` asks ``model`` for an unsupported capability."""
    wanted = {"finetune"}
    if cfg.l2sp > 0:
        wanted.add("l2sp")
    if cfg.freeze:
        wanted.add("freeze")
    if cfg.task is not None:
        wanted.add("task_change")
    if cfg.replay > 0:
        wanted.add("replay")
    if cfg.feature_reg > 0 or cfg.new_rows == "features":
        wanted.add("feature_reg")
    if cfg.solver == "als":
        wanted.add("als_solver")
    missing = sorted(c for c in wanted if not supports(model, c))
    if missing:
        name = type(model).__name__
        have = sorted(c for c in CAPABILITIES_ORDER if supports(model, c))
        raise RectuneError(f"{name} does not support {', '.join(missing)}; it supports: "
                           f"{', '.join(have) or 'nothing'} (rectune.finetune.capability_table())")


def capability_table(fmt: str = "markdown") -> str | dict[str, dict[str, bool]]:
    """The table as markdown (``fmt="markdown"``) or a dict (``fmt="dict"``)."""
    rows = {name: {c: c in caps for c in CAPABILITIES_ORDER}
            for name, caps in sorted(CAPABILITIES.items())}
    if fmt == "dict":
        return rows
    if fmt != "markdown":
        raise RectuneError(f"fmt must be 'markdown' or 'dict', not {fmt!r}")
    head = "| model | " + " | ".join(CAPABILITIES_ORDER) + " |"
    sep = "|---|" + "---|" * len(CAPABILITIES_ORDER)
    body = ["| " + name + " | " + " | ".join("yes" if ok else "—" for ok in row.values()) + " |"
            for name, row in rows.items()]
    legend = [f"- **{c}**: {_NOTES[c]}" for c in CAPABILITIES_ORDER]
    return "\n".join([head, sep, *body, "", *legend])
