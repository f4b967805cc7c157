"""Matrix factorisation for explicit ratings: SVD, SVD++ and NMF (Surprise-exact semantics).

The implementations live in :mod:`rectune.models.mf_svd` (the shared
:class:`~rectune.models.mf_svd.FactorModel` base, SVD, SVD++) and
:mod:`rectune.models.mf_nmf` (NMF); their numba kernels in
:mod:`rectune.models._mf_kernels`. This module is the public surface.
"""

from __future__ import annotations

from rectune.models.mf_nmf import NMF
from rectune.models.mf_svd import SVD, FactorModel, SVDpp

__all__ = ["NMF", "SVD", "FactorModel", "SVDpp"]
