"""Sequence batching shared by the next-item recommenders (Caser, GRU4Rec).

A sequence model reads each user's history *in time order*. This module turns an
:class:`~rectune.data.Interactions` table into that order once, stores it in a CSR
layout (``indptr`` over users, ``items`` concatenated), and cuts training examples
and serving windows out of it with array arithmetic only (no Python loop over users
or rows).

Order. Per user, events are sorted by timestamp; **ties are broken by row order**
(the file order for a loaded file, kept by every split). That is the rule of
:func:`rectune.data.leave_last_n` and of PROTOCOLS.md's leave-last-one-out preset,
so the item a split holds out last is also the last one a sequence model sees.
Without timestamps, row order alone is the time order.

Windows. A window of length ``L`` ending before position ``p`` holds the ``L``
items just before ``p`` of the same user, oldest first, **left-padded** with
:data:`PAD` (-1) when the user has fewer: the most recent item is always in the
last column, which is where both models read the "current" state.

:class:`SequenceRecommender` is the part both models share on top of
:class:`~rectune.models.neural.base.NeuralRecommender`: it stores the training
histories with the model, scores the item after each user's last window, serves
explicit ``history=`` lists (unseen users, live sessions) and early-stops on the
NDCG@10 of a validation item.
"""

from __future__ import annotations

import functools
import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from rectune._errors import DataError
from rectune.data.interactions import Interactions
from rectune.models.base import _decode_padded, _mask_rows, _topk
from rectune.models.neural.base import NeuralRecommender, ndcg_validator
from rectune.models.neural.trainer import BatchFn, LossFn

__all__ = [
    "PAD",
    "KnownPairs",
    "SequenceRecommender",
    "Sequences",
    "check_choice",
    "check_number",
    "right_align",
    "sample_negatives",
]

PAD = -1
"""Padding marker in windows and targets (never a valid item index)."""


