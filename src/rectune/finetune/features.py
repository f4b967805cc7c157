"""Side-feature priors for fine-tuning MF: ``λ_f ‖p_u − W f_u‖²`` and ``new_rows="features"``.

Why: a user first seen in the new data with one or two ratings has almost no
evidence for a k-dimensional embedding, but usually has a profile (age, gender,
occupation; an item has genres). Warm users' pre-trained embeddings tell how
profiles map to the latent space, so a ridge regression learns

    [p_u, b_u] ≈ W f_u + c          (f_u: encoded features, c: intercept)

on every row with ratings, and fine-tuning pulls each row *without* pre-training
data towards its feature prediction ``W f_u + c`` instead of towards zero (rows
with pre-training data keep their own anchor, ``θ_pre``, under L2-SP). This is the
regression-based latent factor model (Agarwal & Chen, KDD 2009) used as a
fine-tuning prior; ``W`` is refitted between SGD epochs (alternating updates).

``W`` is a ridge solution with an unpenalised intercept whose penalty is chosen per
output column by generalised cross-validation (GCV) from one eigendecomposition of
the centred Gram matrix, so no extra hyper-parameter is needed. ``W``, ``c`` and the
fitted encoders are stored in ``model.meta_["feature_prior"]`` (plain JSON), so a
saved fine-tuned model can still embed a brand-new user from features alone
(:func:`embed_new_users`).

``features`` accepted by :func:`rectune.finetune.finetune`: a DataFrame indexed by
raw user id (user side), a dict ``{"user": ..., "item": ...}``, and for either side
a ``(FeatureTable, DataFrame)`` pair to control the encoding; otherwise the spec is
inferred from the dtypes (:func:`infer_spec`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rectune._errors import DataError, RectuneError
from rectune.data.idmap import IdMap
from rectune.features.encoders import NumericEncoder
from rectune.features.table import FeatureTable

__all__ = [
    "Projection",
    "attach_feature_prior",
    "embed_new_items",
    "embed_new_users",
    "fit_projection",
    "infer_spec",
    "resolve_features",
]

AXES = ("user", "item")
#: penalties tried by GCV, relative to the mean diagonal of the centred Gram matrix
_ALPHA_GRID = np.logspace(-4, 3, 29)
_META_KEY = "feature_prior"
_FORMAT = 1


# ------------------------------------------------------------------ resolving input
def _is_listlike(x: Any) -> bool:
    return isinstance(x, list | tuple | set | frozenset | np.ndarray | pd.Series)


def infer_spec(df: pd.DataFrame) -> dict[str, Any]:
    """A default :class:`FeatureTable` spec from the dtypes of ``df``.

    * numbers (not bool): ``<col>`` standardised *and* ``<col>:bucket`` in up to 8
      quantile buckets, so the linear map sees both the trend and a non-linear shape;
    * object/category/string/bool: categorical, values seen fewer than 5 times share
      the OOV slot (a zip code seen once cannot be learned), at most 1000 categories;
    * columns holding lists (genres, tags): multi-hot, tokens seen >= 5 times, <= 500.
    """
    spec: dict[str, Any] = {}
    for col in df.columns:
        name = str(col)
        s = df[col]
        if pd.api.types.is_bool_dtype(s.dtype):
            spec[name] = {"kind": "categorical", "column": col}
        elif pd.api.types.is_numeric_dtype(s.dtype):
            spec[name] = {"kind": "numeric", "column": col, "mode": "standard"}
            spec[f"{name}:bucket"] = {"kind": "numeric", "column": col, "mode": "bucket",
                                      "n_buckets": 8}
        elif pd.api.types.is_datetime64_any_dtype(s.dtype) or \
                isinstance(s.dtype, pd.PeriodDtype | pd.IntervalDtype):
            raise DataError(f"feature column {name!r} has dtype {s.dtype}, which has no default "
                            "encoding; convert it (e.g. to a year) or pass a FeatureTable")
        else:
            first = s.dropna()
            if len(first) and _is_listlike(first.iloc[0]):
                spec[name] = {"kind": "multi", "column": col, "min_count": 5,
                              "max_features": 500}
            else:
                spec[name] = {"kind": "categorical", "column": col, "min_count": 5,
                              "max_categories": 1000}
    if not spec:
        raise DataError("feature table has no columns")
    return spec


@dataclass
class SideFeatures:
    """One side's raw feature frame and its (possibly unfitted) table."""

    axis: str
    frame: pd.DataFrame
    table: FeatureTable
    fitted: bool  # the caller passed an already fitted table


