"""One exception family for rectune.

Every user mistake (bad file, bad column, bad id, bad model file) raises a
subclass of :class:`RectuneError`, so callers can catch one thing. Data errors
also subclass :class:`ValueError` so generic code that expects ``ValueError``
from bad input keeps working.
"""

from __future__ import annotations


class RectuneError(Exception):
    """Base class of every error rectune raises on purpose."""


class DataError(RectuneError, ValueError):
    """Bad input data: malformed line, missing column, NaN, out-of-range, duplicates, empty."""


class UnknownIdError(DataError, KeyError):
    """A raw user or item id is not in an :class:`~rectune.data.IdMap`."""

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return str(self.args[0]) if self.args else ""


class DownloadError(DataError):
    """A download failed or its checksum did not match."""


class ChecksumError(DownloadError):
    """A file's checksum differs from the registry's; the file is not used."""


class NotFittedError(RectuneError, AttributeError):
    """A model was used before ``fit`` (or ``load``)."""


class ModelFileError(RectuneError, ValueError):
    """A saved model folder is missing, corrupt, or belongs to another class/version."""
