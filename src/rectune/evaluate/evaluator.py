"""Score a fitted model on held-out data: rating errors and full-ranking top-N lists.

What the evaluator guarantees (DESIGN.md, "Evaluation"):

* **No leak.** Before anything is scored, the test pairs are checked against the
  evaluator's training data, against the candidate filter and against the pairs
  the model itself was trained on (``model.seen_``). A shared ``(user, item)`` pair
  raises :class:`~rectune.DataError` naming it: a leaked test item would either be
  filtered away (it can never be a hit) or learned (it is a guaranteed hit).
* **The candidate filter is training data only.** By default each user's items in
  ``train`` are removed from the candidates; test items never are. Ranking is over
  the model's whole catalogue (no sampled negatives).
* **Unknown ids are scored, not dropped.** A test user or item the model has no
  training data for gets the model's own fallback (``_predict_unknown`` /
  ``_score_unknown_user``, popularity for most models). Such rows stay in every
  average and are counted, and metrics are also reported for the known part alone,
  so a protocol where most test users are new (the temporal one) is read correctly.
* **Index spaces are reconciled, never assumed.** The model, train and test may
  use different id maps (a fine-tuned model extends its maps); every array is
  re-expressed in the model's index space through the raw ids.

Per-user arrays are kept so results can be bootstrapped (95% intervals) and
pair-tested (:func:`rectune.evaluate.paired_test`) between models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rectune._errors import DataError
from rectune.data.idmap import IdMap
from rectune.data.interactions import Interactions
from rectune.evaluate.beyond import (
    catalog_coverage,
    gini_index,
    intra_list_diversity,
    novelty,
    personalization,
)
from rectune.evaluate.ranking import PER_USER_METRICS, mean, ranking_metrics_per_user
from rectune.evaluate.stats import bootstrap_ci

if TYPE_CHECKING:
    from rectune.models.base import Recommender

__all__ = [
    "EvalResult",
    "check_no_leak",
    "evaluate_ranking",
    "evaluate_ratings",
    "item_feature_vectors",
]

# ------------------------------------------------------------------ index spaces
def _to_space(src: IdMap, idx: np.ndarray, dst: IdMap) -> np.ndarray:
    """Indices of ``src`` re-expressed in ``dst`` (-1 where ``dst`` lacks the id).

    Shared or extended maps cost nothing; otherwise the raw ids are hashed once.
    """
    idx = np.asarray(idx, dtype=np.int64)
    if src is dst or src.is_prefix_of(dst):
        return idx.copy()
    if dst.is_prefix_of(src):
        return np.where(idx < len(dst), idx, -1)
    if len(dst) == 0 or src.kind != dst.kind:
        return np.full(len(idx), -1, dtype=np.int64)
    return dst.encode(src.decode(idx), missing="negative")


def _pairs_in(inter: Interactions, umap: IdMap, imap: IdMap) -> tuple[np.ndarray, np.ndarray]:
    return _to_space(inter.user_map, inter.user, umap), _to_space(inter.item_map, inter.item, imap)


def _raw(m: IdMap, i: int) -> Any:
    v = m.decode([i])[0]
    return v.item() if isinstance(v, np.generic) else v


def _overlap(keys_a: np.ndarray, keys_b: np.ndarray) -> np.ndarray:
    """Positions of ``keys_b`` that also occur in ``keys_a``."""
    return np.flatnonzero(np.isin(keys_b, keys_a))


def check_no_leak(train: Interactions, test: Interactions, *, what: str = "train") -> None:
    """Raise :class:`DataError` if a ``(user, item)`` pair of ``test`` also occurs in ``train``.

    Pairs are compared by raw id, so the two tables may use different maps.
    """
    if len(train) == 0 or len(test) == 0:
        return
    tu, ti = _pairs_in(test, train.user_map, train.item_map)
    ok = (tu >= 0) & (ti >= 0)
    n_items = max(train.n_items, 1)
    keys_train = train.user * np.int64(n_items) + train.item
    keys_test = tu[ok] * np.int64(n_items) + ti[ok]
    hit = _overlap(keys_train, keys_test)
    if len(hit):
        row = int(np.flatnonzero(ok)[hit[0]])
        raise DataError(
            f"test leak: {len(hit)} test (user, item) pair(s) also occur in {what}, e.g. "
            f"user={_raw(test.user_map, int(test.user[row]))!r}, "
            f"item={_raw(test.item_map, int(test.item[row]))!r}; train and test must be disjoint"
        )


def _check_model_leak(model: Recommender, test: Interactions) -> None:
    """The model's own training pairs (``seen_``) must not contain a test pair."""
    seen = model.seen_
    if seen.nnz == 0 or len(test) == 0:
        return
    u, i = _pairs_in(test, model.user_map_, model.item_map_)
    ok = (u >= 0) & (i >= 0) & (u < seen.shape[0]) & (i < seen.shape[1])
    n_items = np.int64(max(seen.shape[1], 1))
    rows = np.repeat(np.arange(seen.shape[0], dtype=np.int64), np.diff(seen.indptr))
    keys_seen = rows * n_items + seen.indices.astype(np.int64)
    hit = _overlap(keys_seen, u[ok] * n_items + i[ok])
    if len(hit):
        row = int(np.flatnonzero(ok)[hit[0]])
        raise DataError(
            f"test leak: {type(model).__name__} was trained on {len(hit)} test (user, item) "
            f"pair(s), e.g. user={_raw(test.user_map, int(test.user[row]))!r}, "
            f"item={_raw(test.item_map, int(test.item[row]))!r}; fit it on the training part only"
        )


