"""Fine-tuning: adapt a pre-trained model to new data (DESIGN.md, "Fine-tuning")."""

from __future__ import annotations

from rectune.finetune.auto import AutoResult, apply_choice, auto
from rectune.finetune.capabilities import CAPABILITIES, capability_table, supports
from rectune.finetune.config import FinetuneConfig, TaskChange
from rectune.finetune.delta import delta_size, load_delta, save_delta
from rectune.finetune.diagnose import transferability
from rectune.finetune.engine import finetune, model_checksum

__all__ = [
    "CAPABILITIES",
    "AutoResult",
    "FinetuneConfig",
    "TaskChange",
    "apply_choice",
    "auto",
    "capability_table",
    "delta_size",
    "finetune",
    "load_delta",
    "model_checksum",
    "save_delta",
    "supports",
    "transferability",
]
