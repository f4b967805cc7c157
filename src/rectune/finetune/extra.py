"""Fine-tuning SVD++, NMF and BPR: L2-SP, freezing and growth for three more families.

Shared semantics (DESIGN.md, "Fine-tuning"): every group of ``parameters()``
is grown for new ids, optionally re-initialised (``transfer``) or frozen
(``freeze``), and trained on the new data only; rows that existed (and were
trained) in the pre-trained model are pulled towards their pre-trained values
with ``λ·w_g``, rows first seen in the new data get plain L2. Rows absent from
the new data are not touched.

- **SVD++**: the model's per-rating SGD with a proximal anchor on every group,
  including the implicit item factors ``y_j`` (``item_implicit``). ``N(u)``,
  the items behind a user's implicit term, is the fine-tuned model's seen set
  (old ∪ new pairs) -- what it predicts with afterwards.
- **NMF**: multiplicative updates over the new ratings with the anchor split
  into the positive and negative parts of the gradient, so factors stay
  non-negative (:func:`~rectune.finetune._kernels_extra.l2sp_nmf_apply`);
  biases of a biased NMF take SGD steps. The learning rate only concerns
  those biases: multiplicative updates have no step size. Users and items
  are updated *alternately* (Lee & Seung: item sums are recomputed against the
  updated user factors), not simultaneously as Surprise's NMF does: a
  fine-tune starts far from the new data's optimum, where the simultaneous
  step overshoots and the validation error oscillates (measured on a drifted
  synthetic split: alternating decreases it monotonically).
- **BPR**: SGD on triples ``(u, i, j)`` with ``(u, i)`` a new pair and ``j`` a
  sampled negative (never one of the user's old or new positives), early
  stopped on the BPR loss of the validation slice with fixed negatives.

A model trained with ``shuffle=False`` (SVD++, biased NMF) is fine-tuned in
the same fixed order, so for SVD++ ``λ = 0`` continues its own training exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rectune._errors import RectuneError
from rectune.evaluate.rating import rmse
from rectune.finetune._kernels_extra import (
    l2sp_bpr_epoch,
    l2sp_nmf_accumulate,
    l2sp_nmf_apply,
    l2sp_svdpp_epoch,
)
from rectune.finetune.engine import Job
from rectune.finetune.groups import axis_of, check_patterns, grow, matching, trainable_summary
from rectune.models._implicit_kernels import draw_negatives
from rectune.models._mf_kernels import run_epochs
from rectune.models._mf_order import EpochOrder, UserBlockOrder
from rectune.models.bpr import BPR
from rectune.models.mf_nmf import NMF
from rectune.models.mf_svd import SVDpp

SVDPP_GROUPS = ("global_bias", "user_bias", "item_bias", "user_factors", "item_factors",
                "item_implicit")
NMF_GROUPS = ("global_bias", "user_bias", "item_bias", "user_factors", "item_factors")
BPR_GROUPS = ("user_factors", "item_factors", "item_bias")

Reinit = Callable[[str, np.ndarray, np.random.Generator], np.ndarray]


@dataclass
class Groups:
    """Grown, possibly re-initialised tables with their anchors and per-group flags."""

    cur: dict[str, np.ndarray]
    anchors: dict[str, np.ndarray]
    lams: np.ndarray
    train: np.ndarray
    frozen: set[str]
    transfer: set[str]
    summary: str


def _fresh_rows(job: Job, axis: str) -> np.ndarray:
    return ~(job.old_user_rows if axis == "user" else job.old_item_rows)


def _in_fit(job: Job, axis: str, n: int) -> np.ndarray:
    idx = job.fit.user if axis == "user" else job.fit.item
    return np.bincount(idx, minlength=n)[:n] > 0


def prepare_groups(job: Job, order: tuple[str, ...], reinit: Reinit, rng: np.random.Generator,
                   *, nonneg: bool = False) -> Groups:
    """Grow every group of ``order`` the pre-trained model has; resolve freeze/transfer/λ.

    Groups the model lacks (an unbiased NMF's biases) become empty placeholders
    that are never trained. ``nonneg``: new rows of factor tables start at the
    mean of the trained rows times ``1 + U[0, 0.01)`` -- never zero, which a
    multiplicative update could not leave, and never negative.
    """
    cfg, model = job.config, job.model
    params = {k: np.asarray(v) for k, v in job.pretrained.parameters().items()}
    present = list(params)
    check_patterns(present, cfg.freeze, "freeze")
    check_patterns(present, cfg.transfer, "transfer")
    check_patterns(present, list(cfg.group_weights), "group_weights")
    frozen = matching(present, cfg.freeze)
    transfer = matching(present, cfg.transfer)
    n = {"user": len(model.user_map_), "item": len(model.item_map_)}
    cur: dict[str, np.ndarray] = {}
    anchors: dict[str, np.ndarray] = {}
    for name in order:
        if name not in params:
            shape = (1,) if name.endswith("_bias") else (1, 1)
            cur[name] = anchors[name] = np.zeros(shape, dtype=np.float32)
            continue
        pre = params[name]
        axis = axis_of(name)
        if axis is None:
            table = pre.copy()
            anchors[name] = np.ascontiguousarray(pre)
        else:
            if nonneg and cfg.new_rows == "zero" and pre.ndim == 2:
                raise RectuneError("NMF: new_rows='zero' would keep new factor rows at 0 "
                                   "forever under multiplicative updates; use 'mean'")
            table = grow(pre, n[axis], cfg.new_rows)
            # rows to initialise: without pre-training data, with new data to learn from
            fresh = _fresh_rows(job, axis) & _in_fit(job, axis, len(table))
            if table.ndim == 2 and table.shape[1] and fresh.any() and name not in frozen:
                if nonneg:
                    old = ~_fresh_rows(job, axis)[: len(pre)]
                    base = pre[old].mean(axis=0) if old.any() else np.full(pre.shape[1], 0.1)
                    noise = rng.uniform(0, 0.01, (int(fresh.sum()), table.shape[1]))
                    table[fresh] = (base * (1 + noise)).astype(table.dtype)
                elif cfg.new_rows != "zero":
                    # tiny noise so new rows of factor tables are not all identical
                    table[fresh] += rng.normal(0, 1e-3, table[fresh].shape).astype(table.dtype)
            anchors[name] = np.ascontiguousarray(grow(pre, n[axis], "zero"))
        if name not in transfer:
            table = reinit(name, table, rng)
        cur[name] = np.ascontiguousarray(table)
    lams = np.array([cfg.l2sp * cfg.group_weights.get(g, 1.0) * (g in transfer) for g in order],
                    dtype=np.float64)
    train = np.array([(g in params) and (g not in frozen) for g in order], dtype=np.bool_)
    summary = trainable_summary({k: cur[k] for k in present}, frozen)
    job.say(summary)
    return Groups(cur, anchors, lams, train, frozen, transfer, summary)


def _install(model: Any, g: Groups, names: tuple[str, ...]) -> None:
    params = set(model.parameters())
    for name in names:
        if name in params:
            setattr(model, name + "_", g.cur[name])


def _restorer(cur: dict[str, np.ndarray]) -> Callable[[dict[str, np.ndarray]], None]:
    def restore(snap: dict[str, np.ndarray]) -> None:
        for k, v in snap.items():
            cur[k][...] = v

    return restore


def _clean(history: dict[str, Any]) -> dict[str, Any]:
    return {k: ([float(x) for x in v] if isinstance(v, list) else
                (float(v) if isinstance(v, float) and math.isfinite(v) else v))
            for k, v in history.items()}


def _no_task_or_features(job: Job) -> None:
    name = type(job.pretrained).__name__
    if job.config.task is not None:
        raise RectuneError(f"{name} does not support a task change; see "
                           "rectune.finetune.capability_table()")
    if job.config.feature_reg > 0 or job.config.new_rows == "features":
        raise RectuneError(f"feature_reg / new_rows='features' are not supported for {name}")


def _seen_csr(model: Any) -> tuple[np.ndarray, np.ndarray]:
    seen = model.seen_
    seen.sort_indices()
    return seen.indptr.astype(np.int64), seen.indices.astype(np.int64)


def _sgd_rates(cfg: Any, lrs: list[float]) -> np.ndarray:
    """An explicit learning rate for every group, or each pre-training rate × lr_factor."""
    if cfg.learning_rate is not None:
        return np.full(len(lrs), float(cfg.learning_rate))
    return np.array(lrs, dtype=np.float64) * cfg.lr_factor


def _run_rating_epochs(job: Job, g: Groups, step: Callable[[int], float], label: str) -> None:
    """Epoch loop with early stopping on the validation RMSE of the new data."""
    cfg, model, valid = job.config, job.model, job.valid

    def valid_rmse() -> float:
        assert valid is not None
        return rmse(valid.value, model.predict_indices(valid.user, valid.item))

    history: dict[str, Any] = {}
    before = None if valid is None else valid_rmse()
    run_epochs(history, cfg.epochs, step, n_ratings=len(job.fit), label=label,
               progress=cfg.verbose, valid_rmse=None if valid is None else valid_rmse,
               patience=cfg.patience if (cfg.early_stopping and valid is not None) else None,
               snapshot=lambda: {k: v.copy() for k, v in g.cur.items()},
               restore=_restorer(g.cur))
    job.info.update(history=_clean(history), valid_rmse_before=before, trainable=g.summary,
                    frozen=sorted(g.frozen), transferred=sorted(g.transfer),
                    l2sp=g.lams.tolist())


# ------------------------------------------------------------------------------ SVD++
def _normal_reinit(std: float, fit_mean: float) -> Reinit:
    def reinit(name: str, table: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if name == "global_bias":
            return np.array([fit_mean], dtype=table.dtype)
        if table.ndim == 1:
            return np.zeros_like(table)
        return rng.normal(0, std, table.shape).astype(table.dtype)

    return reinit


def finetune_svdpp(job: Job) -> None:
    """Handler for :class:`SVDpp`: anchored SGD on all six groups (see module docs)."""
    _no_task_or_features(job)
    cfg, model, pre = job.config, job.model, job.pretrained
    assert isinstance(pre, SVDpp)
    rng = np.random.default_rng(cfg.seed)
    g = prepare_groups(job, SVDPP_GROUPS, _normal_reinit(float(pre.init_std_dev),
                                                         float(np.mean(job.fit.value))), rng)
    _install(model, g, SVDPP_GROUPS)
    lr_bu, lr_bi, lr_pu, lr_qi, lr_yj, reg_bu, reg_bi, reg_pu, reg_qi, reg_yj = pre._rates()
    lrs = _sgd_rates(cfg, [lr_bu, lr_bu, lr_bi, lr_pu, lr_qi, lr_yj])
    regs = np.array([0.0, reg_bu, reg_bi, reg_pu, reg_qi, reg_yj])
    reg_new = float(cfg.new_row_reg if cfg.new_row_reg is not None else reg_pu)
    fit = job.fit
    order = UserBlockOrder(fit.user, fit.item, fit.value, len(model.user_map_), rng,
                           bool(pre.shuffle))
    n_indptr, n_indices = _seen_csr(model)
    c, a = g.cur, g.anchors
    mu0 = float(a["global_bias"].reshape(-1)[0])
    old_u, old_i = job.old_user_rows.copy(), job.old_item_rows.copy()

    def step(epoch: int) -> float:
        users, indptr, i, r = order.next()
        return float(l2sp_svdpp_epoch(
            users, indptr, i, r, n_indptr, n_indices, c["global_bias"], c["user_bias"],
            c["item_bias"], c["user_factors"], c["item_factors"], c["item_implicit"], mu0,
            a["user_bias"], a["item_bias"], a["user_factors"], a["item_factors"],
            a["item_implicit"], old_u, old_i, lrs, regs, g.lams, reg_new, g.train))

    _run_rating_epochs(job, g, step, "fine-tune SVD++")
    job.info.update(learning_rates=lrs.tolist())


# -------------------------------------------------------------------------------- NMF
def finetune_nmf(job: Job) -> None:
    """Handler for :class:`NMF`: anchored multiplicative updates (see module docs)."""
    _no_task_or_features(job)
    cfg, model, pre = job.config, job.model, job.pretrained
    assert isinstance(pre, NMF)
    rng = np.random.default_rng(cfg.seed)
    offset = float(getattr(pre, "rating_offset_", 0.0))
    fit = job.fit
    r = fit.value.astype(np.float32) + np.float32(offset)
    low, high = float(pre.init_low), float(pre.init_high)

    def reinit(name: str, table: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        if name == "global_bias":
            return np.array([float(np.mean(r))], dtype=table.dtype)
        if table.ndim == 1:
            return np.zeros_like(table)
        return gen.uniform(max(low, 0.0), high, table.shape).astype(table.dtype)

    g = prepare_groups(job, NMF_GROUPS, reinit, rng, nonneg=True)
    _install(model, g, NMF_GROUPS)
    biased = bool(pre.biased)
    lrs = _sgd_rates(cfg, [float(pre.lr_bu), float(pre.lr_bu), float(pre.lr_bi)])
    regs = np.array([0.0, float(pre.reg_bu), float(pre.reg_bi)])
    n_u, n_i = len(model.user_map_), len(model.item_map_)
    reg_new_b = float(cfg.new_row_reg if cfg.new_row_reg is not None else pre.reg_bu)
    old_u, old_i = job.old_user_rows.copy(), job.old_item_rows.copy()

    def row_terms(old: np.ndarray, reg: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
        new_reg = float(cfg.new_row_reg if cfg.new_row_reg is not None else reg)
        return np.where(old, reg, new_reg), np.where(old, lam, 0.0)

    reg_u, lam_u = row_terms(old_u, float(pre.reg_pu), float(g.lams[3]))
    reg_i, lam_i = row_terms(old_i, float(pre.reg_qi), float(g.lams[4]))
    ucount = np.bincount(fit.user, minlength=n_u).astype(np.float64)
    icount = np.bincount(fit.item, minlength=n_i).astype(np.float64)
    rows_u, rows_i = np.unique(fit.user), np.unique(fit.item)
    c, a = g.cur, g.anchors
    p, q = c["user_factors"], c["item_factors"]
    k = p.shape[1]
    unum = np.zeros((n_u, k))
    uden = np.zeros_like(unum)
    inum = np.zeros((n_i, k))
    iden = np.zeros_like(inum)
    order = EpochOrder(fit.user, fit.item, r, rng, bool(pre.shuffle))
    mu0 = float(a["global_bias"].reshape(-1)[0])
    train_b = g.train[:3] & biased

    no_bias = np.zeros(3, dtype=np.bool_)

    def sums(u: np.ndarray, i: np.ndarray, rr: np.ndarray, train_bias: np.ndarray) -> float:
        for acc in (unum, uden, inum, iden):
            acc[...] = 0.0
        return float(l2sp_nmf_accumulate(
            u, i, rr, biased, c["global_bias"], c["user_bias"], c["item_bias"], p, q, mu0,
            a["user_bias"], a["item_bias"], old_u, old_i, lrs, regs, g.lams[:3], reg_new_b,
            train_bias, unum, uden, inum, iden))

    def step(epoch: int) -> float:
        u, i, rr = order.next()
        sse = sums(u, i, rr, train_b)
        if g.train[3]:
            l2sp_nmf_apply(rows_u, p, unum, uden, ucount, reg_u, lam_u, a["user_factors"])
            if g.train[4]:
                sums(u, i, rr, no_bias)  # item sums against the updated user factors
        if g.train[4]:
            l2sp_nmf_apply(rows_i, q, inum, iden, icount, reg_i, lam_i, a["item_factors"])
        return sse

    _run_rating_epochs(job, g, step, "fine-tune NMF")
    job.info.update(method="anchored multiplicative updates", bias_learning_rates=lrs.tolist())


# -------------------------------------------------------------------------------- BPR
def bpr_loss(model: Any, users: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> float:
    """Mean ``−ln σ(x_ui − x_uj)`` over triples (lower is better)."""
    uf = np.asarray(model.user_factors_, dtype=np.float64)
    vf = np.asarray(model.item_factors_, dtype=np.float64)
    b = np.asarray(model.item_bias_, dtype=np.float64)
    x = np.einsum("nf,nf->n", uf[users], vf[pos] - vf[neg]) + b[pos] - b[neg]
    return float(np.mean(np.logaddexp(0.0, -x))) if len(x) else float("nan")


def finetune_bpr(job: Job) -> None:
    """Handler for :class:`BPR`: anchored SGD on sampled triples of the new data."""
    _no_task_or_features(job)
    cfg, model, pre = job.config, job.model, job.pretrained
    assert isinstance(pre, BPR)
    rng = np.random.default_rng(cfg.seed)
    f = int(pre.factors)

    def reinit(name: str, table: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        if table.ndim == 1:
            return np.zeros_like(table)
        return ((gen.random(table.shape) - 0.5) / f).astype(table.dtype)

    g = prepare_groups(job, BPR_GROUPS, reinit, rng)
    _install(model, g, BPR_GROUPS)
    lr = float(cfg.learning_rate if cfg.learning_rate is not None
               else pre.learning_rate * cfg.lr_factor)
    reg = float(pre.regularization)
    reg_new = float(cfg.new_row_reg if cfg.new_row_reg is not None else reg)
    fit = job.fit
    keep = fit.value != 0
    pos_user = np.ascontiguousarray(fit.user[keep], dtype=np.int64)
    pos_item = np.ascontiguousarray(fit.item[keep], dtype=np.int64)
    if len(pos_user) == 0:
        raise RectuneError("BPR fine-tuning needs new pairs with a nonzero value")
    indptr, indices = _seen_csr(model)
    pool = indices if pre.negative_sampling == "popularity" else np.empty(0, np.int64)
    state = rng.integers(0, np.iinfo(np.int64).max, size=1).astype(np.uint64)
    order = np.arange(len(pos_user), dtype=np.int64)
    c, a = g.cur, g.anchors
    old_u, old_i = job.old_user_rows.copy(), job.old_item_rows.copy()
    verify, tries = bool(pre.verify_negative_samples), int(pre.max_tries)
    n_items = len(model.item_map_)

    valid = job.valid
    vu = vi = vj = np.empty(0, np.int64)
    if valid is not None:
        vkeep = valid.value != 0
        vu, vi = valid.user[vkeep].astype(np.int64), valid.item[vkeep].astype(np.int64)
        vj = draw_negatives(indptr, indices, pool, n_items, vu, True, tries, cfg.valid_seed)
        ok = vj >= 0
        vu, vi, vj = vu[ok], vi[ok], vj[ok]
    use_valid = len(vu) > 0
    patience = cfg.patience if (cfg.early_stopping and use_valid) else None
    hist: dict[str, Any] = {"train_loss": [], "train_auc": [], "valid_loss": [], "epochs": 0,
                            "best_epoch": 0}
    before = bpr_loss(model, vu, vi, vj) if use_valid else None
    best, best_state, since = math.inf, None, 0
    for epoch in range(cfg.epochs):
        correct, skipped, loss = l2sp_bpr_epoch(
            pos_user, pos_item, indptr, indices, pool, order, c["user_factors"],
            c["item_factors"], c["item_bias"], a["user_factors"], a["item_factors"],
            a["item_bias"], old_u, old_i, lr, reg, g.lams, reg_new, g.train, verify, tries,
            state)
        used = len(order) - skipped
        hist["train_loss"].append(loss / used if used else float("nan"))
        hist["train_auc"].append(correct / used if used else float("nan"))
        hist["epochs"] = hist["best_epoch"] = epoch + 1
        if not use_valid:
            continue
        v = bpr_loss(model, vu, vi, vj)
        hist["valid_loss"].append(v)
        job.say(f"epoch {epoch + 1}: train loss {hist['train_loss'][-1]:.4f}, "
                f"valid loss {v:.4f}")
        if patience is None:
            continue
        if v < best - 1e-7:
            best, since, best_state = v, 0, {k: t.copy() for k, t in c.items()}
            hist["best_epoch"] = epoch + 1
        else:
            since += 1
            hist["best_epoch"] = epoch + 1 - since
            if since >= patience:
                break
    if best_state is not None and hist["best_epoch"] < hist["epochs"]:
        _restorer(c)(best_state)
    job.info.update(history=_clean(hist), valid_loss_before=before, trainable=g.summary,
                    frozen=sorted(g.frozen), transferred=sorted(g.transfer),
                    l2sp=g.lams.tolist(), learning_rate=lr)


def register_handlers() -> None:
    from rectune.finetune.engine import register

    register(SVDpp, finetune_svdpp)
    register(NMF, finetune_nmf)
    register(BPR, finetune_bpr)
