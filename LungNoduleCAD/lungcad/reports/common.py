"""What every per-case writer shares: the result they read, and refusing to overwrite.

The writers read a :class:`lungcad.pipeline.DetectionResult`; they only touch the attributes in
:class:`ResultLike`, so they never run a network and can be fed a result loaded back from
``detection.npz``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from lungcad.ct import Geometry
from lungcad.errors import LungCADError
from lungcad.pipeline.findings import CandidateScore, Finding, PatientSummary, Thresholds

__all__ = ["OutputExistsError", "ResultLike", "check_writable", "round_floats"]


class OutputExistsError(LungCADError, FileExistsError):
    """A per-case output is already there and ``overwrite`` was not asked for."""


class ResultLike(Protocol):
    """The part of :class:`lungcad.pipeline.DetectionResult` the writers read."""

    geometry: Geometry
    series_uid: str | None
    thresholds: Thresholds
    findings: tuple[Finding, ...]
    candidates: tuple[CandidateScore, ...]
    summary: PatientSummary
    timings_s: dict[str, float]
    model_versions: dict[str, str]

    def save(self, path: Path) -> Path: ...


def check_writable(path: Path, overwrite: bool) -> Path:
    """Refuse an existing ``path`` unless ``overwrite``; the message says how to proceed."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists; pass overwrite=True to replace it")
    return path


def round_floats(values: tuple[float, ...] | list[float], digits: int = 3) -> list[float]:
    """Plain floats rounded for files people read (mm to a micrometre)."""
    return [round(float(v), digits) for v in values]
