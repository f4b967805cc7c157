"""rectune: pre-train, fine-tune, evaluate and serve recommendation models."""

from __future__ import annotations

from rectune._errors import (
    ChecksumError,
    DataError,
    DownloadError,
    ModelFileError,
    NotFittedError,
    RectuneError,
    UnknownIdError,
)

__version__ = "0.1.0"

__all__ = [
    "ChecksumError",
    "DataError",
    "DownloadError",
    "ModelFileError",
    "NotFittedError",
    "RectuneError",
    "UnknownIdError",
    "__version__",
]
