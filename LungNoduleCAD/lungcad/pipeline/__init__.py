"""The detection cascade: segmentation -> grouping -> nodule classifier -> malignancy classifier."""

from lungcad.pipeline.findings import (
    CandidateScore,
    Finding,
    MalignancyBand,
    PatientSummary,
    Thresholds,
    VoxelMask,
)

__all__ = [
    "CandidateScore",
    "Finding",
    "MalignancyBand",
    "PatientSummary",
    "Thresholds",
    "VoxelMask",
]
