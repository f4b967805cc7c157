"""GRU4Rec: a recurrent network over the item sequence for next-item recommendation.

Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks"
(ICLR 2016) and Hidasi & Karatzoglou, "Recurrent Neural Networks with Top-k Gains
for Session-based Recommendations" (CIKM 2018). A GRU reads the user's recent
items (embedded, oldest first); its state after the last item, mapped back into
the item-embedding space by a linear ``head``, scores every item by a dot product
with the item's embedding plus a bias. Input and output share the embedding table
(the reference implementation's ``constrained_embedding``): fewer parameters, and
an item's vector means the same thing on both sides.

Training is sequence-to-sequence: each user's history is cut into chunks of
``max_len + 1`` items (see :meth:`Sequences.chunk_ends`), and at every step the
state predicts the next item. Losses:

* ``"ce"`` (default): cross-entropy of a softmax over the whole catalogue, the
  strongest choice when the catalogue fits (ML-100K: 1,682 items);
* ``"bpr-max"`` for big catalogues: ``n_negatives`` items shared by the batch,
  drawn from popularity ``^ sample_alpha``, and the 2018 loss
  ``-log sum_j s_j sigmoid(r_i - r_j) + bpreg * sum_j s_j r_j^2`` with ``s`` the
  softmax of the negatives' scores; a negative that is one of the user's own
  items is masked out.

Parameter groups: ``item_embedding``, ``item_bias``, ``gru.*`` (``weight_ih_l0``,
...), ``head.*``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rectune._errors import DataError
from rectune.models.neural.sequence import (
    PAD,
    KnownPairs,
    SequenceRecommender,
    Sequences,
    check_choice,
    check_number,
    right_align,
)
from rectune.models.neural.trainer import BatchFn, LossFn

__all__ = ["GRU4Rec", "GRU4RecModule"]


class GRU4RecModule(nn.Module):
    """Embedding -> GRU -> linear head, scored against the (tied) item embeddings.

    Windows are left-padded (item -1); :meth:`run` right-aligns and packs them, so
    the GRU starts from a zero state at each window's first real item and padding
    never touches the state.
    """

    def __init__(self, n_items: int, n_factors: int, hidden_size: int, n_layers: int,
                 dropout: float) -> None:
        super().__init__()
        self.item_embedding = nn.Embedding(n_items, n_factors)
        self.item_bias = nn.Embedding(n_items, 1)
        self.gru = nn.GRU(n_factors, hidden_size, n_layers, batch_first=True,
                          dropout=dropout if n_layers > 1 else 0.0)
        self.head = nn.Linear(hidden_size, n_factors)
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.item_embedding.weight, 0.0, n_factors ** -0.5)
        nn.init.zeros_(self.item_bias.weight)

    def run(self, windows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Right-padded ``(B, L)`` windows -> ``(B, L, n_factors)`` step outputs (padding
        steps are 0). ``lengths`` lives on the CPU, as packing needs."""
        mask = (windows != PAD).unsqueeze(-1).to(self.item_embedding.weight.dtype)
        x = self.dropout(self.item_embedding(windows.clamp(min=0)) * mask)
        packed = pack_padded_sequence(x, lengths.clamp(min=1), batch_first=True,
                                      enforce_sorted=False)
        out, _ = self.gru(packed)
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=windows.shape[1])
        return self.head(self.dropout(h)) * mask

    def represent(self, users: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` left-padded windows -> ``(B, n_factors)``: the state after the last item.

        ``users`` is accepted for the shared interface and ignored: GRU4Rec is
        session-based, a user is their sequence.
        """
        aligned, lengths = right_align_torch(windows)
        out = self.run(aligned, lengths)
        last = (lengths.to(out.device) - 1).clamp(min=0)
        return out[torch.arange(out.shape[0], device=out.device), last]

    def output(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Item output vectors (the tied embeddings) and biases ``(n_items,)``."""
        return self.item_embedding.weight, self.item_bias.weight.squeeze(1)


def right_align_torch(windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch twin of :func:`right_align`: ``(right-padded windows, CPU lengths)``."""
    length = windows.shape[1]
    lens = (windows != PAD).sum(dim=1)
    cols = (torch.arange(length, device=windows.device)[None, :]
            + (length - lens)[:, None]) % length
    return torch.gather(windows, 1, cols), lens.cpu()


class GRU4Rec(SequenceRecommender):
    """GRU4Rec next-item recommender (Hidasi et al. 2016/2018) over PyTorch.

    Parameters
    ----------
    n_factors:
        Item embedding size (input and output: the table is tied).
    hidden_size, n_layers:
        GRU state size and depth.
    max_len:
        Training chunk length and serving context: the GRU reads at most the
        ``max_len`` most recent items.
    dropout:
        Dropout on the embedded inputs and on the GRU outputs (and between GRU layers).
    loss:
        ``"ce"`` (full softmax over the catalogue) or ``"bpr-max"`` (sampled, for big
        catalogues).
    n_negatives, sample_alpha, bpreg:
        ``"bpr-max"`` only: negatives shared per batch, popularity exponent of their
        sampling distribution (0 = uniform, 1 = popularity), score regularisation.
    epochs, batch_size, lr, weight_decay, patience:
        Training (Adam); ``batch_size`` counts chunks. With ``fit(..., valid=...)``
        training stops after ``patience`` epochs without a better validation NDCG@10
        and keeps the best weights.
    random_state:
        Seed of initialisation, shuffling, negatives and dropout.
    """

    def __init__(self, n_factors: int = 64, hidden_size: int = 100, n_layers: int = 1,
                 max_len: int = 50, dropout: float = 0.2, loss: str = "ce",
                 n_negatives: int = 512, sample_alpha: float = 0.5, bpreg: float = 1.0,
                 epochs: int = 40, batch_size: int = 64, lr: float = 2e-3,
                 weight_decay: float = 0.0, patience: int | None = 5,
                 random_state: int = 0) -> None:
        self.n_factors = n_factors
        self.hidden_size = hidden_size
        self.n_layers = n_layers
        self.max_len = max_len
        self.dropout = dropout
        self.loss = loss
        self.n_negatives = n_negatives
        self.sample_alpha = sample_alpha
        self.bpreg = bpreg
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.random_state = random_state

    def _validate_params(self) -> None:
        check_number(self, "n_factors", 1, integer=True)
        check_number(self, "hidden_size", 1, integer=True)
        check_number(self, "n_layers", 1, integer=True)
        check_number(self, "max_len", 1, integer=True)
        check_number(self, "dropout", 0, high=1, high_open=True)
        check_choice(self, "loss", ("ce", "bpr-max"))
        check_number(self, "n_negatives", 1, integer=True)
        check_number(self, "sample_alpha", 0, high=1)
        check_number(self, "bpreg", 0)
        self._validate_training_params()

    def _build_module(self) -> nn.Module:
        return GRU4RecModule(self.n_items, int(self.n_factors), int(self.hidden_size),
                             int(self.n_layers), float(self.dropout))

    # ----------------------------------------------------------------- training
    def _training_batches(self, seqs: Sequences, known: KnownPairs
                          ) -> tuple[BatchFn, LossFn, int]:
        """Chunks of ``max_len + 1`` items; every step after a user's first item is a target."""
        L, bs = int(self.max_len), int(self.batch_size)
        ends = seqs.chunk_ends(L)
        if len(ends) == 0:
            raise DataError("GRU4Rec: no user has two or more events; nothing to learn a "
                            "next item from")
        chunk_user = np.searchsorted(seqs.indptr[1:], ends, side="left")
        use_ce = self.loss == "ce"
        n_items = known.n_items
        pop = np.bincount(seqs.items, minlength=n_items).astype(np.float64) \
            ** float(self.sample_alpha)
        probs = pop / pop.sum()
        n_neg, bpreg = int(self.n_negatives), float(self.bpreg)

        def batches(rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
            order = rng.permutation(len(ends))
            for start in range(0, len(order), bs):
                sel = order[start:start + bs]
                inputs, targets = seqs.chunks(ends[sel], L)
                inputs, lengths, (targets,) = right_align(inputs, targets)
                batch = {"input": torch.from_numpy(inputs),
                         "length": torch.from_numpy(lengths),
                         "target": torch.from_numpy(targets)}
                if not use_ce:
                    neg = rng.choice(n_items, size=n_neg, p=probs).astype(np.int64)
                    users = np.repeat(chunk_user[sel], L).reshape(-1, L)
                    bad = known.contains(users[..., None], neg[None, None, :])
                    batch["negative"] = torch.from_numpy(neg)
                    batch["negative_bad"] = torch.from_numpy(bad)
                yield batch

        def loss(module: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
            out = module.run(b["input"], b["length"].cpu())  # type: ignore[operator]
            tgt = b["target"]
            valid = tgt != PAD
            h = out[valid]  # (N, d)
            t = tgt[valid]
            w, bias = module.output()  # type: ignore[operator]
            if use_ce:
                return F.cross_entropy(h @ w.T + bias, t)
            pos = (h * w[t]).sum(1) + bias[t]
            neg_items = b["negative"]
            neg = h @ w[neg_items].T + bias[neg_items]  # (N, n_neg)
            bad = b["negative_bad"][valid] | (neg_items[None, :] == t[:, None])
            return bpr_max_loss(pos, neg, bad, bpreg)

        n_batches = (len(ends) + bs - 1) // bs
        return batches, loss, n_batches


def bpr_max_loss(pos: torch.Tensor, neg: torch.Tensor, bad: torch.Tensor,
                 bpreg: float) -> torch.Tensor:
    """BPR-max (Hidasi & Karatzoglou 2018), mean over the rows with a usable negative.

    ``s = softmax(neg)`` over the allowed negatives; loss
    ``-log sum_j s_j sigmoid(pos - neg_j) + bpreg * sum_j s_j neg_j^2``, computed as a
    log-sum-exp of ``log s_j + log sigmoid(pos - neg_j)`` for stability.
    """
    neg_masked = neg.masked_fill(bad, float("-inf"))
    ok = ~bad.all(dim=1)
    if not bool(ok.any()):
        return pos.sum() * 0.0
    neg_masked, neg, pos, bad = neg_masked[ok], neg[ok], pos[ok], bad[ok]
    log_s = torch.log_softmax(neg_masked, dim=1)
    terms = (log_s + F.logsigmoid(pos[:, None] - neg)).masked_fill(bad, float("-inf"))
    main = -torch.logsumexp(terms, dim=1)
    reg = (log_s.exp() * neg.pow(2)).masked_fill(bad, 0.0).sum(dim=1)
    return (main + bpreg * reg).mean()
