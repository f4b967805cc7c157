"""PyTorch models: a shared trainer, losses, negative sampling, NCF, DeepFM, and the
sequence models Caser and GRU4Rec.

Importing this package imports torch (the rest of rectune does not need it).
"""

from __future__ import annotations

from rectune.models.neural.base import NeuralRecommender, ndcg_validator, rmse_validator
from rectune.models.neural.caser import Caser
from rectune.models.neural.deepfm import DeepFM, auto_spec
from rectune.models.neural.gru4rec import GRU4Rec
from rectune.models.neural.losses import bce_loss, bpr_loss, mse_loss
from rectune.models.neural.ncf import GMF, MLP, NeuMF
from rectune.models.neural.sampling import (
    NegativeSampler,
    PairwiseBatches,
    PointwiseBatches,
    RatingBatches,
)
from rectune.models.neural.trainer import DivergenceError, TrainConfig, Trainer

__all__ = [
    "GMF",
    "MLP",
    "Caser",
    "DeepFM",
    "DivergenceError",
    "GRU4Rec",
    "NegativeSampler",
    "NeuMF",
    "NeuralRecommender",
    "PairwiseBatches",
    "PointwiseBatches",
    "RatingBatches",
    "TrainConfig",
    "Trainer",
    "auto_spec",
    "bce_loss",
    "bpr_loss",
    "mse_loss",
    "ndcg_validator",
    "rmse_validator",
]
