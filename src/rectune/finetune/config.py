"""The fine-tuning configuration: one typed object, JSON/TOML round trip.

Semantics (DESIGN.md, "Fine-tuning"): starting from a pre-trained model,
minimise

    L(D_new, θ) + λ · Σ_g w_g ‖θ_g − θ_g^pre‖²        (L2-SP)

over the rows that existed in the pre-trained model, where ``L`` is the
model's own training loss (including its usual weight decay); rows for users
and items first seen in the new data are appended and regularised with plain
L2 only. ``λ = 0`` is plain fine-tuning.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rectune._errors import RectuneError

InitPolicy = Literal["zero", "mean", "features"]


def _toml_loads(text: str) -> dict[str, Any]:
    """tomllib on Python >= 3.11, the tomli backport on 3.10."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    return tomllib.loads(text)


class TaskChange(BaseModel):
    """Change the model's task, e.g. rating -> click (CTR) for ads.

    ``head="click"`` puts a logistic head on the model's score and trains it
    with log-loss on binary labels; rows of the new data whose value is
    ``>= threshold`` are clicks (1), the others non-clicks (0), unless the data
    is already binary.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    head: Literal["click"] = "click"
    threshold: float = 4.0


class FinetuneConfig(BaseModel):
    """How to adapt a pre-trained model to new data.

    Attributes
    ----------
    learning_rate:
        SGD/Adam step; ``None`` = the pre-trained model's rate times
        ``lr_factor`` (smaller than pre-training by default).
    epochs, early_stopping, patience, valid_fraction, valid_mode, valid_seed:
        Train up to ``epochs``; with early stopping, a validation slice of the
        *new* data (PROTOCOLS.md: 10%, seed 1; ``"temporal"`` = newest 10%)
        picks the best epoch and is then *not* trained on.
    l2sp, group_weights:
        λ and the per-group weights ``w_g`` (default 1 for every group).
    transfer:
        Name patterns (fnmatch: ``user_*``, ``*_bias``) of groups to carry over
        from the pre-trained model; the others are re-initialised. ``None`` =
        all groups.
    freeze:
        Name patterns of groups that do not move (e.g. ``item_*``).
    new_rows, new_row_reg:
        Initialisation of rows for new users/items (``zero``, ``mean`` of the
        existing rows, ``features`` through a learned projection) and their
        plain L2 weight (``None`` = the model's own regularisation).
    replay, replay_seed:
        Fraction (relative to the new data's size) of old training rows
        sampled back into each fine-tuning run, against forgetting.
    feature_reg:
        λ_f of the feature-regularised term λ_f ‖p_u − W f_u‖² (needs side features).
    task:
        A task change (new head and loss), or None.
    decay:
        KNN only: multiply every earlier event's weight by this before adding the
        new events (so the update still equals a weighted refit).
    solver, cg_steps:
        Baseline/SVD only: ``"sgd"`` (epochs of SGD) or ``"als"`` (each epoch one sweep
        of anchored ridge solves, users then items, of the same L2-SP objective). ALS
        sweeps converge in a few epochs, which makes refreshing returning users with
        their whole (replayed) history cheap. ``cg_steps``: conjugate-gradient
        iterations per row solve (0 = exact; ``None`` = the family's default: 3 for
        ``solver="als"``, exact for the implicit ALS model).
    seed:
        Seed of everything random in the run.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    learning_rate: float | None = Field(default=None, gt=0)
    lr_factor: float = Field(default=0.3, gt=0, le=1)
    epochs: int = Field(default=20, ge=0)
    early_stopping: bool = True
    patience: int = Field(default=3, ge=1)
    valid_fraction: float = Field(default=0.1, ge=0, lt=1)
    valid_mode: Literal["random", "temporal"] = "random"
    valid_seed: int = 1
    l2sp: float = Field(default=0.0, ge=0)
    group_weights: dict[str, float] = Field(default_factory=dict)
    transfer: list[str] | None = None
    freeze: list[str] = Field(default_factory=list)
    new_rows: InitPolicy = "mean"
    new_row_reg: float | None = Field(default=None, ge=0)
    replay: float = Field(default=0.0, ge=0)
    replay_seed: int = 0
    feature_reg: float = Field(default=0.0, ge=0)
    task: TaskChange | None = None
    decay: float = Field(default=1.0, gt=0, le=1)
    solver: Literal["sgd", "als"] = "sgd"
    cg_steps: int | None = Field(default=None, ge=0)
    seed: int = 0
    verbose: bool = True

    @field_validator("group_weights")
    @classmethod
    def _weights_non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: w for k, w in v.items() if w < 0}
        if bad:
            raise ValueError(f"group weights must be >= 0: {bad}")
        return v

    # -- persistence -------------------------------------------------------
    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> FinetuneConfig:
        return cls.model_validate_json(text)

    @classmethod
    def from_file(cls, path: str | Path) -> FinetuneConfig:
        """Read a ``.toml`` (top level or a ``[finetune]`` table) or ``.json`` file."""
        p = Path(path)
        if not p.is_file():
            raise RectuneError(f"fine-tuning config {p} does not exist")
        try:
            if p.suffix == ".json":
                data: dict[str, Any] = json.loads(p.read_text())
            else:
                data = _toml_loads(p.read_text())
        except ValueError as exc:
            raise RectuneError(f"{p}: cannot parse ({exc})") from None
        if "finetune" in data and isinstance(data["finetune"], dict):
            data = data["finetune"]
        try:
            return cls.model_validate(data)
        except ValueError as exc:
            raise RectuneError(f"{p}: invalid fine-tuning config: {exc}") from None
