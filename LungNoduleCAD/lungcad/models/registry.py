"""The fixed set of networks a weights file may name: nothing is imported by a name from a file."""

from __future__ import annotations

from enum import Enum
from typing import Any

from torch import nn

from lungcad.models.classifier import CandidateClassifier
from lungcad.models.unet import SegmentationUNet


class Task(str, Enum):
    """What a network does in the cascade; the model card's ``task``."""

    SEGMENTATION = "segmentation"
    NODULE = "nodule"
    MALIGNANCY = "malignancy"


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "SegmentationUNet": SegmentationUNet,
    "CandidateClassifier": CandidateClassifier,
}

TASK_ARCHITECTURES: dict[Task, frozenset[str]] = {
    Task.SEGMENTATION: frozenset({"SegmentationUNet"}),
    Task.NODULE: frozenset({"CandidateClassifier"}),
    Task.MALIGNANCY: frozenset({"CandidateClassifier"}),
}

DEFAULT_ARCHITECTURE: dict[Task, str] = {
    Task.SEGMENTATION: "SegmentationUNet",
    Task.NODULE: "CandidateClassifier",
    Task.MALIGNANCY: "CandidateClassifier",
}


def build_model(architecture: str, hyperparameters: dict[str, Any]) -> nn.Module:
    """Instantiate a registered class: KeyError if unknown, TypeError/ValueError on bad kwargs."""
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise KeyError(f"unknown architecture {architecture!r} (known: {known})") from None
    return cls(**hyperparameters)


def parameter_count(model: nn.Module) -> int:
    """Trainable-parameter count (buffers such as batch-norm running stats excluded)."""
    return sum(p.numel() for p in model.parameters())
