"""Data layer: id maps, interactions, loaders, splits and the synthetic generator.

Public names: :class:`IdMap`, :class:`Interactions`, :class:`Dataset`,
:func:`load_movielens`, :func:`read_interactions`, :func:`read_features`,
:func:`fetch`, :func:`synthetic`, the splits (also under
``rectune.data.split``) and the named protocol presets of PROTOCOLS.md
(``PRESETS``; also under ``rectune.data.protocols``).
"""

from __future__ import annotations

from rectune.data import split
from rectune.data.dataset import Dataset
from rectune.data.download import REGISTRY, data_home, fetch
from rectune.data.idmap import IdMap
from rectune.data.interactions import Interactions, RowOrigin
from rectune.data.movielens import load_movielens
from rectune.data.protocols import (
    PRESETS,
    XDomainSplit,
    ml100k_5fold,
    ml100k_cold,
    ml100k_fixed_8020,
    ml100k_last_one,
    ml100k_temporal,
    ml100k_user_8020,
    ml100k_xdomain,
    temporal_validation_slice,
    validation_slice,
)
from rectune.data.readers import read_features, read_interactions
from rectune.data.split import (
    CrossDomain,
    Split,
    TemporalSplit,
    cold_user_split,
    cross_domain_split,
    kfold,
    leave_last_n,
    predefined_folds,
    random_split,
    temporal_split,
    user_holdout,
)
from rectune.data.synthetic import synthetic, synthetic_truth

__all__ = [
    "PRESETS",
    "REGISTRY",
    "CrossDomain",
    "Dataset",
    "IdMap",
    "Interactions",
    "RowOrigin",
    "Split",
    "TemporalSplit",
    "XDomainSplit",
    "cold_user_split",
    "cross_domain_split",
    "data_home",
    "fetch",
    "kfold",
    "leave_last_n",
    "load_movielens",
    "ml100k_5fold",
    "ml100k_cold",
    "ml100k_fixed_8020",
    "ml100k_last_one",
    "ml100k_temporal",
    "ml100k_user_8020",
    "ml100k_xdomain",
    "predefined_folds",
    "random_split",
    "read_features",
    "read_interactions",
    "split",
    "synthetic",
    "synthetic_truth",
    "temporal_split",
    "temporal_validation_slice",
    "user_holdout",
    "validation_slice",
]
