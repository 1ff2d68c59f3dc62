"""Where the segmentation network runs: the canonical slices and box that contain lung.

The lungs are found classically (:func:`lungcad.lungs.find_lungs`, no network) on the CT's own
voxels; their bounding box is taken to the canonical grid, widened by a margin in millimetres and
its row/col start rounded down to the UNet's pooling multiple, so every pixel inside sees the same
pooling grid as in a whole-slice run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from lungcad.ct import CT, Geometry
from lungcad.geometry import voxel_to_world, world_to_voxel
from lungcad.lungs import find_lungs

log = logging.getLogger(__name__)

#: Margin around the lungs (mm). The UNet's receptive field is 44 canonical pixels wide (33 mm),
#: so lung pixels within 16.5 mm of the box edge may differ slightly from a whole-slice run; 20 mm
#: keeps the lung itself out of that band.
LUNG_MARGIN_MM = 20.0


@dataclass(frozen=True)
class Box:
    """A half-open voxel box (start, stop) per axis in (index, row, col) order."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @classmethod
    def whole(cls, shape_irc: tuple[int, int, int]) -> Box:
        return cls((0, 0, 0), tuple(int(n) for n in shape_irc))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop, strict=True))

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop, strict=True))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


def mask_box(mask: np.ndarray) -> Box | None:
    """The bounding box of a boolean volume's True voxels (None when there are none)."""
    starts, stops = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        if len(hit) == 0:
            return None
        starts.append(int(hit[0]))
        stops.append(int(hit[-1]) + 1)
    return Box(tuple(starts), tuple(stops))


def box_to_grid(
    box: Box, source: Geometry, target: Geometry, margin_mm: float, align_rc: int = 1
) -> Box:
    """``box`` on ``source`` voxels as a box on ``target`` voxels covering it plus a margin."""
    lo = np.asarray(box.start, dtype=np.float64) - 0.5
    hi = np.asarray(box.stop, dtype=np.float64) - 0.5
    corners = np.array([[i, r, c] for i in (lo[0], hi[0]) for r in (lo[1], hi[1])
                        for c in (lo[2], hi[2])])  # fmt: skip
    irc = world_to_voxel(voxel_to_world(corners, source), target)
    margin = margin_mm / np.asarray(target.spacing_irc)
    start = np.floor(irc.min(axis=0) - margin).astype(int)
    stop = np.ceil(irc.max(axis=0) + margin).astype(int) + 1
    start[1:] -= start[1:] % align_rc  # floor to the pooling multiple (also for negatives)
    start = np.maximum(start, 0)
    stop = np.minimum(stop, target.shape_irc)
    return Box(tuple(int(v) for v in start), tuple(int(v) for v in stop))


#: Voxel size (mm) the lungs are looked for at: a bounding box needs no finer grid, and finding
#: them on every voxel of a 512x512x600 scan takes ~15 s and ~1 GB.
LUNG_SEARCH_MM = 2.5


def coarse_ct(ct: CT, target_mm: float = LUNG_SEARCH_MM) -> CT:
    """Every k-th voxel along each axis (k from the spacing), with the matching geometry."""
    strides = [max(1, round(target_mm / s)) for s in ct.geometry.spacing_irc]
    hu = np.ascontiguousarray(ct.hu[:: strides[0], :: strides[1], :: strides[2]])
    g = ct.geometry
    spacing_xyz = [s * k for s, k in zip(g.spacing_xyz, strides[::-1], strict=True)]
    geometry = Geometry.from_arrays(g.origin_xyz, spacing_xyz, g.direction, hu.shape)
    return CT(hu=hu, geometry=geometry, series_uid=ct.series_uid, source=ct.source)


def lung_box(
    ct: CT, canonical: Geometry, margin_mm: float = LUNG_MARGIN_MM, align_rc: int = 1
) -> Box:
    """The canonical box around the lungs of ``ct`` (the whole grid when no lung is found).

    The lungs are found on a coarse copy (:data:`LUNG_SEARCH_MM`); the margin grows by one
    coarse voxel so that lung between two coarse samples stays inside.
    """
    coarse = coarse_ct(ct)
    found = mask_box(find_lungs(coarse))
    if found is None:
        log.warning("%s: no lung found; the segmentation runs on the whole volume", ct.series_uid)
        return Box.whole(canonical.shape_irc)
    extra = max(coarse.geometry.spacing_xyz)
    return box_to_grid(found, coarse.geometry, canonical, margin_mm + extra, align_rc)