@dataclass(frozen=True, eq=False)
class Sequences:
    """Per-user item sequences in time order, CSR layout.

    ``items[indptr[u]:indptr[u + 1]]`` is user ``u``'s history, oldest first. Item
    values are dense item indices (``0..n_items-1``).
    """

    indptr: np.ndarray
    items: np.ndarray

    def __post_init__(self) -> None:
        if self.indptr.ndim != 1 or len(self.indptr) == 0 or self.indptr[0] != 0:
            raise DataError("Sequences.indptr must be a 1-D array starting at 0")
        if np.any(np.diff(self.indptr) < 0) or self.indptr[-1] != len(self.items):
            raise DataError("Sequences.indptr must be non-decreasing and end at len(items)")
        if len(self.items) and self.items.min() < 0:
            raise DataError("Sequences.items holds a negative item index")

    # construction -----------------------------------------------------------
    @classmethod
    def from_interactions(cls, data: Interactions, n_users: int | None = None) -> Sequences:
        """Each user's events sorted by (timestamp, row position): one stable lexsort.

        ``n_users`` (default ``data.n_users``) sizes ``indptr``; users without events
        get an empty sequence.
        """
        n_users = data.n_users if n_users is None else n_users
        rows = np.arange(len(data), dtype=np.int64)
        if data.timestamp is None:
            order = np.lexsort((rows, data.user))
        else:
            order = np.lexsort((rows, data.timestamp, data.user))
        counts = np.bincount(data.user, minlength=n_users)
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(indptr, np.ascontiguousarray(data.item[order], dtype=np.int64))

    @classmethod
    def from_lists(cls, lists: Sequence[np.ndarray | Sequence[int]]) -> Sequences:
        """Sequences from one array of item indices per user (already in time order)."""
        arrays = [np.asarray(x, dtype=np.int64).ravel() for x in lists]
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        indptr = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        items = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
        return cls(indptr, items.astype(np.int64, copy=False))

    # facts ------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Number of events of each user."""
        return np.diff(self.indptr)

    @functools.cached_property
    def _position_users(self) -> np.ndarray:
        users = np.repeat(np.arange(self.n_users, dtype=np.int64), self.lengths)
        users.setflags(write=False)
        return users

    def user_of_position(self) -> np.ndarray:
        """User index of every position of ``items`` (computed once, then cached)."""
        return self._position_users

    def take_users(self, users: np.ndarray) -> Sequences:
        """The sequences of ``users`` (in that order), as a new :class:`Sequences`."""
        users = np.asarray(users, dtype=np.int64)
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lens = ends - starts
        indptr = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(lens, out=indptr[1:])
        offs = np.arange(indptr[-1], dtype=np.int64) - np.repeat(indptr[:-1], lens)
        return Sequences(indptr, self.items[np.repeat(starts, lens) + offs])

    # windows ----------------------------------------------------------------
    def _window(self, ends: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
        """``items[max(start, end - length):end]`` per row, left-padded to ``length``."""
        idx = ends[:, None] - length + np.arange(length, dtype=np.int64)[None, :]
        ok = idx >= starts[:, None]
        if len(self.items) == 0:
            return np.full(idx.shape, PAD, dtype=np.int64)
        return np.where(ok, self.items[np.maximum(idx, 0)], PAD)

    def last_windows(self, users: np.ndarray, length: int) -> np.ndarray:
        """``(len(users), length)``: each user's last ``length`` items, left-padded.

        This is the serving context: the model predicts the item after the window.
        """
        users = np.asarray(users, dtype=np.int64)
        return self._window(self.indptr[users + 1], self.indptr[users], length)

    def windows_before(self, positions: np.ndarray, length: int) -> np.ndarray:
        """``(len(positions), length)``: the items just before each global position,
        of the same user, left-padded (the context of the item at that position)."""
        positions = np.asarray(positions, dtype=np.int64)
        users = self.user_of_position()[positions]
        return self._window(positions, self.indptr[users], length)

    def targets_from(self, positions: np.ndarray, n_targets: int) -> np.ndarray:
        """``(len(positions), n_targets)``: the item at each position and the next
        ``n_targets - 1`` of the same user; :data:`PAD` past the user's end."""
        positions = np.asarray(positions, dtype=np.int64)
        users = self.user_of_position()[positions]
        idx = positions[:, None] + np.arange(n_targets, dtype=np.int64)[None, :]
        ok = idx < self.indptr[users + 1][:, None]
        return np.where(ok, self.items[np.minimum(idx, max(len(self.items) - 1, 0))], PAD)

    def target_positions(self, min_context: int = 1) -> np.ndarray:
        """Global positions whose item has at least ``min_context`` earlier items:
        the next-item training examples (one per event after the first)."""
        local = np.arange(len(self.items), dtype=np.int64) - np.repeat(self.indptr[:-1],
                                                                       self.lengths)
        return np.flatnonzero(local >= min_context)

    def chunk_ends(self, length: int) -> np.ndarray:
        """Exclusive global ends of the training chunks for sequence-to-sequence models.

        Each user's history is cut, from its end backwards, into chunks of
        ``length + 1`` items (``length`` inputs, the same shifted by one as
        targets); consecutive chunks share one item, so every event after the
        user's first is a target exactly once and the most recent events get the
        longest context. A user with ``n >= 2`` events has ``ceil((n - 1) / length)``
        chunks; the oldest one is left-padded.
        """
        if length < 1:
            raise DataError(f"chunk length must be >= 1, got {length}")
        n_chunks = np.maximum(self.lengths - 1, 0)
        n_chunks = (n_chunks + length - 1) // length
        total = int(n_chunks.sum())
        users = np.repeat(np.arange(self.n_users, dtype=np.int64), n_chunks)
        j = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(n_chunks) - n_chunks,
                                                         n_chunks)
        return self.indptr[users + 1] - j * length

    def chunks(self, ends: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        """``(inputs, targets)``, both ``(len(ends), length)``: the ``length + 1`` items
        before each end, inputs = all but the last, targets = all but the first.

        A target is :data:`PAD` where its input is padding (no context: the first
        event of a user is never a target).
        """
        ends = np.asarray(ends, dtype=np.int64)
        # the user u with indptr[u] < end <= indptr[u + 1] (empty users never match)
        users = np.searchsorted(self.indptr[1:], ends, side="left")
        win = self._window(ends, self.indptr[users], length + 1)
        inputs, targets = win[:, :-1], win[:, 1:].copy()
        targets[inputs == PAD] = PAD
        return inputs, targets


def right_align(windows: np.ndarray, *others: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Left-padded windows -> ``(right-padded windows, lengths, others shifted alike)``.

    Recurrent layers read a packed sequence from its first real item, so padding
    must sit at the end; the item order inside a window is unchanged. ``others``
    (e.g. the targets of each step) get the same per-row shift.
    """
    w = np.asarray(windows)
    length = w.shape[1]
    lens = (w != PAD).sum(axis=1)
    cols = (np.arange(length)[None, :] + (length - lens)[:, None]) % length
    return (np.take_along_axis(w, cols, axis=1), lens,
            [np.take_along_axis(np.asarray(o), cols, axis=1) for o in others])


@dataclass(frozen=True, eq=False)
class KnownPairs:
    """Membership test for (user, item) pairs a user is known to like.

    Sorted ``user * n_items + item`` keys; :meth:`contains` is one vectorised
    ``searchsorted``. Negative samples are drawn outside this set, so a model is
    never pushed down on an item its user actually chose.
    """

    keys: np.ndarray
    n_items: int
    full_users: np.ndarray  # users who have every item: no negative exists

    @classmethod
    def from_sequences(cls, seqs: Sequences, n_items: int) -> KnownPairs:
        keys = np.unique(seqs.user_of_position() * n_items + seqs.items)
        users = keys // n_items
        per_user = np.bincount(users, minlength=seqs.n_users)
        return cls(keys, n_items, np.flatnonzero(per_user >= n_items))

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Boolean array (broadcast shape of ``users`` and ``items``): pair is known."""
        q = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        if len(self.keys) == 0:
            return np.zeros(q.shape, dtype=bool)
        pos = np.minimum(np.searchsorted(self.keys, q), len(self.keys) - 1)
        return self.keys[pos] == q


def sample_negatives(
    rng: np.random.Generator,
    users: np.ndarray,
    n: int,
    known: KnownPairs,
    *,
    probs: np.ndarray | None = None,
    max_rounds: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` negative items per user, never one of the user's known items.

    Items are drawn (uniformly, or from ``probs``) and the offending draws are
    redrawn in rounds: the loop runs over rounds, not rows, and the share of bad
    draws shrinks geometrically unless a user knows nearly every item. Returns
    ``(items, valid)``, both ``(len(users), n)``; ``valid`` is False where no
    negative was found (users who know the whole catalogue, or rare exhaustion),
    and such entries must carry no weight in a loss.
    """
    users = np.asarray(users, dtype=np.int64)
    n_items = known.n_items

    def draw(size: int) -> np.ndarray:
        if probs is None:
            return rng.integers(0, n_items, size=size, dtype=np.int64)
        return rng.choice(n_items, size=size, p=probs).astype(np.int64)

    neg = draw(len(users) * n).reshape(len(users), n)
    uu = np.broadcast_to(users[:, None], neg.shape)
    bad = known.contains(uu, neg)
    if len(known.full_users):
        bad &= ~np.isin(uu, known.full_users)  # handled below: they stay invalid
    for _ in range(max_rounds):
        if not bad.any():
            break
        r, c = np.nonzero(bad)
        neg[r, c] = draw(len(r))
        bad[r, c] = known.contains(users[r], neg[r, c])
    valid = ~bad
    if len(known.full_users):
        valid &= ~np.isin(uu, known.full_users)
    return neg, valid


# ------------------------------------------------------------------ recommender base
def check_number(model: Any, name: str, low: float, *, high: float | None = None,
                 integer: bool = False, low_open: bool = False, high_open: bool = False,
                 allow_none: bool = False) -> None:
    """Raise :class:`DataError` unless hyper-parameter ``name`` is a number in range."""
    v = getattr(model, name)
    cls = type(model).__name__
    if v is None and allow_none:
        return
    ok_type = isinstance(v, int | np.integer) if integer else isinstance(v, int | float | np.number)
    if isinstance(v, bool) or not ok_type or not math.isfinite(float(v)):
        kind = "an int" if integer else "a finite number"
        raise DataError(f"{cls}: {name} must be {kind}, got {v!r}")
    if (v <= low if low_open else v < low) or \
            (high is not None and (v >= high if high_open else v > high)):
        upper = "" if high is None else f" and {'<' if high_open else '<='} {high:g}"
        raise DataError(f"{cls}: {name} must be {'>' if low_open else '>='} {low:g}{upper}, "
                        f"got {v!r}")


def check_choice(model: Any, name: str, choices: tuple[str, ...]) -> None:
    """Raise :class:`DataError` unless hyper-parameter ``name`` is one of ``choices``."""
    v = getattr(model, name)
    if v not in choices:
        raise DataError(f"{type(model).__name__}: {name} must be one of {list(choices)}, "
                        f"got {v!r}")


class SequenceRecommender(NeuralRecommender):
    """Shared machinery of the next-item models: history, training loop, scoring, serving.

    A subclass builds a module with ``represent(users, windows) -> (B, D)`` and
    ``output() -> (W (n_items, D), b (n_items,))`` (the score of item ``i`` is
    ``rep . W_i + b_i``), and :meth:`_training_batches`. The training history, in
    time order, is stored with the model (``seq_indptr_``, ``seq_items_``: int
    arrays saved with it), so ``recommend`` needs no training data after ``load``.

    Every event is one step of the sequence: values (ratings, counts) are ignored,
    order is time then row order. Unknown users, and known users without any
    training event, get the base class's popularity fallback unless an explicit
    ``history=`` is given. ``FitOptions.device`` picks where training runs (CUDA
    when available by default); scoring runs on the CPU afterwards unless a device
    was named.
    """

    _extra_arrays: ClassVar[tuple[str, ...]] = ("seq_indptr_", "seq_items_")
    max_len: int
    patience: int | None

    @abstractmethod
    def _training_batches(self, seqs: Sequences, known: KnownPairs
                          ) -> tuple[BatchFn, LossFn, int]:
        """``(batches(rng), loss(module, batch), n_batches)`` for the trainer."""

    def _validate_training_params(self) -> None:
        check_number(self, "epochs", 1, integer=True)
        check_number(self, "batch_size", 1, integer=True)
        check_number(self, "lr", 0, low_open=True)
        check_number(self, "weight_decay", 0)
        check_number(self, "patience", 1, integer=True, allow_none=True)
        check_number(self, "random_state", 0, integer=True)

    # ---------------------------------------------------------------- training
    def _train(self, train: Interactions, features: Any, valid: Interactions | None) -> None:
        seqs = Sequences.from_interactions(train, self.n_users)
        self.seq_indptr_, self.seq_items_ = seqs.indptr, seqs.items
        known = KnownPairs.from_sequences(seqs, self.n_items)
        batches, loss, n_batches = self._training_batches(seqs, known)
        validate = None
        if valid is not None:
            # NDCG@10 of the validation items, training items excluded: the full-ranking
            # next-item protocol (leave-last-one-out's second-to-last item)
            validate = ndcg_validator(self, valid, k=10)
        self._run_trainer(loss, batches, validate=validate, n_batches=n_batches)

    # ----------------------------------------------------------------- history
    def _sequences(self) -> Sequences:
        return Sequences(np.asarray(self.seq_indptr_, dtype=np.int64),
                         np.asarray(self.seq_items_, dtype=np.int64))

    def user_history(self, user: Any) -> np.ndarray:
        """The raw item ids the model holds for ``user``, oldest first (empty if unknown).

        Concatenate new events to it and pass the result as ``history=`` to score a
        returning user's next item without refitting.
        """
        self._check_fitted()
        u = int(self._encode_users([user])[0])
        if u < 0:
            return self.item_map_.decode(np.zeros(0, dtype=np.int64))
        seqs = self._sequences()
        return self.item_map_.decode(seqs.items[seqs.indptr[u]:seqs.indptr[u + 1]])

    def _encode_users(self, users: Any) -> np.ndarray:
        raw = np.atleast_1d(np.asarray(users, dtype=object) if self.user_map_.kind == "str"
                            else np.asarray(users))
        return self.user_map_.encode(raw, missing="negative")

    # ----------------------------------------------------------------- scoring
    def _score_windows(self, u: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """``(len(u), n_items)`` float64 scores of the item after each window.

        Rows whose window is empty get the popularity fallback.
        """
        n_items = self.n_items
        out = np.empty((len(u), n_items), dtype=np.float64)
        rows = max(1, self.score_chunk // max(n_items, 1))
        dev = self._module_device()
        module = self.module_
        was_training = module.training
        module.eval()
        with torch.no_grad():
            w, b = module.output()  # type: ignore[operator]
            for s in range(0, len(u), rows):
                ut = torch.from_numpy(np.ascontiguousarray(u[s:s + rows])).to(dev)
                wt = torch.from_numpy(np.ascontiguousarray(windows[s:s + rows])).to(dev)
                rep = module.represent(ut, wt)  # type: ignore[operator]
                out[s:s + len(ut)] = (rep @ w.T + b).double().cpu().numpy()
        module.train(was_training)
        empty = (windows == PAD).all(axis=1)
        if empty.any():
            out[empty] = self.item_popularity_.astype(np.float64)
        return out

    def _score(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.int64)
        return self._score_windows(u, self._sequences().last_windows(u, int(self.max_len)))

    def _pair_scores(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        uu = u.cpu().numpy()
        windows = torch.from_numpy(self._sequences().last_windows(uu, int(self.max_len)))
        module = self.module_
        rep = module.represent(u, windows.to(u.device))  # type: ignore[operator]
        w, b = module.output()  # type: ignore[operator]
        return (rep * w[i]).sum(dim=1) + b[i]

    def _predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.int64)
        i = np.asarray(i, dtype=np.int64)
        empty = self._sequences().lengths[u] == 0
        out = np.empty(len(u), dtype=np.float64)
        if (~empty).any():
            out[~empty] = self._pairs_numpy(u[~empty], i[~empty])
        if empty.any():
            out[empty] = self._predict_unknown(u[empty], i[empty])
        return out

    # ------------------------------------------------------------------ serving
    def recommend(
        self,
        users: Any,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        items: Any = None,
        batch_size: int | None = None,
        history: Sequence[Sequence[Any]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` next items for each user (2-D raw ids and scores, batch first).

        Without ``history`` this is the base template over the stored training
        histories. ``history[j]`` (raw item ids, oldest first) is the context for
        ``users[j]`` instead of the stored one, for users unseen in training or a
        live session (use :meth:`user_history` + new events to extend a stored one);
        ids the model does not know are skipped. A row whose usable history is
        empty falls back to the stored history (known user) or popularity.
        With ``exclude_seen`` both the stored items and the given history are
        excluded.
        """
        if history is None:
            return super().recommend(users, k, exclude_seen=exclude_seen, items=items,
                                     batch_size=batch_size)
        self._check_fitted()
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k <= 0:
            raise DataError(f"k must be a positive integer, got {k!r}")
        u = self._encode_users(users)
        if isinstance(history, str | bytes) or len(history) != len(u):
            raise DataError(f"history must hold one list of item ids per user: got "
                            f"{len(history) if not isinstance(history, str | bytes) else 'a str'}"
                            f" lists for {len(u)} users")
        given = self._encode_history(history)
        cand = None
        if items is not None:
            ci = self.item_map_.encode(np.atleast_1d(items), missing="negative")
            cand = np.unique(ci[ci >= 0])
        idx, scores = self._recommend_with(u, given, k, exclude_seen, cand, batch_size)
        return _decode_padded(self.item_map_, idx), scores

    def _encode_history(self, history: Sequence[Sequence[Any]]) -> Sequences:
        lists = []
        for j, h in enumerate(history):
            if isinstance(h, str | bytes):
                raise DataError(f"history[{j}] must be a list of item ids, not a string")
            arr = np.asarray(list(h), dtype=object if self.item_map_.kind == "str" else None)
            idx = self.item_map_.encode(arr, missing="negative") if len(arr) else \
                np.zeros(0, dtype=np.int64)
            lists.append(idx[idx >= 0])
        return Sequences.from_lists(lists)

    def _recommend_with(self, u: np.ndarray, given: Sequences, k: int, exclude_seen: bool,
                        cand: np.ndarray | None, batch_size: int | None
                        ) -> tuple[np.ndarray, np.ndarray]:
        n_items = self.n_items
        k_eff = int(min(k, n_items if cand is None else len(cand)))
        out_i = np.full((len(u), k), -1, dtype=np.int64)
        out_s = np.full((len(u), k), np.nan, dtype=np.float64)
        if k_eff == 0 or len(u) == 0:
            return out_i, out_s
        L = int(self.max_len)
        stored = self._sequences()
        use_given = given.lengths > 0
        known = (u >= 0) & (u < self.n_users)
        if batch_size is None:
            batch_size = max(1, min(4096, 8_000_000 // max(n_items, 1)))
        for s in range(0, len(u), batch_size):
            rows = np.arange(s, min(s + batch_size, len(u)))
            ub, gb, kb = u[rows], use_given[rows], known[rows]
            win = np.full((len(rows), L), PAD, dtype=np.int64)
            if gb.any():
                win[gb] = given.last_windows(rows[gb], L)
            from_store = ~gb & kb
            if from_store.any():
                win[from_store] = stored.last_windows(ub[from_store], L)
            block = self._score_windows(np.where(kb, ub, -1), win)
            if cand is not None:
                allowed = np.zeros(n_items, dtype=bool)
                allowed[cand] = True
                block[:, ~allowed] = -np.inf
            if exclude_seen:
                r = np.flatnonzero(kb)
                if len(r):
                    _mask_rows(block, r, self.seen_, ub[r])
                lens = given.lengths[rows]
                hist = given.items[np.repeat(given.indptr[rows], lens)
                                   + np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens,
                                                                       lens)]
                block[np.repeat(np.arange(len(rows)), lens), hist] = -np.inf
            top, top_s = _topk(block, k_eff)
            ok = np.isfinite(top_s)
            out_i[rows, :k_eff] = np.where(ok, top, -1)
            out_s[rows, :k_eff] = np.where(ok, top_s, np.nan)
        return out_i, out_s
