"""Context features of each event: hour of day, weekday, recency and location.

Why: the same user rates differently on a Friday night than on a Monday morning,
and how long ago they last came back says how "warm" their state is. These are
properties of the *event*, not of the user or item, so they are computed from the
event's timestamp (int epoch seconds, **UTC**), its user and an optional location
column, with the same fit-on-train / OOV rules as the other encoders.

Outputs (``transform`` returns a dict, only for the enabled fields):

* ``"hour"``: int64 ``0..23`` (``dim`` 24);
* ``"weekday"``: int64 ``0..6``, Monday = 0 (1970-01-01 was a Thursday = 3; ``dim`` 7);
* ``"recency"``: float32 ``(n, 1)`` or ``(n, 2)``: ``log1p`` of the seconds since the
  user's previous event (``recency="previous"``) or the distance to a reference
  time (``recency="reference"``), standardised with training statistics; missing
  (a user's first event with no known history) -> 0, with a missing-indicator
  column when ``missing_indicator``;
* ``"location"``: int64 index, 0 = OOV/missing (a :class:`CategoricalEncoder`).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from rectune._errors import DataError, NotFittedError
from rectune.data.interactions import Interactions
from rectune.features.encoders import CategoricalEncoder, as_series, encoder_from_json

__all__ = ["ContextEncoder"]

_DAY = 86_400
Recency = Literal["previous", "reference"]


def _seconds(timestamps: Any) -> np.ndarray:
    """int64 epoch seconds from ints, whole floats or datetimes; DataError otherwise."""
    s = as_series(timestamps, "timestamp")
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        if s.isna().any():
            raise DataError(f"column 'timestamp': missing time at row "
                            f"{int(np.flatnonzero(s.isna().to_numpy())[0])}")
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        return s.to_numpy(dtype="datetime64[s]").astype(np.int64)
    x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(x)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise DataError(f"column 'timestamp': {s.iloc[r]!r} (row {r}) is not an epoch time "
                        "in seconds")
    return np.floor(x).astype(np.int64)


class ContextEncoder:
    """Encode event context; fit on training events, then transform any events.

    Parameters
    ----------
    hour, weekday:
        Emit the UTC hour of day / day of week.
    recency:
        ``"previous"`` (seconds since the same user's previous event), ``"reference"``
        (distance to ``reference_time``; default: the latest training event, i.e.
        "how old is this event at training time") or ``None`` to skip.
    location:
        Name of a context column holding a categorical location (``None``: none).
    location_min_count:
        Locations seen fewer times in training go to OOV.
    missing_indicator:
        Add a 0/1 column to ``"recency"`` marking events with no previous event.
    """

    def __init__(self, *, hour: bool = True, weekday: bool = True,
                 recency: Recency | None = "previous", reference_time: int | None = None,
                 location: str | None = None, location_min_count: int = 1,
                 missing_indicator: bool = True) -> None:
        self.hour = hour
        self.weekday = weekday
        self.recency = recency
        self.reference_time = reference_time
        self.location = location
        self.location_min_count = location_min_count
        self.missing_indicator = missing_indicator
        self.recency_mean_: float | None = None
        self.recency_std_: float | None = None
        self.reference_: int | None = None
        self.location_encoder_: CategoricalEncoder | None = None
        self.fitted_ = False

    # ------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.recency not in ("previous", "reference", None):
            raise DataError(f"recency must be 'previous', 'reference' or None, "
                            f"not {self.recency!r}")
        if self.reference_time is not None and not isinstance(self.reference_time,
                                                              int | np.integer):
            raise DataError(f"reference_time must be int epoch seconds, "
                            f"not {self.reference_time!r}")

    def _elapsed(self, t: np.ndarray, users: Any, last_seen: np.ndarray | None) -> np.ndarray:
        """Seconds since the previous event (NaN when unknown), in input order."""
        n = len(t)
        if self.recency == "reference":
            assert self.reference_ is not None
            return np.abs(t - self.reference_).astype(np.float64)
        if users is None:
            raise DataError("recency='previous' needs the users of the events (users=...)")
        u = as_series(users, "user")
        if len(u) != n:
            raise DataError(f"users has {len(u)} rows but timestamps has {n}")
        if u.isna().any():
            raise DataError(f"column 'user': missing user at row "
                            f"{int(np.flatnonzero(u.isna().to_numpy())[0])}")
        group = pd.factorize(u)[0]
        order = np.lexsort((t, group))  # stable: ties keep input order
        sg, st = group[order], t[order].astype(np.float64)
        prev = np.full(n, np.nan)
        same = sg[1:] == sg[:-1]
        prev[1:][same] = st[:-1][same]
        if last_seen is not None:
            if pd.api.types.infer_dtype(u, skipna=False) != "integer":
                raise DataError("last_seen is indexed by user index: pass int user indices")
            hist = np.asarray(last_seen, dtype=np.float64)
            su = u.to_numpy(dtype=np.int64)[order]
            first = np.isnan(prev) & (su >= 0) & (su < len(hist))
            prev[first] = hist[su[first]]
        out = np.empty(n)
        out[order] = np.maximum(st - prev, 0.0)  # history after the event -> "just now"
        return out

    def _log_recency(self, t: np.ndarray, users: Any, last_seen: np.ndarray | None
                     ) -> np.ndarray:
        return np.log1p(self._elapsed(t, users, last_seen))

    # ------------------------------------------------------------------
    def fit(self, timestamps: Any, *, users: Any = None, locations: Any = None
            ) -> ContextEncoder:
        """Learn recency scale, the reference time and the location vocabulary."""
        self._check_params()
        t = _seconds(timestamps)
        if len(t) == 0:
            raise DataError("cannot fit a ContextEncoder on zero events")
        if self.recency is not None:
            self.reference_ = (int(self.reference_time) if self.reference_time is not None
                               else int(t.max()))
            r = self._log_recency(t, users, None)
            ok = r[~np.isnan(r)]
            self.recency_mean_ = float(ok.mean()) if len(ok) else 0.0
            sd = float(ok.std()) if len(ok) else 1.0
            self.recency_std_ = sd if sd > 0 else 1.0
        if self.location is not None:
            if locations is None:
                raise DataError(f"location={self.location!r} needs locations=...")
            self.location_encoder_ = CategoricalEncoder(
                name=self.location, min_count=self.location_min_count).fit(locations)
        self.fitted_ = True
        return self

    def transform(self, timestamps: Any, *, users: Any = None, locations: Any = None,
                  last_seen: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Encode events. ``last_seen[u]`` (user index -> epoch seconds, NaN = none)
        supplies each user's last *earlier* event, e.g. :meth:`last_seen` of the
        training data, so the first test event of a user still gets a recency."""
        if not self.fitted_:
            raise NotFittedError("ContextEncoder is not fitted; call fit() on training events")
        t = _seconds(timestamps)
        out: dict[str, np.ndarray] = {}
        if self.hour:
            out["hour"] = np.mod(t, _DAY) // 3600
        if self.weekday:
            out["weekday"] = np.mod(np.floor_divide(t, _DAY) + 3, 7)
        if self.recency is not None:
            assert self.recency_mean_ is not None and self.recency_std_ is not None
            r = self._log_recency(t, users, last_seen)
            nan = np.isnan(r)
            z = np.where(nan, 0.0, (r - self.recency_mean_) / self.recency_std_)
            cols = [z, nan] if self.missing_indicator else [z]
            out["recency"] = np.column_stack(cols).astype(np.float32)
        if self.location_encoder_ is not None:
            if locations is None:
                raise DataError(f"location={self.location!r} needs locations=...")
            loc = self.location_encoder_.transform(locations)
            if len(loc) != len(t):
                raise DataError(f"locations has {len(loc)} rows but timestamps has {len(t)}")
            out["location"] = loc
        return out

    # Interactions conveniences ------------------------------------------
    def _columns(self, data: Interactions) -> tuple[np.ndarray, np.ndarray | None]:
        if data.timestamp is None:
            raise DataError("these interactions have no timestamps; context needs time")
        loc = None
        if self.location is not None:
            if self.location not in data.context:
                raise DataError(f"context column {self.location!r} not in the interactions "
                                f"(available: {sorted(data.context)})")
            loc = data.context[self.location]
        return data.timestamp, loc

    def fit_interactions(self, data: Interactions) -> ContextEncoder:
        """:meth:`fit` on training interactions (users = user indices)."""
        t, loc = self._columns(data)
        return self.fit(t, users=data.user, locations=loc)

    def transform_interactions(self, data: Interactions, *, last_seen: np.ndarray | None = None
                               ) -> dict[str, np.ndarray]:
        """:meth:`transform` for interactions (users = user indices)."""
        t, loc = self._columns(data)
        return self.transform(t, users=data.user, locations=loc, last_seen=last_seen)

    @staticmethod
    def last_seen(data: Interactions) -> np.ndarray:
        """Latest event time of each user index (float64, NaN for users without events)."""
        if data.timestamp is None:
            raise DataError("these interactions have no timestamps")
        out = np.full(data.n_users, -np.inf)
        np.maximum.at(out, data.user, data.timestamp.astype(np.float64))
        out[np.isinf(out)] = np.nan
        return out

    # introspection / persistence ----------------------------------------
    @property
    def dims(self) -> dict[str, int]:
        """Cardinality (index fields) or width (``recency``) of each output field."""
        if not self.fitted_:
            raise NotFittedError("ContextEncoder is not fitted")
        d: dict[str, int] = {}
        if self.hour:
            d["hour"] = 24
        if self.weekday:
            d["weekday"] = 7
        if self.recency is not None:
            d["recency"] = 2 if self.missing_indicator else 1
        if self.location_encoder_ is not None:
            d["location"] = self.location_encoder_.dim
        return d

    @property
    def outputs(self) -> dict[str, str]:
        """``"index"`` or ``"dense"`` per output field."""
        return {k: "dense" if k == "recency" else "index" for k in self.dims}

    def get_params(self) -> dict[str, Any]:
        return {"hour": self.hour, "weekday": self.weekday, "recency": self.recency,
                "reference_time": self.reference_time, "location": self.location,
                "location_min_count": self.location_min_count,
                "missing_indicator": self.missing_indicator}

    def to_json(self) -> dict[str, Any]:
        """``{"type", "params", "state"}`` as plain JSON data."""
        state = None
        if self.fitted_:
            state = {"recency_mean": self.recency_mean_, "recency_std": self.recency_std_,
                     "reference": self.reference_,
                     "location": (None if self.location_encoder_ is None
                                  else self.location_encoder_.to_json())}
        return {"type": "ContextEncoder", "params": self.get_params(), "state": state}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ContextEncoder:
        try:
            if obj["type"] != "ContextEncoder":
                raise DataError(f"JSON holds a {obj['type']}, not a ContextEncoder")
            enc = cls(**obj["params"])
            state = obj["state"]
        except (KeyError, TypeError) as exc:
            raise DataError(f"not a ContextEncoder JSON object: {exc}") from None
        enc._check_params()
        if state is not None:
            enc.recency_mean_ = state.get("recency_mean")
            enc.recency_std_ = state.get("recency_std")
            enc.reference_ = state.get("reference")
            loc = state.get("location")
            if loc is not None:
                le = encoder_from_json(loc)
                if not isinstance(le, CategoricalEncoder):
                    raise DataError("ContextEncoder location state is not a CategoricalEncoder")
                enc.location_encoder_ = le
            enc.fitted_ = True
        return enc

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"ContextEncoder({args}){'' if self.fitted_ else ' [unfitted]'}"
