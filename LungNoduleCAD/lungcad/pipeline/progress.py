"""Progress reports and cancellation shared by the cascade's stages (named by
:class:`lungcad.stages.Stage`)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from lungcad.errors import LungCADError
from lungcad.stages import CASCADE_STAGES, SETUP_STAGES, Stage

__all__ = [
    "CASCADE_STAGES",
    "SETUP_STAGES",
    "DetectionCancelled",
    "Monitor",
    "ProgressCallback",
    "Stage",
]

ProgressCallback = Callable[[str, float], None]


class DetectionCancelled(LungCADError):  # noqa: N818 (the contract's name)
    """The caller set the cancel event; detection stopped between two batches."""


class Monitor:
    """Calls ``progress(stage, fraction)`` and raises :class:`DetectionCancelled` when asked to."""

    def __init__(
        self, progress: ProgressCallback | None = None, cancel: threading.Event | None = None
    ) -> None:
        self._progress = progress
        self._cancel = cancel

    def check(self) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise DetectionCancelled("detection cancelled")

    def report(self, stage: Stage, fraction: float) -> None:
        """Report ``fraction`` (0..1) of ``stage`` done, then check for cancellation."""
        if self._progress is not None:
            self._progress(Stage(stage).value, min(max(float(fraction), 0.0), 1.0))
        self.check()
