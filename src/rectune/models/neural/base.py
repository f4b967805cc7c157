"""The base class of rectune's PyTorch models: module building, naming, scoring, persistence.

Why a separate base: every neural model keeps its learned state in one
``torch.nn.Module`` (``module_``), yet the rest of rectune works on *named numpy
parameter groups* (fine-tuning, L2-SP anchors, freezing, ``save``/``load``). This
class is the bridge:

* ``parameters()`` maps ``module_.state_dict()`` to DESIGN.md names: a tensor
  ``"<name>.weight"`` whose ``<name>`` starts with ``user_`` / ``item_`` is a per-id
  table and becomes group ``"<name>"`` (``user_embedding``, ``item_gmf_embedding``);
  everything else keeps its dotted name (``mlp.0.weight``, ``head.bias``). So a
  subclass must only name modules ``user_*`` / ``item_*`` when they hold one row
  per user / item.
* ``_set_parameters`` is the inverse; a table may come back with more rows than the
  module has (fine-tuning appends rows for new ids), and the module is grown.
* ``save``/``load`` go through :class:`~rectune.models.base.Recommender` (safetensors
  + ``config.json``): ``load`` rebuilds the module with ``_build_module()`` from the
  hyper-parameters and the restored id maps, then installs the arrays.
* Scoring runs under ``torch.no_grad()`` in chunks of pairs, so ``_score`` for a
  batch of users never materialises more than ``score_chunk`` pair scores at once.
  After ``fit`` the module lives on the CPU unless ``FitOptions.device`` named a
  device.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from rectune._errors import DataError, RectuneError
from rectune.data.interactions import Interactions
from rectune.models.base import FitOptions, Recommender
from rectune.models.neural.trainer import TrainConfig, Trainer, resolve_device

__all__ = ["NeuralRecommender", "group_name", "ndcg_validator", "rmse_validator"]


def group_name(key: str) -> str:
    """DESIGN.md group name of a ``state_dict`` key (see the module docs)."""
    head, _, tail = key.rpartition(".")
    if tail == "weight" and "." not in head and head.startswith(("user_", "item_")):
        return head
    return key


def _seed(random_state: int | None) -> int:
    if random_state is None:
        return int(np.random.default_rng().integers(0, 2**31 - 1))
    return int(random_state)


class NeuralRecommender(Recommender):
    """A :class:`Recommender` whose learned state is one ``torch.nn.Module``.

    Subclasses implement ``_build_module()`` (from hyper-parameters, ``n_users``,
    ``n_items`` and any feature sizes saved in ``_extra_json``), ``_train(train,
    features, valid)`` (normally: build batches and a loss, then :meth:`_run_trainer`)
    and ``_pair_scores(u, i)`` (scores of index pairs as a tensor, on the module's
    device). Common hyper-parameters read here when a subclass defines them:
    ``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``patience``,
    ``clip_grad``, ``random_state``.
    """

    family: ClassVar[str] = "neural"
    #: set by rectune.finetune for the duration of one fine-tuning run (penalty, lr, ...)
    _finetune_hooks: dict[str, Any] | None = None
    _extra_json: ClassVar[tuple[str, ...]] = ("history_", "best_epoch_")
    #: max (user, item) pairs scored per forward pass in ``_score`` / ``_predict``
    score_chunk: ClassVar[int] = 1 << 18

    # ---------------------------------------------------------------- abstract
    @abstractmethod
    def _build_module(self) -> torch.nn.Module:
        """A fresh module sized for ``self.n_users`` / ``self.n_items``."""

    @abstractmethod
    def _train(self, train: Interactions, features: Any, valid: Interactions | None) -> None:
        """Train ``self.module_`` on ``train`` (``self._options`` holds the runtime options)."""

    @abstractmethod
    def _pair_scores(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """Scores of index pairs (1-D tensors on the module's device), shape ``(n,)``."""

    # ------------------------------------------------------------------- kinds
    def _is_explicit(self) -> bool:
        """True when the model predicts ratings (e.g. trained with the MSE loss)."""
        return getattr(self, "loss", None) == "mse"

    @property
    def predicts_ratings(self) -> bool:  # type: ignore[override]
        """Rating models are clipped to the rating scale and evaluated by RMSE."""
        return self._is_explicit()

    # --------------------------------------------------------------------- fit
    def _fit(self, train: Interactions, features: Any, valid: Interactions | None,
             options: FitOptions) -> None:
        self._options = options
        self.history_: list[dict[str, float]] = []
        self.best_epoch_ = 0
        self._prepare(train, features)
        self.module_ = self._new_module()
        self._zero_untrained_rows()
        self._train(train, features, valid)
        if options.device is None:
            self.module_ = self.module_.cpu()
        self.module_.eval()

    def _prepare(self, train: Interactions, features: Any) -> None:
        """Hook run before the module is built (fit encoders, record feature sizes)."""

    def _zero_untrained_rows(self) -> None:
        """Zero the ``user_*`` / ``item_*`` rows of ids without a training pair (they get no
        gradient, so they stay zero: such an id adds nothing instead of random noise)."""
        counts = {"user_": np.diff(self.seen_.indptr),
                  "item_": np.bincount(self.seen_.indices, minlength=self.n_items)}
        with torch.no_grad():
            for key, value in self.module_.state_dict().items():
                name = group_name(key)
                if name == key or not value.is_floating_point():
                    continue
                empty = counts[name[:5]] == 0
                if empty.any() and value.shape[0] == len(empty):
                    value[torch.from_numpy(empty)] = 0.0

    def _new_module(self) -> torch.nn.Module:
        """``_build_module()`` with torch seeded by ``random_state`` (caller's RNG untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed(getattr(self, "random_state", 0)))
            module = self._build_module()
        return module

    def _train_config(self, **overrides: Any) -> TrainConfig:
        """A :class:`TrainConfig` from the hyper-parameters and the runtime options."""
        o = getattr(self, "_options", FitOptions())
        kw: dict[str, Any] = {
            "epochs": getattr(self, "epochs", 20), "batch_size": getattr(self, "batch_size", 1024),
            "lr": getattr(self, "lr", 1e-3), "weight_decay": getattr(self, "weight_decay", 0.0),
            "patience": getattr(self, "patience", 3),
            "clip_grad": getattr(self, "clip_grad", 5.0),
            "seed": _seed(getattr(self, "random_state", 0)),
            "device": o.device, "progress": o.progress, "checkpoint_dir": o.checkpoint_dir,
            "resume": o.checkpoint_dir is not None,
        }
        kw.update(overrides)
        return TrainConfig(**kw)

    def _run_trainer(self, loss: Callable[[torch.nn.Module, dict[str, torch.Tensor]],
                                          torch.Tensor],
                     batches: Any, *, validate: Callable[[torch.nn.Module], float] | None = None,
                     n_batches: int | None = None, **overrides: Any) -> Trainer:
        """Build a :class:`Trainer`, fit, and record ``history_`` / ``best_epoch_``."""
        if n_batches is None and hasattr(batches, "__len__"):
            n_batches = len(batches)
        # fine-tuning (rectune.finetune.neural) runs the model's own training step
        # with an L2-SP penalty and its own rate/epochs, set here for one run
        hooks = dict(getattr(self, "_finetune_hooks", None) or {})
        penalty = hooks.pop("penalty", None)
        overrides = {**overrides, **hooks}
        tr = Trainer(self.module_, loss, batches, self._train_config(**overrides),
                     validate=validate, n_batches=n_batches, penalty=penalty)
        self.history_ = tr.fit()
        self.best_epoch_ = tr.best_epoch if validate is not None else tr.epoch
        return tr

    # -------------------------------------------------------------- parameters
    def parameters(self) -> dict[str, np.ndarray]:
        """Named groups (DESIGN.md): ``user_*``/``item_*`` tables, then dotted names."""
        self._check_fitted()
        return {group_name(k): v.detach().cpu().numpy().astype(np.float32, copy=True)
                for k, v in self.module_.state_dict().items() if v.is_floating_point()}

    def _set_parameters(self, params: dict[str, np.ndarray]) -> None:
        """Install groups by name; a group with more rows than the module's table grows it."""
        if not hasattr(self, "module_"):
            self.module_ = self._new_module()
        by_group = {group_name(k): k for k in self.module_.state_dict()}
        unknown = sorted(set(params) - set(by_group))
        if unknown:
            raise RectuneError(f"{type(self).__name__}: unknown parameter group(s) {unknown}; "
                               f"known: {sorted(by_group)}")
        for name, value in params.items():
            key = by_group[name]
            owner_name, _, attr = key.rpartition(".")
            owner = self.module_.get_submodule(owner_name) if owner_name else self.module_
            current = getattr(owner, attr)
            new = torch.from_numpy(np.array(value, dtype=np.float32, copy=True))
            if tuple(new.shape) != tuple(current.shape):
                if new.dim() != current.dim() or tuple(new.shape[1:]) != tuple(current.shape[1:]):
                    raise RectuneError(f"parameter group {name!r}: shape {tuple(new.shape)} "
                                       f"does not fit {tuple(current.shape)}")
                if isinstance(owner, torch.nn.Embedding):
                    owner.num_embeddings = int(new.shape[0])
            new = new.to(current.device)
            if isinstance(current, torch.nn.Parameter):
                setattr(owner, attr, torch.nn.Parameter(new, requires_grad=current.requires_grad))
            else:
                setattr(owner, attr, new)
        self.module_.eval()

    # ----------------------------------------------------------------- scoring
    def _module_device(self) -> torch.device:
        for p in self.module_.parameters():
            return p.device
        return torch.device("cpu")

    def _pairs_numpy(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """float64 scores of index pairs, in chunks of ``score_chunk``."""
        dev = self._module_device()
        out = np.empty(len(u), dtype=np.float64)
        self.module_.eval()
        with torch.no_grad():
            for s in range(0, len(u), self.score_chunk):
                ut = torch.from_numpy(np.ascontiguousarray(u[s:s + self.score_chunk])).to(dev)
                it = torch.from_numpy(np.ascontiguousarray(i[s:s + self.score_chunk])).to(dev)
                out[s:s + len(ut)] = self._pair_scores(ut, it).double().cpu().numpy()
        return out

    def _predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return self._pairs_numpy(np.asarray(u, dtype=np.int64), np.asarray(i, dtype=np.int64))

    def _score(self, u: np.ndarray) -> np.ndarray:
        """Dense ``(len(u), n_items)`` block, computed ``score_chunk`` pairs at a time.

        Uses the module's ``block(u, items)`` method when it has one (a factorised
        computation of the whole user x item block), else scores pairs.
        """
        u = np.asarray(u, dtype=np.int64)
        n_items = self.n_items
        out = np.empty((len(u), n_items), dtype=np.float64)
        rows = max(1, self.score_chunk // max(n_items, 1))
        items = np.arange(n_items, dtype=np.int64)
        block_fn = getattr(self.module_, "block", None)
        dev = self._module_device()
        items_t = torch.from_numpy(items).to(dev)
        for s in range(0, len(u), rows):
            ub = u[s:s + rows]
            res = None
            if block_fn is not None:
                self.module_.eval()
                with torch.no_grad():
                    res = block_fn(torch.from_numpy(ub).to(dev), items_t)
            if res is not None:
                out[s:s + len(ub)] = res.double().cpu().numpy()
            else:
                out[s:s + len(ub)] = self._pairs_numpy(
                    np.repeat(ub, n_items), np.tile(items, len(ub))).reshape(len(ub), -1)
        return out

    def _predict_unknown(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Explicit: the global mean. Implicit: the item's popularity share (a
        popularity-like fallback consistent with the popularity ranking that
        ``recommend`` gives unknown users); 0 for unknown items."""
        if self._is_explicit():
            return np.full(len(u), self.global_mean_, dtype=np.float64)
        pop = self.item_popularity_.astype(np.float64)
        top = float(pop.max()) if len(pop) and pop.max() > 0 else 1.0
        out = np.zeros(len(u), dtype=np.float64)
        ok = (i >= 0) & (i < len(pop))
        out[ok] = pop[i[ok]] / top
        return out

    def to(self, device: str | torch.device | None) -> NeuralRecommender:
        """Move the fitted module (for scoring) to ``device``; returns ``self``."""
        self._check_fitted()
        self.module_ = self.module_.to(resolve_device(device))
        return self

    def _after_load(self) -> None:
        self.module_.eval()


# ------------------------------------------------------------------ validators
def _valid_pairs(model: Recommender, valid: Interactions) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    u = np.asarray(valid.user, dtype=np.int64)
    i = np.asarray(valid.item, dtype=np.int64)
    ok = (u < model.n_users) & (i < model.n_items)
    return u[ok], i[ok], np.asarray(valid.value, dtype=np.float64)[ok]


def ndcg_validator(model: Recommender, valid: Interactions, k: int = 10,
                   max_users: int | None = 2000, seed: int = 0) -> Callable[[Any], float]:
    """``validate(module) -> NDCG@k`` over the validation positives (binary relevance).

    Candidates are all items except the user's training positives (``model.seen_``),
    the full-ranking protocol of PROTOCOLS.md; at most ``max_users`` users (a fixed
    random subset) are scored per call to bound the cost of an epoch.
    """
    from rectune.evaluate.ranking import ndcg_at_k, topk_from_scores

    u, i, v = _valid_pairs(model, valid)
    keep = v > 0
    u, i = u[keep], i[keep]
    if len(u) == 0:
        raise DataError("valid has no positive pair with a user and item known to training")
    truth = sp.csr_array((np.ones(len(u)), (u, i)), shape=(model.n_users, model.n_items))
    truth.sum_duplicates()
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    t_rows = truth[users]
    seen_rows = model.seen_[users]

    def validate(_module: Any) -> float:
        top, _ = topk_from_scores(model._score(users), k, exclude=seen_rows)
        return float(np.nanmean(ndcg_at_k(top, t_rows, k)))

    return validate


def rmse_validator(model: Recommender, valid: Interactions) -> Callable[[Any], float]:
    """``validate(module) -> -RMSE`` over validation pairs known to training (higher is better)."""
    u, i, v = _valid_pairs(model, valid)
    if len(u) == 0:
        raise DataError("valid has no pair with a user and item known to training")

    def validate(_module: Any) -> float:
        p = model.predict_indices(u, i, clip=True)
        return -float(np.sqrt(np.mean((p - v) ** 2)))

    return validate
