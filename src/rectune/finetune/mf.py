"""Fine-tuning the SGD family (Baseline, SVD): L2-SP, freezing, growth, task change.

The pre-trained groups ``global_bias``, ``user_bias``, ``item_bias``,
``user_factors``, ``item_factors`` are grown for new ids, optionally
re-initialised (``transfer``), frozen (``freeze``) and trained on the new data
with the compiled epoch of :mod:`rectune.finetune._kernels`, early-stopped on
the validation slice of the new data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from rectune._errors import RectuneError
from rectune.evaluate.rating import rmse
from rectune.finetune._kernels import feature_mf_epoch, l2sp_mf_epoch
from rectune.finetune._kernels_als import anchored_block, group_rows, squared_errors
from rectune.finetune.engine import Job
from rectune.finetune.features import (
    Projection,
    Ridge,
    fit_projection,
    refit,
    resolve_features,
    save_meta,
)
from rectune.finetune.groups import (
    axis_of,
    check_patterns,
    grow,
    matching,
    trainable_summary,
)
from rectune.models._mf_kernels import run_epochs
from rectune.models._mf_order import EpochOrder
from rectune.models.baseline import Baseline
from rectune.models.mf_svd import SVD

GROUPS = ("global_bias", "user_bias", "item_bias", "user_factors", "item_factors")


def _rates(model: Any) -> tuple[list[float], list[float]]:
    """Pre-training step sizes and weight decays per group [mu, bu, bi, pu, qi]."""
    if isinstance(model, Baseline):
        lr, reg = float(model.learning_rate), float(model.reg)
        return [lr, lr, lr, lr, lr], [0.0, reg, reg, reg, reg]
    lr_bu, lr_bi, lr_pu, lr_qi, reg_bu, reg_bi, reg_pu, reg_qi = model._rates()
    return [lr_bu, lr_bu, lr_bi, lr_pu, lr_qi], [0.0, reg_bu, reg_bi, reg_pu, reg_qi]


def _tables(model: Any) -> dict[str, np.ndarray]:
    """The five groups, with empty factor tables for a Baseline."""
    out = {k: np.asarray(v) for k, v in model.parameters().items()}
    if "user_factors" not in out:
        out["user_factors"] = np.zeros((len(out["user_bias"]), 0), dtype=np.float32)
        out["item_factors"] = np.zeros((len(out["item_bias"]), 0), dtype=np.float32)
    if "user_bias" not in out:  # unbiased SVD
        out["user_bias"] = np.zeros(out["user_factors"].shape[0], dtype=np.float32)
        out["item_bias"] = np.zeros(out["item_factors"].shape[0], dtype=np.float32)
        out["global_bias"] = np.zeros(1, dtype=np.float64)
    return out


@dataclass
class Prepared:
    """Grown, possibly re-initialised tables, their anchors and the per-group settings."""

    cur: dict[str, np.ndarray]
    anchors: dict[str, np.ndarray]
    lrs: np.ndarray
    regs: np.ndarray
    reg_new: float
    lams: np.ndarray
    train: np.ndarray
    present: list[str]
    frozen: set[str]
    transfer: set[str]
    biased: bool
    summary: str
    priors: dict[str, Prior] = field(default_factory=dict)
    policy: str = "mean"

    @property
    def mu0(self) -> float:
        return float(self.anchors["global_bias"].reshape(-1)[0])


def new_row_policy(cfg: Any) -> str:
    """The effective ``new_rows``: ``feature_reg > 0`` defaults it to ``"features"``.

    A feature prior pulls a new row towards ``W f`` a little per rating; starting
    the row there is what the prior says before any rating is seen, so unless the
    caller set ``new_rows`` explicitly, feature-regularised runs start from it.
    """
    if cfg.feature_reg > 0 and "new_rows" not in cfg.model_fields_set:
        return "features"
    return str(cfg.new_rows)


@dataclass
class Prior:
    """The feature prior of one axis: projection, targets for every (grown) row, flags."""

    proj: Projection
    ridge: Ridge  # solver over ``rows`` (the alternating W-step)
    rows: np.ndarray  # rows W is refitted on
    x_all: sp.csr_array  # design matrix of every row of the grown map
    present: np.ndarray  # bool per row: has a feature row
    factors: np.ndarray  # (n, k) targets
    bias: np.ndarray  # (n,) targets (zeros when the model has no bias)

    def update(self) -> None:
        f, b = self.proj.predict(self.x_all)
        self.factors[...] = f
        if b is not None:
            self.bias[...] = b


def build_priors(job: Job, pre: dict[str, np.ndarray], biased: bool) -> dict[str, Prior]:
    """Fit ``W`` per axis on the pre-trained rows with data, targets for every row."""
    cfg = job.config
    if job.features is None:
        if cfg.feature_reg > 0 or new_row_policy(cfg) == "features":
            raise RectuneError("feature_reg > 0 and new_rows='features' need side features: "
                               "finetune(..., features=<DataFrame indexed by raw user id> or "
                               "{'user': ..., 'item': ...})")
        return {}
    model = job.model
    priors: dict[str, Prior] = {}
    fit_rows = {"user": np.unique(job.fit.user), "item": np.unique(job.fit.item)}
    for axis, side in resolve_features(job.features).items():
        old = job.old_user_rows if axis == "user" else job.old_item_rows
        fac, bias = pre[f"{axis}_factors"], (pre[f"{axis}_bias"] if biased else None)
        idmap = model.user_map_ if axis == "user" else model.item_map_
        n = len(idmap)
        pre_counts = np.zeros(n)
        pre_counts[:len(fac)] = (np.diff(job.pretrained.seen_.indptr) if axis == "user"
                                 else np.asarray(job.pretrained.item_popularity_))
        proj, ridge, keep, full = fit_projection(
            side, job.pretrained.user_map_ if axis == "user" else job.pretrained.item_map_,
            np.flatnonzero(old), fac, bias, counts=pre_counts, encode_ids=idmap)
        x_all, present = full
        # the alternating W-step uses every row with ratings: pre-trained and new
        rows = np.union1d(keep, fit_rows[axis][present[fit_rows[axis]]])
        if len(rows) > len(keep):
            counts = pre_counts + np.bincount(job.fit.user if axis == "user" else job.fit.item,
                                              minlength=n)
            ridge = Ridge(sp.csr_array(x_all[rows]), counts[rows])
        prior = Prior(proj, ridge, rows, x_all, present,
                      np.zeros((n, fac.shape[1]), dtype=np.float64), np.zeros(n))
        prior.update()
        priors[axis] = prior
        job.say(f"{axis} feature prior: {side.table.n_features} encoded features from "
                f"{len(side.table.fields)} fields, fitted on {proj.n_rows} rows "
                f"(ridge α per output {np.round(proj.alpha, 3).tolist()[:4]}...)")
    return priors


def prepare(job: Job, rng: np.random.Generator) -> Prepared:
    """Grow, re-initialise and configure the five groups for an SGD fine-tuning run."""
    cfg, model = job.config, job.model
    present = list(job.pretrained.parameters())
    check_patterns(present, cfg.freeze, "freeze")
    check_patterns(present, cfg.transfer, "transfer")
    check_patterns(present, list(cfg.group_weights), "group_weights")
    frozen = matching(present, cfg.freeze)
    transfer = matching(present, cfg.transfer)
    biased = "user_bias" in present

    pre = _tables(job.pretrained)
    priors = build_priors(job, pre, biased)
    policy = new_row_policy(cfg)
    n_u, n_i = len(model.user_map_), len(model.item_map_)
    cur: dict[str, np.ndarray] = {}
    for name in GROUPS:
        table = pre[name]
        axis = axis_of(name)
        if axis is not None:
            # rows without a feature row fall back to the mean under "features"
            table = grow(table, n_u if axis == "user" else n_i,
                         "mean" if policy == "features" else policy)
            fresh = ~(job.old_user_rows if axis == "user" else job.old_item_rows)
            prior = priors.get(axis)
            if policy == "features" and prior is not None:
                rows = fresh & prior.present
                table[rows] = (prior.factors if table.ndim == 2 else prior.bias)[rows]
            if (policy != "zero" and name not in frozen and fresh.any()
                    and table.ndim == 2 and table.shape[1]):
                # tiny noise so new rows of factor tables are not all identical
                table[fresh] += rng.normal(0, 1e-3, table[fresh].shape).astype(table.dtype)
        else:
            table = table.copy()
        if name in present and name not in transfer:
            table = _reinit(name, table, job, rng)
        cur[name] = np.ascontiguousarray(table)
    anchors = {k: np.ascontiguousarray(v) for k, v in pre.items()}
    for k in ("user_bias", "user_factors"):
        anchors[k] = grow(anchors[k], n_u, "zero")
    for k in ("item_bias", "item_factors"):
        anchors[k] = grow(anchors[k], n_i, "zero")

    lrs, regs = _rates(job.pretrained)
    # an explicit learning_rate is the step of every group; otherwise each group's
    # pre-training step times lr_factor (smaller than pre-training by default)
    lrs_arr = (np.full(5, cfg.learning_rate) if cfg.learning_rate is not None
               else np.array(lrs, dtype=np.float64) * cfg.lr_factor)
    reg_new = float(cfg.new_row_reg if cfg.new_row_reg is not None else regs[3] or regs[1])
    lams = np.array([cfg.l2sp * cfg.group_weights.get(g, 1.0) * (g in transfer)
                     for g in GROUPS], dtype=np.float64)
    train = np.array([(g in present) and (g not in frozen) for g in GROUPS], dtype=np.bool_)
    if not biased:
        train[:3] = False
    summary = trainable_summary({k: cur[k] for k in present}, frozen)
    job.say(summary)
    return Prepared(cur, anchors, lrs_arr, np.array(regs, dtype=np.float64), reg_new, lams,
                    train, present, frozen, transfer, biased, summary, priors, policy)


def finetune_mf(job: Job) -> None:
    """Handler for :class:`Baseline` and :class:`SVD` (rating task or click task)."""
    cfg, model = job.config, job.model
    if cfg.task is not None:
        if cfg.solver != "sgd":
            raise RectuneError("a task change trains a logistic head by SGD: solver='als' "
                               "(least squares) cannot fit log-loss; use solver='sgd'")
        if cfg.feature_reg > 0:
            raise RectuneError("feature_reg cannot be combined with a task change; "
                               "new_rows='features' (initialisation only) can")
        from rectune.finetune.task import finetune_click

        finetune_click(job)
        return
    rng = np.random.default_rng(cfg.seed)
    pp = prepare(job, rng)
    cur = pp.cur
    _install(model, cur, pp.present)
    fit = job.fit
    order = EpochOrder(fit.user, fit.item, fit.value, rng, True) if cfg.solver == "sgd" \
        else None
    old_u = job.old_user_rows.copy()
    old_i = job.old_item_rows.copy()
    a = pp.anchors
    priors = pp.priors if cfg.feature_reg > 0 else {}
    lr_max = (float(max(pp.lrs[1], pp.lrs[3])), float(max(pp.lrs[2], pp.lrs[4])))
    fargs = _feature_args(priors, job, cur, cfg.feature_reg, lr_max) if priors else None

    def w_step() -> None:
        """The alternating half: W by ridge on the current tables, then new targets."""
        for axis, prior in priors.items():
            refit(prior.proj, prior.ridge, prior.rows, cur[f"{axis}_factors"],
                  cur[f"{axis}_bias"] if pp.biased else None)
            prior.update()

    sweep = _als_sweeper(job, pp, fargs) if cfg.solver == "als" else None

    def step(epoch: int) -> float:
        if sweep is not None:
            sse = sweep()
            w_step()
            return sse
        assert order is not None
        u, i, r = order.next()
        if fargs is None:
            return float(l2sp_mf_epoch(
                u, i, r, cur["global_bias"], cur["user_bias"], cur["item_bias"],
                cur["user_factors"], cur["item_factors"], pp.mu0, a["user_bias"],
                a["item_bias"], a["user_factors"], a["item_factors"], old_u, old_i, pp.biased,
                pp.lrs, pp.regs, pp.lams, pp.reg_new, pp.train))
        sse = float(feature_mf_epoch(
            u, i, r, cur["global_bias"], cur["user_bias"], cur["item_bias"],
            cur["user_factors"], cur["item_factors"], pp.mu0, a["user_bias"], a["item_bias"],
            a["user_factors"], a["item_factors"], old_u, old_i, pp.biased, pp.lrs, pp.regs,
            pp.lams, pp.reg_new, pp.train, *fargs))
        w_step()
        return sse

    valid = job.valid

    def valid_rmse() -> float:
        assert valid is not None
        return rmse(valid.value, model.predict_indices(valid.user, valid.item))

    history: dict[str, Any] = {}
    before = None if valid is None else valid_rmse()
    run_epochs(history, cfg.epochs, step, n_ratings=len(fit),
               label="fine-tune" if sweep is None else "fine-tune (ALS sweeps)",
               progress=cfg.verbose, valid_rmse=None if valid is None else valid_rmse,
               patience=cfg.patience if (cfg.early_stopping and valid is not None) else None,
               snapshot=lambda: {k: v.copy() for k, v in cur.items()}, restore=_restorer(cur))
    if priors:
        w_step()  # W consistent with the tables kept (the best epoch's)
    if pp.priors:
        save_meta(model, {ax: p.proj for ax, p in pp.priors.items()})
        job.info["feature_prior"] = {
            "new_rows": pp.policy, "feature_reg": cfg.feature_reg,
            **{ax: {"n_features": int(p.proj.coef.shape[0]), "fit_rows": int(p.proj.n_rows),
                    "prior_rows": int((fargs[4 if ax == "user" else 5] > 0).sum())
                    if fargs is not None else 0,
                    "alpha": p.proj.alpha.tolist()} for ax, p in pp.priors.items()}}
    job.info.update(history=_clean(history), valid_rmse_before=before, trainable=pp.summary,
                    frozen=sorted(pp.frozen), transferred=sorted(pp.transfer),
                    learning_rates=pp.lrs.tolist(), l2sp=pp.lams.tolist())


def _als_sweeper(job: Job, pp: Prepared, fargs: tuple[Any, ...] | None) -> Any:
    """One ALS sweep (``solver="als"``): anchored block solves of users, then items.

    Each block minimises the SGD run's L2-SP objective with the other side fixed
    (:mod:`rectune.finetune._kernels_als`); the global bias stays where ``prepare``
    put it (θ_pre, or the new data's mean when it is not transferred). Returns a
    closure computing one sweep and its training SSE.
    """
    cfg, cur, fit = job.config, pp.cur, job.fit
    n_u, n_i = len(cur["user_bias"]), len(cur["item_bias"])
    by_user = group_rows(fit.user, fit.item, fit.value, n_u)
    by_item = group_rows(fit.item, fit.user, fit.value, n_i)
    a, regs, lams, train = pp.anchors, pp.regs, pp.lams, pp.train
    empty1, empty2 = np.zeros(0), np.zeros((0, 0))
    tbu, tbi, tp, tq, lfu, lfi = fargs if fargs is not None else (
        empty1, empty1, empty2, empty2, empty1, empty1)
    u64 = np.ascontiguousarray(fit.user, dtype=np.int64)
    i64 = np.ascontiguousarray(fit.item, dtype=np.int64)
    r64 = np.ascontiguousarray(fit.value, dtype=np.float64)
    old_u, old_i = job.old_user_rows, job.old_item_rows

    def sweep() -> float:
        mu = float(cur["global_bias"].reshape(-1)[0])
        for (indptr, other, vals, rows), (x, bx, y, byy), (x0, b0), old, sb, sx, g, \
                (tb, tx, wf) in (
                (by_user, ("user_factors", "user_bias", "item_factors", "item_bias"),
                 (a["user_factors"], a["user_bias"]), old_u, 1, 3, (1, 3), (tbu, tp, lfu)),
                (by_item, ("item_factors", "item_bias", "user_factors", "user_bias"),
                 (a["item_factors"], a["item_bias"]), old_i, 2, 4, (2, 4), (tbi, tq, lfi))):
            solve_b = bool(pp.biased and train[sb])
            solve_x = bool(train[sx] and cur[x].shape[1] > 0)
            if not (solve_b or solve_x):
                continue
            anchored_block(indptr, other, vals, rows, cur[x], cur[bx], cur[y], cur[byy], mu,
                           x0, b0, old, solve_b, solve_x, float(regs[g[0]]),
                           float(regs[g[1]]), float(lams[g[0]]), float(lams[g[1]]),
                           pp.reg_new, tb, tx, wf, 3 if cfg.cg_steps is None else cfg.cg_steps)
        return float(squared_errors(u64, i64, r64, mu, cur["user_bias"], cur["item_bias"],
                                    cur["user_factors"], cur["item_factors"]))

    return sweep


def _feature_args(priors: dict[str, Prior], job: Job, cur: dict[str, np.ndarray],
                  lam: float, job_lr: tuple[float, float]) -> tuple[Any, ...]:
    """``(tbu, tbi, tp, tq, lfu, lfi)`` for :func:`feature_mf_epoch`.

    The prior applies to rows without pre-training data that have a feature row
    (rows with pre-training data keep ``θ_pre`` as their anchor), with weight
    ``λ_f / n_row`` per rating so that it counts once per row and epoch, capped at
    ``1 / lr`` (``job_lr``: the larger user and item steps). The target arrays are
    the priors' own (updated in place by each W-step).
    """
    out: list[Any] = []
    for axis, old, idx in (("user", job.old_user_rows, job.fit.user),
                           ("item", job.old_item_rows, job.fit.item)):
        n, k = cur[f"{axis}_factors"].shape
        p = priors.get(axis)
        if p is None:
            out.append((np.zeros(n), np.zeros((n, k)), np.zeros(n)))
            continue
        counts = np.bincount(idx, minlength=n).astype(np.float64)
        w = np.where(~old & p.present & (counts > 0), lam / np.maximum(counts, 1.0), 0.0)
        # an explicit step with lr·w > 1 would overshoot the target (and diverge past 2);
        # at lr·w = 1 each step lands on the target: the λ_f → ∞ limit
        lr = job_lr[0 if axis == "user" else 1]
        w = np.minimum(w, 1.0 / lr)
        out.append((p.bias, p.factors, w))
    (tbu, tp, lfu), (tbi, tq, lfi) = out
    return tbu, tbi, tp, tq, lfu, lfi


def _reinit(name: str, table: np.ndarray, job: Job, rng: np.random.Generator) -> np.ndarray:
    """Fresh initialisation of a group that is not transferred."""
    if name == "global_bias":
        return np.array([float(np.mean(job.fit.value))], dtype=table.dtype)
    if table.ndim == 1:
        return np.zeros_like(table)
    std = float(getattr(job.pretrained, "init_std_dev", 0.1))
    return rng.normal(0, std, table.shape).astype(table.dtype)


def _restorer(cur: dict[str, np.ndarray]) -> Any:
    def restore(snap: dict[str, np.ndarray]) -> None:
        for k, v in snap.items():
            cur[k][...] = v

    return restore


def _install(model: Any, cur: dict[str, np.ndarray], present: list[str]) -> None:
    for name in present:
        setattr(model, name + "_", cur[name])


def _clean(history: dict[str, Any]) -> dict[str, Any]:
    return {k: ([float(x) for x in v] if isinstance(v, list) else
                (float(v) if isinstance(v, float) and math.isfinite(v) else v))
            for k, v in history.items()}


def register_handlers() -> None:
    from rectune.finetune.engine import register

    register(SVD, finetune_mf)
    register(Baseline, finetune_mf)
