"""The three thresholds a user moves; torch-free, so command lines and the Slicer panel can
offer and check them before PyTorch is loaded (or installed). :mod:`lungcad.pipeline.findings`
re-exports them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """The three user-adjustable cut-offs, each a probability in [0, 1].

    ``segmentation`` cuts the UNet's probability map into candidate regions, ``nodule`` keeps the
    candidates the false-positive classifier believes, ``malignancy`` splits kept findings into
    those called malignant and those called benign (it never hides a finding).
    """

    segmentation: float = 0.5
    nodule: float = 0.5
    malignancy: float = 0.5

    def __post_init__(self) -> None:
        for name in ("segmentation", "nodule", "malignancy"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} threshold must lie in [0, 1], got {value}")
