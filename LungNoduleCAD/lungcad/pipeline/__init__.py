"""The detection cascade: segmentation -> grouping -> nodule classifier -> malignancy classifier."""

from lungcad.pipeline.detect import (
    MIN_NODULE_THRESHOLD,
    MIN_SEGMENTATION_THRESHOLD,
    STAGES,
    DetectionOptions,
    DetectionStats,
    detect,
)
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
from lungcad.pipeline.models import BUNDLED_MODELS, CascadeModels, resolve_device
from lungcad.pipeline.precision import Precision, native_bf16, resolve_precision
from lungcad.pipeline.progress import CASCADE_STAGES, SETUP_STAGES, DetectionCancelled, Stage
from lungcad.pipeline.result import DetectionResult, DetectionResultError

__all__ = [
    "BAND_COLORS_RGB",
    "BUNDLED_MODELS",
    "CASCADE_STAGES",
    "MIN_NODULE_THRESHOLD",
    "MIN_SEGMENTATION_THRESHOLD",
    "SETUP_STAGES",
    "STAGES",
    "CandidateScore",
    "CascadeModels",
    "DetectionCancelled",
    "DetectionOptions",
    "DetectionResult",
    "DetectionResultError",
    "DetectionStats",
    "Finding",
    "MalignancyBand",
    "PatientSummary",
    "Precision",
    "Stage",
    "Thresholds",
    "VoxelMask",
    "detect",
    "malignancy_color",
    "native_bf16",
    "resolve_device",
    "resolve_precision",
]
