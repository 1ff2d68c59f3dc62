"""The detection cascade: segmentation -> grouping -> nodule classifier -> malignancy classifier."""

from lungcad.pipeline.findings import (
    Finding,
    MalignancyBand,
    PatientSummary,
    Thresholds,
    VoxelMask,
)

__all__ = ["Finding", "MalignancyBand", "PatientSummary", "Thresholds", "VoxelMask"]
