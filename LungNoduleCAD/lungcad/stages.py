"""The one list of the names a detection run reports progress under.

The cascade (:func:`lungcad.pipeline.detect`) reports the :data:`CASCADE_STAGES`; the Slicer
module's worker reports the :data:`SETUP_STAGES` before it, and the module's parent process weighs
them all into one progress bar. This module imports nothing, so a process without PyTorch (the
worker about to report that PyTorch is missing, the panel before installing it) can use it.
"""

from __future__ import annotations

import enum


class Stage(str, enum.Enum):
    """A step a detection run reports progress for, in run order; the value is the name on the
    wire (progress callbacks receive the plain string, so the callback contract stays
    ``(str, float)``)."""

    LOADING_CT = "loading CT"
    LOADING_MODELS = "loading models"
    LUNGS = "lungs"
    RESAMPLE = "resample"
    SEGMENTATION = "segmentation"
    GROUPING = "grouping"
    CLASSIFICATION = "classification"
    MAPPING = "mapping"

    def __str__(self) -> str:
        return self.value


#: What a process running the cascade does before :func:`lungcad.pipeline.detect` starts.
SETUP_STAGES = (Stage.LOADING_CT, Stage.LOADING_MODELS)
#: The stages :func:`lungcad.pipeline.detect` reports, in order.
CASCADE_STAGES = tuple(s for s in Stage if s not in SETUP_STAGES)
