"""DeepFM (Guo et al. 2017): a factorisation machine and a deep tower over id, side and
context fields — the feature-aware model that scores users and items never seen in
training from their features.

Fields: the user id, the item id, every user feature (age, gender, occupation…),
every item feature (genres as a multi-hot bag, year, directors/actors/tags when
present) and, with ``context=True``, the event's hour, weekday and recency
(:class:`~rectune.features.ContextEncoder`). Each field ``f`` has a ``k``-dim
embedding ``e_f`` (a bag is the mean of its tokens' embeddings; a dense column
scales a learned vector) and a first-order weight ``w_f``. The score is

    ŷ = b + Σ_f w_f + ½ Σ_d [(Σ_f e_fd)² − Σ_f e_fd²] + hᵀ MLP([e_1; …; e_F])

(bias, linear terms, FM pairwise interactions ``Σ_{f<g} ⟨e_f, e_g⟩``, deep tower).

Cold start: an id the model has never seen contributes a zero embedding and a zero
first-order weight, so the remaining fields carry the signal. Training drops each
row's id fields (and context) with probability ``id_dropout``, so the feature
paths learn to stand alone. ``predict(users, items, user_features=rows,
item_features=rows)`` and ``recommend(users, k, user_features=rows)`` encode the
given rows (DataFrames indexed by raw id) with the encoders fitted on training
data; ``known()`` is False for such users. Encoders are saved as JSON in
``config.json``; encoded per-id rows go in the safetensors file.

``loss="bce"``: implicit feedback, every nonzero row a positive with
``neg_ratio`` sampled negatives (never a known positive), early stopping on
NDCG@10; ``loss="mse"``: explicit ratings, early stopping on RMSE. Without a
spec, feature columns are read as: lists -> ``"multi"``; numbers -> 10 quantile
buckets; strings/booleans -> ``"categorical"`` (``min_count`` 2), except
identifier-like text (more distinct values than half the rows: titles, URLs,
zip codes) and dates, which are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from rectune._errors import DataError
from rectune.data.interactions import Interactions
from rectune.features.context import ContextEncoder
from rectune.features.table import EncodedFeatures, FeatureTable
from rectune.models.base import _mask_rows, _topk
from rectune.models.neural._deepfm_module import _DeepFMModule
from rectune.models.neural.base import ndcg_validator, rmse_validator
from rectune.models.neural.losses import bce_loss, check_loss, mse_loss
from rectune.models.neural.ncf import _NCF
from rectune.models.neural.sampling import NegativeSampler, PointwiseBatches, RatingBatches

__all__ = ["DeepFM", "auto_spec"]

Rows = dict[str, np.ndarray]
_LISTS = (list, tuple, set, frozenset, np.ndarray)


def auto_spec(df: pd.DataFrame) -> dict[str, Any]:
    """A :class:`FeatureTable` spec read from column types (see the module docs)."""
    spec: dict[str, Any] = {}
    n = max(len(df), 1)
    for col in df.columns:
        s = df[col]
        name = str(col)
        present = s.dropna()
        if len(present) == 0 or pd.api.types.is_datetime64_any_dtype(s.dtype):
            continue
        if s.dtype == object and isinstance(present.iloc[0], _LISTS):
            spec[name] = {"kind": "multi", "column": name}
        elif pd.api.types.is_bool_dtype(s.dtype):
            spec[name] = {"kind": "categorical", "column": name}
        elif pd.api.types.is_numeric_dtype(s.dtype):
            spec[name] = {"kind": "numeric", "mode": "bucket", "n_buckets": 10, "column": name}
        elif present.nunique() <= 0.5 * n:
            spec[name] = {"kind": "categorical", "min_count": 2, "column": name}
    return spec


def _bag(csr: sp.csr_array, pad: int) -> np.ndarray:
    """Multi-hot CSR -> ``(n, L)`` int64 token ids padded with ``pad`` (EmbeddingBag input)."""
    csr = sp.csr_array(csr)
    lengths = np.diff(csr.indptr)
    width = max(int(lengths.max()) if len(lengths) else 0, 1)
    out = np.full((csr.shape[0], width), pad, dtype=np.int64)
    rows = np.repeat(np.arange(csr.shape[0]), lengths)
    pos = np.arange(len(csr.indices)) - np.repeat(csr.indptr[:-1], lengths)
    out[rows, pos] = csr.indices
    return out


def _rows(enc: EncodedFeatures, prefix: str) -> Rows:
    """Encoded fields as model inputs keyed ``"<prefix>__<field>"`` (bags padded)."""
    out: Rows = {}
    for name, kind in enc.outputs.items():
        x = enc.fields[name]
        key = f"{prefix}__{name}"
        if kind == "multi":
            out[key] = _bag(x, enc.dims[name])
        elif kind == "dense":
            out[key] = np.asarray(x, dtype=np.float32).reshape(len(enc), -1)
        else:
            out[key] = np.asarray(x, dtype=np.int64)
    return out


def _take(rows: Rows, idx: np.ndarray) -> Rows:
    return {k: v[idx] for k, v in rows.items()}


def _merge(base: Rows, other: Rows, mask: np.ndarray, pad: Mapping[str, int]) -> Rows:
    """``base`` with rows ``mask`` replaced by ``other``'s (bags re-padded to one width)."""
    out: Rows = {}
    for k, a in base.items():
        b = other[k]
        if a.ndim == 2 and a.dtype == np.int64 and a.shape[1] != b.shape[1]:
            w = max(a.shape[1], b.shape[1])
            a = np.pad(a, ((0, 0), (0, w - a.shape[1])), constant_values=pad[k])
            b = np.pad(b, ((0, 0), (0, w - b.shape[1])), constant_values=pad[k])
        a = a.copy()
        a[mask] = b[mask]
        out[k] = a
    return out


