"""Torch datasets over a LUNA16-layout folder, read through the canonical-CT disk cache."""

from lungcad_training.datasets._base import CachedSeriesDataset
from lungcad_training.datasets.classification import (
    CROP_SIZE_IRC,
    CropItem,
    MalignancyDataset,
    NoduleClassificationDataset,
)
from lungcad_training.datasets.segmentation import SegmentationDataset, SliceSample

__all__ = [
    "CROP_SIZE_IRC",
    "CachedSeriesDataset",
    "CropItem",
    "MalignancyDataset",
    "NoduleClassificationDataset",
    "SegmentationDataset",
    "SliceSample",
]
