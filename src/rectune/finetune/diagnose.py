"""Transferability diagnostic: will a pre-trained model help on this new data at all?

Computed *before* any training, from the data and the pre-trained model alone, so
that a choice made by :func:`rectune.finetune.auto` comes with the reasons a user
can check. A fine-tuned model carries users' learned state from the source domain
into the target; that only helps when users behave alike in both. Measured on the
users the two domains share:

* overlap counts — source / target users and items, shared users and items, and
  target users and items the model has never seen (their rows start from the
  new-row policy, not from transfer);
* ``mean_rating_corr`` — Pearson correlation, across shared users, of their mean
  rating in the source and in the target (explicit data only). On a real product
  review set with two categories the issue reports 0.13, and transfer hurt;
* ``activity_corr`` — Pearson correlation of ``log(1 + number of ratings)``
  (heavy-tailed counts: the log keeps a few power users from deciding it) and
  ``activity_spearman`` of the raw counts;
* ``zero_shot`` — the source model's error on the target's validation slice
  without any training on it, with **biases only** (``mu + b_u + b_i``; items
  the model does not know get ``b_i = 0``), next to the target's own mean as
  a reference: if the source user biases do not beat the target mean, they are
  noise for the target. Models without biases report their full zero-shot
  prediction (RMSE), ranking models their zero-shot NDCG@10.

The source data is the pre-training data (``old_data``). Without it, the source
activity comes from the model's record of its training pairs (``seen_``) and the
mean-rating correlation is ``None``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rectune._errors import DataError
from rectune.data.interactions import Interactions
from rectune.models.base import Recommender

__all__ = ["transferability"]

#: fewer shared users than this: correlations are reported as None (too noisy to read)
MIN_SHARED = 3


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < MIN_SHARED or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    from scipy.stats import rankdata

    return _pearson(rankdata(x), rankdata(y))


def _per_user(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """(count, mean value) per user index of ``data``'s user map."""
    n = np.bincount(data.user, minlength=data.n_users).astype(np.float64)
    s = np.bincount(data.user, weights=data.value.astype(np.float64), minlength=data.n_users)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
    return n, mean


def _raw_users(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into ``data``'s map) of users with rows, and their raw ids."""
    idx = np.unique(data.user)
    return idx, data.user_map.decode(idx)


def _biases_only(model: Recommender, data: Interactions) -> np.ndarray | None:
    """``mu + b_u + b_i`` of ``model`` for ``data``'s rows (unknown rows get 0 biases)."""
    params = model.parameters()
    if "user_bias" not in params or "item_bias" not in params:
        return None
    bu = np.asarray(params["user_bias"], dtype=np.float64)
    bi = np.asarray(params["item_bias"], dtype=np.float64)
    mu = float(np.asarray(params.get("global_bias", [model.global_mean_])).reshape(-1)[0])
    u = model.user_map_.encode(data.user_map.decode(data.user), missing="negative")
    i = model.item_map_.encode(data.item_map.decode(data.item), missing="negative")
    u = np.where(u < len(bu), u, -1)
    i = np.where(i < len(bi), i, -1)
    pred = mu + np.where(u >= 0, bu[np.maximum(u, 0)], 0.0) + np.where(i >= 0,
                                                                          bi[np.maximum(i, 0)],
                                                                          0.0)
    lo, hi = model.rating_scale_ or (-np.inf, np.inf)
    return np.clip(pred, lo, hi)


def _rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, np.float64) - p) ** 2)))


def _zero_shot(model: Recommender, fit: Interactions, valid: Interactions) -> dict[str, Any]:
    """The source model on the target validation rows, before any training on the target."""
    if not model.predicts_ratings:
        from rectune.evaluate.evaluator import evaluate_ranking

        try:
            r = evaluate_ranking(model, fit, valid, k=10, metrics=("ndcg",), beyond=False,
                                 n_boot=1)
        except DataError as exc:  # e.g. no relevant validation row
            return {"metric": "ndcg@10", "value": None, "note": str(exc)}
        return {"metric": "ndcg@10", "what": "full model (no biases in this family)",
                "value": float(r.metrics["ndcg@10"])}
    target_mean = float(np.mean(fit.value)) if len(fit) else float(np.mean(valid.value))
    ref = _rmse(valid.value, np.full(len(valid), target_mean))
    pred = _biases_only(model, valid)
    what = "biases only (mu + b_u + b_i; unknown users/items 0)"
    if pred is None:
        u = model.user_map_.encode(valid.user_map.decode(valid.user), missing="negative")
        i = model.item_map_.encode(valid.item_map.decode(valid.item), missing="negative")
        known = (u >= 0) & (i >= 0) & (u < model.n_users) & (i < model.n_items)
        pred = np.full(len(valid), float(model.global_mean_))
        if known.any():
            pred[known] = model.predict_indices(u[known], i[known])
        what = "full model (no biases in this family)"
    return {"metric": "rmse", "what": what, "value": _rmse(valid.value, pred),
            "target_mean_rmse": ref, "target_mean": target_mean,
            "beats_target_mean": bool(_rmse(valid.value, pred) < ref)}