def _model_user_counts(model: Recommender) -> np.ndarray:
    return np.diff(model.seen_.indptr).astype(np.int64)


# ---------------------------------------------------------------------- ratings
def evaluate_ratings(
    model: Recommender,
    test: Interactions,
    *,
    train: Interactions | None = None,
    clip: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    return_errors: bool = False,
) -> dict[str, Any]:
    """RMSE and MAE over **all** test rows, predictions clipped to the rating scale.

    Rows whose user or item the model has no training data for are predicted by the
    model's fallback (e.g. the global mean, or a bias-only estimate) and stay in
    the averages, as PROTOCOLS.md's fixed 80/20 requires; they are counted
    (``n_unknown_user``, ``n_unknown_item``, ``n_unknown``) and the errors on the
    known rows alone are reported as ``rmse_known`` / ``mae_known``.
    ``rmse_ci`` / ``mae_ci`` are 95% bootstrap intervals over test rows (the RMSE
    interval is the square root of the MSE one: the root is monotone).
    ``return_errors=True`` adds the per-row ``squared_errors`` / ``abs_errors``
    arrays (in test row order) for paired tests.
    """
    model._check_fitted()
    if not isinstance(test, Interactions):
        raise DataError(f"test must be rectune Interactions, got {type(test).__name__}")
    if len(test) == 0:
        raise DataError("the test set is empty; RMSE/MAE over no rating are undefined")
    if not model.predicts_ratings:
        raise DataError(f"{type(model).__name__} is a ranking-only model (predicts_ratings is "
                        "False): RMSE/MAE are undefined; use evaluate_ranking")
    if test.kind != "explicit":
        raise DataError("rating metrics need explicit ratings; the test set is implicit")
    if train is not None:
        check_no_leak(train, test)
    _check_model_leak(model, test)
    u, i = _pairs_in(test, model.user_map_, model.item_map_)
    u = np.where(u >= model.n_users, -1, u)
    i = np.where(i >= model.n_items, -1, i)
    ucount = _model_user_counts(model)
    unknown_user = (u < 0) | (ucount[np.maximum(u, 0)] == 0)
    unknown_item = (i < 0) | (model.item_popularity_[np.maximum(i, 0)] == 0)
    pred = model.predict_indices(u, i, clip=clip)
    truth = test.value.astype(np.float64)
    scale = model.rating_scale_ or test.rating_scale
    if clip and scale is not None:
        pred = np.clip(pred, float(scale[0]), float(scale[1]))
    if not np.isfinite(pred).all():
        bad = int(np.flatnonzero(~np.isfinite(pred))[0])
        raise DataError(f"{type(model).__name__} predicted {pred[bad]} for test row {bad}; "
                        "a model must return finite predictions")
    err = pred - truth
    sq, ab = err * err, np.abs(err)
    unknown = unknown_user | unknown_item
    out: dict[str, Any] = {
        "rmse": float(np.sqrt(sq.mean())),
        "mae": float(ab.mean()),
        "n": len(test),
        "n_unknown_user": int(unknown_user.sum()),
        "n_unknown_item": int(unknown_item.sum()),
        "n_unknown": int(unknown.sum()),
        "rmse_known": float(np.sqrt(sq[~unknown].mean())) if (~unknown).any() else float("nan"),
        "mae_known": float(ab[~unknown].mean()) if (~unknown).any() else float("nan"),
        "rmse_unknown": float(np.sqrt(sq[unknown].mean())) if unknown.any() else float("nan"),
        "clipped_to": list(map(float, scale)) if clip and scale is not None else None,
        "unknown_treatment": (f"predicted by {type(model).__name__}'s fallback for unknown "
                              "users/items and kept in RMSE/MAE"),
    }
    mse_ci = bootstrap_ci(sq, n_boot=n_boot, seed=seed)
    mae_ci = bootstrap_ci(ab, n_boot=n_boot, seed=seed)
    out["rmse_ci"] = [float(np.sqrt(mse_ci.lo)), float(np.sqrt(mse_ci.hi))]
    out["mae_ci"] = [mae_ci.lo, mae_ci.hi]
    if return_errors:
        out["squared_errors"] = sq
        out["abs_errors"] = ab
    return out