class _FeatureBatches:
    """Wrap a batch source: add each row's user/item feature rows (gathered by index)."""

    def __init__(self, inner: Any, user_rows: Rows, item_rows: Rows, item_key: str) -> None:
        self.inner, self.user_rows, self.item_rows = inner, user_rows, item_rows
        self.item_key = item_key

    def __len__(self) -> int:
        return len(self.inner)

    def __call__(self, rng: np.random.Generator) -> Any:
        for b in self.inner(rng):
            u, i = b["user"].numpy(), b[self.item_key].numpy()
            for k, v in self.user_rows.items():
                b[k] = torch.from_numpy(v[u])
            for k, v in self.item_rows.items():
                b[k] = torch.from_numpy(v[i])
            if self.item_key != "item":
                b["item"] = b.pop(self.item_key)
            yield b


class DeepFM(_NCF):
    """DeepFM over id, user-feature, item-feature and (optional) context fields.

    Parameters
    ----------
    n_factors:
        Embedding size ``k`` shared by every field (FM needs one size).
    layers, dropout:
        Hidden widths and dropout of the deep tower.
    loss:
        ``"bce"`` (implicit, sampled negatives) or ``"mse"`` (explicit ratings).
    neg_ratio:
        Negatives per positive for "bce".
    id_dropout:
        Probability of hiding a training row's ids (and context), so features
        learn to score cold users/items alone.
    user_spec, item_spec:
        :class:`~rectune.features.FeatureTable` specs; None reads the columns'
        types (:func:`auto_spec`).
    context:
        Add hour, weekday and recency-since-previous-event fields (needs timestamps).
    epochs, lr, batch_size, weight_decay, patience, clip_grad, random_state:
        As in :class:`~rectune.models.neural.NeuMF`.
    """

    _extra_json: ClassVar[tuple[str, ...]] = ("history_", "best_epoch_", "feature_state_")

    def __init__(self, n_factors: int = 16, layers: Sequence[int] = (64, 32),
                 dropout: float = 0.1, loss: str = "bce", neg_ratio: int = 4,
                 id_dropout: float = 0.1, user_spec: dict[str, Any] | None = None,
                 item_spec: dict[str, Any] | None = None, context: bool = False,
                 epochs: int = 20, lr: float = 1e-3, batch_size: int = 256,
                 weight_decay: float = 0.0, patience: int | None = 3,
                 clip_grad: float | None = 5.0, random_state: int | None = 0) -> None:
        self.n_factors = n_factors
        self.layers = tuple(layers)
        self.dropout = dropout
        self.loss = loss
        self.neg_ratio = neg_ratio
        self.id_dropout = id_dropout
        self.user_spec = user_spec
        self.item_spec = item_spec
        self.context = context
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.patience = patience
        self.clip_grad = clip_grad
        self.random_state = random_state

    def _validate_params(self) -> None:
        check_loss(self.loss, ("bce", "mse"))
        super()._validate_params()
        if not isinstance(self.id_dropout, int | float) or not 0 <= self.id_dropout < 1:
            raise DataError(f"id_dropout must be in [0, 1), got {self.id_dropout!r}")
        for name in ("user_spec", "item_spec"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), dict):
                raise DataError(f"{name} must be a dict (FeatureTable spec) or None")
        if not isinstance(self.context, bool):
            raise DataError(f"context must be a bool, got {self.context!r}")

    # ----------------------------------------------------------------- features
    @staticmethod
    def _frames(features: Any) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        if features is None:
            return None, None
        if isinstance(features, Mapping):
            unknown = sorted(set(features) - {"user", "item"})
            if unknown:
                raise DataError(f"features keys must be 'user' / 'item', got {unknown}")
            return features.get("user"), features.get("item")
        if hasattr(features, "user_features") or hasattr(features, "item_features"):
            return getattr(features, "user_features", None), getattr(features, "item_features",
                                                                     None)
        raise DataError("features must be {'user': DataFrame, 'item': DataFrame} or a Dataset, "
                        f"not {type(features).__name__}")

    def _prepare(self, train: Interactions, features: Any) -> None:
        udf, idf = self._frames(features)
        state: dict[str, Any] = {"user": None, "item": None, "context": None, "fields": []}
        self._tables: dict[str, FeatureTable | None] = {"u": None, "i": None}
        self._stored: dict[str, Rows] = {"u": {}, "i": {}}
        for side, df, spec, ids in (("u", udf, self.user_spec, train.user_map),
                                    ("i", idf, self.item_spec, train.item_map)):
            if df is None:
                continue
            spec = spec if spec is not None else auto_spec(df)
            if not spec:
                continue
            table = FeatureTable(spec).fit(df, ids=ids)
            self._tables[side] = table
            self._stored[side] = _rows(table.transform(df, ids), side)
            state["user" if side == "u" else "item"] = table.to_json()
            state["fields"] += [[f"{side}__{n}", table.outputs[n], table.dims[n]]
                                for n in table.fields]
        self._ctx: ContextEncoder | None = None
        if self.context:
            ctx = ContextEncoder(hour=True, weekday=True, recency="previous")
            self._ctx = ctx.fit_interactions(train)
            self._last_seen = ContextEncoder.last_seen(train)
            state["context"] = ctx.to_json()
            state["fields"] += [[f"c__{n}", ctx.outputs[n], d + (ctx.outputs[n] == "index")]
                                for n, d in ctx.dims.items()]
        self.feature_state_ = state

    def _context_rows(self, enc: dict[str, np.ndarray]) -> Rows:
        """Context outputs as inputs: index fields shifted by one (0 = no context)."""
        assert self._ctx is not None
        out: Rows = {}
        for n, kind in self._ctx.outputs.items():
            v = enc[n]
            out[f"c__{n}"] = (np.asarray(v, np.int64) + 1 if kind == "index"
                              else np.asarray(v, np.float32))
        return out

    def _no_context(self, n: int) -> Rows:
        out: Rows = {}
        for key, kind, dim in self.feature_state_["fields"]:
            if key.startswith("c__"):
                out[key] = (np.zeros(n, np.int64) if kind == "index"
                            else np.zeros((n, dim), np.float32))
        return out

    def _pads(self) -> dict[str, int]:
        return {k: d for k, kind, d in self.feature_state_["fields"] if kind == "multi"}

    # ---------------------------------------------------------------------- fit
    def _build_module(self) -> nn.Module:
        return _DeepFMModule(self.n_users, self.n_items, int(self.n_factors),
                             self.feature_state_["fields"], self.layers, float(self.dropout),
                             float(self.id_dropout), self._head_bias())

    def _train(self, train: Interactions, features: Any, valid: Interactions | None) -> None:
        bs = int(self.batch_size)
        extra = (self._context_rows(self._ctx.transform_interactions(train))
                 if self._ctx is not None else None)
        if self.loss == "mse":
            inner: Any = RatingBatches(train.user, train.item, train.value, bs, extra)

            def loss_fn(m: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
                return mse_loss(m(b), b["value"])
        else:
            pos = np.flatnonzero(np.asarray(train.value) != 0)
            if len(pos) == 0:
                raise DataError("DeepFM(loss='bce'): the training data has no positive row")
            inner = PointwiseBatches(train.user[pos], train.item[pos],
                                     NegativeSampler(self.seen_), self.neg_ratio, bs,
                                     None if extra is None else _take(extra, pos))

            def loss_fn(m: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
                return bce_loss(m(b), b["label"])
        batches = _FeatureBatches(inner, self._stored["u"], self._stored["i"], "item")
        validate = None
        if valid is not None:
            validate = (rmse_validator(self, valid) if self._is_explicit()
                        else ndcg_validator(self, valid))
        self._run_trainer(loss_fn, batches, validate=validate)

    # ------------------------------------------------------------------ scoring
    def _forward(self, u: np.ndarray, i: np.ndarray, urows: Rows, u_at: np.ndarray,
                 irows: Rows, i_at: np.ndarray, ctx: Rows | None = None) -> np.ndarray:
        """Scores of pairs: ids ``u``/``i`` (-1 = unknown), feature rows ``urows[u_at]``,
        ``irows[i_at]``, context rows (row-aligned with the pairs; None = no context)."""
        dev = self._module_device()
        out = np.empty(len(u), dtype=np.float64)
        self.module_.eval()
        with torch.no_grad():
            for s in range(0, len(u), self.score_chunk):
                sl = slice(s, s + self.score_chunk)
                n = len(u[sl])
                b = {"user": u[sl], "item": i[sl], **_take(urows, u_at[sl]),
                     **_take(irows, i_at[sl]),
                     **(_take(ctx, np.arange(s, s + n)) if ctx else self._no_context(n))}
                t = {k: torch.from_numpy(np.ascontiguousarray(v)).to(dev) for k, v in b.items()}
                out[s:s + n] = self.module_(t).double().cpu().numpy()
        return out

    def _pair_scores(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        un, inn = u.cpu().numpy(), i.cpu().numpy()
        return torch.from_numpy(self._forward(un, inn, self._stored["u"], un,
                                              self._stored["i"], inn))

    def _predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return self._forward(u, i, self._stored["u"], u, self._stored["i"], i)

    def _user_block(self, u: np.ndarray, urows: Rows, u_at: np.ndarray) -> np.ndarray:
        """Scores of users (ids ``u``, feature rows ``urows[u_at]``) against the catalogue."""
        n_items = self.n_items
        out = np.empty((len(u), n_items), dtype=np.float64)
        step = max(1, self.score_chunk // max(n_items, 1))
        items = np.arange(n_items, dtype=np.int64)
        module = self.module_
        assert isinstance(module, _DeepFMModule)
        if len(module.mlp) == 0:  # no deep layer to factorise: score pairs
            for s in range(0, len(u), step):
                ub, ab = u[s:s + step], u_at[s:s + step]
                out[s:s + len(ub)] = self._forward(
                    np.repeat(ub, n_items), np.tile(items, len(ub)), urows,
                    np.repeat(ab, n_items), self._stored["i"],
                    np.tile(items, len(ub))).reshape(len(ub), n_items)
            return out
        dev = self._module_device()

        def tensors(b: Rows) -> dict[str, torch.Tensor]:
            return {k: torch.from_numpy(np.ascontiguousarray(v)).to(dev) for k, v in b.items()}

        self.module_.eval()
        with torch.no_grad():
            it = tensors({"item": items, **self._stored["i"]})
            ctx = tensors(self._no_context(1))
            for s in range(0, len(u), step):
                ub, ab = u[s:s + step], u_at[s:s + step]
                ut = tensors({"user": ub, **_take(urows, ab)})
                out[s:s + len(ub)] = module.block(ut, it, ctx).double().cpu().numpy()
        return out

    def _score(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.int64)
        return self._user_block(u, self._stored["u"], u)

    def _score_unknown_user(self, n: int) -> np.ndarray:
        """A user with no id and no features: the model's OOV-feature score, same for all."""
        rows = self._side_rows("u", None, np.array([-1]), None)
        block = self._user_block(np.array([-1]), rows, np.array([0]))
        return np.broadcast_to(block, (n, self.n_items))

    def _predict_unknown(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        urows = self._side_rows("u", None, u, None)
        irows = self._side_rows("i", None, i, None)
        at = np.arange(len(u))
        return self._forward(u, i, urows, at, irows, at)

    # ------------------------------------------------------- cold-start inputs
    def _side_rows(self, side: str, raw: Any, idx: np.ndarray, df: pd.DataFrame | None) -> Rows:
        """Feature rows for ids: ``df``'s row when it has one, else the training row for a
        known id, else the OOV encoding."""
        table = self._tables.get(side)
        if table is None:
            return {}
        n = len(idx)
        if df is not None and raw is not None:
            enc = table.transform(df, _raw(np.asarray(raw, dtype=object)))
        else:  # no rows given: every id gets the OOV/missing encoding
            empty = pd.DataFrame({c: pd.Series([], dtype=object)
                                  for c in table.columns_.values()})
            enc = table.transform(empty, np.arange(n))
        rows, present = _rows(enc, side), np.asarray(enc.present, dtype=bool)
        stored = (~present) & (idx >= 0)
        if stored.any():
            rows = _merge(rows, _take(self._stored[side], np.where(stored, idx, 0)), stored,
                          self._pads())
        return rows

    def _encode_ctx(self, context: Any, u: np.ndarray, n: int) -> Rows | None:
        if context is None or self._ctx is None:
            return None
        ts = context["timestamp"] if isinstance(context, Mapping | pd.DataFrame) else context
        t = np.broadcast_to(np.asarray(ts), (n,)) if np.ndim(ts) == 0 or len(ts) == 1 \
            else np.asarray(ts)
        if len(t) != n:
            raise DataError(f"context has {len(t)} timestamps for {n} pairs")
        last = np.where(u >= 0, self._last_seen[np.maximum(u, 0)], np.nan)
        enc = self._ctx.transform(t, users=np.arange(n), last_seen=last)
        return self._context_rows(enc)

    def predict(self, users: Any, items: Any, *, context: Any = None, clip: bool = True,
                user_features: pd.DataFrame | None = None,
                item_features: pd.DataFrame | None = None) -> np.ndarray:
        """Scores of raw pairs; unknown ids are scored from ``user_features`` /
        ``item_features`` rows (DataFrames indexed by raw id) or their OOV encoding.
        ``context``: ``{"timestamp": epoch seconds}`` (one or one per pair)."""
        self._check_fitted()
        u, i = self._encode_pairs(users, items)
        n = len(u)
        ru = np.atleast_1d(np.asarray(users, dtype=object))
        ri = np.atleast_1d(np.asarray(items, dtype=object))
        ru = np.repeat(ru, n) if len(ru) == 1 and n > 1 else ru
        ri = np.repeat(ri, n) if len(ri) == 1 and n > 1 else ri
        _, first_u, u_at = np.unique(ru.astype(str), return_index=True, return_inverse=True)
        _, first_i, i_at = np.unique(ri.astype(str), return_index=True, return_inverse=True)
        urows = self._side_rows("u", ru[first_u], u[first_u], user_features)
        irows = self._side_rows("i", ri[first_i], i[first_i], item_features)
        out = self._forward(u, i, urows, u_at, irows, i_at, self._encode_ctx(context, u, n))
        if clip and self._is_explicit() and self.rating_scale_ is not None:
            np.clip(out, *self.rating_scale_, out=out)
        return out

    def recommend(self, users: Any, k: int = 10, *, exclude_seen: bool = True,
                  items: Any = None, batch_size: int | None = None,
                  user_features: pd.DataFrame | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` per raw user; users unknown to training are scored from their
        ``user_features`` row (else the OOV features). Output as the base class's."""
        if user_features is None:
            return super().recommend(users, k, exclude_seen=exclude_seen, items=items,
                                     batch_size=batch_size)
        self._check_fitted()
        if not isinstance(k, int | np.integer) or k <= 0:
            raise DataError(f"k must be a positive integer, got {k!r}")
        raw = np.atleast_1d(np.asarray(users, dtype=object) if self.user_map_.kind == "str"
                            else np.asarray(users))
        u = self.user_map_.encode(raw, missing="negative")
        rows = self._side_rows("u", raw, u, user_features)
        allowed = None
        if items is not None:
            ci = self.item_map_.encode(np.atleast_1d(items), missing="negative")
            allowed = np.zeros(self.n_items, dtype=bool)
            allowed[ci[ci >= 0]] = True
        k_eff = int(min(k, self.n_items if allowed is None else allowed.sum()))
        out_i = np.full((len(u), k), -1, dtype=np.int64)
        out_s = np.full((len(u), k), np.nan)
        step = batch_size or max(1, 8_000_000 // max(self.n_items, 1))
        for s in range(0, len(u) if k_eff else 0, step):
            ub = u[s:s + step]
            block = self._user_block(ub, rows, np.arange(s, s + len(ub)))
            if allowed is not None:
                block[:, ~allowed] = -np.inf
            kn = np.flatnonzero(ub >= 0)
            if exclude_seen and len(kn):
                _mask_rows(block, kn, self.seen_, ub[kn])
            top, top_s = _topk(block, k_eff)
            ok = np.isfinite(top_s)
            out_i[s:s + len(ub), :k_eff] = np.where(ok, top, -1)
            out_s[s:s + len(ub), :k_eff] = np.where(ok, top_s, np.nan)
        ids = np.full(out_i.shape, -1, dtype=np.int64) if self.item_map_.kind != "str" \
            else np.full(out_i.shape, None, dtype=object)
        pad = out_i < 0
        ids[~pad] = self.item_map_.decode(out_i[~pad])
        return ids, out_s

    # -------------------------------------------------------------- persistence
    def _state_arrays(self) -> dict[str, np.ndarray]:
        arrays = super()._state_arrays()
        for side in ("u", "i"):
            for key, v in self._stored[side].items():
                arrays[f"feat/{key}"] = v
        if self._ctx is not None:
            arrays["feat/last_seen"] = self._last_seen
        return arrays

    def _restore(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        st = config["state"]["extra"]["feature_state_"]
        self._tables = {"u": None if st["user"] is None else FeatureTable.from_json(st["user"]),
                        "i": None if st["item"] is None else FeatureTable.from_json(st["item"])}
        self._stored = {s: {k[5:]: np.asarray(v) for k, v in arrays.items()
                            if k.startswith(f"feat/{s}__")} for s in ("u", "i")}
        self._ctx = None if st["context"] is None else ContextEncoder.from_json(st["context"])
        if self._ctx is not None:
            self._last_seen = np.asarray(arrays["feat/last_seen"])
        super()._restore(config, arrays)


def _raw(values: np.ndarray) -> np.ndarray:
    """Object array of raw ids -> int64 when they are all integers (feature-table lookup)."""
    if len(values) and all(isinstance(v, int | np.integer) for v in values):
        return values.astype(np.int64)
    return values
