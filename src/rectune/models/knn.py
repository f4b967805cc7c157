"""Neighbourhood collaborative filtering: UserKNN, ItemKNN (Surprise's k-NN family) and
ImplicitItemKNN (implicit's item-item recommenders).

Similarities come from *sparse sufficient statistics* (:mod:`._knn_stats`):
per co-rated pair sums of counts, products, squares and residuals, built with
sparse products and never as a dense ``n x n`` array. They are the model's
fine-tuning state: :meth:`UserKNN.update` adds new events to them exactly, so
an updated model equals one refitted on old + new data, and the neighbour
structures used for prediction are views rebuilt from them.

Prediction follows Surprise exactly: for ``(u, i)`` the candidates are the
neighbours that rated the target (users who rated ``i`` for UserKNN, items
rated by ``u`` for ItemKNN); the ``k`` most similar are kept (ties: the rating
that arrived first, as Surprise) and those with a positive similarity are
averaged by rule:

- ``plain`` (KNNBasic):    ``sum s r / sum s``
- ``mean`` (KNNWithMeans): ``mu_x + sum s (r - mu_x') / sum s``
- ``zscore`` (KNNWithZScore): ``mu_x + sigma_x sum s (r - mu_x') / sigma_x' / sum s``
- ``baseline`` (KNNBaseline): ``b_ui + sum s (r - b_x'y) / sum s``, ``b = mu + b_u + b_i``

With fewer than ``min_k`` contributing neighbours the prediction is the rule's
fallback (global mean for ``plain``, ``mu_x`` for ``mean``/``zscore``, ``b_ui``
for ``baseline``) and :meth:`known` is False for that pair.

Memory: the statistics hold one float64 per moment per co-rated pair (2 to 4
moments: count, dot, squares, sums or residuals), and the full positive
similarity is kept for exact prediction. The co-rated pairs are at most
``min(n^2, sum over raters of deg(rater)^2)``, the estimate ``memory_limit``
is checked against. On MovieLens 100K: 1.97M item pairs (estimate 2.83M), 78 MB
of statistics for pearson; 0.86M user pairs, 36 MB. A catalogue of 10^5 items
with popular items co-rated by most users approaches 10^10 pairs: there use
``keep_statistics=False`` (the similarity is computed in row blocks whose work
stays in budget) with ``max_neighbors=M`` (each row keeps its top-M, about
``16 n M`` bytes). Prediction then approximates Surprise's top-k among raters
by the top-k among those M, and ``update`` refits instead of updating in place.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import numpy as np
import scipy.sparse as sp

from rectune._errors import DataError, RectuneError
from rectune.data.idmap import IdMap
from rectune.data.interactions import Interactions
from rectune.models._knn_kernels import (
    csr_from,
    csr_parts,
    implicit_weighting,
    knn_aggregate,
    merge_events,
    prune_rows,
    ranked_rows,
    sparse_pair_dot,
)
from rectune.models._knn_stats import (
    SIMILARITIES,
    Baselines,
    EventBatch,
    SufficientStats,
    als_biases,
    blockwise_similarity,
    bytes_per_pair,
    estimate_pairs,
    events_csr,
    moments_for,
)
from rectune.models.base import FitOptions, Recommender
from rectune.models.baseline import Baseline

__all__ = ["ImplicitItemKNN", "ItemKNN", "UserKNN"]

RULES: tuple[str, ...] = ("plain", "mean", "zscore", "baseline")
K = TypeVar("K", bound="_ExplicitKNN")
_GIB = float(2**30)


# ------------------------------------------------------------------ helpers
def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise DataError(msg)


def _validate(model: Recommender, spec: dict[str, tuple[str, Any]]) -> None:
    """Check hyper-parameters against ``name: (kind, bound)``; kinds are ``int``, ``num``
    (numbers >= bound), their ``?``-suffixed optional forms, ``bool`` and ``choice``."""
    for name, (kind, bound) in spec.items():
        v = getattr(model, name)
        if kind.endswith("?") and v is None:
            continue
        if kind == "choice":
            ok, want = v in bound, f"one of {bound}"
        elif kind == "bool":
            ok, want = isinstance(v, bool), "a bool"
        else:
            types = (int, np.integer) if kind.startswith("int") else (int, float, np.number)
            ok = isinstance(v, types) and not isinstance(v, bool) and v >= bound
            want = f"{'an integer' if kind.startswith('int') else 'a number'} >= {bound}"
            want += " or None" if kind.endswith("?") else ""
        _check(bool(ok), f"{type(model).__name__}: {name} must be {want}, got {v!r}")


def _unfit_on_error(model: Recommender) -> None:
    """An interrupted fit leaves the model unfitted rather than half-built."""
    for name in ("user_map_", "item_map_"):
        if hasattr(model, name):
            delattr(model, name)


def _merge_new(model: Recommender, new: Interactions) -> Interactions:
    """``new`` re-expressed over the model's maps extended with its ids."""
    if not isinstance(new, Interactions):
        raise DataError(f"update expects rectune Interactions, got {type(new).__name__}")
    if len(new) == 0:
        raise DataError("update got an empty batch of interactions")
    if new.kind != model.kind_:
        raise DataError(f"{type(model).__name__} was fitted on {model.kind_} data; the update "
                        f"batch is {new.kind}")
    umap = model.user_map_.extend(new.user_map.ids)
    imap = model.item_map_.extend(new.item_map.ids)
    return new.with_maps(umap, imap)


