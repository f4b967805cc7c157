"""Feature tables: named encoders over a DataFrame keyed by raw id, aligned to an IdMap.

Why a table object: a model that reads side features needs the *same* encoding
at fit, fine-tune, evaluation and serving time, row-aligned with its user or item
:class:`~rectune.data.IdMap`. :class:`FeatureTable` holds the fitted encoders of
every field (saved with the model as JSON), and :meth:`FeatureTable.transform`
returns arrays whose row ``j`` describes id ``ids[j]`` — ids missing from the
feature DataFrame (a brand-new user with no profile yet) get the OOV/missing
row instead of an error, so cold start degrades gracefully.

A spec names each field and how to encode it::

    FeatureTable({
        "gender": "categorical",
        "occupation": {"kind": "categorical", "min_count": 5},
        "age": {"kind": "numeric", "mode": "bucket", "edges": [18, 25, 35, 45, 50, 56]},
        "genres": "multi",
        "decade": {"kind": "categorical", "column": "year_bucket"},
    })

``kind`` is ``"categorical"``, ``"numeric"`` or ``"multi"``; ``column`` defaults to
the field name; the remaining keys are the encoder's parameters. An (unfitted)
encoder instance is accepted in place of a spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rectune._errors import DataError, NotFittedError
from rectune.data.idmap import IdMap
from rectune.features.encoders import (
    CategoricalEncoder,
    Encoder,
    MultiHotEncoder,
    NumericEncoder,
    encoder_from_json,
)

__all__ = ["EncodedFeatures", "FeatureTable"]

_KINDS: dict[str, type[Encoder]] = {
    "categorical": CategoricalEncoder,
    "numeric": NumericEncoder,
    "multi": MultiHotEncoder,
}
_FORMAT_VERSION = 1


def _field(name: str, spec: Any) -> tuple[str, Encoder]:
    """``(source column, fresh unfitted encoder)`` for one spec entry."""
    if isinstance(spec, Encoder):
        obj = spec.to_json()
        obj["state"] = None
        if obj["params"].get("name") in (None, "values"):
            obj["params"]["name"] = name
        return name, encoder_from_json(obj)
    if isinstance(spec, str):
        kind, opts = spec, {}
    elif isinstance(spec, Mapping):
        opts = dict(spec)
        if "kind" not in opts:
            raise DataError(f"feature {name!r}: spec {spec!r} has no 'kind'")
        kind = opts.pop("kind")
    else:
        raise DataError(f"feature {name!r}: spec must be a kind name, a dict or an encoder, "
                        f"not {type(spec).__name__}")
    if kind not in _KINDS:
        raise DataError(f"feature {name!r}: kind must be one of {sorted(_KINDS)}, not {kind!r}")
    column = opts.pop("column", name)
    if not isinstance(column, str):
        raise DataError(f"feature {name!r}: column must be a string, not {column!r}")
    cls = _KINDS[kind]
    allowed = set(cls._PARAMS) - {"name"}
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise DataError(f"feature {name!r}: unknown option(s) {unknown} for kind {kind!r}; "
                        f"allowed: {sorted(allowed | {'column'})}")
    return column, cast(Encoder, cast(Any, cls)(name=column, **opts))


def _plain(x: Any) -> Any:
    """numpy scalars -> Python scalars, so messages read ``10``, not ``np.int64(10)``."""
    return x.item() if isinstance(x, np.generic) else x


def _check_frame(df: Any) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"feature table must be a pandas DataFrame indexed by raw id, "
                        f"not {type(df).__name__}")
    if not df.index.is_unique:
        dup = df.index[df.index.duplicated()][0]
        dup = _plain(dup)
        raise DataError(f"feature table index has duplicate id {dup!r}; one row per id")
    return df


def _id_kind(values: Any) -> str:
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred in ("integer", "floating", "mixed-integer-float"):
        return "int"
    if inferred == "string":
        return "str"
    return inferred


@dataclass(frozen=True, eq=False)
class EncodedFeatures:
    """Encoded fields, row ``j`` = id ``ids[j]``.

    ``fields[name]`` is an int64 index vector (``outputs[name] == "index"``, 0 =
    OOV/missing), a float32 matrix (``"dense"``) or a float32 CSR (``"multi"``).
    ``present[j]`` is False when ``ids[j]`` had no row in the feature table.
    """

    ids: np.ndarray
    present: np.ndarray
    fields: dict[str, Any]
    outputs: dict[str, str]
    dims: dict[str, int]

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_features(self) -> int:
        """Width of :meth:`matrix` (index fields count their cardinality)."""
        return sum(self.dims.values())

    def slices(self) -> dict[str, slice]:
        """Column range of each field in :meth:`matrix`."""
        out, start = {}, 0
        for name, d in self.dims.items():
            out[name] = slice(start, start + d)
            start += d
        return out

    def matrix(self) -> sp.csr_array:
        """All fields side by side as one float32 CSR (one-hot for index fields).

        The design matrix of linear / factorisation-machine style models
        (LightFM's ``user_features``): one column per category, bucket, token
        (each field with its own OOV column) and dense value.
        """
        n = len(self.ids)
        blocks = []
        for name, d in self.dims.items():
            x, kind = self.fields[name], self.outputs[name]
            if kind == "index":
                blocks.append(sp.csr_array(
                    (np.ones(n, dtype=np.float32), x, np.arange(n + 1)), shape=(n, d)))
            else:
                blocks.append(sp.csr_array(x, dtype=np.float32))
        if not blocks:
            return sp.csr_array((n, 0), dtype=np.float32)
        return sp.csr_array(sp.hstack(blocks, format="csr", dtype=np.float32))


class FeatureTable:
    """Fitted encoders for the fields of one side-feature table (users or items).

    Parameters
    ----------
    spec:
        ``field name -> kind | {"kind": ..., "column": ..., **encoder options} |
        encoder`` (see the module docs). Field order is kept.
    """

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)
        self.encoders_: dict[str, Encoder] | None = None
        self.columns_: dict[str, str] = {}

    def fit(self, df: pd.DataFrame, *, ids: IdMap | Any = None) -> FeatureTable:
        """Fit every field on ``df``, restricted to the rows whose id is in ``ids``.

        Pass the training users/items as ``ids`` so vocabularies and scales come
        from training data only; a value seen only outside them is OOV later.
        """
        df = _check_frame(df)
        if not self.spec:
            raise DataError("feature spec is empty: name at least one field")
        built = {name: _field(name, s) for name, s in self.spec.items()}
        missing = sorted({c for c, _ in built.values()} - set(df.columns))
        if missing:
            raise DataError(f"feature table lacks column(s) {missing}; "
                            f"available: {list(df.columns)}")
        if ids is not None:
            raw = ids.ids if isinstance(ids, IdMap) else np.asarray(ids)
            df = df[df.index.isin(raw)]
        encoders: dict[str, Encoder] = {}
        for name, (column, enc) in built.items():
            encoders[name] = enc.fit(df[column])
        self.encoders_ = encoders
        self.columns_ = {name: c for name, (c, _) in built.items()}
        return self

    def _require_fitted(self) -> dict[str, Encoder]:
        if self.encoders_ is None:
            raise NotFittedError("FeatureTable is not fitted; call fit() on training rows")
        return self.encoders_

    def transform(self, df: pd.DataFrame, ids: IdMap | Any = None) -> EncodedFeatures:
        """Encode ``df`` with rows aligned to ``ids`` (an IdMap, raw ids, or None = df order).

        Ids that ``df`` lacks get the OOV/missing encoding and ``present=False``.
        """
        encoders = self._require_fitted()
        df = _check_frame(df)
        if ids is None:
            raw = df.index.to_numpy()
        elif isinstance(ids, IdMap):
            raw = ids.ids
        else:
            raw = np.asarray(ids)
            if raw.ndim != 1:
                raise DataError(f"ids must be one-dimensional, got shape {raw.shape}")
        if len(raw) and len(df):
            ki, kd = _id_kind(raw), _id_kind(df.index)
            if ki != kd:
                raise DataError(f"ids are {ki} but the feature table is indexed by {kd} ids "
                                f"(e.g. {_plain(raw[0])!r} vs {_plain(df.index[0])!r})")
        pos = (df.index.get_indexer(cast(Any, raw)) if len(df)
               else np.full(len(raw), -1, dtype=np.int64))
        missing = sorted(set(self.columns_.values()) - set(df.columns))
        if missing:
            raise DataError(f"feature table lacks column(s) {missing}; "
                            f"available: {list(df.columns)}")
        fields: dict[str, Any] = {}
        for name, enc in encoders.items():
            col = df[self.columns_[name]].reset_index(drop=True)
            fields[name] = enc.transform(col.reindex(pos))
        return EncodedFeatures(
            ids=np.asarray(raw), present=pos >= 0, fields=fields,
            outputs={n: e.output for n, e in encoders.items()},
            dims={n: e.dim for n, e in encoders.items()},
        )

    def fit_transform(self, df: pd.DataFrame, ids: IdMap | Any = None) -> EncodedFeatures:
        return self.fit(df, ids=ids).transform(df, ids)

    # introspection ------------------------------------------------------
    @property
    def fields(self) -> list[str]:
        return list(self.spec)

    @property
    def encoders(self) -> dict[str, Encoder]:
        return dict(self._require_fitted())

    @property
    def dims(self) -> dict[str, int]:
        """Cardinality (index fields) or number of columns of each field."""
        return {n: e.dim for n, e in self._require_fitted().items()}

    @property
    def outputs(self) -> dict[str, str]:
        return {n: e.output for n, e in self._require_fitted().items()}

    @property
    def n_features(self) -> int:
        """Width of :meth:`EncodedFeatures.matrix`."""
        return sum(self.dims.values())

    def __repr__(self) -> str:
        state = "" if self.encoders_ is not None else " [unfitted]"
        return f"FeatureTable(fields={self.fields}){state}"

    # persistence --------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Plain JSON data: every field's source column and encoder (params + state)."""
        encoders = self._require_fitted()
        return {
            "type": "FeatureTable", "version": _FORMAT_VERSION,
            "fields": {n: {"column": self.columns_[n], "encoder": e.to_json()}
                       for n, e in encoders.items()},
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> FeatureTable:
        """Rebuild a fitted table saved with :meth:`to_json`."""
        try:
            if obj["type"] != "FeatureTable":
                raise DataError(f"JSON holds a {obj['type']!r}, not a FeatureTable")
            version, fields = obj["version"], obj["fields"]
        except (KeyError, TypeError) as exc:
            raise DataError(f"not a FeatureTable JSON object: missing {exc}") from None
        if version != _FORMAT_VERSION:
            raise DataError(f"FeatureTable format version {version!r} is not supported "
                            f"(this rectune reads {_FORMAT_VERSION})")
        encoders: dict[str, Encoder] = {}
        columns: dict[str, str] = {}
        for name, f in fields.items():
            try:
                enc, columns[name] = encoder_from_json(f["encoder"]), str(f["column"])
            except (KeyError, TypeError) as exc:
                raise DataError(f"feature {name!r}: bad JSON entry ({exc})") from None
            if not enc.fitted:
                raise DataError(f"feature {name!r}: saved encoder is not fitted")
            encoders[name] = enc
        kinds = {c: k for k, c in _KINDS.items()}
        spec = {n: {"kind": kinds[type(e)], "column": columns[n],
                    **{k: v for k, v in e.get_params().items() if k != "name"}}
                for n, e in encoders.items()}
        table = cls(spec)
        table.encoders_, table.columns_ = encoders, columns
        return table
