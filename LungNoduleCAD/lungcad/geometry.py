"""Patient LPS millimetres <-> voxel (index, row, col), honouring origin, spacing and direction.

World coordinates are LPS (ITK, DICOM, LUNA16 csv files). Slicer's scene is RAS: the only place
that negates x and y is :func:`lps_to_ras` / :func:`ras_to_lps`.
"""

from __future__ import annotations

import numpy as np

from lungcad.ct import Geometry


def _as_points(points: np.ndarray | tuple[float, ...] | list) -> tuple[np.ndarray, bool]:
    arr = np.asarray(points, dtype=np.float64)
    single = arr.ndim == 1
    arr = np.atleast_2d(arr)
    if arr.shape[-1] != 3:
        raise ValueError(f"points need 3 coordinates each, got shape {arr.shape}")
    return arr, single


def voxel_to_world(irc: np.ndarray | tuple[float, ...] | list, geometry: Geometry) -> np.ndarray:
    """Continuous voxel (index, row, col) -> LPS mm; one point (3,) or many (N, 3)."""
    pts, single = _as_points(irc)
    cri = pts[:, ::-1]  # (col, row, index) = ITK's (i, j, k)
    scaled = cri * np.asarray(geometry.spacing_xyz)
    world = scaled @ geometry.direction_matrix.T + np.asarray(geometry.origin_xyz)
    return world[0] if single else world


def world_to_voxel(xyz: np.ndarray | tuple[float, ...] | list, geometry: Geometry) -> np.ndarray:
    """LPS mm -> continuous voxel (index, row, col); one point (3,) or many (N, 3)."""
    pts, single = _as_points(xyz)
    # direction is orthonormal, so its inverse is its transpose
    cri = (pts - np.asarray(geometry.origin_xyz)) @ geometry.direction_matrix
    cri = cri / np.asarray(geometry.spacing_xyz)
    irc = cri[:, ::-1]
    return irc[0] if single else irc


def world_to_voxel_index(
    xyz: np.ndarray | tuple[float, ...] | list, geometry: Geometry
) -> np.ndarray:
    """LPS mm -> nearest integer voxel (index, row, col)."""
    return np.rint(world_to_voxel(xyz, geometry)).astype(np.int64)


def contains_voxel(irc: np.ndarray, geometry: Geometry) -> np.ndarray | bool:
    """Whether integer voxel indices lie inside the grid."""
    pts, single = _as_points(irc)
    inside = np.all((pts >= 0) & (pts < np.asarray(geometry.shape_irc)), axis=1)
    return bool(inside[0]) if single else inside


def lps_to_ras(xyz: np.ndarray | tuple[float, ...] | list) -> np.ndarray:
    """LPS <-> RAS differ by the sign of x and y; used at the Slicer boundary only."""
    pts, single = _as_points(xyz)
    ras = pts * np.array([-1.0, -1.0, 1.0])
    return ras[0] if single else ras


ras_to_lps = lps_to_ras
