"""Nodule masks for data without ground-truth segmentations (the seeds' annotation-mask builder).

LUNA16 gives only a centre and a diameter per nodule. The segmentation model needs voxel masks,
so, as the "Deep Learning with PyTorch" seeds do, each nodule's extent is estimated by walking
out from its centre along each array axis while the CT stays denser than ``threshold_hu``; the
box of those radii, intersected with ``hu > threshold_hu``, is the mask.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np

from lungcad.ct import CT
from lungcad.geometry import contains_voxel, world_to_voxel_index

logger = logging.getLogger(__name__)

MIN_RADIUS = 2
"""The walk starts at this radius (voxels), so a box is at least 5 voxels wide along each axis."""


def _walk_radius(line: np.ndarray, c: int, threshold_hu: float) -> int:
    """Radius along one axis line through the centre (index ``c``).

    Starting at MIN_RADIUS, r grows while both ``line[c + r]`` and ``line[c - r]`` are above the
    threshold. The result is the first r where either side is not (the box then reaches one voxel
    past the dense run; the threshold AND trims it), or, when the walk reaches the volume edge, the
    last r with both ends inside (the seeds' IndexError path). It is never below MIN_RADIUS, so a
    walk that stops at once (or a centre near the edge) still gives a 5-voxel-wide box, clipped
    to the volume.
    """
    max_r = min(c, len(line) - 1 - c)
    rs = np.arange(MIN_RADIUS, max_r + 1)
    above = line > threshold_hu
    fails = np.flatnonzero(~(above[c + rs] & above[c - rs]))
    if fails.size:
        return int(rs[fails[0]])
    return max(max_r, MIN_RADIUS)


def _centers_array(centers_irc: Sequence[Sequence[int]] | np.ndarray, shape) -> np.ndarray:
    arr = np.asarray(centers_irc)
    if arr.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    arr = np.atleast_2d(arr)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"centres need (index, row, col) triples, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer) and (
        not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))
    ):
        raise ValueError("centres must be integer voxel indices (index, row, col)")
    arr = arr.astype(np.int64)
    outside = ~np.all((arr >= 0) & (arr < np.asarray(shape)), axis=1)
    if outside.any():
        raise ValueError(
            f"centre {tuple(int(v) for v in arr[outside][0])} lies outside the volume {shape}"
        )
    return arr


def build_annotation_mask(
    hu: np.ndarray,
    centers_irc: Sequence[Sequence[int]] | np.ndarray,
    threshold_hu: float = -700,
) -> np.ndarray:
    """Boolean mask of the nodules at ``centers_irc`` (integer (index, row, col) voxels).

    For each centre the radius along the index, row and col axes comes from :func:`_walk_radius`
    (minimum 2 voxels); the union of the boxes is then ANDed with ``hu > threshold_hu``.
    Centres outside the volume raise ValueError (convert and filter first, as
    :func:`annotation_mask_for_ct` does).
    """
    if hu.ndim != 3:
        raise ValueError(f"need a 3D (index, row, col) array, got shape {hu.shape}")
    boxes = np.zeros(hu.shape, dtype=bool)
    for center in _centers_array(centers_irc, hu.shape):
        ci, cr, cc = (int(v) for v in center)
        lines = (hu[:, cr, cc], hu[ci, :, cc], hu[ci, cr, :])
        slices = []
        for axis, line in enumerate(lines):
            c = int(center[axis])
            r = _walk_radius(line, c, threshold_hu)
            slices.append(slice(max(c - r, 0), min(c + r + 1, hu.shape[axis])))
        boxes[tuple(slices)] = True
    return boxes & (hu > threshold_hu)


def annotation_mask_for_ct(
    ct: CT,
    annotations: Iterable[object],
    threshold_hu: float = -700,
) -> np.ndarray:
    """Mask of ``annotations`` (objects with ``center_xyz`` in LPS mm) on ``ct``'s voxels.

    Centres go through :func:`lungcad.geometry.world_to_voxel_index`, which honours the full
    direction matrix. Items whose ``series_uid`` differs from ``ct.series_uid`` (when both are
    known) are ignored, so a whole annotation list can be passed. Centres falling outside the
    volume are skipped with a warning: a mismatch between csv and scan should not stop training.
    """
    centers = []
    for item in annotations:
        uid = getattr(item, "series_uid", None)
        if ct.series_uid and uid and uid != ct.series_uid:
            continue
        centers.append(item.center_xyz)
    if not centers:
        return np.zeros(ct.hu.shape, dtype=bool)
    irc = world_to_voxel_index(np.asarray(centers, dtype=np.float64), ct.geometry)
    inside = np.asarray(contains_voxel(irc, ct.geometry), dtype=bool)
    for xyz, vox in zip(np.asarray(centers)[~inside], irc[~inside], strict=True):
        logger.warning(
            "%s: annotation at LPS %s mm maps to voxel %s, outside the volume %s; skipped",
            ct.series_uid or "CT",
            tuple(round(float(v), 2) for v in xyz),
            tuple(int(v) for v in vox),
            ct.hu.shape,
        )
    return build_annotation_mask(ct.hu, irc[inside], threshold_hu)
