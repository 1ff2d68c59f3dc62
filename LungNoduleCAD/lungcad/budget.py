"""Limits checked before the engine allocates anything a file's header asks for.

A header is a few bytes that can claim any size; a reader that trusts it allocates gigabytes
before it finds out the data are not there. So every CT's declared size, spacing and memory need
are checked against these budgets first (:mod:`lungcad.io.header`, :mod:`lungcad.preprocess`).

* at most :data:`MAX_VOXELS` (2048 x 2048 x 2048) voxels, and at most
  :data:`MEMORY_FRACTION` of the memory available now (psutil; where psutil is missing, the
  POSIX page counts, else no memory limit beyond the voxel budget);
* voxel spacing from :data:`MIN_SPACING_MM` to :data:`MAX_SPACING_MM` (0.2-10 mm): no CT
  scanner reconstructs finer or coarser voxels, and a spacing outside that range is a
  mislabelled header (micrometres, centimetres) that would make the canonical grid absurd.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

from lungcad.errors import CTTooLargeError, NotCTError

log = logging.getLogger(__name__)

MAX_VOXELS = 2048**3
"""Voxel budget of one CT (8.6 G voxels); memory usually binds long before it."""

MEMORY_FRACTION = 0.8
"""Share of the memory available when a CT is opened that reading it may take."""

MIN_SPACING_MM = 0.2
MAX_SPACING_MM = 10.0


def available_memory_bytes() -> int | None:
    """Memory the process may still take without swapping (None where it cannot be told)."""
    try:
        import psutil
    except ImportError:  # Slicer's Python may lack it: POSIX page counts, else no limit
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            return None
    return int(psutil.virtual_memory().available)


def _gb(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB"


def check_voxels(
    where: str | Path,
    size_xyz: Sequence[int],
    bytes_per_voxel: float,
    *,
    what: str = "the header declares",
) -> None:
    """Refuse ``size_xyz`` voxels needing ``bytes_per_voxel`` each beyond the budgets above.

    ``bytes_per_voxel`` is the peak the caller will hold per voxel (file pixels plus the int16
    copy, for instance), so the memory check is about the whole read, not just the file.
    """
    sizes = [int(n) for n in size_xyz]
    shown = "x".join(map(str, sizes))
    if min(sizes) < 1:
        raise NotCTError(where, f"{what} {shown} voxels: an axis with no voxels")
    voxels = math.prod(sizes)
    if voxels > MAX_VOXELS:
        raise CTTooLargeError(
            where,
            f"{what} {shown} voxels ({voxels:.3g}), more than the budget of {MAX_VOXELS:.3g} "
            "(2048x2048x2048); refused before reading",
        )
    need = voxels * bytes_per_voxel
    available = available_memory_bytes()
    if available is not None and need > MEMORY_FRACTION * available:
        raise CTTooLargeError(
            where,
            f"{what} {shown} voxels, which would take about {_gb(need)} of memory; "
            f"{_gb(available)} is available now (at most {MEMORY_FRACTION:.0%} of it may be "
            "used); refused before reading",
        )


def check_spacing(where: str | Path, spacing_xyz: Sequence[float]) -> None:
    """Refuse a voxel spacing that is not finite or lies outside 0.2-10 mm."""
    values = [float(s) for s in spacing_xyz]
    shown = " x ".join(f"{s:g}" for s in values)
    if not all(math.isfinite(s) for s in values):
        raise NotCTError(where, f"voxel spacing {shown} mm is not a number")
    if not all(MIN_SPACING_MM <= s <= MAX_SPACING_MM for s in values):
        raise NotCTError(
            where,
            f"voxel spacing {shown} mm lies outside {MIN_SPACING_MM:g}-{MAX_SPACING_MM:g} mm, "
            "where every CT scanner's voxels are: the header's spacing is wrong (units?) or "
            "this is not a CT",
        )
