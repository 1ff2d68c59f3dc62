"""A voxel segment cut by axial planes: the outline a reader measures on each axial image.

"Axial" means perpendicular to the patient's S axis (LPS z) in world space, whatever the grid's
direction. Each cut is given as points on the segment's outline, the 0.5 level of the linearly
interpolated mask: the midpoint between every segment voxel and each in-plane neighbour outside
it. That outline errs by at most half a voxel at each edge, in every direction, where the union
of voxel cells would overshoot by up to half a cell diagonal.

When one array axis runs along S (nearly every scan, including in-plane rotations, permuted and
flipped axes), the cuts are the grid's own slices at their centres: exactly the images a reader
sees. Otherwise (gantry tilt, oblique reformats) the mask is first resampled onto an LPS-aligned
grid of half the smallest voxel spacing by trilinear interpolation at level 0.5, and cut there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungcad.ct import Geometry
from lungcad.geometry import voxel_to_world, world_to_voxel

#: |cos| above which an array axis counts as running along S (about 0.08 degrees).
_ALIGNED_COS = 1.0 - 1e-6
#: Most sample points an oblique segment is resampled onto (bounds time and memory).
_MAX_RESAMPLED_VOXELS = 8_000_000
#: Sample points resampled per step (bounds scratch memory).
_CHUNK_SAMPLES = 1 << 20


@dataclass(frozen=True, eq=False)
class AxialCut:
    """One axial plane through the segment: its S position (LPS z, mm) and outline points."""

    s_mm: float
    outline_xy: np.ndarray  # (m, 2) LPS x, y in mm


def s_axis(geometry: Geometry) -> int | None:
    """The array axis (0 index, 1 row, 2 col) that runs along S, or None on an oblique grid."""
    columns = geometry.direction_matrix  # column j: LPS direction of ITK axis j (col, row, index)
    for axis in range(3):
        if abs(columns[2, 2 - axis]) >= _ALIGNED_COS:
            return axis
    return None


def axial_cuts(
    start_irc: tuple[int, int, int], array: np.ndarray, geometry: Geometry
) -> list[AxialCut]:
    """Every axial cut through the segment ``array`` (bool, placed at ``start_irc`` on
    ``geometry``), ordered by S; empty for an empty segment."""
    if not array.any():
        return []
    axis = s_axis(geometry)
    if axis is None:
        start_irc, array, geometry = _resample_axial(start_irc, array, geometry)
        axis = 0
    return _slice_cuts(start_irc, array, geometry, axis)


def _slice_cuts(
    start_irc: tuple[int, int, int], array: np.ndarray, geometry: Geometry, axis: int
) -> list[AxialCut]:
    """Cuts along the grid's own slices: ``axis`` runs along S."""
    in_plane = [a for a in range(3) if a != axis]
    pad = [(1, 1) if a in in_plane else (0, 0) for a in range(3)]
    padded = np.pad(array, pad)
    points: list[np.ndarray] = []
    for a in in_plane:
        for step in (-1, 1):
            neighbour = np.roll(padded, -step, axis=a)  # neighbour[v] = padded[v + step]
            edge = np.argwhere(padded & ~neighbour).astype(np.float64)
            edge[:, a] += 0.5 * step
            points.append(edge)
    local = np.concatenate(points)
    local -= np.array([1.0 if a in in_plane else 0.0 for a in range(3)])  # undo the padding
    world = voxel_to_world(local + np.asarray(start_irc, dtype=np.float64), geometry)
    world = np.atleast_2d(world)
    slice_of = np.rint(local[:, axis]).astype(np.int64)
    order = np.argsort(slice_of, kind="stable")
    slice_of, world = slice_of[order], world[order]
    bounds = np.flatnonzero(np.diff(slice_of)) + 1
    cuts = [
        AxialCut(float(np.mean(part[:, 2])), part[:, :2].copy())
        for part in np.split(world, bounds)
        if len(part)
    ]
    cuts.sort(key=lambda cut: cut.s_mm)
    return cuts


def _resample_axial(
    start_irc: tuple[int, int, int], array: np.ndarray, geometry: Geometry
) -> tuple[tuple[int, int, int], np.ndarray, Geometry]:
    """The segment on an LPS-aligned grid (trilinear at level 0.5), for an oblique ``geometry``.

    The new grid steps half the smallest voxel spacing in the plane and the smallest spacing
    along S (the cuts are that far apart, as a grid's own slices would be).
    """
    lo_hi = np.array([[start_irc[a] - 0.5, start_irc[a] + array.shape[a] - 0.5] for a in range(3)])
    corners = np.array(
        [[i, r, c] for i in lo_hi[0] for r in lo_hi[1] for c in lo_hi[2]], dtype=np.float64
    )
    world = voxel_to_world(corners, geometry)
    low, high = world.min(axis=0), world.max(axis=0)
    step_xyz = np.array([0.5, 0.5, 1.0]) * min(geometry.spacing_xyz)
    count = float(np.prod((high - low) / step_xyz + 1))
    if count > _MAX_RESAMPLED_VOXELS:
        step_xyz *= (count / _MAX_RESAMPLED_VOXELS) ** (1.0 / 3.0)
    shape_irc = tuple(
        int(n) for n in (np.floor((high - low) / step_xyz).astype(np.int64) + 1)[::-1]
    )
    target = Geometry.from_arrays(low, step_xyz, np.eye(3), shape_irc)
    # target voxel (index, row, col) -> padded source voxel: one affine map, applied by axis
    offset = np.asarray(start_irc, dtype=np.float64) - 1.0
    origin = world_to_voxel(low, geometry) - offset
    unit = world_to_voxel(voxel_to_world(np.eye(3), target), geometry) - offset - origin
    padded = np.pad(array.astype(np.float32), 1)
    rows = np.arange(shape_irc[1], dtype=np.float64)
    cols = np.arange(shape_irc[2], dtype=np.float64)
    in_plane = origin[:, None, None] + unit[1][:, None, None] * rows[None, :, None]
    in_plane = in_plane + unit[2][:, None, None] * cols[None, None, :]  # (3, rows, cols)
    per_step = max(1, _CHUNK_SAMPLES // (shape_irc[1] * shape_irc[2]))
    out = np.zeros(shape_irc, dtype=bool)
    for first in range(0, shape_irc[0], per_step):
        k = np.arange(first, min(first + per_step, shape_irc[0]), dtype=np.float64)
        source = in_plane[:, None] + unit[0][:, None, None, None] * k[None, :, None, None]
        values = ndimage.map_coordinates(padded, source, order=1, mode="constant", cval=0.0)
        out[first : first + len(k)] = values >= 0.5
    return (0, 0, 0), out, target
