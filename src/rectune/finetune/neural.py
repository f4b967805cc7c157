"""Fine-tuning the PyTorch family (GMF, MLP, NeuMF, DeepFM, Caser, GRU4Rec).

The pre-trained module's named groups (DESIGN.md: ``user_embedding``,
``item_embedding``, ``mlp.*``, ``head.*`` ...) are grown for new ids,
optionally re-initialised (``transfer``) or frozen (``freeze``), and trained on
the new data by the model's *own* training step (its loss, sampler and
validation metric), with two things added through the shared
:class:`~rectune.models.neural.trainer.Trainer`:

* the L2-SP penalty ``λ Σ_g w_g ‖θ_g − θ_g^pre‖²`` over the rows that existed in
  the pre-trained model (tables: only rows of ids that had training data; other
  tensors: the whole tensor), plus plain L2 ``new_row_reg ‖θ_new‖²`` on appended
  rows, added to every batch's mean loss;
* the optimiser sees only the groups that are not frozen.

Why reuse the model's ``_train``: the loss, negative sampling (which never draws a
known positive, old or new) and the early-stopping metric are exactly those of
pre-training, so ``λ = 0`` is plain fine-tuning of the same objective.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rectune._errors import RectuneError
from rectune.finetune.engine import Job
from rectune.finetune.groups import axis_of, check_patterns, grow, matching, trainable_summary
from rectune.models.neural.base import NeuralRecommender, group_name, ndcg_validator
from rectune.models.neural.sequence import KnownPairs, SequenceRecommender, Sequences


def _key_by_group(module: torch.nn.Module) -> dict[str, str]:
    return {group_name(k): k for k, v in module.state_dict().items() if v.is_floating_point()}


def _grown_tables(job: Job, rng: np.random.Generator) -> tuple[dict[str, np.ndarray],
                                                                 set[str], set[str]]:
    """Pre-trained groups grown to the new maps; non-transferred groups re-initialised."""
    cfg, model = job.config, job.model
    pre = job.pretrained.parameters()
    names = list(pre)
    check_patterns(names, cfg.freeze, "freeze")
    check_patterns(names, cfg.transfer, "transfer")
    check_patterns(names, list(cfg.group_weights), "group_weights")
    frozen, transfer = matching(names, cfg.freeze), matching(names, cfg.transfer)
    if cfg.new_rows == "features":
        raise RectuneError(f"{type(model).__name__}: new_rows='features' is not available for "
                           "neural models; DeepFM scores new ids from their features directly")
    assert isinstance(model, NeuralRecommender)
    fresh = None
    if transfer != set(names):
        # a module sized for the grown maps, seeded like pre-training
        fresh = {group_name(k): v.detach().cpu().numpy()
                 for k, v in model._new_module().state_dict().items()}
    n_u, n_i = len(model.user_map_), len(model.item_map_)
    out: dict[str, np.ndarray] = {}
    for name, table in pre.items():
        axis = axis_of(name)
        if name not in transfer:
            assert fresh is not None
            out[name] = np.array(fresh[name], dtype=np.float32)
            continue
        if axis is not None and table.shape[0] in (job.n_old_users, job.n_old_items):
            n = n_u if axis == "user" else n_i
            n_old = table.shape[0]
            table = grow(table, n, cfg.new_rows)
            if cfg.new_rows != "zero" and name not in frozen and n > n_old and table.ndim == 2:
                # tiny noise so new rows are not all identical (symmetry breaking)
                table[n_old:] += rng.normal(0, 1e-3, table[n_old:].shape).astype(table.dtype)
        out[name] = np.ascontiguousarray(table, dtype=np.float32)
    return out, frozen, transfer


def _penalty(job: Job, module: torch.nn.Module, transfer: set[str], frozen: set[str]) -> Any:
    """The L2-SP + new-row L2 term as a closure over anchors on the module's device."""
    cfg = job.config
    pre = job.pretrained.parameters()
    keys = _key_by_group(module)
    reg_new = float(cfg.new_row_reg if cfg.new_row_reg is not None
                    else getattr(job.pretrained, "weight_decay", 0.0) or 0.0)
    terms: list[tuple[str, torch.Tensor, torch.Tensor | None, float, float]] = []
    for name, anchor in pre.items():
        if name in frozen or name not in keys:
            continue
        lam = cfg.l2sp * cfg.group_weights.get(name, 1.0) * (name in transfer)
        axis = axis_of(name)
        old_mask: torch.Tensor | None = None
        if axis is not None and anchor.shape[0] in (job.n_old_users, job.n_old_items):
            rows = job.old_user_rows if axis == "user" else job.old_item_rows
            old_mask = torch.from_numpy(rows.copy())
            a = np.zeros((len(rows), *anchor.shape[1:]), dtype=np.float32)
            a[: anchor.shape[0]] = anchor
            anchor = a
        if lam == 0 and (old_mask is None or reg_new == 0):
            continue
        terms.append((keys[name], torch.from_numpy(np.ascontiguousarray(anchor)), old_mask,
                      lam, reg_new))
    if not terms:
        return None
    cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def penalty(m: torch.nn.Module) -> torch.Tensor:
        params = dict(m.named_parameters())
        total = torch.zeros((), device=next(iter(params.values())).device)
        for key, anchor, mask, lam, reg in terms:
            p = params.get(key)
            if p is None or not p.requires_grad:
                continue
            if key not in cache:  # move anchors once, on first use, to the module's device
                cache[key] = (anchor.to(p.device), None if mask is None else mask.to(p.device))
            a, msk = cache[key]
            if msk is None:
                if lam:
                    total = total + lam * ((p - a) ** 2).sum()
                continue
            if lam:
                total = total + lam * ((p[msk] - a[msk]) ** 2).sum()
            if reg:
                total = total + reg * (p[~msk] ** 2).sum()
        return total

    return penalty


