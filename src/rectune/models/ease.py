"""EASE: the closed-form shallow auto-encoder of Steck (2019), "Embarrassingly Shallow".

EASE learns an item x item weight matrix ``B`` that predicts each item's column
of the binary user x item matrix ``X`` from the other items::

    min_B ‖X − XB‖²_F + λ‖B‖²_F   subject to   diag(B) = 0

whose solution is, with ``P = (XᵀX + λI)⁻¹``,

    B = I − P · diag(1 / diag(P))      i.e.  B_ij = −P_ij / P_jj,  B_jj = 0.

A user's scores are ``x_u B``: a sum of their items' rows of ``B``. The
zero diagonal is what stops the trivial identity solution; ``λ`` (hundreds, for
counts of co-occurrences) shrinks weights of rarely co-occurring pairs.

Memory is inherent: ``B`` is dense, ``n_items² · 8`` bytes (20,000 items need
3.2 GB), and the solve holds one more dense matrix while it is built, so the
fit checks the size up front against ``max_items`` and the machine's available
memory and refuses with a clear message instead of being killed by the kernel.

Data: every training row is an interaction (values are ignored, ``X`` is the
model's binary ``seen`` matrix); pass explicit ratings through
``Interactions.binarize(4)`` first, or low ratings count as likes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from rectune._errors import DataError
from rectune.data.interactions import Interactions
from rectune.models.als import _check_nonneg_float, _check_positive_int
from rectune.models.base import FitOptions, Recommender

_MIRROR_BLOCK = 1024


def _size(n_bytes: float) -> str:
    """Human-readable size: '3.2 GB', '45.0 MB'."""
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), if known."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def ease_weights(x: sp.csr_array | np.ndarray, regularization: float) -> np.ndarray:
    """The EASE matrix ``B`` for a binary user x item matrix ``x`` (float64, diag 0).

    One dense ``n_items²`` buffer is used throughout: the Gram matrix is factored
    in place (``cho_factor``), inverted in place from its Cholesky factor (LAPACK
    ``potri``), mirrored to a full symmetric matrix block by block, and scaled
    column-wise into ``B``.
    """
    xs = sp.csr_array(x, dtype=np.float64)
    gram = (xs.T @ xs).toarray() if sp.issparse(xs) else xs.T @ xs
    gram = np.asfortranarray(gram)
    gram[np.diag_indices_from(gram)] += regularization
    factor, lower = la.cho_factor(gram, lower=False, overwrite_a=True, check_finite=False)
    potri = la.get_lapack_funcs("potri", (factor,))
    p, info = potri(factor, lower=lower, overwrite_c=True)
    if info != 0:
        raise DataError(f"EASE: XᵀX + λI is not positive definite (LAPACK info {info}); "
                        f"regularization={regularization!r} must be > 0")
    _mirror_upper(p)
    diag = np.diag(p).copy()
    p /= -diag[np.newaxis, :]
    p[np.diag_indices_from(p)] = 0.0
    return np.ascontiguousarray(p)


def _mirror_upper(p: np.ndarray) -> None:
    """Copy the upper triangle onto the lower one in place, in blocks (small temporaries)."""
    n = p.shape[0]
    for s in range(0, n, _MIRROR_BLOCK):
        e = min(n, s + _MIRROR_BLOCK)
        p[s:e, :s] = p[:s, s:e].T
        blk = p[s:e, s:e]
        p[s:e, s:e] = np.triu(blk) + np.triu(blk, 1).T


class EASE(Recommender):
    """Closed-form item-item linear model (Steck 2019).

    Parameters
    ----------
    regularization:
        ``λ`` added to the diagonal of ``XᵀX``. Default 400: on ML-100K
        (per-user 80/20 of ratings >= 4) NDCG@10 is flat at 0.311–0.317 for
        λ in 100–500, and 400 is the value a validation slice of the training
        rows picks (``benchmarks/parity_implicit.py --tune``). ``λ`` is on the
        scale of co-occurrence counts, so it grows with the number of users:
        Steck used 500 on ML-20M and more on denser data.
    max_items:
        Refuse catalogues larger than this (``B`` alone is ``n_items² · 8``
        bytes). The fit also refuses when the available memory is short.
    """

    family: ClassVar[str] = "mf"
    predicts_ratings: ClassVar[bool] = False

    def __init__(self, regularization: float = 400.0, max_items: int = 20_000) -> None:
        self.regularization = regularization
        self.max_items = max_items

    def _validate_params(self) -> None:
        _check_nonneg_float("regularization", self.regularization, strict=True)
        _check_positive_int("max_items", self.max_items)

    def _fit(self, train: Interactions, features: Any, valid: Interactions | None,
             options: FitOptions) -> None:
        n = train.n_items
        if n > self.max_items:
            raise DataError(
                f"EASE needs a dense {n} x {n} item-item matrix ({_size(n * n * 8)} in "
                f"float64) but "
                f"max_items={self.max_items}; raise max_items if the machine has the memory "
                "(about twice that size is needed while fitting), or keep fewer items")
        need = 2 * n * n * 8
        avail = _available_memory()
        if avail is not None and need > avail:
            raise DataError(
                f"EASE on {n} items needs about {_size(need)} while fitting (two dense "
                f"{n} x {n} float64 matrices) but only {_size(avail)} of memory is "
                "available; keep fewer items or use a model with factors (ALS, BPR)")
        self.item_weights_ = ease_weights(self.seen_, float(self.regularization))

    # -------------------------------------------------------------- parameters
    def parameters(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        return {"item_weights": self.item_weights_}

    # ----------------------------------------------------------------- scoring
    def _predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """``x_u · B[:, i]`` per pair, over the users' history entries only (no dense rows)."""
        hist = sp.coo_array(self.seen_[u])
        out = np.bincount(hist.row, weights=self.item_weights_[hist.col, i[hist.row]],
                          minlength=len(u))
        return out.astype(np.float64)

    def _predict_unknown(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Unknown user or item: 0, the score of a user with no history."""
        return np.zeros(len(u), dtype=np.float64)

    def _score(self, u: np.ndarray) -> np.ndarray:
        return np.asarray(self.seen_[u] @ self.item_weights_)

    def score_history(self, items: Any) -> np.ndarray:
        """Scores of every item for an ad-hoc history of raw item ids (unknown ids skipped).

        EASE needs no fold-in: a new or updated user is scored from their items
        directly, ``Σ_{i ∈ history} B[i]``.
        """
        self._check_fitted()
        raw = np.atleast_1d(np.asarray(items, dtype=object) if self.item_map_.kind == "str"
                            else np.asarray(items))
        idx = self.item_map_.encode(raw, missing="negative")
        idx = np.unique(idx[idx >= 0])
        return self.item_weights_[idx].sum(axis=0)

    def _item_vectors(self) -> np.ndarray:
        return self.item_weights_

    def _user_vectors(self) -> sp.csr_array:
        return self.seen_
