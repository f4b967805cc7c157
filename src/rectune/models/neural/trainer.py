"""A small, reproducible training loop shared by every neural rectune model.

Why one trainer: the neural families (NCF, DeepFM, sequence models) differ in their
``nn.Module`` and loss, not in how an epoch runs. Putting the loop here gives all of
them the same guarantees (STYLE.md, "neural models in three parts"):

* **Seeded determinism.** ``TrainConfig.seed`` seeds torch (inside a forked RNG, so
  the caller's global torch stream is untouched) and a ``numpy.random.Generator``
  that the batch source draws shuffles and negatives from. Same seed, same data,
  same device -> identical weights.
* **Early stopping** on a validation score (higher is better), restoring the
  best weights when training stops.
* **Checkpoint + resume.** After every epoch a checkpoint with the module's and
  optimiser's ``state_dict``, the numpy generator state (as JSON), the torch RNG
  state, the history and the best weights is written atomically. It contains only
  tensors and plain Python values and is read back with
  ``torch.load(weights_only=True)``: no arbitrary object is ever unpickled. A
  resumed run continues from the next epoch and ends with the same weights as an
  uninterrupted one.
* **Divergence guard.** A NaN/inf loss, or one above ``max_loss``, raises
  :class:`DivergenceError` naming the epoch, batch and value, instead of silently
  writing NaN weights into a model.
* **Gradient clipping** by global norm, **CPU by default, CUDA when available**
  (never assumed), a ``rich`` progress bar (epoch, loss, validation, ETA), and
  Ctrl-C stops cleanly after restoring the best weights seen so far.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rectune._errors import DataError, RectuneError

__all__ = ["CHECKPOINT_FILE", "DivergenceError", "TrainConfig", "Trainer", "resolve_device"]

CHECKPOINT_FILE = "checkpoint.pt"
_OPTIMIZERS = ("adam", "adamw", "sgd")

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
BatchFn = Callable[[np.random.Generator], Iterator[dict[str, torch.Tensor]]]


class DivergenceError(RectuneError):
    """Training diverged: the loss became NaN/inf or exceeded ``TrainConfig.max_loss``."""


@dataclass
class TrainConfig:
    """Everything the loop needs besides the module, the loss and the data.

    ``patience`` epochs without a better validation score stop training (None: run
    all epochs); with a ``validate`` function the best weights are restored at the
    end when ``restore_best`` is on. ``device=None`` picks CUDA when available,
    else CPU.
    """

    epochs: int = 20
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    clip_grad: float | None = 5.0
    patience: int | None = 3
    device: str | None = None
    seed: int = 0
    progress: bool = True
    checkpoint_dir: str | None = None
    resume: bool = False
    max_loss: float = 1e6
    restore_best: bool = True
    min_delta: float = 0.0

    def validate(self) -> None:
        """Raise :class:`DataError` naming the first bad field."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise DataError(f"TrainConfig: {msg}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int | np.integer) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, int | float | np.floating) and not isinstance(v, bool) \
                and math.isfinite(float(v))

        need(is_int(self.epochs) and self.epochs >= 0, f"epochs must be an int >= 0, got "
             f"{self.epochs!r}")
        need(is_int(self.batch_size) and self.batch_size >= 1,
             f"batch_size must be an int >= 1, got {self.batch_size!r}")
        need(is_num(self.lr) and self.lr > 0, f"lr must be a finite number > 0, got {self.lr!r}")
        need(is_num(self.weight_decay) and self.weight_decay >= 0,
             f"weight_decay must be >= 0, got {self.weight_decay!r}")
        need(self.optimizer in _OPTIMIZERS,
             f"optimizer must be one of {list(_OPTIMIZERS)}, got {self.optimizer!r}")
        need(self.clip_grad is None or (is_num(self.clip_grad) and self.clip_grad > 0),
             f"clip_grad must be None or > 0, got {self.clip_grad!r}")
        need(self.patience is None or (is_int(self.patience) and self.patience >= 1),
             f"patience must be None or an int >= 1, got {self.patience!r}")
        need(is_int(self.seed), f"seed must be an int, got {self.seed!r}")
        need(is_num(self.max_loss) and self.max_loss > 0,
             f"max_loss must be > 0, got {self.max_loss!r}")
        need(self.resume is False or self.checkpoint_dir is not None,
             "resume=True needs a checkpoint_dir")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA if available else CPU; a named CUDA device that is absent is an error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise DataError(f"device {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"device {device!r} requested but CUDA is not available here")
    return dev


def _batch_len(batch: dict[str, torch.Tensor]) -> int:
    for v in batch.values():
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            return int(v.shape[0])
    return 1


class Trainer:
    """Run epochs of ``loss(module, batch)`` over ``batches(rng)`` with an optimiser.

    ``batches`` is called once per epoch with the trainer's numpy generator and
    yields dicts of tensors (moved to :attr:`device` here). ``validate(module)``
    returns a score where higher is better (NDCG@10, or -RMSE); ``penalty(module)``
    is added to every batch loss (e.g. an L2-SP anchor). ``params`` restricts the
    optimiser to a subset (freezing); by default every parameter with
    ``requires_grad``.
    """

    def __init__(self, module: torch.nn.Module, loss: LossFn, batches: BatchFn,
                 cfg: TrainConfig, *,
                 validate: Callable[[torch.nn.Module], float] | None = None,
                 penalty: Callable[[torch.nn.Module], torch.Tensor] | None = None,
                 n_batches: int | None = None,
                 params: Iterable[torch.nn.Parameter] | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.module = module.to(self.device)
        self.loss = loss
        self.batches = batches
        self.validate = validate
        self.penalty = penalty
        self.n_batches = n_batches
        chosen = [p for p in (module.parameters() if params is None else params)
                  if p.requires_grad]
        if not chosen:
            raise DataError("Trainer: no trainable parameters (all frozen?)")
        self.optimizer = self._make_optimizer(chosen)
        self.rng = np.random.default_rng(cfg.seed)
        self.history: list[dict[str, float]] = []
        self.epoch = 0  # epochs completed
        self.best_score = -math.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0
        self.stopped_early = False
        self.interrupted = False
        gen = torch.Generator().manual_seed(int(cfg.seed))
        self._torch_state = gen.get_state()  # torch RNG stream of this run (dropout etc.)
        self._cuda_state: torch.Tensor | None = None

    # ------------------------------------------------------------------ set-up
    def _make_optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        c = self.cfg
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        if c.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD(params, lr=c.lr, weight_decay=c.weight_decay)

    @property
    def checkpoint_path(self) -> Path | None:
        d = self.cfg.checkpoint_dir
        return None if d is None else Path(d) / CHECKPOINT_FILE

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    # ------------------------------------------------------------------ epochs
    def train_epoch(self) -> dict[str, float]:
        """One pass over ``batches(rng)``: ``{"epoch", "loss", "seconds"}`` (+ ``"valid"``).

        Raises :class:`DivergenceError` on a non-finite loss or one above ``max_loss``.
        """
        return self._epoch_in_rng(None)

    def _epoch_in_rng(self, advance: Callable[[float], None] | None) -> dict[str, float]:
        """Run an epoch on this run's own torch RNG stream (the caller's is left untouched)."""
        with torch.random.fork_rng(devices=self._cuda_devices()):
            torch.set_rng_state(self._torch_state)
            if self._cuda_state is not None:
                torch.cuda.set_rng_state(self._cuda_state, self.device)
            elif self.device.type == "cuda":  # first epoch: seed this device's stream too
                with torch.cuda.device(self.device):
                    torch.cuda.manual_seed(int(self.cfg.seed))
            stats = self._run_epoch(advance)
            self._torch_state = torch.get_rng_state()
            if self.device.type == "cuda":
                self._cuda_state = torch.cuda.get_rng_state(self.device)
        return stats

    def _cuda_devices(self) -> list[int]:
        if self.device.type == "cuda":
            return [self.device.index if self.device.index is not None
                    else torch.cuda.current_device()]
        return []

    def _run_epoch(self, advance: Callable[[float], None] | None) -> dict[str, float]:
        t0 = time.perf_counter()
        epoch = self.epoch + 1
        self.module.train()
        total, count = 0.0, 0
        for b, batch in enumerate(self.batches(self.rng)):
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            loss = self.loss(self.module, batch)
            if self.penalty is not None:
                loss = loss + self.penalty(self.module)
            value = float(loss.detach())
            if not math.isfinite(value) or value > self.cfg.max_loss:
                raise DivergenceError(
                    f"training diverged at epoch {epoch}, batch {b + 1}: loss {value!r} "
                    f"(max_loss {self.cfg.max_loss:g}); lower the learning rate "
                    f"(lr={self.cfg.lr:g}) or enable clip_grad")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(
                    [p for g in self.optimizer.param_groups for p in g["params"]],
                    float(self.cfg.clip_grad))
            self.optimizer.step()
            n = _batch_len(batch)
            total += value * n
            count += n
            if advance is not None:
                advance(total / count)
        stats = {"epoch": float(epoch), "loss": total / count if count else float("nan"),
                 "seconds": time.perf_counter() - t0}
        if self.validate is not None:
            self.module.eval()
            with torch.no_grad():
                score = float(self.validate(self.module))
            self.module.train()
            if not math.isfinite(score):
                raise DivergenceError(f"validation score is {score!r} after epoch {epoch}")
            stats["valid"] = score
        self.epoch = epoch
        self.history.append(stats)
        self._track_best(stats)
        return stats

    def _track_best(self, stats: dict[str, float]) -> None:
        if "valid" not in stats:
            return
        if stats["valid"] > self.best_score + self.cfg.min_delta or self.best_state is None:
            self.best_score = stats["valid"]
            self.best_epoch = self.epoch
            self.best_state = self._snapshot()
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1

    def _restore_best(self) -> None:
        if self.validate is not None and self.cfg.restore_best and self.best_state is not None:
            self.module.load_state_dict(self.best_state)

    # --------------------------------------------------------------------- fit
    def fit(self) -> list[dict[str, float]]:
        """Train up to ``cfg.epochs`` epochs; returns :attr:`history` (one dict per epoch).

        Resumes from the checkpoint when ``cfg.resume`` and one exists. Ctrl-C stops
        after the current batch with the best weights so far (``interrupted`` set).
        """
        if self.cfg.resume:
            self.load_checkpoint()
        if self._should_stop():
            self._restore_best()
            return self.history
        with _Progress(self.cfg.progress, self.cfg.epochs, self.n_batches,
                       done=self.epoch) as bar:
            try:
                while self.epoch < self.cfg.epochs:
                    bar.start_epoch(self.epoch + 1)
                    stats = self._epoch_in_rng(bar.advance)
                    bar.end_epoch(stats)
                    self.save_checkpoint()
                    if self._should_stop():
                        self.stopped_early = self.epoch < self.cfg.epochs
                        break
            except KeyboardInterrupt:
                self.interrupted = True
                warnings.warn(f"training interrupted during epoch {self.epoch + 1}; keeping "
                              "the best weights so far", stacklevel=2)
        self._restore_best()
        return self.history

    def _should_stop(self) -> bool:
        return (self.validate is not None and self.cfg.patience is not None
                and self.bad_epochs >= self.cfg.patience)

    # ------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path | None:
        """Write the resumable state (tensors and plain values only) atomically."""
        path = self.checkpoint_path
        if path is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {
            "format": 1,
            "epoch": self.epoch,
            "module": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "numpy_rng": json.dumps(self.rng.bit_generator.state),
            "torch_rng": self._torch_state,
            "cuda_rng": self._cuda_state,
            "history": [dict(h) for h in self.history],
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
            "bad_epochs": self.bad_epochs,
        }
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        return path

    def load_checkpoint(self) -> bool:
        """Restore the state written by :meth:`save_checkpoint`; False when there is none."""
        path = self.checkpoint_path
        if path is None or not path.is_file():
            return False
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # torch raises several unrelated types on bad files
            raise RectuneError(f"{path}: not a readable rectune checkpoint ({exc})") from None
        if not isinstance(state, dict) or state.get("format") != 1:
            raise RectuneError(f"{path}: not a rectune checkpoint (format 1)")
        try:
            self.module.load_state_dict(state["module"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise RectuneError(f"{path}: checkpoint does not match this model/optimiser "
                               f"({exc}); delete it or change checkpoint_dir") from None
        self.rng.bit_generator.state = json.loads(state["numpy_rng"])
        self._torch_state = state["torch_rng"].cpu()
        cuda = state.get("cuda_rng")
        self._cuda_state = cuda.cpu() if cuda is not None and self.device.type == "cuda" \
            else None
        self.epoch = int(state["epoch"])
        self.history = [dict(h) for h in state["history"]]
        self.best_score = float(state["best_score"])
        self.best_epoch = int(state["best_epoch"])
        self.best_state = state["best_state"]
        self.bad_epochs = int(state["bad_epochs"])
        return True


class _Progress:
    """A rich progress bar over batches (or epochs when the batch count is unknown)."""

    def __init__(self, enabled: bool, epochs: int, n_batches: int | None, *, done: int) -> None:
        self.enabled = enabled
        self.epochs = epochs
        self.n_batches = n_batches
        self.done = done
        self._bar: Any = None
        self._task: Any = None
        self._last = ""

    def __enter__(self) -> _Progress:
        if not self.enabled:
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                             TextColumn("ETA"), TimeRemainingColumn())
        per = self.n_batches or 1
        self._task = self._bar.add_task("train", total=self.epochs * per,
                                        completed=self.done * per, info="")
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def start_epoch(self, epoch: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=f"epoch {epoch}/{self.epochs}")

    def advance(self, mean_loss: float) -> None:
        if self._bar is not None and self.n_batches:
            self._bar.update(self._task, advance=1, info=f"loss {mean_loss:.4f} {self._last}")

    def end_epoch(self, stats: dict[str, float]) -> None:
        if self._bar is None:
            return
        self._last = f"valid {stats['valid']:.4f}" if "valid" in stats else ""
        per = self.n_batches or 1
        self._bar.update(self._task, completed=int(stats["epoch"]) * per,
                         info=f"loss {stats['loss']:.4f} {self._last}")