def _side(axis: str, value: Any) -> SideFeatures:
    table: FeatureTable | None = None
    frame = value
    if isinstance(value, tuple):
        if len(value) != 2 or not isinstance(value[0], FeatureTable):
            raise DataError(f"{axis} features: a tuple must be (FeatureTable, DataFrame)")
        table, frame = value
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{axis} features must be a pandas DataFrame indexed by raw {axis} id "
                        f"(or a (FeatureTable, DataFrame) pair), not {type(frame).__name__}")
    if not frame.index.is_unique:
        dup = frame.index[frame.index.duplicated()][0]
        raise DataError(f"{axis} features: duplicate {axis} id {dup!r} in the index")
    if table is None:
        return SideFeatures(axis, frame, FeatureTable(infer_spec(frame)), False)
    if table.encoders_ is None:  # fitted here on the model's rows: never the caller's object
        return SideFeatures(axis, frame, FeatureTable(table.spec), False)
    return SideFeatures(axis, frame, table, True)


def resolve_features(features: Any) -> dict[str, SideFeatures]:
    """``features`` (DataFrame, pair or ``{"user": ..., "item": ...}``) -> sides by axis."""
    if features is None:
        return {}
    if isinstance(features, Mapping):
        unknown = sorted(str(k) for k in features if k not in AXES)
        if unknown:
            raise DataError(f"features dict keys must be 'user' and/or 'item', got {unknown}")
        return {ax: _side(ax, v) for ax, v in features.items() if v is not None}
    return {"user": _side("user", features)}


def encode(side: SideFeatures, ids: np.ndarray) -> tuple[sp.csr_array, np.ndarray]:
    """Design matrix (float64 CSR) and ``present`` mask of raw ``ids``.

    A NaN in a column read by a standardised numeric encoder without a missing
    indicator is refused: it would silently become "average" (set the encoder's
    ``missing_indicator`` to model it). Ids without a feature row are not an error:
    they are reported as not present and get no feature prior.
    """
    enc = side.table.encoders
    frame = side.frame
    pos = (frame.index.get_indexer(pd.Index(ids)) if len(frame)
           else np.full(len(ids), -1))
    present = pos >= 0
    for name, e in enc.items():
        if isinstance(e, NumericEncoder) and e.mode == "standard" and not e.missing_indicator:
            col = side.table.columns_[name]
            if col not in frame.columns:
                continue  # transform names every missing column
            nan = frame[col].isna().to_numpy()[pos[present]]
            if nan.any():
                bad = np.asarray(ids)[present][nan][:5].tolist()
                raise DataError(f"{side.axis} feature {col!r} is missing (NaN) for "
                                f"{side.axis} id(s) {bad}: fill it, drop those rows, or pass "
                                "a FeatureTable whose encoder has missing_indicator=True")
    x = side.table.transform(frame, ids).matrix()
    return sp.csr_array(x, dtype=np.float64), present


