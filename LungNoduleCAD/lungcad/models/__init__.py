"""The cascade's networks and their weights format (safetensors + model card JSON).

:class:`SegmentationUNet` makes the per-voxel nodule probability map; :class:`CandidateClassifier`
scores candidate crops (once as nodule vs non-nodule, once as malignant vs benign).
:func:`save_weights` / :func:`load_weights` write and read checked weights; the training tree
imports these classes, never the other way round.
"""

from lungcad.models.card import ModelCard, TrainingRange, read_card, weights_paths
from lungcad.models.classifier import CandidateClassifier
from lungcad.models.registry import ARCHITECTURES, Task, build_model, parameter_count
from lungcad.models.unet import SegmentationUNet
from lungcad.models.weights import import_checkpoint, load_weights, save_weights
from lungcad.models.weights_errors import (
    WeightsArchitectureError,
    WeightsCardError,
    WeightsChecksumError,
    WeightsError,
    WeightsExistsError,
    WeightsFormatError,
    WeightsNotFoundError,
    WeightsTaskError,
)

__all__ = [
    "ARCHITECTURES",
    "CandidateClassifier",
    "ModelCard",
    "SegmentationUNet",
    "Task",
    "TrainingRange",
    "WeightsArchitectureError",
    "WeightsCardError",
    "WeightsChecksumError",
    "WeightsError",
    "WeightsExistsError",
    "WeightsFormatError",
    "WeightsNotFoundError",
    "WeightsTaskError",
    "build_model",
    "import_checkpoint",
    "load_weights",
    "parameter_count",
    "read_card",
    "save_weights",
    "weights_paths",
]
