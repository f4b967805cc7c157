"""Registers every family's fine-tuning handler (imported lazily by the engine)."""

from __future__ import annotations

from rectune.finetune.extra import register_handlers as _extra
from rectune.finetune.implicit import register_handlers as _implicit
from rectune.finetune.knn import register_handlers as _knn
from rectune.finetune.mf import register_handlers as _mf

_mf()
_knn()
_implicit()
_extra()


def _neural() -> None:
    """PyTorch models (torch is imported only once a model is fine-tuned)."""
    from rectune.finetune.neural import register_handlers

    register_handlers()


_neural()
