"""Fine-tuning the SGD family (Baseline, SVD): L2-SP, freezing, growth, task change.

The pre-trained groups ``global_bias``, ``user_bias``, ``item_bias``,
``user_factors``, ``item_factors`` are grown for new ids, optionally
re-initialised (``transfer``), frozen (``freeze``) and trained on the new data
with the compiled epoch of :mod:`rectune.finetune._kernels`, early-stopped on
the validation slice of the new data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rectune._errors import RectuneError
from rectune.evaluate.rating import rmse
from rectune.finetune._kernels import l2sp_mf_epoch
from rectune.finetune.engine import Job
from rectune.finetune.groups import (
    axis_of,
    check_patterns,
    grow,
    matching,
    trainable_summary,
)
from rectune.models._mf_kernels import EpochOrder, run_epochs
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

    @property
    def mu0(self) -> float:
        return float(self.anchors["global_bias"].reshape(-1)[0])


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
    n_u, n_i = len(model.user_map_), len(model.item_map_)
    cur: dict[str, np.ndarray] = {}
    for name in GROUPS:
        table = pre[name]
        axis = axis_of(name)
        if axis is not None:
            table = grow(table, n_u if axis == "user" else n_i, cfg.new_rows)
            fresh = ~(job.old_user_rows if axis == "user" else job.old_item_rows)
            if (cfg.new_rows != "zero" and name not in frozen and fresh.any()
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
                    train, present, frozen, transfer, biased, summary)


def finetune_mf(job: Job) -> None:
    """Handler for :class:`Baseline` and :class:`SVD` (rating task or click task)."""
    cfg, model = job.config, job.model
    if cfg.task is not None:
        from rectune.finetune.task import finetune_click

        finetune_click(job)
        return
    if cfg.feature_reg > 0:
        raise RectuneError(f"feature_reg is not supported for {type(model).__name__}; "
                           "see rectune.finetune.capability_table()")
    rng = np.random.default_rng(cfg.seed)
    pp = prepare(job, rng)
    cur = pp.cur
    _install(model, cur, pp.present)
    fit = job.fit
    order = EpochOrder(fit.user, fit.item, fit.value, rng, True)
    old_u = job.old_user_rows.copy()
    old_i = job.old_item_rows.copy()
    a = pp.anchors

    def step(epoch: int) -> float:
        u, i, r = order.next()
        return float(l2sp_mf_epoch(
            u, i, r, cur["global_bias"], cur["user_bias"], cur["item_bias"],
            cur["user_factors"], cur["item_factors"], pp.mu0, a["user_bias"], a["item_bias"],
            a["user_factors"], a["item_factors"], old_u, old_i, pp.biased, pp.lrs, pp.regs,
            pp.lams, pp.reg_new, pp.train))

    valid = job.valid

    def valid_rmse() -> float:
        assert valid is not None
        return rmse(valid.value, model.predict_indices(valid.user, valid.item))

    history: dict[str, Any] = {}
    before = None if valid is None else valid_rmse()
    run_epochs(history, cfg.epochs, step, n_ratings=len(fit), label="fine-tune",
               progress=cfg.verbose, valid_rmse=None if valid is None else valid_rmse,
               patience=cfg.patience if (cfg.early_stopping and valid is not None) else None,
               snapshot=lambda: {k: v.copy() for k, v in cur.items()}, restore=_restorer(cur))
    job.info.update(history=_clean(history), valid_rmse_before=before, trainable=pp.summary,
                    frozen=sorted(pp.frozen), transferred=sorted(pp.transfer),
                    learning_rates=pp.lrs.tolist(), l2sp=pp.lams.tolist())


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
