"""Fine-tuning: adapt a pre-trained model to new data (DESIGN.md, "Fine-tuning")."""

from __future__ import annotations

from rectune.finetune.capabilities import CAPABILITIES, capability_table, supports
from rectune.finetune.config import FinetuneConfig, TaskChange
from rectune.finetune.engine import finetune, model_checksum

__all__ = [
    "CAPABILITIES",
    "FinetuneConfig",
    "TaskChange",
    "capability_table",
    "finetune",
    "model_checksum",
    "supports",
]
