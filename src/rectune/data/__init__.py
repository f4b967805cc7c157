"""Data layer: id maps, interactions, loaders, splits and the synthetic generator."""

from __future__ import annotations

from rectune.data.dataset import Dataset
from rectune.data.idmap import IdMap
from rectune.data.interactions import Interactions, RowOrigin

__all__ = ["Dataset", "IdMap", "Interactions", "RowOrigin"]