# ---------------------------------------------------------------------- ranking
@dataclass(eq=False)
class EvalResult:
    """Outcome of :func:`evaluate_ranking`.

    ``metrics`` holds means over the evaluated users (``"ndcg@10"``...) and the
    beyond-accuracy numbers; ``per_user`` the per-user arrays aligned with
    ``users`` (raw ids, evaluation order) and ``known_user`` (False where the model
    had no training data for the user and scored them by its fallback); ``ci`` the
    95% bootstrap interval of each per-user metric; ``by_group`` the means over
    known and unknown users separately; ``counts`` how many users, rows and items
    took which path. ``top_items`` (model item indices, -1 padded) and
    ``item_popularity`` (training counts per model item) feed the popularity plots.
    """

    k: tuple[int, ...]
    metrics: dict[str, float]
    per_user: dict[str, np.ndarray]
    users: np.ndarray
    known_user: np.ndarray
    ci: dict[str, tuple[float, float]]
    by_group: dict[str, dict[str, float]]
    counts: dict[str, int]
    top_items: np.ndarray
    item_popularity: np.ndarray
    notes: list[str] = field(default_factory=list)

    def to_dict(self, *, per_user: bool = False) -> dict[str, Any]:
        """JSON-ready data; per-user arrays only when asked (they are long)."""
        out: dict[str, Any] = {
            "k": list(self.k),
            "metrics": {m: _f(v) for m, v in self.metrics.items()},
            "ci": {m: [_f(lo), _f(hi)] for m, (lo, hi) in self.ci.items()},
            "by_group": {g: {m: _f(v) for m, v in d.items()} for g, d in self.by_group.items()},
            "counts": dict(self.counts),
            "notes": list(self.notes),
        }
        if per_user:
            out["users"] = [x.item() if isinstance(x, np.generic) else x for x in self.users]
            out["per_user"] = {m: [_f(x) for x in v] for m, v in self.per_user.items()}
        return out


def _f(x: Any) -> float | None:
    """A float for JSON (NaN becomes None: JSON has no NaN)."""
    v = float(x)
    return None if not np.isfinite(v) else v


def item_feature_vectors(
    item_features: pd.DataFrame | None, item_map: IdMap, column: str = "genres"
) -> sp.csr_array | None:
    """Multi-hot ``(n_items, n_values)`` matrix of a list-valued feature (genres), in map order.

    Items absent from the table, or with an empty list, get an all-zero row. None
    when there is no table or no such column (diversity is then not reported).
    """
    if item_features is None or column not in item_features.columns:
        return None
    col = item_features[column]
    exploded = col.explode().dropna()
    if len(exploded) == 0:
        return None
    rows_raw = exploded.index.to_numpy()
    try:
        rows = item_map.encode(rows_raw, missing="negative")
    except DataError:
        return None
    values = exploded.astype(str).to_numpy()
    keep = rows >= 0
    rows, values = rows[keep], values[keep]
    vocab, cols = np.unique(values, return_inverse=True)
    m = sp.csr_array((np.ones(len(rows)), (rows, cols.astype(np.int64))),
                     shape=(len(item_map), len(vocab)))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _ks(k: int | Sequence[int]) -> tuple[int, ...]:
    ks = [k] if isinstance(k, int | np.integer) else list(k)
    if not ks or any(isinstance(x, bool) or not isinstance(x, int | np.integer) or x <= 0
                     for x in ks):
        raise DataError(f"k must be a positive integer or a list of them, got {k!r}")
    return tuple(sorted({int(x) for x in ks}))


