"""Shared fixtures: where real MovieLens data lives, and small synthetic sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def ml100k_path() -> Path | None:
    """ML-100K folder: $RECTUNE_DATA/ml-100k, else ../shared/data/ml-100k beside the repo."""
    candidates = []
    if os.environ.get("RECTUNE_DATA"):
        candidates.append(Path(os.environ["RECTUNE_DATA"]) / "ml-100k")
    candidates.append(REPO.parent / "shared" / "data" / "ml-100k")
    for c in candidates:
        if (c / "u.data").is_file():
            return c
    return None


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """Path of MovieLens 100K in GroupLens' layout (never copied into the repo)."""
    p = ml100k_path()
    if p is None:
        pytest.skip("MovieLens 100K not found: set RECTUNE_DATA to a folder holding ml-100k/")
    return p