def finetune_neural(job: Job) -> None:
    """Handler for every :class:`NeuralRecommender` (rating or implicit task)."""
    cfg, model = job.config, job.model
    if not isinstance(model, NeuralRecommender):
        raise RectuneError(f"not a neural model: {type(model).__name__}")
    rng = np.random.default_rng(cfg.seed)
    tables, frozen, transfer = _grown_tables(job, rng)
    model._set_parameters(tables)
    keys = _key_by_group(model.module_)
    for name, p in model.module_.named_parameters():
        p.requires_grad_(group_name(name) not in frozen)
    job.say(trainable_summary(tables, frozen))
    lr = cfg.learning_rate if cfg.learning_rate is not None else \
        float(getattr(model, "lr", 1e-3)) * cfg.lr_factor
    model._finetune_hooks = {
        "penalty": _penalty(job, model.module_, transfer, frozen),
        "lr": lr, "epochs": cfg.epochs, "seed": cfg.seed, "progress": cfg.verbose,
        "patience": cfg.patience if cfg.early_stopping and job.valid is not None else None,
        "checkpoint_dir": None, "resume": False,
    }
    model._options = getattr(model, "_options", None) or _default_options()
    try:
        if isinstance(model, SequenceRecommender):
            _train_sequences(model, job)
        else:
            model._train(job.fit, job.features, job.valid)
    finally:
        model._finetune_hooks = None
        for p in model.module_.parameters():
            p.requires_grad_(True)
    model.module_ = model.module_.cpu()
    model.module_.eval()
    job.info.update(history=[{k: float(v) for k, v in h.items()} for h in model.history_],
                    best_epoch=int(model.best_epoch_), learning_rate=lr,
                    frozen=sorted(frozen), transferred=sorted(transfer),
                    trainable=trainable_summary(tables, frozen),
                    groups=sorted(keys))


def extended_sequences(old: Sequences, new: Sequences) -> Sequences:
    """Each user's pre-training history followed by their new events (both in time order).

    ``new`` has one row per user of the grown map; ``old`` covers the first users only.
    """
    n = new.n_users
    old_len = np.zeros(n, dtype=np.int64)
    old_len[: old.n_users] = old.lengths
    users = np.r_[np.repeat(np.arange(old.n_users, dtype=np.int64), old.lengths),
                  np.repeat(np.arange(n, dtype=np.int64), new.lengths)]
    source = np.r_[np.zeros(len(old.items), dtype=np.int8), np.ones(len(new.items), np.int8)]
    items = np.r_[old.items, new.items]
    order = np.lexsort((np.arange(len(items)), source, users))  # stable within each part
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(old_len + new.lengths, out=indptr[1:])
    return Sequences(indptr, np.ascontiguousarray(items[order]))


def _train_sequences(model: SequenceRecommender, job: Job) -> None:
    """Next-item models learn from *extended* histories: the stored pre-training
    sequence of each user continued by their new events, so the new events are
    predicted in the context of what came before (and the stored histories that
    serve ``recommend`` are extended the same way). Every position of the extended
    sequences is a training target: fine-tuning a sequence model costs an epoch of
    pre-training per epoch (warm-started, at a smaller rate, early-stopped)."""
    assert isinstance(job.pretrained, SequenceRecommender)
    seqs = extended_sequences(job.pretrained._sequences(),
                              Sequences.from_interactions(job.fit, model.n_users))
    model.seq_indptr_, model.seq_items_ = seqs.indptr, seqs.items
    known = KnownPairs.from_sequences(seqs, model.n_items)
    batches, loss, n_batches = model._training_batches(seqs, known)
    validate = None if job.valid is None else ndcg_validator(model, job.valid, k=10)
    model._run_trainer(loss, batches, validate=validate, n_batches=n_batches)


def _default_options() -> Any:
    from rectune.models.base import FitOptions

    return FitOptions()


def register_handlers() -> None:
    from rectune.finetune.engine import register

    register(NeuralRecommender, finetune_neural)
