"""LungNoduleCAD training tree: cached canonical CTs, datasets, augmentation.

It imports the engine (:mod:`lungcad`) for readers, geometry and the scale policy; the engine never
imports this package.
"""

from lungcad_training.augment import AugmentConfig, AugmentParams, augment_2d, augment_3d
from lungcad_training.cache import CachedSeries, NoduleSummary, SeriesCache, prefill_cache
from lungcad_training.datasets import (
    MalignancyDataset,
    NoduleClassificationDataset,
    SegmentationDataset,
)

__all__ = [
    "AugmentConfig",
    "AugmentParams",
    "CachedSeries",
    "MalignancyDataset",
    "NoduleClassificationDataset",
    "NoduleSummary",
    "SegmentationDataset",
    "SeriesCache",
    "augment_2d",
    "augment_3d",
    "prefill_cache",
]
