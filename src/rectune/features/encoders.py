"""Column encoders for side features: categorical, numeric and multi-valued.

Why these rules:

* **Fitted on training data only.** An encoder learns its vocabulary or scale in
  ``fit`` and never changes in ``transform``; a value first seen at test time goes
  to the out-of-vocabulary (OOV) slot instead of silently growing the model.
* **Index 0 is OOV/missing** for every index-valued output, so an embedding table
  of ``dim`` rows always has a row for "unknown", and ids absent from a feature
  table get a well-defined input instead of a crash.
* **JSON, not pickle.** ``to_json()`` returns plain data (hyper-parameters plus
  fitted state) that :func:`encoder_from_json` turns back into an identical
  encoder; it travels inside a model's ``config.json``.
* **Vectorised.** Lookups go through :meth:`pandas.Index.get_indexer` (a hash
  table); multi-valued columns are exploded once, never looped over in Python.

Outputs come in three shapes (:attr:`Encoder.output`): ``"index"`` (int64 array of
shape ``(n,)`` with values in ``0..dim-1``), ``"dense"`` (float32 ``(n, dim)``) and
``"multi"`` (scipy CSR ``(n, dim)``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from itertools import chain
from typing import Any, ClassVar, Literal, TypeVar, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rectune._errors import DataError, NotFittedError

__all__ = [
    "CategoricalEncoder",
    "Encoder",
    "MultiHotEncoder",
    "NumericEncoder",
    "encoder_from_json",
]

Output = Literal["index", "dense", "multi"]
E = TypeVar("E", bound="Encoder")
_REGISTRY: dict[str, type[Encoder]] = {}


# --- value handling shared by the encoders ------------------------------------------
def as_series(values: Any, name: str) -> pd.Series:
    """A 0..n-1 indexed Series from a Series, Index, 1-D array or list."""
    if isinstance(values, pd.Series):
        return values.reset_index(drop=True)
    if isinstance(values, pd.DataFrame):
        raise DataError(f"column {name!r}: expected one column, got a DataFrame")
    if isinstance(values, str | bytes) or not pd.api.types.is_list_like(values):
        raise DataError(f"column {name!r}: expected a 1-D sequence of values, "
                        f"got {type(values).__name__}")
    if isinstance(values, np.ndarray) and values.ndim != 1:
        raise DataError(f"column {name!r}: expected a 1-D array, got shape {values.shape}")
    if isinstance(values, pd.Index | np.ndarray):
        return pd.Series(values)
    return pd.Series(list(values))


def normalise_tokens(s: pd.Series, name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``(values of the non-missing rows, missing mask, kind)`` with kind "int"|"str"|"empty".

    Categories are ints or strings, like raw ids: whole-number floats (what an int
    column with NaN becomes) and booleans count as ints; real fractions or mixed
    types are refused, naming the column, because they make vocabularies that
    silently never match.
    """
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    missing = s.isna().to_numpy(dtype=bool)
    present = s[~missing]
    if len(present) == 0:
        return np.empty(0, dtype=object), missing, "empty"
    inferred = pd.api.types.infer_dtype(present, skipna=False)
    if inferred in ("integer", "boolean"):
        return present.to_numpy().astype(np.int64), missing, "int"
    if inferred in ("floating", "mixed-integer-float", "decimal"):
        f = pd.to_numeric(present, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(f) | (f != np.round(f))
        if bad.any():
            raise DataError(f"column {name!r}: {present.iloc[int(np.flatnonzero(bad)[0])]!r} "
                            "is not a category (fractional or infinite number); "
                            "use a numeric encoder for real-valued columns")
        return f.astype(np.int64), missing, "int"
    if inferred == "string":
        return present.to_numpy(dtype=object), missing, "str"
    kinds = sorted({type(v).__name__ for v in present.iloc[:1000]})
    raise DataError(f"column {name!r}: values must all be strings or all integers, found "
                    f"{inferred} ({', '.join(kinds)}); convert the column to one type")


def vocabulary(tokens: np.ndarray, kind: str, min_count: int, max_size: int | None,
               rows: np.ndarray | None = None) -> list[Any]:
    """Tokens ordered by count (desc), ties by value; rare ones (< min_count) dropped.

    With ``rows`` (the row of each token) a token counts once per row: document
    frequency, so a tag repeated inside one row does not look common.
    """
    if len(tokens) == 0:
        return []
    codes, uniq = pd.factorize(tokens)
    codes = codes.astype(np.int64, copy=False)
    n_uniq = len(uniq)
    if rows is not None:
        key = np.sort(rows * np.int64(n_uniq) + codes)
        codes = key[np.r_[True, key[1:] != key[:-1]]] % n_uniq
    counts = np.bincount(codes, minlength=n_uniq)
    values = np.asarray(uniq, dtype=np.int64 if kind == "int" else object)
    keep = counts >= min_count
    values, counts = values[keep], counts[keep]
    by_value = np.argsort(values, kind="stable")
    order = by_value[np.argsort(-counts[by_value], kind="stable")]
    if max_size is not None:
        order = order[:max_size]
    return values[order].tolist()


def vocab_index(vocab: list[Any], kind: str) -> pd.Index:
    """A hash index over the vocabulary (object dtype for strings: no Arrow round trip)."""
    if kind == "int":
        return pd.Index(np.asarray(vocab, dtype=np.int64))
    return pd.Index(np.asarray(vocab, dtype=object), dtype=object)


def lookup(index: pd.Index, values: np.ndarray) -> np.ndarray:
    """Positions of ``values`` in ``index`` (-1 when absent), one hash-table pass."""
    return np.asarray(index.get_indexer(cast(Any, values)), dtype=np.int64)


def check_kind(fitted: str, got: str, name: str) -> None:
    if fitted != "empty" and got != "empty" and fitted != got:
        raise DataError(f"column {name!r}: the encoder was fitted on {fitted} values but got "
                        f"{got} values; convert the column to {fitted}")


def _as_int(v: Any, what: str, low: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < low:
        raise DataError(f"{what} must be an integer >= {low}, not {v!r}")
    return int(v)


# --- base class --------------------------------------------------------------------
class Encoder(ABC):
    """Common surface: ``fit`` -> ``transform`` -> ``to_json`` / :func:`encoder_from_json`.

    Constructor arguments are hyper-parameters only (``name`` is the column name
    used in error messages); fitted state ends in ``_``.
    """

    _PARAMS: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    name: str

    @abstractmethod
    def fit(self: E, values: Any) -> E:
        """Learn vocabulary/scale from training values; returns ``self``."""

    @abstractmethod
    def transform(self, values: Any) -> Any:
        """Encode values with the fitted state (never refits)."""

    def fit_transform(self, values: Any) -> Any:
        return self.fit(values).transform(values)

    @property
    @abstractmethod
    def output(self) -> Output:
        """``"index"``, ``"dense"`` or ``"multi"`` (see the module docs)."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Cardinality (``"index"``) or number of columns (``"dense"``, ``"multi"``)."""

    @property
    def fitted(self) -> bool:
        return self._state() is not None

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(f"{type(self).__name__} for column {self.name!r} is not "
                                 "fitted; call fit() on training data first")

    def get_params(self) -> dict[str, Any]:
        return {p: getattr(self, p) for p in self._PARAMS}

    @abstractmethod
    def _state(self) -> dict[str, Any] | None:
        """JSON-safe fitted state, or None before ``fit``."""

    @abstractmethod
    def _set_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`_state` (validates)."""

    def to_json(self) -> dict[str, Any]:
        """``{"type", "params", "state"}``, plain JSON data (state is None if unfitted)."""
        return {"type": type(self).__name__, "params": self.get_params(), "state": self._state()}

    @classmethod
    def from_json(cls: type[E], obj: dict[str, Any]) -> E:
        """Rebuild an encoder saved with :meth:`to_json` (any subclass via the base)."""
        enc = encoder_from_json(obj)
        if not isinstance(enc, cls):
            raise DataError(f"JSON holds a {type(enc).__name__}, not a {cls.__name__}")
        return enc

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args}){'' if self.fitted else ' [unfitted]'}"


def encoder_from_json(obj: dict[str, Any]) -> Encoder:
    """Rebuild any encoder from :meth:`Encoder.to_json` output."""
    try:
        cls = _REGISTRY[obj["type"]]
        params, state = dict(obj["params"]), obj["state"]
    except (KeyError, TypeError) as exc:
        raise DataError(f"not an encoder JSON object (bad or missing {exc})") from None
    try:
        enc = cls(**params)
    except TypeError as exc:
        raise DataError(f"bad parameters for {cls.__name__}: {exc}") from None
    if state is not None:
        enc._set_state(state)
    return enc


# --- categorical -------------------------------------------------------------------
class CategoricalEncoder(Encoder):
    """One value per row -> index in ``0..dim-1``; 0 = OOV or missing.

    The vocabulary is ordered by training frequency (ties by value), so index 1 is
    the most common category. Values seen fewer than ``min_count`` times, or beyond
    the ``max_categories`` most frequent, share the OOV index with unseen ones:
    rare categories have too few examples to learn their own embedding.
    """

    @property
    def output(self) -> Output:
        return "index"
    _PARAMS = ("name", "min_count", "max_categories")

    def __init__(self, *, name: str = "values", min_count: int = 1,
                 max_categories: int | None = None) -> None:
        self.name = name
        self.min_count = min_count
        self.max_categories = max_categories
        self.categories_: list[Any] | None = None
        self.kind_: str = "empty"

    def fit(self, values: Any) -> CategoricalEncoder:
        _as_int(self.min_count, "min_count", 1)
        if self.max_categories is not None:
            _as_int(self.max_categories, "max_categories", 0)
        vals, _, kind = normalise_tokens(as_series(values, self.name), self.name)
        self.categories_ = vocabulary(vals, kind, self.min_count, self.max_categories)
        self.kind_ = kind
        self._index = vocab_index(self.categories_, kind)
        return self

    def transform(self, values: Any) -> np.ndarray:
        """int64 indices, 0 for OOV/missing."""
        self._require_fitted()
        vals, missing, kind = normalise_tokens(as_series(values, self.name), self.name)
        check_kind(self.kind_, kind, self.name)
        out = np.zeros(len(missing), dtype=np.int64)
        if len(vals) and kind == self.kind_:
            out[~missing] = lookup(self._index, vals) + 1
        return out

    def inverse_transform(self, idx: Any) -> np.ndarray:
        """Indices -> categories (None for the OOV index 0)."""
        self._require_fitted()
        ix = np.asarray(idx, dtype=np.int64)
        if ix.size and (ix.min() < 0 or ix.max() >= self.dim):
            raise DataError(f"column {self.name!r}: index outside 0..{self.dim - 1}")
        table = np.array([None, *(self.categories_ or [])], dtype=object)
        return table[ix]

    @property
    def dim(self) -> int:
        self._require_fitted()
        return len(self.categories_ or []) + 1

    def _state(self) -> dict[str, Any] | None:
        if self.categories_ is None:
            return None
        return {"kind": self.kind_, "categories": list(self.categories_)}

    def _set_state(self, state: dict[str, Any]) -> None:
        kind, cats = state.get("kind"), state.get("categories")
        if kind not in ("int", "str", "empty") or not isinstance(cats, list):
            raise DataError(f"bad CategoricalEncoder state for column {self.name!r}")
        self.kind_, self.categories_ = kind, cats
        self._index = vocab_index(cats, kind)


# --- numeric -----------------------------------------------------------------------
def _numbers(values: Any, name: str) -> np.ndarray:
    """float64 with NaN for missing; text or infinities raise DataError naming the column."""
    s = as_series(values, name)
    if pd.api.types.is_bool_dtype(s.dtype):
        s = s.astype(np.float64)
    was_missing = s.isna().to_numpy(dtype=bool)
    x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(x) & ~was_missing
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise DataError(f"column {name!r}: {s.iloc[r]!r} (row {r}) is not a number")
    if np.isinf(x).any():
        r = int(np.flatnonzero(np.isinf(x))[0])
        raise DataError(f"column {name!r}: infinite value at row {r}")
    return x


class NumericEncoder(Encoder):
    """A real-valued column, standardised or bucketised.

    ``mode="standard"``: ``(x - mean) / std`` with training mean/std, float32
    ``(n, 1)``; missing -> 0 (the mean), plus a 0/1 missing-indicator column when
    ``missing_indicator`` (so a model can tell "average" from "unknown").

    ``mode="bucket"``: index of the bucket, ``1..n_edges+1`` for the intervals
    ``(-inf, e1), [e1, e2), ..., [ek, inf)``; 0 for missing. ``edges`` fixes the
    interior edges (e.g. ML's age bands); otherwise they are the training
    quantiles for ``n_buckets`` buckets (duplicates merged). Values beyond the
    training range fall in the end buckets: they are still ordered, not unknown.
    """

    _PARAMS = ("name", "mode", "edges", "n_buckets", "missing_indicator")

    def __init__(self, *, name: str = "values", mode: Literal["standard", "bucket"] = "standard",
                 edges: Sequence[float] | None = None, n_buckets: int = 10,
                 missing_indicator: bool = False) -> None:
        self.name = name
        self.mode = mode
        self.edges = None if edges is None else [float(e) for e in edges]
        self.n_buckets = n_buckets
        self.missing_indicator = missing_indicator
        self.mean_: float | None = None
        self.std_: float | None = None
        self.edges_: list[float] | None = None

    @property
    def output(self) -> Output:
        return "dense" if self.mode == "standard" else "index"

    def fit(self, values: Any) -> NumericEncoder:
        if self.mode not in ("standard", "bucket"):
            raise DataError(f"column {self.name!r}: mode must be 'standard' or 'bucket', "
                            f"not {self.mode!r}")
        x = _numbers(values, self.name)
        ok = x[~np.isnan(x)]
        if self.mode == "standard":
            if len(ok) == 0:
                raise DataError(f"column {self.name!r}: no non-missing training values")
            self.mean_ = float(ok.mean())
            sd = float(ok.std())
            self.std_ = sd if sd > 0 else 1.0
            return self
        if self.edges is not None:
            e = np.asarray(self.edges, dtype=np.float64)
            if not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
                raise DataError(f"column {self.name!r}: edges must be finite and strictly "
                                f"increasing, got {self.edges}")
        else:
            n_b = _as_int(self.n_buckets, "n_buckets", 1)
            if len(ok) == 0:
                raise DataError(f"column {self.name!r}: no values to take quantiles from")
            e = np.unique(np.quantile(ok, np.linspace(0, 1, n_b + 1)[1:-1]))
        self.edges_ = e.tolist()
        return self

    def transform(self, values: Any) -> np.ndarray:
        """float32 ``(n, 1 or 2)`` for "standard", int64 ``(n,)`` bucket index for "bucket"."""
        self._require_fitted()
        x = _numbers(values, self.name)
        nan = np.isnan(x)
        if self.mode == "bucket":
            out = np.searchsorted(np.asarray(self.edges_, dtype=np.float64), x,
                                  side="right").astype(np.int64) + 1
            out[nan] = 0
            return out
        assert self.mean_ is not None and self.std_ is not None
        z = np.where(nan, 0.0, (x - self.mean_) / self.std_).astype(np.float32)
        if self.missing_indicator:
            return np.column_stack([z, nan.astype(np.float32)])
        return z[:, None]

    @property
    def dim(self) -> int:
        self._require_fitted()
        if self.mode == "bucket":
            return len(self.edges_ or []) + 2
        return 2 if self.missing_indicator else 1

    def _state(self) -> dict[str, Any] | None:
        if self.mode == "bucket":
            return None if self.edges_ is None else {"edges": list(self.edges_)}
        return None if self.mean_ is None else {"mean": self.mean_, "std": self.std_}

    def _set_state(self, state: dict[str, Any]) -> None:
        try:
            if self.mode == "bucket":
                self.edges_ = [float(v) for v in state["edges"]]
            else:
                self.mean_, self.std_ = float(state["mean"]), float(state["std"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"bad NumericEncoder state for column {self.name!r}: {exc}") from None


# --- multi-valued ------------------------------------------------------------------
_LIST_TYPES = (list, tuple, set, frozenset, np.ndarray, pd.Series)


def explode_rows(values: Any, name: str, sep: str | None
                 ) -> tuple[np.ndarray, np.ndarray, str, int]:
    """``(row, token, kind, n_rows)`` pairs of a multi-valued column, deduplicated per row.

    Rows are lists/tuples/sets/arrays, or missing (-> no tokens); strings are split on
    ``sep`` when given (``"Action|Comedy"``) and refused otherwise, because a
    bare string would otherwise be read as a single token by accident.
    """
    s = as_series(values, name)
    n = len(s)
    types = s.map(type)
    is_str = types.isin([str, np.str_]).to_numpy()
    if is_str.any():
        if sep is None:
            r = int(np.flatnonzero(is_str)[0])
            raise DataError(f"column {name!r}: row {r} is a string ({s.iloc[r]!r}), expected a "
                            "list of tokens; pass sep=... to split strings")
        s = s.where(~is_str, s.str.split(sep, regex=False))
        types = s.map(type)
    list_types = [t for t in types.unique() if issubclass(t, _LIST_TYPES)]
    listy = types.isin(list_types).to_numpy(dtype=bool)
    scalar = ~listy
    if scalar.any():
        miss = pd.isna(s[scalar]).to_numpy(dtype=bool)
        if not miss.all():
            r = int(np.flatnonzero(scalar)[int(np.flatnonzero(~miss)[0])])
            raise DataError(f"column {name!r}: row {r} is {s.iloc[r]!r}, not a list of tokens")
    # flatten in C (itertools.chain) into an object array: pandas' explode would
    # re-infer a string dtype and round-trip every token through Arrow
    lists = s.to_numpy(dtype=object)[listy]
    lengths = np.zeros(n, dtype=np.int64)
    if len(lists):
        lengths[listy] = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    flat = np.fromiter(chain.from_iterable(lists), dtype=object, count=int(lengths.sum()))
    rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
    tokens, missing, kind = normalise_tokens(pd.Series(flat, dtype=object), name)
    if kind == "str" and sep is not None:
        tokens = pd.Series(tokens, dtype=object).str.strip().to_numpy(dtype=object)
        empty = tokens == ""
        keep = np.flatnonzero(~missing)[~empty]
        tokens, rows = tokens[~empty], rows[keep]
    else:
        rows = rows[~missing]
    return rows, tokens, kind, n


class MultiHotEncoder(Encoder):
    """A multi-valued column (genres, actors, directors, tags) -> multi-hot CSR rows.

    Column 0 is OOV (set when a row holds any token outside the vocabulary); the
    vocabulary keeps tokens present in at least ``min_count`` rows, at most
    ``max_features`` of them (most frequent first). A row lists each token once.
    The CSR's ``indices``/``indptr`` are exactly the ``input``/``offsets`` of a
    ``torch.nn.EmbeddingBag``; :meth:`transform_bag` gives a padded id matrix.
    """

    @property
    def output(self) -> Output:
        return "multi"
    _PARAMS = ("name", "min_count", "max_features", "sep")

    def __init__(self, *, name: str = "values", min_count: int = 1,
                 max_features: int | None = None, sep: str | None = None) -> None:
        self.name = name
        self.min_count = min_count
        self.max_features = max_features
        self.sep = sep
        self.vocabulary_: list[Any] | None = None
        self.kind_: str = "empty"

    def fit(self, values: Any) -> MultiHotEncoder:
        _as_int(self.min_count, "min_count", 1)
        if self.max_features is not None:
            _as_int(self.max_features, "max_features", 0)
        rows, tokens, kind, _ = explode_rows(values, self.name, self.sep)
        self.vocabulary_ = vocabulary(tokens, kind, self.min_count, self.max_features, rows)
        self.kind_ = kind
        self._index = vocab_index(self.vocabulary_, kind)
        return self

    def _codes(self, values: Any) -> tuple[np.ndarray, np.ndarray, int]:
        """Sorted, deduplicated ``(row, column)`` pairs."""
        self._require_fitted()
        rows, tokens, kind, n = explode_rows(values, self.name, self.sep)
        check_kind(self.kind_, kind, self.name)
        cols = (lookup(self._index, tokens) + 1 if len(tokens) and kind == self.kind_
                else np.zeros(len(tokens), dtype=np.int64)).astype(np.int64)
        key = np.sort(rows * np.int64(self.dim) + cols)  # sort + mask: ~10x np.unique
        if len(key):
            key = key[np.r_[True, key[1:] != key[:-1]]]
        return key // self.dim, key % self.dim, n

    def transform(self, values: Any) -> sp.csr_array:
        """float32 CSR ``(n, dim)`` with 1 for each token of a row (column 0 = OOV)."""
        r, c, n = self._codes(values)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=n), out=indptr[1:])
        return sp.csr_array((np.ones(len(c), dtype=np.float32), c, indptr), shape=(n, self.dim))

    def transform_bag(self, values: Any, *, max_len: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, lengths)``: int64 ``(n, L)`` padded with :attr:`pad_index`, and row lengths.

        ``L`` is the longest row (or ``max_len``, keeping each row's first
        ``max_len`` ids in vocabulary order, most frequent first). The pad index is
        ``dim`` — one past the last real index — so ``nn.Embedding(dim + 1, d,
        padding_idx=dim)`` keeps OOV (0) a learnable row and padding a zero row.
        """
        r, c, n = self._codes(values)
        lengths = np.bincount(r, minlength=n).astype(np.int64)
        pos = np.arange(len(r)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        width = int(lengths.max()) if n and len(r) else 0
        if max_len is not None:
            width = min(width, _as_int(max_len, "max_len", 0))
            keep = pos < width
            r, c, pos = r[keep], c[keep], pos[keep]
            lengths = np.minimum(lengths, width)
        ids = np.full((n, width), self.pad_index, dtype=np.int64)
        ids[r, pos] = c
        return ids, lengths

    @property
    def pad_index(self) -> int:
        return self.dim

    @property
    def dim(self) -> int:
        self._require_fitted()
        return len(self.vocabulary_ or []) + 1

    def _state(self) -> dict[str, Any] | None:
        if self.vocabulary_ is None:
            return None
        return {"kind": self.kind_, "vocabulary": list(self.vocabulary_)}

    def _set_state(self, state: dict[str, Any]) -> None:
        kind, vocab = state.get("kind"), state.get("vocabulary")
        if kind not in ("int", "str", "empty") or not isinstance(vocab, list):
            raise DataError(f"bad MultiHotEncoder state for column {self.name!r}")
        self.kind_, self.vocabulary_ = kind, vocab
        self._index = vocab_index(vocab, kind)
