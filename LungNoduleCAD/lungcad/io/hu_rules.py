"""The voxel-value rules a volume must meet to be a CT in Hounsfield units, and the int16 cast.

A volume that is not really HU (missing rescale, MR) would give a plausible and wrong CAD
result, so these refuse it with a :class:`~lungcad.errors.NotCTError` that says why.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lungcad.errors import NotCTError

log = logging.getLogger(__name__)

AIR_HU = -500
MIN_AIR_FRACTION = 0.005
MAX_PLAUSIBLE_HU = 4000
MAX_BRIGHT_FRACTION = 0.01
PADDING_HU = -1024


def check_hu_values(arr: np.ndarray, where: str | Path) -> None:
    """Refuse NaN/inf, a volume without air, or one with too many voxels above metal."""
    n = arr.size
    if np.issubdtype(arr.dtype, np.floating):
        bad = n - int(np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise NotCTError(where, f"{bad} voxels are NaN or infinite; a CT holds finite HU")
    n_air = int(np.count_nonzero(arr <= AIR_HU))
    if n_air < MIN_AIR_FRACTION * n:
        lo, hi = arr.min(), arr.max()
        hint = (
            f" The data are unsigned ({arr.dtype}): the rescale intercept (usually -1024) was "
            "probably not applied."
            if np.issubdtype(arr.dtype, np.unsignedinteger)
            else " If the values are raw scanner numbers, apply the rescale slope/intercept; "
            "if this is MR or another modality, it is not a CT."
        )
        raise NotCTError(
            where,
            f"no air: only {n_air / n:.2%} of voxels are at or below {AIR_HU} HU (minimum "
            f"value {lo:g}, maximum {hi:g}), but a CT has air near -1000 HU around and inside "
            f"the body (at least {MIN_AIR_FRACTION:.1%} of voxels expected).{hint}",
        )
    n_bright = int(np.count_nonzero(arr > MAX_PLAUSIBLE_HU))
    if n_bright > MAX_BRIGHT_FRACTION * n:
        raise NotCTError(
            where,
            f"{n_bright / n:.2%} of voxels are above +{MAX_PLAUSIBLE_HU} HU (maximum "
            f"{arr.max():g}); in a CT only metal goes that high, in at most "
            f"{MAX_BRIGHT_FRACTION:.0%} of voxels. Check the rescale slope/intercept or the "
            "modality.",
        )


def to_int16_hu(arr: np.ndarray, where: str | Path) -> np.ndarray:
    """Clamp padding below ``PADDING_HU``, round floats and clip to the int16 range."""
    n_pad = int(np.count_nonzero(arr < PADDING_HU))
    if n_pad:
        log.debug("%s: clamping %d padding voxels below %d HU", where, n_pad, PADDING_HU)
    if arr.dtype == np.int16:
        return np.maximum(arr, PADDING_HU).astype(np.int16, copy=False)
    work = arr
    if np.issubdtype(arr.dtype, np.floating):
        work = np.rint(arr)
    elif np.issubdtype(arr.dtype, np.unsignedinteger) or arr.dtype.itemsize < 2:
        work = arr.astype(np.int32)  # so that clip's bounds fit the dtype
    n_high = int(np.count_nonzero(work > np.iinfo(np.int16).max))
    if n_high:
        log.warning("%s: clipping %d voxels above %d HU", where, n_high, np.iinfo(np.int16).max)
    return np.clip(work, PADDING_HU, np.iinfo(np.int16).max).astype(np.int16)
