"""The detection cascade: segmentation -> grouping -> nodule classifier -> malignancy classifier."""

from lungcad.pipeline.findings import (
    BAND_COLORS_RGB,
    CandidateScore,
    Finding,
    MalignancyBand,
    PatientSummary,
    Thresholds,
    VoxelMask,
    malignancy_color,
)

__all__ = [
    "BAND_COLORS_RGB",
    "CandidateScore",
    "Finding",
    "MalignancyBand",
    "PatientSummary",
    "Thresholds",
    "VoxelMask",
    "malignancy_color",
]
