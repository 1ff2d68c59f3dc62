"""LungNoduleCAD training tree: cached canonical CTs, datasets, augmentation.

It imports the engine (:mod:`lungcad`) for readers, geometry and the scale policy; the engine never
imports this package.
"""

from lungcad.openmp import prefer_passive_waits

# every import of this package is a training process (the Slicer module never imports it), and the
# imports below load torch, which reads the wait policy once
prefer_passive_waits()

from lungcad_training.augment import (  # noqa: E402
    AugmentConfig,
    AugmentParams,
    augment_2d,
    augment_3d,
)
from lungcad_training.cache import (  # noqa: E402
    CachedSeries,
    NoduleSummary,
    SeriesCache,
    prefill_cache,
)
from lungcad_training.datasets import (  # noqa: E402
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
