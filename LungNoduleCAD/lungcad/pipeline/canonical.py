"""The detector's resampling stage: :func:`lungcad.preprocess.to_canonical` with its progress
reported to the cascade's :class:`~lungcad.pipeline.progress.Monitor` (and cancellable between
slabs)."""

from __future__ import annotations

from functools import partial

from lungcad.ct import CT
from lungcad.pipeline.progress import Monitor, Stage
from lungcad.preprocess import to_canonical


def resample_to_canonical(ct: CT, monitor: Monitor | None = None) -> CT:
    """``ct`` on the models' canonical grid, reported as the ``resample`` stage."""
    monitor = monitor or Monitor()
    return to_canonical(ct, progress=partial(monitor.report, Stage.RESAMPLE))
