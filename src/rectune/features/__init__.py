"""Side-feature encoders for users, items and event context.

Encoders are fitted on training data, keep an out-of-vocabulary bucket (index 0)
and are saved as JSON with the model (never pickled):

* :class:`CategoricalEncoder` — one value per row (gender, occupation);
* :class:`NumericEncoder` — standardised or bucketised numbers (age);
* :class:`MultiHotEncoder` — multi-valued fields (genres, actors, tags) as a
  multi-hot CSR or a padded bag of ids;
* :class:`ContextEncoder` — hour, weekday (UTC), recency and location of events;
* :class:`FeatureTable` — named encoders over a DataFrame keyed by raw id, with
  rows aligned to an :class:`~rectune.data.IdMap` (``FeatureSet`` is an alias).
"""

from __future__ import annotations

from rectune.features.context import ContextEncoder
from rectune.features.encoders import (
    CategoricalEncoder,
    Encoder,
    MultiHotEncoder,
    NumericEncoder,
    encoder_from_json,
)
from rectune.features.table import EncodedFeatures, FeatureTable

FeatureSet = FeatureTable

__all__ = [
    "CategoricalEncoder",
    "ContextEncoder",
    "EncodedFeatures",
    "Encoder",
    "FeatureSet",
    "FeatureTable",
    "MultiHotEncoder",
    "NumericEncoder",
    "encoder_from_json",
]