def _unknown_user_lists(
    model: Recommender, n: int, k: int, hist: sp.csr_array, batch_size: int | None
) -> np.ndarray:
    """Top-k for users the model cannot index, minus their own history (``hist`` rows).

    The model scores them by its unknown-user fallback; their history (known to
    the evaluator, not to the model) is removed afterwards, so the lists are fetched
    ``k + longest history`` deep and the first k survivors kept (vectorised).
    """
    lens = np.diff(hist.indptr)
    fetch = int(min(model.n_items, k + (int(lens.max()) if len(lens) else 0)))
    top, _ = model.recommend_indices(np.full(n, -1, dtype=np.int64), max(fetch, 1),
                                     exclude_seen=False, batch_size=batch_size)
    n_items = np.int64(model.n_items)
    rows = np.repeat(np.arange(n, dtype=np.int64), lens)
    hist_keys = rows * n_items + hist.indices.astype(np.int64)
    q = np.arange(n, dtype=np.int64)[:, None] * n_items + top
    drop = (top < 0) | np.isin(q, hist_keys)
    order = np.argsort(drop, axis=1, kind="stable")  # survivors first, in rank order
    kept = np.take_along_axis(top, order, axis=1)
    kept = np.where(np.take_along_axis(drop, order, axis=1), -1, kept)
    out = np.full((n, k), -1, dtype=np.int64)
    w = min(k, kept.shape[1])
    out[:, :w] = kept[:, :w]
    return out