def _set_base_from(model: Recommender, u: np.ndarray, i: np.ndarray, v: np.ndarray,
                   w: np.ndarray, new: Interactions) -> None:
    """Refresh the base state (maps, seen, global mean, popularity) after an update."""
    model.user_map_, model.item_map_ = new.user_map, new.item_map
    seen = sp.csr_array((np.ones(len(u), dtype=np.float32), (u, i)),
                        shape=(new.n_users, new.n_items))
    seen.sort_indices()
    model.seen_ = seen
    model.global_mean_ = float(np.dot(w, v) / w.sum())
    model.item_popularity_ = np.bincount(i, minlength=new.n_items).astype(np.float32)


# ------------------------------------------------------------- explicit k-NN
class _ExplicitKNN(Recommender):
    """Shared machinery of UserKNN and ItemKNN (x = entity compared, y = the other axis)."""

    family = "knn"
    _user_based: ClassVar[bool] = False

    def __init__(self, k: int = 40, min_k: int = 1, similarity: str = "cosine",
                 rule: str = "mean", shrinkage: float | None = None, min_support: int = 1,
                 max_neighbors: int | None = None, keep_statistics: bool = True,
                 memory_limit: int | None = 4 * 2**30, baseline_reg_user: float = 15.0,
                 baseline_reg_item: float = 10.0, baseline_epochs: int = 10) -> None:
        self.k = k
        self.min_k = min_k
        self.similarity = similarity
        self.rule = rule
        self.shrinkage = shrinkage
        self.min_support = min_support
        self.max_neighbors = max_neighbors
        self.keep_statistics = keep_statistics
        self.memory_limit = memory_limit
        self.baseline_reg_user = baseline_reg_user
        self.baseline_reg_item = baseline_reg_item
        self.baseline_epochs = baseline_epochs

    @property
    def _x(self) -> str:
        return "user" if self._user_based else "item"

    def _validate_params(self) -> None:
        _validate(self, {
            "k": ("int", 1), "min_k": ("int", 0), "similarity": ("choice", SIMILARITIES),
            "rule": ("choice", RULES), "shrinkage": ("num?", 0), "min_support": ("num", 0),
            "max_neighbors": ("int?", 1), "keep_statistics": ("bool", None),
            "memory_limit": ("num?", 1), "baseline_reg_user": ("num", 0),
            "baseline_reg_item": ("num", 0), "baseline_epochs": ("int", 1)})

    @property
    def statistics(self) -> SufficientStats:
        """The sufficient statistics (the fine-tuning state); absent with
        ``keep_statistics=False``."""
        self._check_fitted()
        if self.stats_ is None:
            raise RectuneError(f"{type(self).__name__} was fitted with keep_statistics=False "
                               "and holds no sufficient statistics")
        return self.stats_

    @property
    def _uses_baselines(self) -> bool:
        return self.similarity == "pearson_baseline" or self.rule == "baseline"

    # -------------------------------------------------------------------- fit
    def _yx(self, u: Any, i: Any) -> tuple[Any, Any]:
        """(rater, entity) from (user, item): items rate users in user-based CF."""
        return (i, u) if self._user_based else (u, i)

    def _fit(self, train: Interactions, features: Any, valid: Interactions | None,
             options: FitOptions) -> None:
        try:
            n = len(train)
            self._build(train.user, train.item, train.value.astype(np.float64), np.ones(n),
                        np.arange(n, dtype=np.int64), train.user_map, train.item_map)
        except BaseException:
            _unfit_on_error(self)
            raise

    def _baselines(self, u: np.ndarray, i: np.ndarray, v: np.ndarray, w: np.ndarray,
                   user_map: IdMap, item_map: IdMap) -> None:
        """Surprise's ALS baselines: the shared :class:`Baseline` on unit-weight events; the
        same sweeps with event weights once a decay has down-weighted old events."""
        if np.all(w == 1.0):
            data = Interactions.from_indices(u, i, v, user_map, item_map)
            b = Baseline(method="als", n_epochs=int(self.baseline_epochs),
                         reg_u=float(self.baseline_reg_user),
                         reg_i=float(self.baseline_reg_item)).fit(data)
            self.user_bias_, self.item_bias_ = b.user_bias_, b.item_bias_
            self.global_bias_ = np.asarray(b.global_bias_, dtype=np.float64).reshape(1)
            return
        mu = float(np.dot(w, v) / w.sum())
        self.user_bias_, self.item_bias_ = als_biases(
            u, i, v, w, len(user_map), len(item_map), mu,
            reg_user=float(self.baseline_reg_user), reg_item=float(self.baseline_reg_item),
            n_epochs=int(self.baseline_epochs))
        self.global_bias_ = np.asarray([mu])

    def _xy_bias(self) -> Baselines:
        mu = float(self.global_bias_[0])
        if self._user_based:
            return Baselines(mu, self.user_bias_, self.item_bias_)
        return Baselines(mu, self.item_bias_, self.user_bias_)

    def _check_memory(self, y: np.ndarray, n_y: int, n_x: int) -> int:
        """Estimated co-rated pairs; refuses the fit when the bytes exceed ``memory_limit``."""
        pairs = estimate_pairs(np.bincount(y, minlength=n_y), n_x)
        moments = moments_for(self.similarity)
        if self.keep_statistics:
            need = pairs * bytes_per_pair(moments)
        else:
            per_row = n_x if self.max_neighbors is None else min(n_x, self.max_neighbors + 1)
            need = n_x * per_row * 16
        if self.memory_limit is not None and need > self.memory_limit:
            top = self.max_neighbors or 100
            raise DataError(
                f"{type(self).__name__}: the {self.similarity} similarity of {n_x:,} "
                f"{self._x}s needs about {need / _GIB:.2f} GiB (up to {pairs:,} co-rated pairs "
                f"x {len(moments)} moments), over memory_limit={self.memory_limit / _GIB:.2f} "
                f"GiB. Set keep_statistics=False with max_neighbors={top} to compute it in row "
                f"blocks keeping each row's top {top} (about "
                f"{n_x * min(n_x, top + 1) * 16 / _GIB:.3f} GiB; exact incremental update is "
                f"then replaced by a refit), or raise memory_limit.")
        return pairs

    def _build(self, u: np.ndarray, i: np.ndarray, v: np.ndarray, w: np.ndarray,
               order: np.ndarray, user_map: IdMap, item_map: IdMap) -> None:
        """Everything learned, from the events (user, item, value, weight, arrival rank)."""
        y, x = self._yx(u, i)
        n_y, n_x = self._yx(len(user_map), len(item_map))
        pairs = self._check_memory(y, n_y, n_x)
        if self._uses_baselines:
            self._baselines(u, i, v, w, user_map, item_map)
        base = self._xy_bias() if self.similarity == "pearson_baseline" else None
        if self.keep_statistics:
            self.stats_: SufficientStats | None = SufficientStats.from_events(
                y, x, v, (n_y, n_x), moments=moments_for(self.similarity), weights=w,
                order=order, baselines=base)
            self._install()
            return
        self.stats_ = None
        r_yx, (w_yx, o_yx) = events_csr(y, x, (n_y, n_x), v, w, order)
        limit = self.memory_limit or 4 * 2**30
        budget = max(int(limit // (16 * 8 * 2)), 1 << 16)
        sim = blockwise_similarity(r_yx, self.similarity, shrinkage=self.shrinkage,
                                   min_support=float(self.min_support), baselines=base,
                                   budget_pairs=min(budget, max(pairs, 1)),
                                   prune=self.max_neighbors)
        self._install(r_yx, w_yx, o_yx, sim)

    def _install(self, r_yx: sp.csr_array | None = None, w_yx: np.ndarray | None = None,
                 o_yx: np.ndarray | None = None, sim: sp.csr_array | None = None, *,
                 keep_means: bool = False) -> None:
        """Derive means, the prediction similarity and the neighbour lists (the views)."""
        if self.stats_ is not None:
            r_yx, w_yx, o_yx = self.stats_.ratings, self.stats_.weights, self.stats_.order
            sim = self.stats_.similarity(self.similarity, self.shrinkage,
                                         float(self.min_support), positive=True)
        assert r_yx is not None and w_yx is not None and o_yx is not None and sim is not None
        self.ratings_, self.event_weights_, self.event_order_ = r_yx, w_yx, o_yx
        v = r_yx.data.astype(np.float64)
        n_x = r_yx.shape[1]
        sw = np.bincount(r_yx.indices, w_yx, minlength=n_x)
        has = sw > 0
        if not keep_means:
            mu_all = float(np.dot(w_yx, v) / w_yx.sum())
            overall = float(np.sqrt(np.dot(w_yx, (v - mu_all) ** 2) / w_yx.sum()))
            mean = np.full(n_x, mu_all)
            mean[has] = np.bincount(r_yx.indices, w_yx * v, minlength=n_x)[has] / sw[has]
            ex2 = np.bincount(r_yx.indices, w_yx * v * v, minlength=n_x)[has] / sw[has]
            var = np.maximum(ex2 - mean[has] ** 2, 0.0)
            var[var <= 1e-12 * ex2] = 0.0  # rounding noise of E[r^2] - E[r]^2 is no spread
            std = np.full(n_x, overall if overall > 0 else 1.0)
            std[has] = np.where(var > 0, np.sqrt(var), std[has])
            setattr(self, f"{self._x}_mean_", mean)
            setattr(self, f"{self._x}_std_", std)
        self._has_x = has
        self._has_y = np.diff(r_yx.indptr) > 0
        pos = sim  # a fresh matrix (statistics or blockwise pass): changed in place
        if len(pos.data) and pos.data.min() < 0:
            pos.data[pos.data < 0] = 0.0
            pos.eliminate_zeros()
        pos.sort_indices()
        if self.max_neighbors is not None:  # top-M others, and always the entity itself
            eye = sp.diags_array(has.astype(np.float64), format="csr")
            pos = sp.csr_array(prune_rows(pos, self.max_neighbors, drop_self=True) + eye)
            pos.sort_indices()
        self.similarity_ = pos
        self.neighbours_ = prune_rows(pos, self.k, drop_self=True)
        self._ratings_ui = sp.csr_array(r_yx.T) if self._user_based else r_yx
        self._ratings_ui.sort_indices()

    # ---------------------------------------------------------------- predict
    def parameters(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        out = {f"{self._x}_mean": getattr(self, f"{self._x}_mean_"),
               f"{self._x}_std": getattr(self, f"{self._x}_std_")}
        if self._uses_baselines:
            out.update(user_bias=self.user_bias_, item_bias=self.item_bias_,
                       global_bias=self.global_bias_)
        return out

    def _neighbour_estimates(self, u: np.ndarray, i: np.ndarray) -> tuple[np.ndarray,
                                                                          np.ndarray]:
        """``(estimate, known)`` for known indices; unknown-like pairs get the fallback."""
        x, y = (u, i) if self._user_based else (i, u)
        n_x, n_y = self.ratings_.shape[1], self.ratings_.shape[0]
        mean = getattr(self, f"{self._x}_mean_")
        std = getattr(self, f"{self._x}_std_")
        b = self._xy_bias() if self.rule == "baseline" else Baselines(0.0, np.zeros(n_x),
                                                                        np.zeros(n_y))
        off = {"plain": b.x_bias, "mean": mean, "zscore": mean,
               "baseline": b.global_mean + b.x_bias}[self.rule]
        scale = std if self.rule == "zscore" else np.ones(n_x)
        agg, ak = knn_aggregate(x, y, self.ratings_, self.event_order_, self.similarity_,
                                int(self.k), off, scale, b.y_bias)
        data = self._has_x[x] & self._has_y[y]
        ok = data & (ak >= max(int(self.min_k), 1))
        agg = np.where(ok, agg, 0.0)
        est = {"plain": np.where(ok, agg, self.global_mean_), "mean": mean[x] + agg,
               "zscore": mean[x] + std[x] * agg,
               "baseline": b.global_mean + b.x_bias[x] + b.y_bias[y] + agg}[self.rule]
        if self.rule != "baseline":  # Surprise: an id without ratings is unknown
            est = np.where(data, est, self.global_mean_)
        return est, ok

    def _predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return self._neighbour_estimates(u, i)[0]

    def _predict_unknown(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        if self.rule != "baseline":
            return np.full(len(u), self.global_mean_, dtype=np.float64)
        out = np.full(len(u), float(self.global_bias_[0]))
        out[u >= 0] += self.user_bias_[u[u >= 0]]
        out[i >= 0] += self.item_bias_[i[i >= 0]]
        return out

    def _known(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        ok = (u >= 0) & (i >= 0)
        out = np.zeros(len(u), dtype=bool)
        if ok.any():
            out[ok] = self._neighbour_estimates(u[ok], i[ok])[1]
        return out

    def _score(self, u: np.ndarray) -> np.ndarray:
        """Ranking scores: similarity-weighted sums of ratings over the top-k neighbour lists
        (ItemKNN ``R_u . N``; UserKNN ``N_u . R``). Not ratings."""
        if self._user_based:
            block = self.neighbours_[u] @ self._ratings_ui
        else:
            block = self._ratings_ui[u] @ self.neighbours_
        return np.asarray(sp.csr_array(block).toarray(), dtype=np.float64)

    def _similar(self, ids: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        from rectune.models.base import _decode_padded

        idmap = self.user_map_ if self._user_based else self.item_map_
        idx = idmap.encode(np.atleast_1d(ids))
        top, s = ranked_rows(self.similarity_, idx, k)
        return _decode_padded(idmap, top), s

    # ---------------------------------------------------------------- update
    def update(self: K, new: Interactions, *, decay: float = 1.0,
               rebaseline: bool = False) -> K:
        """Add new ratings in place, exactly; returns ``self``.

        New users/items grow the model (maps extended, old indices kept). A
        pair rated again gets the new value (the old one's statistics are
        subtracted), whatever the timestamps say. ``decay`` in (0, 1]
        down-weights all earlier events. With ``keep_statistics`` the result
        equals a refit on old + new data (to rounding) for every similarity and
        rule, except that baselines (``pearson_baseline``, ``rule="baseline"``)
        stay frozen for existing ids and new ids get one ALS step;
        ``rebaseline=True`` refits the baselines and recomputes the residual
        moments, matching a refit. Without statistics the model is refitted on
        the merged ratings (``decay`` must then be 1).
        """
        self._check_fitted()
        new = _merge_new(self, new)
        if self.stats_ is None:
            _check(decay == 1.0, f"{type(self).__name__}: decay needs keep_statistics=True")
            u, i, v, o = merge_events(self.ratings_, self.event_order_, new,
                                        not self._user_based)
            self._build(u, i, v, np.ones(len(v)), o, new.user_map, new.item_map)
            _set_base_from(self, u, i, v, np.ones(len(v)), new)
            return self
        base = self.stats_.baselines
        new_xb = new_yb = None
        if self._uses_baselines:
            self._grow_biases(new, self.n_users, self.n_items)
            if base is not None:
                b = self._xy_bias()
                new_xb, new_yb = b.x_bias[len(base.x_bias):], b.y_bias[len(base.y_bias):]
        y, x = self._yx(new.user, new.item)
        self.stats_.update(EventBatch(y, x, new.value), decay, new_x_bias=new_xb,
                           new_y_bias=new_yb, shape=self._yx(new.n_users, new.n_items))
        coo = self.stats_.ratings.tocoo()
        u, i = self._yx(coo.row, coo.col)
        v, w = coo.data.astype(np.float64), self.stats_.weights
        if self._uses_baselines and rebaseline:
            self._baselines(u, i, v, w, new.user_map, new.item_map)
            if base is not None:
                self.stats_.rebase(self._xy_bias())
        _set_base_from(self, u, i, v, w, new)
        self._install()
        return self

    def _grow_biases(self, new: Interactions, n_u: int, n_i: int) -> None:
        """Biases of ids first seen in ``new``: one ALS step (items, then users) given the rest."""
        mu = float(self.global_bias_[0])
        bu = np.concatenate([self.user_bias_, np.zeros(new.n_users - n_u)])
        bi = np.concatenate([self.item_bias_, np.zeros(new.n_items - n_i)])
        v = new.value.astype(np.float64)
        for bias, idx, other, oidx, reg, n_old in (
                (bi, new.item, bu, new.user, self.baseline_reg_item, n_i),
                (bu, new.user, bi, new.item, self.baseline_reg_user, n_u)):
            m = idx >= n_old
            if m.any():
                num = np.bincount(idx[m], v[m] - mu - other[oidx[m]], minlength=len(bias))
                den = float(reg) + np.bincount(idx[m], minlength=len(bias))
                bias[n_old:] = num[n_old:] / den[n_old:]
        self.user_bias_, self.item_bias_ = bu, bi

    # ----------------------------------------------------------- persistence
    def _state_arrays(self) -> dict[str, np.ndarray]:
        arrays = super()._state_arrays()
        if self.stats_ is not None:
            arrays.update(self.stats_.to_arrays("knn/stats/"))
        else:
            arrays.update(csr_parts(self.ratings_, "knn/ratings/"))
            arrays["knn/order"] = self.event_order_
            arrays.update(csr_parts(self.similarity_, "knn/similarity/"))
        return arrays

    def _restore(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self._loaded = {k: v for k, v in arrays.items() if k.startswith("knn/")}
        super()._restore(config, arrays)

    def _after_load(self) -> None:
        arrays = self.__dict__.pop("_loaded", {})
        if "knn/stats/weights" in arrays:
            self.stats_ = SufficientStats.from_arrays(arrays, "knn/stats/")
            self._install(keep_means=True)
        else:
            self.stats_ = None
            r = csr_from(arrays, "knn/ratings/")
            self._install(r, np.ones(r.nnz), arrays["knn/order"],
                          csr_from(arrays, "knn/similarity/"), keep_means=True)


class UserKNN(_ExplicitKNN):
    """User-based k-NN rating prediction (Surprise's KNNBasic/WithMeans/WithZScore/Baseline
    with ``user_based=True``): similar users who rated the item vote for its rating.

    Parameters: ``k`` neighbours, ``min_k`` for a neighbourhood estimate,
    ``similarity`` in cosine / msd / jaccard / pearson / pearson_baseline (over
    common items, as Surprise), ``rule`` plain / mean / zscore / baseline,
    ``shrinkage`` (None = 100 for pearson_baseline's ``(n-1)/(n-1+s)``, else 0;
    other similarities use ``n/(n+s)``), ``min_support`` co-raters, and the
    memory controls of the module docstring. Baselines: Surprise's ALS
    (``baseline_reg_user=15``, ``baseline_reg_item=10``, ``baseline_epochs=10``).
    """

    _user_based = True

    def similar_users(self, users: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The most similar users under the learned similarity (best first, self excluded)."""
        self._check_fitted()
        return self._similar(users, k)

    def _item_vectors(self) -> sp.csr_array:
        return sp.csr_array(self._ratings_ui.T)


class ItemKNN(_ExplicitKNN):
    """Item-based k-NN rating prediction (Surprise's k-NN family with ``user_based=False``):
    the user's ratings of items similar to the target vote for its rating.

    Same parameters as :class:`UserKNN`; means, z-scores and similarities are
    per item.
    """

    _user_based = False

    def similar_items(self, items: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The most similar items under the learned similarity (best first, self excluded)."""
        self._check_fitted()
        return self._similar(items, k)

    def _user_vectors(self) -> sp.csr_array:
        return self._ratings_ui


# ------------------------------------------------------------ implicit k-NN
class ImplicitItemKNN(Recommender):
    """Item-item top-N recommender for implicit feedback (implicit's ItemItemRecommender).

    Item vectors (over users) are optionally re-weighted (``weighting``:
    ``"none"``, ``"tfidf"`` as implicit's TFIDFRecommender, ``"bm25"`` with
    ``bm25_k1``/``bm25_b`` as BM25Recommender), compared by ``similarity``
    (``"cosine"`` of whole vectors, asymmetric with ``alpha != 0.5``, denominator
    ``shrinkage``; or ``"dot"``), and each item keeps its ``k`` most similar
    other items. A user's score for item ``i`` is ``sum_j r_uj N[j, i]`` over the
    items ``j`` they interacted with. implicit keeps the item itself among its
    ``K`` neighbours, so ``k = K - 1`` reproduces implicit's lists.
    """

    family = "knn"
    predicts_ratings = False

    def __init__(self, k: int = 20, similarity: str = "cosine", alpha: float = 0.5,
                 shrinkage: float = 0.0, weighting: str = "none", bm25_k1: float = 1.2,
                 bm25_b: float = 0.75, memory_limit: int | None = 4 * 2**30) -> None:
        self.k = k
        self.similarity = similarity
        self.alpha = alpha
        self.shrinkage = shrinkage
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.memory_limit = memory_limit

    def _validate_params(self) -> None:
        _validate(self, {
            "k": ("int", 1), "similarity": ("choice", ("cosine", "dot")), "alpha": ("num", 0),
            "shrinkage": ("num", 0), "weighting": ("choice", ("none", "tfidf", "bm25")),
            "bm25_k1": ("num", 0), "bm25_b": ("num", 0), "memory_limit": ("num?", 1)})
        _check(self.alpha <= 1, f"ImplicitItemKNN: alpha must be in [0, 1], got {self.alpha!r}")

    def _fit(self, train: Interactions, features: Any, valid: Interactions | None,
             options: FitOptions) -> None:
        try:
            self._build(train.user, train.item, train.value.astype(np.float64),
                        np.arange(len(train), dtype=np.int64), train.n_users, train.n_items)
        except BaseException:
            _unfit_on_error(self)
            raise

    def _build(self, u: np.ndarray, i: np.ndarray, v: np.ndarray, order: np.ndarray,
               n_users: int, n_items: int) -> None:
        pairs = estimate_pairs(np.bincount(u, minlength=n_users), n_items)
        need = pairs * bytes_per_pair(("count", "dot"))
        if self.memory_limit is not None and need > self.memory_limit:
            raise DataError(f"ImplicitItemKNN: {n_items:,} items need about "
                            f"{need / _GIB:.2f} GiB for up to {pairs:,} co-occurring pairs, over "
                            f"memory_limit={self.memory_limit / _GIB:.2f} GiB; raise "
                            f"memory_limit or drop rare items/heavy users first")
        r_ui, (o_ui,) = events_csr(u, i, (n_users, n_items), v, order)
        self.ratings_, self.event_order_ = r_ui, o_ui
        w = implicit_weighting(r_ui, self.weighting, float(self.bm25_k1), float(self.bm25_b))
        self.stats_ = SufficientStats.from_ratings(w, moments=("dot",), order=o_ui)
        self._install()

    def _install(self) -> None:
        sim = self.stats_.vector_similarity(normalize=self.similarity == "cosine",
                                            alpha=float(self.alpha),
                                            shrinkage=float(self.shrinkage))
        self.neighbours_ = prune_rows(sim, self.k, drop_self=True)
        nt = sp.csr_array(self.neighbours_.T)
        nt.sort_indices()
        self._neighbours_t = nt
        self.item_norm_ = np.sqrt(self.stats_.entity_sums(2, 2))

    def parameters(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        return {"item_norm": self.item_norm_}

    def _predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        r, n = self.ratings_, self._neighbours_t
        return sparse_pair_dot(u, i, r.indptr.astype(np.int64), r.indices.astype(np.int64),
                               r.data.astype(np.float64), n.indptr.astype(np.int64),
                               n.indices.astype(np.int64), n.data)

    def _predict_unknown(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return np.zeros(len(u))

    def _score(self, u: np.ndarray) -> np.ndarray:
        return np.asarray(sp.csr_array(self.ratings_[u] @ self.neighbours_).toarray(),
                          dtype=np.float64)

    def similar_items(self, items: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Items most similar under the learned (weighted) similarity, self excluded."""
        from rectune.models.base import _decode_padded

        self._check_fitted()
        idx = self.item_map_.encode(np.atleast_1d(items))
        top, s = ranked_rows(self.stats_.vector_similarity(
            normalize=self.similarity == "cosine", alpha=float(self.alpha),
            shrinkage=float(self.shrinkage)), idx, k)
        return _decode_padded(self.item_map_, top), s

    def _user_vectors(self) -> sp.csr_array:
        return self.ratings_

    def update(self, new: Interactions, *, decay: float = 1.0) -> ImplicitItemKNN:
        """Add new events in place; returns ``self``.

        With ``weighting="none"`` the statistics are updated exactly (equal to a
        refit on old + new); TF-IDF and BM25 weights depend on global counts, so
        those models are rebuilt from the merged events (``decay`` must be 1).
        """
        self._check_fitted()
        new = _merge_new(self, new)
        if self.weighting != "none":
            _check(decay == 1.0, "ImplicitItemKNN: decay needs weighting='none'")
            u, i, v, o = merge_events(self.ratings_, self.event_order_, new, True)
            self._build(u, i, v, o, new.n_users, new.n_items)
            _set_base_from(self, u, i, v, np.ones(len(v)), new)
            return self
        self.stats_.update(EventBatch(new.user, new.item, new.value), decay,
                           shape=(new.n_users, new.n_items))
        self.ratings_, self.event_order_ = self.stats_.ratings, self.stats_.order
        coo = self.ratings_.tocoo()
        _set_base_from(self, coo.row, coo.col, coo.data, self.stats_.weights, new)
        self._install()
        return self

    def _state_arrays(self) -> dict[str, np.ndarray]:
        arrays = super()._state_arrays()
        arrays.update(self.stats_.to_arrays("knn/stats/"))
        if self.weighting != "none":
            arrays.update(csr_parts(self.ratings_, "knn/ratings/"))
            arrays["knn/order"] = self.event_order_
        return arrays

    def _restore(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self._loaded = {k: v for k, v in arrays.items() if k.startswith("knn/")}
        super()._restore(config, arrays)

    def _after_load(self) -> None:
        arrays = self.__dict__.pop("_loaded", {})
        self.stats_ = SufficientStats.from_arrays(arrays, "knn/stats/")
        if "knn/ratings/data" in arrays:
            self.ratings_, self.event_order_ = csr_from(arrays, "knn/ratings/"), arrays["knn/order"]
        else:
            self.ratings_, self.event_order_ = self.stats_.ratings, self.stats_.order
        self._install()