# -------------------------------------------------------------------------- ridge
class Ridge:
    """Multi-output weighted ridge with an unpenalised intercept on a fixed design matrix.

    Centring (weighted) removes the intercept from the penalty; one eigendecomposition
    of the centred Gram ``G = Xcᵀ D Xc = V diag(s) Vᵀ`` (``D``: row weights) then
    gives, for any penalty α and targets ``Y``, ``W = V diag(1/(s+α)) Vᵀ Xcᵀ D Yc``
    and the GCV score ``RSS(α) / (n (1 − df(α)/n)²)`` with ``df = 1 + Σ s/(s+α)`` in
    O(d²) per output, so the penalty is chosen per output column at the cost of one
    fit. Rows are weighted by their number of ratings (normalised to mean 1): the
    fine-tuning loss and rating metrics count ratings, not users, and a row fitted
    on many ratings is also a less noisy target.
    """

    def __init__(self, x: sp.csr_array, weights: np.ndarray | None = None) -> None:
        n = x.shape[0]
        if n < 2:
            raise RectuneError("the feature projection needs at least 2 rows with ratings "
                               "and features to learn from")
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        if len(w) != n or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise RectuneError("ridge row weights must be finite, >= 0 and not all 0")
        self.w = w * (n / w.sum())
        self.x = x
        self.n = n
        self.mean = np.asarray(x.T @ self.w).ravel() / n
        gram = (x.T @ (sp.diags_array(self.w) @ x)).toarray() - n * np.outer(self.mean, self.mean)
        s, v = np.linalg.eigh((gram + gram.T) / 2)
        self.s = np.clip(s, 0.0, None)
        self.v = v
        self.scale = float(max(self.s.sum() / max(len(self.s), 1), 1e-12))

    def _z(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        wy = y * self.w[:, None]
        ymean = wy.sum(axis=0) / self.n
        xty = np.asarray(self.x.T @ wy) - self.n * np.outer(self.mean, ymean)
        return self.v.T @ xty, ymean, (y - ymean) * np.sqrt(self.w)[:, None]

    def choose(self, y: np.ndarray) -> np.ndarray:
        """GCV-optimal absolute penalty per column of ``y``."""
        z, _, yc = self._z(y)
        alphas = _ALPHA_GRID * self.scale
        f = 1.0 / (self.s[:, None] + alphas[None, :])  # (d, A)
        gain = (z ** 2).T @ (2 * f - self.s[:, None] * f ** 2)  # (m, A)
        rss = np.maximum((yc ** 2).sum(axis=0)[:, None] - gain, 1e-12)
        df = 1.0 + (self.s[:, None] * f).sum(axis=0)  # (A,)
        denom = self.n * np.maximum(1.0 - df / self.n, 1e-3) ** 2
        gcv = rss / denom[None, :]
        return np.asarray(alphas[np.argmin(gcv, axis=1)], dtype=np.float64)

    def solve(self, y: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(W (d, m), intercept (m,))`` for penalties ``alpha`` (one per column)."""
        z, ymean, _ = self._z(y)
        w = self.v @ (z / (self.s[:, None] + alpha[None, :]))
        return w, ymean - self.mean @ w


# --------------------------------------------------------------------- projection
@dataclass
class Projection:
    """``[factors, bias] ≈ x @ coef + intercept`` for one axis, with its encoders."""

    axis: str
    side: SideFeatures
    coef: np.ndarray  # (d, m)
    intercept: np.ndarray  # (m,)
    alpha: np.ndarray  # (m,)
    n_factors: int
    bias: bool  # the last output column is the bias
    n_rows: int = 0  # rows the last fit used

    def predict(self, x: sp.csr_array) -> tuple[np.ndarray, np.ndarray | None]:
        """(factor targets ``(n, k)``, bias targets ``(n,)`` or None) for design rows ``x``."""
        out = np.asarray(x @ self.coef) + self.intercept
        k = self.n_factors
        return out[:, :k], (out[:, k] if self.bias else None)

    def targets(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Targets for raw ``ids`` and the mask of ids that have a feature row."""
        x, present = encode(self.side, ids)
        f, b = self.predict(x)
        return f, b, present

    def to_json(self) -> dict[str, Any]:
        return {"format": _FORMAT, "axis": self.axis, "table": self.side.table.to_json(),
                "coef": self.coef.tolist(), "intercept": self.intercept.tolist(),
                "alpha": self.alpha.tolist(), "n_factors": self.n_factors,
                "bias": self.bias, "n_rows": self.n_rows}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], frame: pd.DataFrame) -> Projection:
        """Rebuild from :meth:`to_json`, reading features from ``frame``."""
        try:
            if obj["format"] != _FORMAT:
                raise DataError(f"feature prior format {obj['format']!r} is not supported")
            table = FeatureTable.from_json(obj["table"])
            coef = np.asarray(obj["coef"], dtype=np.float64)
            intercept = np.asarray(obj["intercept"], dtype=np.float64)
            alpha = np.asarray(obj["alpha"], dtype=np.float64)
            k, bias, axis = int(obj["n_factors"]), bool(obj["bias"]), str(obj["axis"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"model.meta_['{_META_KEY}'] is malformed ({exc})") from None
        m = k + int(bias)
        if coef.ndim != 2 or coef.shape != (table.n_features, m) or intercept.shape != (m,):
            raise DataError(f"model.meta_['{_META_KEY}']: W has shape {coef.shape}, expected "
                            f"({table.n_features}, {m})")
        side = _side(axis, (table, frame))
        return cls(axis, side, coef, intercept, alpha, k, bias, int(obj.get("n_rows", 0)))


def fit_projection(side: SideFeatures, idmap: IdMap, rows: np.ndarray, factors: np.ndarray,
                   bias: np.ndarray | None, *, counts: np.ndarray | None = None,
                   encode_ids: IdMap | None = None) -> tuple[Projection, Ridge, np.ndarray, Any]:
    """Fit the encoders (unless fitted) and ``W`` on ``rows`` of the given tables.

    ``rows`` (int indices into ``idmap``) are the rows with ratings; those without a
    feature row are dropped; ``counts`` (per row of ``idmap``: its ratings) weight
    them (see :class:`Ridge`). Returns the projection, the ridge solver of the rows
    used (reused by refits), those rows, and (design matrix, present mask) of every
    id of ``encode_ids`` (a map that extends ``idmap``), encoded once, or None.
    """
    ids = idmap.ids
    if not side.fitted:
        warm_ids = ids[rows]
        known = side.frame.index.isin(warm_ids)
        if not known.any():
            raise DataError(f"{side.axis} features: no {side.axis} with ratings in the "
                            f"pre-trained model has a feature row (feature ids look like "
                            f"{side.frame.index[:3].tolist()}, model ids like "
                            f"{ids[:3].tolist()})")
        side.table.fit(side.frame, ids=warm_ids)
        side.fitted = True
    full = None
    if encode_ids is not None:
        full = encode(side, encode_ids.ids)
        x, present = full[0][rows], full[1][rows]
    else:
        x, present = encode(side, ids[rows])
    keep = rows[present]
    ridge = Ridge(sp.csr_array(x[np.flatnonzero(present)]),
                  None if counts is None else counts[keep])
    y = _stack(factors, bias, keep)
    alpha = ridge.choose(y)
    coef, intercept = ridge.solve(y, alpha)
    proj = Projection(side.axis, side, coef, intercept, alpha, factors.shape[1],
                      bias is not None, len(keep))
    return proj, ridge, keep, full


def _stack(factors: np.ndarray, bias: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
    cols = [np.asarray(factors[rows], dtype=np.float64)]
    if bias is not None:
        cols.append(np.asarray(bias[rows], dtype=np.float64)[:, None])
    return np.concatenate(cols, axis=1)


def refit(proj: Projection, ridge: Ridge, rows: np.ndarray, factors: np.ndarray,
          bias: np.ndarray | None) -> None:
    """The W-step of the alternating fit: ridge on the current tables, penalties kept."""
    proj.coef, proj.intercept = ridge.solve(_stack(factors, bias, rows), proj.alpha)
    proj.n_rows = len(rows)


def save_meta(model: Any, projections: Mapping[str, Projection]) -> None:
    """Store every projection (W, intercept, encoders) in ``model.meta_`` as JSON data."""
    meta = dict(getattr(model, "meta_", {}) or {})
    meta[_META_KEY] = {ax: p.to_json() for ax, p in projections.items()}
    model.meta_ = meta


# ------------------------------------------------------------------ serving new ids
def attach_feature_prior(model: Any, features: Any) -> Any:
    """A copy of a fitted Baseline/SVD with ``W`` fitted on its rows, without fine-tuning.

    The projection is the ridge fit of every row with training data on its
    features (as at the start of feature-regularised fine-tuning); with it,
    :func:`embed_new_users` serves profile-only users (K = 0) from a plain
    pre-trained model.
    """
    model._check_fitted()
    params = {k: np.asarray(v) for k, v in model.parameters().items()}
    if not ({"user_bias", "user_factors"} & set(params)):
        raise RectuneError(f"{type(model).__name__} has no user/item factor or bias tables; "
                           "feature priors are for the MF family (Baseline, SVD)")
    counts = {"user": np.diff(model.seen_.indptr).astype(np.float64),
              "item": np.asarray(model.item_popularity_, dtype=np.float64)}
    projections = {}
    for axis, side in resolve_features(features).items():
        bias = params.get(f"{axis}_bias")
        fac = params.get(f"{axis}_factors")
        if fac is None:
            fac = np.zeros((len(getattr(model, f"{axis}_map_")), 0))
        proj = fit_projection(side, getattr(model, f"{axis}_map_"),
                              np.flatnonzero(counts[axis] > 0), fac, bias,
                              counts=counts[axis])[0]
        projections[axis] = proj
    out = copy.deepcopy(model)
    save_meta(out, projections)
    return out


def _embed(model: Any, frame: pd.DataFrame, axis: str) -> Any:
    from rectune.finetune.groups import grow

    model._check_fitted()
    stored = (getattr(model, "meta_", None) or {}).get(_META_KEY, {}).get(axis)
    if stored is None:
        raise RectuneError(f"this {type(model).__name__} has no {axis} feature projection; "
                           f"fine-tune it with features=... (feature_reg or "
                           f"new_rows='features') first")
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{axis} features must be a DataFrame indexed by raw {axis} id, "
                        f"not {type(frame).__name__}")
    proj = Projection.from_json(stored, frame)
    idmap: IdMap = getattr(model, f"{axis}_map_")
    raw = frame.index.to_numpy()
    idx = idmap.encode(raw, missing="negative") if len(raw) else np.zeros(0, dtype=np.int64)
    known = idx >= 0
    # known ids without training data (an id in the map, no ratings) are embedded too
    trained = (np.diff(model.seen_.indptr) > 0 if axis == "user"
               else np.asarray(model.item_popularity_) > 0)
    refill = idx[known][~trained[idx[known]]]
    new_ids = raw[~known]
    out = copy.deepcopy(model)
    if len(new_ids) == 0 and len(refill) == 0:
        return out
    f, b, _ = proj.targets(np.r_[idmap.ids[refill], new_ids] if len(refill) else new_ids)
    grown = idmap.extend(new_ids)
    n = len(grown)
    params = out.parameters()
    for name, target in ((f"{axis}_factors", f if proj.n_factors else None),
                         (f"{axis}_bias", b)):
        if name not in params or target is None:
            continue
        t = np.asarray(params[name])
        t = grow(t, n, "features", from_features=target[len(refill):].astype(t.dtype))
        t[refill] = target[:len(refill)]
        setattr(out, name + "_", t)
    setattr(out, f"{axis}_map_", grown)
    seen = out.seen_
    if axis == "user":
        indptr = np.r_[seen.indptr, np.full(n - seen.shape[0], seen.indptr[-1])]
        out.seen_ = sp.csr_array((seen.data, seen.indices, indptr), shape=(n, seen.shape[1]))
    else:
        out.seen_ = sp.csr_array((seen.data, seen.indices, seen.indptr),
                                 shape=(seen.shape[0], n))
        out.item_popularity_ = np.r_[out.item_popularity_,
                                     np.zeros(n - len(out.item_popularity_),
                                              dtype=out.item_popularity_.dtype)]
    return out


def embed_new_users(model: Any, user_features_df: pd.DataFrame) -> Any:
    """A copy of ``model`` with a feature-embedded row for every new user of the frame.

    Users of ``user_features_df`` the model lacks are appended, and users it has a
    row for but no training data (e.g. ids only seen in a map) are overwritten;
    their rows are the stored projection of their features (``W f_u + c``, for
    factors and bias): no training, so a user with a profile and no ratings is
    scored from the profile alone. Users with training data keep their rows.
    """
    return _embed(model, user_features_df, "user")


def embed_new_items(model: Any, item_features_df: pd.DataFrame) -> Any:
    """The item-side twin of :func:`embed_new_users` (needs an item projection)."""
    return _embed(model, item_features_df, "item")
