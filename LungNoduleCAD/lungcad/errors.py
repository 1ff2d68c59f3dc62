"""Typed errors for bad input: each names the file and the problem, so a user can act on it."""

from __future__ import annotations

from pathlib import Path


class LungCADError(Exception):
    """Base of every error the engine raises on purpose."""


class CTReadError(LungCADError, ValueError):
    """A CT could not be read; the message names the file and why."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class CTFileNotFoundError(CTReadError, FileNotFoundError):
    """The path (or a file the header points to) does not exist."""


class CTFormatError(CTReadError):
    """The file exists but is not a readable image (not an image, truncated data, bad header)."""


class NotCTError(CTReadError):
    """The file is an image but cannot be a CT in HU (2D, colour, no air, odd value range)."""


class DicomSeriesError(CTReadError):
    """A DICOM folder holds no series, or several when one was expected."""


class DicomGeometryError(DicomSeriesError):
    """A DICOM series' slices are not one evenly spaced stack (gaps, duplicates, tilt)."""


class CTTooLargeError(CTReadError):
    """The CT (or its canonical grid) would take more voxels or memory than the budget allows.

    Raised from the header, before any voxel is allocated, so that a few crafted bytes cannot
    make the reader ask for gigabytes.
    """


class CTWriteError(LungCADError, OSError):
    """A CT could not be written (unknown extension, or the target exists and may not go)."""
