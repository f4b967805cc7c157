"""Rating-prediction errors: RMSE and MAE.

Predictions may be clipped to the rating scale first (``clip=(1, 5)`` on
MovieLens), as PROTOCOLS.md does and as Surprise does inside ``predict``: a
model that predicts 5.3 for a 5-star rating should not be charged for the 0.3
no user could ever have given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rectune._errors import DataError
from rectune.evaluate._validate import as_float_1d, same_length


def _errors(y_true: Any, y_pred: Any, clip: tuple[float, float] | None) -> np.ndarray:
    t = as_float_1d(y_true, "y_true")
    p = as_float_1d(y_pred, "y_pred")
    same_length(t, p, "y_true", "y_pred")
    if t.size == 0:
        raise DataError("y_true and y_pred are empty; an error over no rating is undefined")
    if clip is not None:
        lo, hi = float(clip[0]), float(clip[1])
        if not lo <= hi:
            raise DataError(f"clip must be (low, high) with low <= high, got {clip!r}")
        p = np.clip(p, lo, hi)
    return p - t


def rmse(y_true: Any, y_pred: Any, *, clip: tuple[float, float] | None = None) -> float:
    """Root mean squared error, sqrt(mean((pred - true)^2)), predictions clipped to ``clip``."""
    e = _errors(y_true, y_pred, clip)
    return float(np.sqrt(np.mean(e * e)))


def mae(y_true: Any, y_pred: Any, *, clip: tuple[float, float] | None = None) -> float:
    """Mean absolute error, mean(|pred - true|), predictions clipped to ``clip``."""
    return float(np.mean(np.abs(_errors(y_true, y_pred, clip))))


def squared_errors(
    y_true: Any, y_pred: Any, *, clip: tuple[float, float] | None = None
) -> np.ndarray:
    """Per-row squared errors: bootstrap or pair-test these (their mean is the MSE)."""
    e = _errors(y_true, y_pred, clip)
    return e * e
