"""DICOM series honesty: a CT modality, a memory budget, and one evenly spaced stack of slices.

ITK reads a series with one spacing, taken from its slices' positions as if they were evenly
spaced: a missing slice, a duplicated one, or two stacks in one series then put every slice
past the flaw millimetres from where it was scanned, with only a warning on stderr. We refuse
such a series, naming the positions that disagree, rather than resampling it to even spacing:
resampling across a gap invents tissue that was never scanned (or smears a nodule over it), a
duplicate has no right answer, and a series with gaps is nearly always an export or transfer
fault the user can fix by sending the series again. A cohort run records the refusal as that
case's error and goes on.

Positions are the ``ImagePositionPatient`` (0020,0032) of each slice projected on the slice
normal (the cross product of ``ImageOrientationPatient``'s (0020,0037) row and column
directions), the quantity a scanner steps by.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungcad.budget import check_voxels
from lungcad.errors import DicomGeometryError, NotCTError
from lungcad.io.pixel_bytes import read_bytes_per_voxel

log = logging.getLogger(__name__)

#: Consecutive slices may differ from the median step by this much (mm) or this share of it,
#: whichever is larger: scanners round positions to 0.1 mm or so, gaps are a whole step.
STEP_TOLERANCE_MM = 0.1
STEP_TOLERANCE_FRACTION = 0.1
#: Steps below this (mm) are the same position twice.
DUPLICATE_MM = 0.01
#: How far (mm) the last slice may sit beside the line through the first along its normal
#: before the stack counts as sheared (gantry tilt), which ITK cannot represent.
SHEAR_TOLERANCE_MM = 0.5
_SHOWN = 4

MODALITY_TAG = "0008|0060"
POSITION_TAG = "0020|0032"
ORIENTATION_TAG = "0020|0037"


def check_modality(
    where: str | Path, get: Callable[[str], str], has: Callable[[str], bool]
) -> None:
    """Refuse a DICOM object whose Modality (0008,0060) is given and is not CT."""
    if not has(MODALITY_TAG):
        return
    modality = get(MODALITY_TAG).strip().strip("\x00").strip()
    if modality and modality.upper() != "CT":
        raise NotCTError(
            where,
            f"DICOM modality is {modality!r}, not CT: the models read Hounsfield units, which "
            "only CT measures",
        )


def check_series_header(folder: Path, files: Sequence[str]) -> None:
    """Modality and memory budget of a series, from its first file's header alone."""
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")  # without it a file lacking the preamble is skipped here
    reader.SetFileName(files[0])
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return  # the series reader says what is wrong with it
    check_modality(folder, reader.GetMetaData, reader.HasMetaDataKey)
    size = reader.GetSize()
    frames = size[2] if len(size) > 2 else 1
    check_voxels(
        folder,
        (size[0], size[1], frames * len(files)),
        read_bytes_per_voxel(reader.GetPixelID(), reader.GetNumberOfComponents()),
        what=f"the series' {len(files)} files declare",
    )


def _vector(text: str, n: int) -> np.ndarray | None:
    try:
        values = [float(v) for v in text.strip().strip("\x00").split("\\")]
    except ValueError:
        return None
    if len(values) != n or not all(math.isfinite(v) for v in values):
        return None
    return np.asarray(values)


def check_slice_positions(
    folder: Path, files: Sequence[str], get: Callable[[int, str], str | None]
) -> None:
    """Refuse a series whose slices are not one evenly spaced, unsheared stack.

    ``get(i, tag)`` is slice ``i``'s tag value or None; slices without usable position or
    orientation tags are left to ITK (nothing to check them against).
    """
    if len(files) < 2:
        return
    orientations = [get(i, ORIENTATION_TAG) for i in range(len(files))]
    positions = [get(i, POSITION_TAG) for i in range(len(files))]
    first = _vector(orientations[0] or "", 6)
    points = [_vector(p or "", 3) for p in positions]
    if first is None or any(p is None for p in points):
        log.debug("%s: slices without position/orientation tags; spacing not checked", folder)
        return
    for i, text in enumerate(orientations):
        other = _vector(text or "", 6)
        if other is None or not np.allclose(other, first, atol=1e-3):
            raise DicomGeometryError(
                folder,
                f"slices have different orientations ({Path(files[0]).name}: {orientations[0]}; "
                f"{Path(files[i]).name}: {text}): not one stack of slices",
            )
    normal = np.cross(first[:3], first[3:])
    xyz = np.asarray(points)
    along = xyz @ normal
    order = np.argsort(along, kind="stable")
    z = along[order]
    steps = np.diff(z)
    names = [Path(files[k]).name for k in order]

    def pair(k: int) -> str:
        return f"{z[k]:.2f} and {z[k + 1]:.2f} mm ({names[k]}, {names[k + 1]})"

    dupes = np.flatnonzero(steps < DUPLICATE_MM)
    if len(dupes):
        shown = "; ".join(pair(int(k)) for k in dupes[:_SHOWN])
        raise DicomGeometryError(
            folder,
            f"{len(dupes)} duplicated slice position{'s' if len(dupes) != 1 else ''} "
            f"along the slice normal: {shown}",
        )
    step = float(np.median(steps))
    tolerance = max(STEP_TOLERANCE_MM, STEP_TOLERANCE_FRACTION * step)
    uneven = np.flatnonzero(np.abs(steps - step) > tolerance)
    if len(uneven):
        shown = "; ".join(f"{steps[k]:.2f} mm between {pair(int(k))}" for k in uneven[:_SHOWN])
        more = f" (and {len(uneven) - _SHOWN} more)" if len(uneven) > _SHOWN else ""
        raise DicomGeometryError(
            folder,
            f"slices are not evenly spaced: most are {step:.2f} mm apart, but {shown}{more}. "
            "Missing or extra slices would put positions past them millimetres off; send the "
            "complete series again",
        )
    drift = xyz[order[-1]] - xyz[order[0]]
    beside = float(np.linalg.norm(drift - (drift @ normal) * normal))
    if beside > SHEAR_TOLERANCE_MM:
        raise DicomGeometryError(
            folder,
            f"the slices do not stack along their normal: the last lies {beside:.1f} mm beside "
            "the first's axis (gantry tilt?), which a CT volume cannot represent",
        )