def transferability(
    pretrained: Recommender,
    new_data: Interactions,
    *,
    old_data: Interactions | None = None,
    fit: Interactions | None = None,
    valid: Interactions | None = None,
) -> dict[str, Any]:
    """The transferability diagnostic of ``pretrained`` for ``new_data`` (see module docs).

    Parameters
    ----------
    pretrained:
        The fitted source model (not modified, not trained).
    new_data:
        The target data (all of it: overlap and correlations use every row).
    old_data:
        The source (pre-training) data, for mean ratings and activity of shared users.
    fit, valid:
        The target's fit part and validation slice, for the zero-shot error (the
        reference mean is taken on ``fit``). Default: a random 10% slice, seed 1.

    Returns plain JSON data.
    """
    pretrained._check_fitted()
    if not isinstance(new_data, Interactions) or len(new_data) == 0:
        raise DataError("transferability: new_data must be non-empty Interactions")
    t_idx, t_raw = _raw_users(new_data)
    t_n, t_mean = _per_user(new_data)
    if old_data is not None:
        s_idx, s_raw = _raw_users(old_data)
        s_n_all, s_mean_all = _per_user(old_data)
        s_n, s_mean = s_n_all[s_idx], s_mean_all[s_idx]
        src_items = old_data.item_map.decode(np.unique(old_data.item))
        source_of_truth = "old_data"
    else:
        counts = np.diff(pretrained.seen_.indptr).astype(np.float64)
        s_idx = np.flatnonzero(counts > 0)
        s_raw = pretrained.user_map_.decode(s_idx)
        s_n, s_mean = counts[s_idx], np.full(len(s_idx), np.nan)
        src_items = pretrained.item_map_.decode(np.flatnonzero(pretrained.item_popularity_ > 0))
        source_of_truth = "the model's training pairs (no old_data: no mean ratings)"
    # shared users by raw id (the two maps may differ); raw ids are unique on each side
    _, src_rows, hit_rows = np.intersect1d(s_raw, t_raw, assume_unique=True,
                                           return_indices=True)
    tgt_rows = t_idx[hit_rows]
    n_shared = len(hit_rows)
    explicit = new_data.kind != "implicit" and (old_data is None or old_data.kind != "implicit")
    mean_corr = None
    if explicit and old_data is not None:
        mean_corr = _pearson(s_mean[src_rows], t_mean[tgt_rows])
    act_s, act_t = s_n[src_rows], t_n[tgt_rows]
    tgt_items = new_data.item_map.decode(np.unique(new_data.item))
    known_u = pretrained.user_map_.encode(t_raw, missing="negative")
    known_u = known_u[(known_u >= 0) & (known_u < pretrained.n_users)]
    model_counts = np.diff(pretrained.seen_.indptr)
    known_i = pretrained.item_map_.encode(tgt_items, missing="negative")
    known_i = known_i[(known_i >= 0) & (known_i < pretrained.n_items)]
    out: dict[str, Any] = {
        "source": source_of_truth,
        "overlap": {
            "source_users": len(s_idx), "target_users": len(t_idx),
            "shared_users": n_shared,
            "shared_user_fraction_of_target": n_shared / max(len(t_idx), 1),
            "source_items": len(src_items), "target_items": len(tgt_items),
            "shared_items": len(np.intersect1d(src_items, tgt_items)),
            "target_users_unknown_to_model": int(len(t_idx) - int(
                (model_counts[known_u] > 0).sum())),
            "target_items_unknown_to_model": int(len(tgt_items) - int(
                (pretrained.item_popularity_[known_i] > 0).sum())),
            "target_rows_of_shared_users": int(act_t.sum()),
        },
        "mean_rating_corr": mean_corr,
        "activity_corr": _pearson(np.log1p(act_s), np.log1p(act_t)),
        "activity_spearman": _spearman(act_s, act_t),
    }
    if fit is None or valid is None:
        from rectune.data.protocols import validation_slice

        s = validation_slice(new_data, 0.1, seed=1)
        fit, valid = s.train, s.test
    out["zero_shot"] = _zero_shot(pretrained, fit, valid) if len(valid) else None
    out["summary"] = summary(out)
    return out


def summary(d: dict[str, Any]) -> str:
    """One plain sentence of the diagnostic, for reports and the command line."""
    ov = d["overlap"]
    parts = [f"{ov['shared_users']:,} shared users "
             f"({100 * ov['shared_user_fraction_of_target']:.0f}% of target users)"]
    if d.get("mean_rating_corr") is not None:
        parts.append(f"mean-rating correlation {d['mean_rating_corr']:.2f}")
    if d.get("activity_corr") is not None:
        parts.append(f"activity correlation {d['activity_corr']:.2f}")
    z = d.get("zero_shot")
    if z and z.get("value") is not None:
        if z["metric"] == "rmse" and "target_mean_rmse" in z:
            parts.append(f"zero-shot RMSE {z['value']:.3f} ({z['what'].split(' (')[0]}) vs "
                         f"{z['target_mean_rmse']:.3f} for the target mean")
        else:
            parts.append(f"zero-shot {z['metric']} {z['value']:.3f}")
    return "; ".join(parts)
