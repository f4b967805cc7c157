"""The model protocol every rectune recommender follows (DESIGN.md, "Model").

Template methods: the base class maps raw ids, handles unknown users/items,
filters seen items, restricts candidates and takes top-k; a model writes
``_fit``, ``_predict`` and ``_score`` over dense indices only.

Why this shape: fine-tuning, persistence and evaluation all work on *named
parameter groups* (``parameters()``), so every model exposes its learned
arrays under the naming rule of DESIGN.md (``user_*`` one row per user,
``item_*`` one row per item, the rest model-specific). Persistence is
``config.json`` + ``arrays.safetensors`` + id maps: never a pickle.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import scipy.sparse as sp

from rectune._errors import DataError, ModelFileError, NotFittedError, RectuneError
from rectune.data.idmap import IdMap
from rectune.data.interactions import Interactions

M = TypeVar("M", bound="Recommender")

FORMAT_VERSION = 1
ARRAYS_FILE = "arrays.safetensors"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class FitOptions:
    """Runtime options for ``fit``; they never change the learned model's meaning.

    The seed is *not* here: it is the ``random_state`` hyper-parameter, so a
    saved config reproduces a model.
    """

    n_threads: int = 0  # 0 = library default (all cores)
    progress: bool = False
    device: str | None = None  # neural models: "cpu", "cuda", None = auto
    checkpoint_dir: str | None = None


def _library_version() -> str:
    from rectune import __version__

    return __version__


class Recommender:
    """Base class of every rectune model.

    Subclasses define ``__init__`` with keyword hyper-parameters stored under
    the same names (no work there), and implement:

    - ``_fit(train, features, valid, options)`` setting learned attributes
      (names ending in ``_``);
    - ``_predict(u, i)`` for pairs where both indices are known (>= 0);
    - ``_score(u)`` returning a dense ``(len(u), n_items)`` block for known users;
    - ``parameters()`` returning the named parameter groups.

    The base class records ``user_map_``, ``item_map_``, ``seen_`` (CSR of the
    training pairs), ``global_mean_``, ``item_popularity_`` and ``rating_scale_``.
    """

    #: "baseline" | "knn" | "mf" | "neural" -- used by the capability table
    family: ClassVar[str] = "baseline"
    #: True for rating-prediction models: predictions are clipped to the rating scale
    predicts_ratings: ClassVar[bool] = True
    #: extra learned arrays (besides parameters()) that ``save`` must store
    _extra_arrays: ClassVar[tuple[str, ...]] = ()
    #: learned JSON-safe scalars/lists that ``save`` must store
    _extra_json: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------ params
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as given to the constructor (JSON-safe)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self: M, **params: Any) -> M:
        """Change hyper-parameters (the model must be refitted)."""
        valid = set(self._param_names())
        for k, v in params.items():
            if k not in valid:
                raise RectuneError(f"{type(self).__name__} has no hyper-parameter {k!r}; "
                                   f"valid: {sorted(valid)}")
            setattr(self, k, v)
        return self

    def clone(self: M) -> M:
        """An unfitted copy with the same hyper-parameters."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # --------------------------------------------------------------------- fit
    def fit(
        self: M,
        train: Interactions,
        *,
        features: Any = None,
        valid: Interactions | None = None,
        options: FitOptions | None = None,
    ) -> M:
        """Learn from ``train``; returns ``self``.

        ``valid`` (normally a split of the same data, so it shares the id maps;
        indices beyond the model's maps count as unknown) is used only by
        models that early-stop; ``features`` carries side-feature tables for models that
        use them.
        """
        if not isinstance(train, Interactions):
            raise DataError(f"fit expects rectune Interactions, got {type(train).__name__}")
        if len(train) == 0:
            raise DataError("cannot fit on an empty training set")
        if valid is not None and not isinstance(valid, Interactions):
            raise DataError(f"valid must be Interactions, got {type(valid).__name__}")
        self._validate_params()
        self._set_base_state(train)
        self._fit(train, features, valid, options or FitOptions())
        return self

    def _validate_params(self) -> None:
        """Check hyper-parameters; subclasses raise DataError/RectuneError with a clear message."""

    def _set_base_state(self, train: Interactions) -> None:
        self.user_map_ = train.user_map
        self.item_map_ = train.item_map
        csr = train.csr()
        self.seen_ = sp.csr_array((np.ones(csr.nnz, dtype=np.float32), csr.indices, csr.indptr),
                                  shape=csr.shape)
        self.global_mean_ = float(np.mean(train.value, dtype=np.float64))
        self.item_popularity_ = train.item_counts().astype(np.float32)
        self.rating_scale_ = train.rating_scale
        self.kind_ = train.kind

    def _fit(self, train: Interactions, features: Any, valid: Interactions | None,
             options: FitOptions) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ fitted state
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "user_map_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit() or load() first")

    @property
    def n_users(self) -> int:
        self._check_fitted()
        return len(self.user_map_)

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return len(self.item_map_)

    def parameters(self) -> dict[str, np.ndarray]:
        """Named parameter groups (DESIGN.md naming: ``user_*``, ``item_*``, others)."""
        self._check_fitted()
        return {}

    # ----------------------------------------------------------------- predict
    def _encode_pairs(self, users: Any, items: Any) -> tuple[np.ndarray, np.ndarray]:
        u = self.user_map_.encode(np.atleast_1d(np.asarray(users, dtype=object)
                                                if self.user_map_.kind == "str" else users),
                                  missing="negative")
        i = self.item_map_.encode(np.atleast_1d(np.asarray(items, dtype=object)
                                                if self.item_map_.kind == "str" else items),
                                  missing="negative")
        if len(u) != len(i):
            if len(u) == 1:
                u = np.repeat(u, len(i))
            elif len(i) == 1:
                i = np.repeat(i, len(u))
            else:
                raise DataError(f"users ({len(u)}) and items ({len(i)}) must have equal length")
        return u, i

    def predict(self, users: Any, items: Any, *, context: Any = None,
                clip: bool = True) -> np.ndarray:
        """Scores (ratings for explicit models) of raw ``(user, item)`` pairs.

        Pairs with an unknown user or item get the model's fallback value (see
        ``_predict_unknown``) and ``known()`` is False for them; nothing crashes.
        With ``clip=True`` ratings are clipped to the training rating scale.
        """
        self._check_fitted()
        u, i = self._encode_pairs(users, items)
        return self.predict_indices(u, i, clip=clip)

    def predict_indices(self, u: np.ndarray, i: np.ndarray, *, clip: bool = True) -> np.ndarray:
        """Like :meth:`predict` over dense indices; -1 marks an unknown id."""
        self._check_fitted()
        u = np.asarray(u, dtype=np.int64)
        i = np.asarray(i, dtype=np.int64)
        u = np.where(u >= self.n_users, -1, u)
        i = np.where(i >= self.n_items, -1, i)
        ok = (u >= 0) & (i >= 0)
        out = np.empty(len(u), dtype=np.float64)
        if ok.any():
            out[ok] = self._predict(u[ok], i[ok])
        if (~ok).any():
            out[~ok] = self._predict_unknown(u[~ok], i[~ok])
        if clip and self.predicts_ratings and self.rating_scale_ is not None:
            np.clip(out, *self.rating_scale_, out=out)
        return out

    def known(self, users: Any, items: Any) -> np.ndarray:
        """Boolean mask: which pairs the model really knows (others got a fallback)."""
        self._check_fitted()
        u, i = self._encode_pairs(users, items)
        return self._known(u, i)

    def _known(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return (u >= 0) & (i >= 0)

    def _predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _predict_unknown(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Fallback for pairs with an unknown user or item: the global mean."""
        return np.full(len(u), self.global_mean_, dtype=np.float64)

    # --------------------------------------------------------------- recommend
    def _score(self, u: np.ndarray) -> np.ndarray:
        """Dense ``(len(u), n_items)`` scores for known users (higher = better)."""
        raise NotImplementedError

    def _score_unknown_user(self, n: int) -> np.ndarray:
        """Scores for users the model has never seen: item popularity."""
        return np.broadcast_to(self.item_popularity_.astype(np.float64), (n, self.n_items))

    def recommend(
        self,
        users: Any,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        items: Any = None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` raw item ids and scores for each raw user id (2-D, batch first).

        ``items`` restricts the candidates to those raw item ids (unknown ones
        are ignored). Rows with fewer than ``k`` candidates are padded with id
        -1 (int ids) or None (str ids) and score NaN. Unknown users get the
        popularity ranking.
        """
        self._check_fitted()
        raw = np.atleast_1d(np.asarray(users, dtype=object) if self.user_map_.kind == "str"
                            else np.asarray(users))
        u = self.user_map_.encode(raw, missing="negative")
        cand = None
        if items is not None:
            ci = self.item_map_.encode(np.atleast_1d(items), missing="negative")
            cand = np.unique(ci[ci >= 0])
        idx, scores = self.recommend_indices(u, k, exclude_seen=exclude_seen, candidates=cand,
                                             batch_size=batch_size)
        pad = idx < 0
        if self.item_map_.kind == "str":
            ids = np.empty(idx.shape, dtype=object)
            ids[~pad] = self.item_map_.decode(idx[~pad])
            ids[pad] = None
        else:
            ids = np.full(idx.shape, -1, dtype=np.int64)
            ids[~pad] = self.item_map_.decode(idx[~pad])
        return ids, scores

    def recommend_indices(
        self,
        u: np.ndarray,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: np.ndarray | None = None,
        exclude: sp.csr_array | None = None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k over dense indices: ``(item_idx (-1 padded), scores (NaN padded))``.

        ``exclude`` is an extra users x items CSR whose nonzeros are removed
        (e.g. an evaluator's own training matrix); ``exclude_seen`` removes the
        model's training pairs. Scores are computed in user batches so memory
        stays at ``batch_size x n_items``.
        """
        self._check_fitted()
        if not isinstance(k, int | np.integer) or k <= 0:
            raise DataError(f"k must be a positive integer, got {k!r}")
        u = np.asarray(u, dtype=np.int64)
        n_items = self.n_items
        k_eff = int(min(k, n_items if candidates is None else len(candidates)))
        out_i = np.full((len(u), k), -1, dtype=np.int64)
        out_s = np.full((len(u), k), np.nan, dtype=np.float64)
        if k_eff == 0 or len(u) == 0:
            return out_i, out_s
        if batch_size is None:
            batch_size = max(1, min(4096, 8_000_000 // max(n_items, 1)))
        allowed = None
        if candidates is not None:
            allowed = np.zeros(n_items, dtype=bool)
            allowed[candidates] = True
        for start in range(0, len(u), batch_size):
            ub = u[start:start + batch_size]
            known = (ub >= 0) & (ub < self.n_users)
            block = np.empty((len(ub), n_items), dtype=np.float64)
            if known.any():
                block[known] = self._score(ub[known])
            if (~known).any():
                block[~known] = self._score_unknown_user(int((~known).sum()))
            if allowed is not None:
                block[:, ~allowed] = -np.inf
            rows_known = np.flatnonzero(known)
            if exclude_seen and len(rows_known):
                _mask_rows(block, rows_known, self.seen_, ub[known])
            if exclude is not None:
                rows = np.flatnonzero((ub >= 0) & (ub < exclude.shape[0]))
                _mask_rows(block, rows, exclude, ub[rows])
            top, top_s = _topk(block, k_eff)
            valid = np.isfinite(top_s)
            top = np.where(valid, top, -1)
            top_s = np.where(valid, top_s, np.nan)
            out_i[start:start + len(ub), :k_eff] = top
            out_s[start:start + len(ub), :k_eff] = top_s
        return out_i, out_s

    # ----------------------------------------------------------------- similar
    def _item_vectors(self) -> np.ndarray | sp.csr_array:
        raise RectuneError(f"{type(self).__name__} has no item representation for similar_items")

    def _user_vectors(self) -> np.ndarray | sp.csr_array:
        raise RectuneError(f"{type(self).__name__} has no user representation for similar_users")

    def similar_items(self, items: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Most similar items (cosine of the model's item vectors), excluding the item itself."""
        self._check_fitted()
        idx = self.item_map_.encode(np.atleast_1d(items))
        top, s = _cosine_neighbours(self._item_vectors(), idx, k)
        return _decode_padded(self.item_map_, top), s

    def similar_users(self, users: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Most similar users ("people you may know"), excluding the user itself."""
        self._check_fitted()
        idx = self.user_map_.encode(np.atleast_1d(users))
        top, s = _cosine_neighbours(self._user_vectors(), idx, k)
        return _decode_padded(self.user_map_, top), s

    # ------------------------------------------------------------- persistence
    def _state_arrays(self) -> dict[str, np.ndarray]:
        """Every learned array to save: parameter groups, extras, and base state."""
        arrays = {f"param/{k}": np.asarray(v) for k, v in self.parameters().items()}
        for name in self._extra_arrays:
            arrays[f"extra/{name}"] = np.asarray(getattr(self, name))
        arrays["base/seen_indptr"] = self.seen_.indptr.astype(np.int64)
        arrays["base/seen_indices"] = self.seen_.indices.astype(np.int64)
        arrays["base/item_popularity"] = self.item_popularity_
        return arrays

    def _set_parameters(self, params: dict[str, np.ndarray]) -> None:
        """Install parameter groups by name (inverse of ``parameters()``)."""
        for k, v in params.items():
            setattr(self, k + "_", v)

    def save(self, path: str | Path) -> Path:
        """Write ``config.json`` + ``arrays.safetensors`` (no pickle) into folder ``path``."""
        from safetensors.numpy import save_file

        self._check_fitted()
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.ascontiguousarray(v) for k, v in self._state_arrays().items()}
        for k, v in arrays.items():
            if v.dtype == object:
                raise ModelFileError(f"array {k!r} has dtype object and cannot be saved safely")
        save_file(arrays, str(out / ARRAYS_FILE))
        digest = hashlib.sha256((out / ARRAYS_FILE).read_bytes()).hexdigest()
        config = {
            "format": FORMAT_VERSION,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "rectune_version": _library_version(),
            "params": self.get_params(),
            "state": self._state_json(),
            "user_map": self.user_map_.to_json(),
            "item_map": self.item_map_.to_json(),
            "arrays_sha256": digest,
            "meta": _jsonable_tree(getattr(self, "meta_", {})),
        }
        tmp = out / (CONFIG_FILE + ".tmp")
        tmp.write_text(json.dumps(config))
        tmp.replace(out / CONFIG_FILE)
        return out

    def _state_json(self) -> dict[str, Any]:
        """The non-array learned state saved in ``config.json`` (whole models and deltas)."""
        return {
            "global_mean": self.global_mean_,
            "rating_scale": list(self.rating_scale_) if self.rating_scale_ else None,
            "kind": self.kind_,
            "extra": {n: _jsonable(getattr(self, n)) for n in self._extra_json},
        }

    @staticmethod
    def load(path: str | Path) -> Recommender:
        """Load any saved rectune model; checks class, checksum and version."""
        from safetensors.numpy import load_file

        folder = Path(path)
        cfg_path = folder / CONFIG_FILE
        if not cfg_path.is_file():
            raise ModelFileError(f"{folder}: no {CONFIG_FILE}; not a rectune model folder")
        try:
            config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{cfg_path}: not valid JSON ({exc})") from None
        if "delta_of" in config:
            raise ModelFileError(f"{folder} holds a delta of the model with checksum "
                                 f"{config['delta_of']}, not a whole model: load it with "
                                 "rectune.finetune.delta.load_delta(path, base) and that base")
        cls = _resolve_class(config.get("class"), cfg_path)
        if config.get("format") != FORMAT_VERSION:
            raise ModelFileError(f"{cfg_path}: format {config.get('format')!r} is not "
                                 f"supported (expected {FORMAT_VERSION})")
        if config.get("rectune_version") != _library_version():
            warnings.warn(f"{cfg_path} was saved by rectune {config.get('rectune_version')}, "
                          f"loading with {_library_version()}", stacklevel=2)
        arr_path = folder / ARRAYS_FILE
        if not arr_path.is_file():
            raise ModelFileError(f"{folder}: {ARRAYS_FILE} is missing")
        digest = hashlib.sha256(arr_path.read_bytes()).hexdigest()
        if digest != config.get("arrays_sha256"):
            raise ModelFileError(f"{arr_path}: checksum mismatch (file changed or corrupt)")
        try:
            arrays = load_file(str(arr_path))
        except Exception as exc:  # safetensors raises its own error types
            raise ModelFileError(f"{arr_path}: unreadable ({exc})") from None
        model = cls(**config["params"])
        model._restore(config, arrays)
        return model

    def _restore(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.user_map_ = IdMap.from_json(config["user_map"])
        self.item_map_ = IdMap.from_json(config["item_map"])
        st = config["state"]
        self.global_mean_ = float(st["global_mean"])
        self.rating_scale_ = tuple(st["rating_scale"]) if st["rating_scale"] else None
        self.kind_ = st["kind"]
        self.item_popularity_ = arrays["base/item_popularity"]
        ind = arrays["base/seen_indices"]
        self.seen_ = sp.csr_array((np.ones(len(ind), dtype=np.float32), ind,
                                   arrays["base/seen_indptr"]),
                                  shape=(len(self.user_map_), len(self.item_map_)))
        for name, value in st["extra"].items():
            setattr(self, name, value)
        if config.get("meta"):
            self.meta_ = config["meta"]
        for name in self._extra_arrays:
            setattr(self, name, arrays[f"extra/{name}"])
        self._set_parameters({k[len("param/"):]: v for k, v in arrays.items()
                              if k.startswith("param/")})
        self._after_load()

    def _after_load(self) -> None:
        """Rebuild caches derived from the loaded state (e.g. neighbour lists)."""


# ---------------------------------------------------------------------- helpers
def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, tuple):
        return list(v)
    return v


def _jsonable_tree(v: Any) -> Any:
    """Recursively JSON-safe copy of metadata (dicts, lists, numpy scalars/arrays)."""
    if isinstance(v, dict):
        return {str(k): _jsonable_tree(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable_tree(x) for x in v]
    return _jsonable(v)


def _resolve_class(name: Any, where: Path) -> type[Recommender]:
    """Import a model class named in a config file, only from inside rectune."""
    if not isinstance(name, str) or not name.startswith("rectune."):
        raise ModelFileError(f"{where}: class {name!r} is not a rectune model")
    module, _, qual = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), qual)
    except (ImportError, AttributeError):
        raise ModelFileError(f"{where}: unknown model class {name!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        raise ModelFileError(f"{where}: {name!r} is not a Recommender")
    return cls


def _mask_rows(block: np.ndarray, rows: np.ndarray, mat: sp.csr_array, users: np.ndarray) -> None:
    """Set ``block[rows[j], mat[users[j]].indices] = -inf`` for all j, vectorised."""
    indptr = mat.indptr
    starts, ends = indptr[users], indptr[users + 1]
    lens = ends - starts
    if lens.sum() == 0:
        return
    rr = np.repeat(rows, lens)
    offs = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    cols = mat.indices[np.repeat(starts, lens) + offs]
    keep = cols < block.shape[1]
    block[rr[keep], cols[keep]] = -np.inf


def _topk(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k, descending; ties broken by lower item index (deterministic)."""
    n = block.shape[1]
    if k < n:
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        # argpartition does not break ties by index: include every item tied with the k-th
        kth = np.take_along_axis(block, part, axis=1).min(axis=1, keepdims=True)
        ties_outside = (block >= kth).sum(axis=1) > k
        if ties_outside.any():
            rows = np.flatnonzero(ties_outside)
            full = np.argsort(-block[rows], axis=1, kind="stable")[:, :k]
            part[rows] = full
    else:
        part = np.broadcast_to(np.arange(n), block.shape).copy()
    vals = np.take_along_axis(block, part, axis=1)
    order = np.lexsort((part, -vals), axis=-1)
    top = np.take_along_axis(part, order, axis=1)[:, :k]
    return top, np.take_along_axis(vals, order, axis=1)[:, :k]


def _cosine_neighbours(vectors: np.ndarray | sp.csr_array, idx: np.ndarray,
                       k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k cosine neighbours of rows ``idx`` among all rows, excluding self."""
    if sp.issparse(vectors):
        v = sp.csr_array(vectors, dtype=np.float64)
        norms = np.sqrt(np.asarray(v.multiply(v).sum(axis=1)).ravel())
        sims = np.asarray((v[idx] @ v.T).toarray())
    else:
        v = np.asarray(vectors, dtype=np.float64)
        norms = np.linalg.norm(v, axis=1)
        sims = v[idx] @ v.T
    denom = np.outer(norms[idx], norms)
    with np.errstate(divide="ignore", invalid="ignore"):
        sims = np.where(denom > 0, sims / np.where(denom > 0, denom, 1), 0.0)
    sims[np.arange(len(idx)), idx] = -np.inf
    k_eff = min(k, sims.shape[1] - 1)
    out_i = np.full((len(idx), k), -1, dtype=np.int64)
    out_s = np.full((len(idx), k), np.nan)
    if k_eff > 0:
        top, s = _topk(sims, k_eff)
        out_i[:, :k_eff], out_s[:, :k_eff] = top, s
    return out_i, out_s


def _decode_padded(m: IdMap, idx: np.ndarray) -> np.ndarray:
    pad = idx < 0
    if m.kind == "str":
        ids = np.empty(idx.shape, dtype=object)
        ids[pad] = None
    else:
        ids = np.full(idx.shape, -1, dtype=np.int64)
    ids[~pad] = m.decode(idx[~pad])
    return ids


Task = Literal["rating", "ranking"]
