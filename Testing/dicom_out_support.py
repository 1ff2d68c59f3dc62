"""Shared by the DICOM output tests: a small phantom written as a DICOM series with a patient,
a study and a Frame of Reference, read back, and the findings a bright-blob detector reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from reports_support import bright_result
from test_io_dicom_series import write_dicom_series

from lungcad.benchmark_real import default_real_dir
from lungcad.ct import CT
from lungcad.ctio import read_ct

SERIES_UID = "1.2.826.0.1.3680043.2.1125.17.1"
STUDY_UID = "1.2.826.0.1.3680043.2.1125.77"  # what write_dicom_series writes
FRAME_UID = "1.2.826.0.1.3680043.2.1125.17.9"
#: z runs against the slice order and y against the rows: positions, not file order, must decide.
DIRECTION = np.diag([1.0, -1.0, -1.0])
PATIENT_TAGS = {
    "0010|0010": "Doe^Jane",
    "0010|0020": "LC-0042",
    "0010|0030": "19600101",
    "0010|0040": "F",
    "0008|0020": "20261201",
    "0008|0030": "101500",
    "0008|0050": "ACC123",
    "0020|0010": "S1",
    "0008|1030": "CT chest low dose",
    "0020|0052": FRAME_UID,
    "0020|0011": "3",
    "0008|0070": "ACME",
}


def phantom_hu(shape: tuple[int, int, int] = (10, 32, 32)) -> np.ndarray:
    """Air, a body block at -800 HU with noise, and two balls at 60 HU (radii 2 and 3 voxels)."""
    rng = np.random.default_rng(17)
    hu = np.full(shape, -1000, dtype=np.int16)
    hu[:, 4:-4, 4:-4] = -800 + rng.integers(-20, 20, size=(shape[0], shape[1] - 8, shape[2] - 8))
    zz, yy, xx = np.indices(shape)
    for (z, y, x), r in (((3, 10, 11), 2), ((6, 21, 20), 3)):
        hu[(zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= r * r] = 60
    return hu


def write_phantom_series(folder: Path, tags: dict[str, str] | None = None) -> CT:
    """The phantom as a DICOM series in ``folder`` (patient tags by default), read back."""
    write_dicom_series(
        folder,
        phantom_hu(),
        SERIES_UID,
        spacing_xyz=(0.8, 0.8, 1.5),
        direction=DIRECTION,
        extra_tags=PATIENT_TAGS if tags is None else tags,
    )
    return read_ct(folder)


def phantom_result(ct: CT):
    """Two findings (the balls) with known masks on ``ct``'s grid."""
    return bright_result(ct)


def real_series(name: str) -> Path:
    """A real DICOM folder, read in place ($LUNGCAD_REAL_DATA or ../shared/data/real)."""
    folder = default_real_dir() / name
    if not folder.is_dir():
        pytest.skip(f"real DICOM sample not found at {folder} (set $LUNGCAD_REAL_DATA)")
    return folder