def evaluate_ranking(
    model: Recommender,
    train: Interactions,
    test: Interactions,
    k: int | Sequence[int] = 10,
    metrics: Sequence[str] = PER_USER_METRICS,
    exclude: Interactions | Literal["train"] | None = "train",
    *,
    relevance_threshold: float | None = None,
    item_features: pd.DataFrame | None = None,
    diversity_column: str = "genres",
    beyond: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int | None = None,
) -> EvalResult:
    """Full-ranking top-N evaluation of ``model`` on ``test``.

    Parameters
    ----------
    train:
        The training data of this evaluation: leak-checked against ``test``, the
        default candidate filter, and the item popularity behind novelty.
    test:
        Held-out interactions; with ``relevance_threshold`` (e.g. 4 on a 1..5
        scale) only rows ``>= threshold`` are relevant, the others are ignored
        (they are neither hits nor filtered).
    exclude:
        ``"train"`` (default): each user's training items are not candidates;
        another :class:`Interactions` to filter instead (leak-checked too); None
        for no filter. Test items are never filtered.
    item_features:
        Item table indexed by raw id; its list column ``diversity_column``
        (genres) gives intra-list diversity.

    Users evaluated: those with at least one relevant test row. A user the model
    has no training data for is ranked by the model's fallback (popularity for
    most models), minus the user's filter items, and counted in
    ``counts["n_users_unknown"]``. Relevant test items outside the model's
    catalogue cannot be recommended: they count as misses
    (``counts["n_relevant_unrecommendable"]``).
    """
    model._check_fitted()
    for name, x in (("train", train), ("test", test)):
        if not isinstance(x, Interactions):
            raise DataError(f"{name} must be rectune Interactions, got {type(x).__name__}")
    ks = _ks(k)
    kmax = ks[-1]
    check_no_leak(train, test)
    excl = train if isinstance(exclude, str) and exclude == "train" else exclude
    if isinstance(exclude, str) and exclude != "train":
        raise DataError(f"exclude must be 'train', an Interactions or None, not {exclude!r}")
    if excl is not None and excl is not train:
        check_no_leak(excl, test, what="the candidate filter (exclude)")
    _check_model_leak(model, test)

    rel = test.take(test.value >= relevance_threshold) if relevance_threshold is not None \
        else test
    if len(rel) == 0:
        raise DataError("no relevant test interaction"
                        + (f" (value >= {relevance_threshold})" if relevance_threshold else "")
                        + "; nothing to rank against")
    umap, imap = model.user_map_, model.item_map_
    n_model_items = model.n_items

    # evaluated users in test-map order, then their model indices
    eval_users_t = np.unique(rel.user)
    mu = _to_space(rel.user_map, eval_users_t, umap)
    mu = np.where(mu >= model.n_users, -1, mu)
    ucount = _model_user_counts(model)
    known = (mu >= 0) & (ucount[np.maximum(mu, 0)] > 0)
    row_of = np.full(rel.n_users, -1, dtype=np.int64)
    row_of[eval_users_t] = np.arange(len(eval_users_t))

    # truth matrix over model items + relevant test items the model lacks
    ti = _to_space(rel.item_map, rel.item, imap)
    ti = np.where(ti >= n_model_items, -1, ti)
    missing = ti < 0
    extra_ids, extra_idx = np.unique(rel.item[missing], return_inverse=True)
    ti[missing] = n_model_items + extra_idx
    n_eval_items = n_model_items + len(extra_ids)
    truth = sp.csr_array((np.ones(len(rel)), (row_of[rel.user], ti)),
                         shape=(len(eval_users_t), n_eval_items))
    truth.sum_duplicates()

    # candidate filter: per evaluated user, their items in the filter table
    n_eval = len(eval_users_t)
    if excl is not None and len(excl):
        eu = _to_space(excl.user_map, excl.user, rel.user_map)
        ei = _to_space(excl.item_map, excl.item, imap)
        ok = (eu >= 0) & (ei >= 0) & (ei < n_model_items)
        er = np.where(ok, row_of[np.maximum(eu, 0)], -1)
        ok &= er >= 0
        hist = sp.csr_array((np.ones(int(ok.sum())), (er[ok], ei[ok])),
                            shape=(n_eval, n_model_items))
        hist.sum_duplicates()
    else:
        hist = sp.csr_array((n_eval, n_model_items))

    top = np.full((n_eval, kmax), -1, dtype=np.int64)
    in_map = mu >= 0
    if in_map.any():
        rows = np.flatnonzero(in_map)
        # the filter re-indexed by the model's user index (recommend_indices reads it so)
        hr = np.repeat(np.arange(n_eval, dtype=np.int64), np.diff(hist.indptr))
        sel = in_map[hr]
        excl_model = sp.csr_array((np.ones(int(sel.sum())), (mu[hr[sel]], hist.indices[sel])),
                                  shape=(model.n_users, n_model_items))
        excl_model.sum_duplicates()
        excl_model.sort_indices()
        top[rows], _ = model.recommend_indices(mu[rows], kmax, exclude_seen=False,
                                               exclude=excl_model, batch_size=batch_size)
    if (~in_map).any():
        rows = np.flatnonzero(~in_map)
        top[rows] = _unknown_user_lists(model, len(rows), kmax, hist[rows], batch_size)

    per_user = ranking_metrics_per_user(top, truth, list(ks), list(metrics))
    out_metrics = {m: mean(v) for m, v in per_user.items()}

    # beyond accuracy, over the model's catalogue
    tr_items = _to_space(train.item_map, train.item, imap)
    tr_items = tr_items[(tr_items >= 0) & (tr_items < n_model_items)]
    item_pop = np.bincount(tr_items, minlength=n_model_items).astype(np.float64)
    n_train_users = int(np.count_nonzero(train.user_counts()))
    notes: list[str] = []
    vectors = item_feature_vectors(item_features, imap, diversity_column) if beyond else None
    if beyond:
        for kk in ks:
            lists = top[:, :kk]
            out_metrics[f"coverage@{kk}"] = catalog_coverage(lists, n_model_items)
            out_metrics[f"gini@{kk}"] = gini_index(lists, n_model_items)
            out_metrics[f"personalization@{kk}"] = personalization(lists, n_model_items)
            if n_train_users > 0 and item_pop.max(initial=0) <= n_train_users:
                per_user[f"novelty@{kk}"] = novelty(lists, item_pop, n_users=n_train_users)
            else:
                per_user[f"novelty@{kk}"] = novelty(lists, np.maximum(item_pop, 0))
            out_metrics[f"novelty@{kk}"] = mean(per_user[f"novelty@{kk}"])
            if vectors is not None:
                per_user[f"diversity@{kk}"] = intra_list_diversity(lists, vectors)
                out_metrics[f"diversity@{kk}"] = mean(per_user[f"diversity@{kk}"])
        if vectors is None:
            notes.append(f"diversity not reported: no item feature column {diversity_column!r}")

    ci: dict[str, tuple[float, float]] = {}
    for m, v in per_user.items():
        if np.isfinite(v).any():
            c = bootstrap_ci(v, n_boot=n_boot, seed=seed)
            ci[m] = (c.lo, c.hi)
    by_group = {
        "known_users": {m: mean(v[known]) for m, v in per_user.items()},
        "unknown_users": {m: mean(v[~known]) for m, v in per_user.items()},
    }
    unrecommendable = int(missing.sum())
    if unrecommendable:
        notes.append(f"{unrecommendable} relevant test rows name items outside the model's "
                     "catalogue; they count as misses")
    if (~known).any():
        notes.append(f"{int((~known).sum())} of {n_eval} evaluated users are unknown to the "
                     "model and were ranked by its fallback")
    counts = {
        "n_test_rows": len(test),
        "n_relevant": len(rel),
        "n_users_evaluated": n_eval,
        "n_users_unknown": int((~known).sum()),
        "n_relevant_unrecommendable": unrecommendable,
        "n_catalogue": n_model_items,
        "n_filtered": int(hist.nnz),
    }
    users = rel.user_map.decode(eval_users_t)
    return EvalResult(ks, out_metrics, per_user, users, known, ci, by_group, counts, top,
                      item_pop, notes)
