"""Where the segmentation network runs: the canonical slices, and the part of each, near lung.

The lungs are found classically (:func:`lungcad.lungs.parenchyma_mask`, no network) on a coarse
copy of the CT. A canonical slice is run on the rows and cols of the lung within a margin (mm, in
all three directions) of it, its row/col start rounded down to the UNet's pooling multiple so every
pixel sees the same pooling grid as in a whole-slice run. Near the apex and the bases the lungs are
much smaller than at the hila, so this runs the UNet on far fewer pixels than one box would.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungcad.ct import CT, Geometry
from lungcad.geometry import voxel_to_world, world_to_voxel
from lungcad.lungs import LungMask, parenchyma_mask
from lungcad.lungs import coarse_ct as coarse_ct  # re-exported: it lived here before

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


@dataclass(frozen=True, eq=False)
class UNetPlan:
    """Which pixels the UNet runs on: a box, and within it each slice's rows and cols.

    ``rows[k]`` / ``cols[k]`` are the absolute half-open [start, stop) of slice
    ``box.start[0] + k``; they always lie inside ``box``.
    """

    box: Box
    rows: np.ndarray  # (n_slices, 2) int
    cols: np.ndarray  # (n_slices, 2) int

    @classmethod
    def of_box(cls, box: Box) -> UNetPlan:
        n = box.shape[0]
        rows = np.tile([box.start[1], box.stop[1]], (n, 1))
        cols = np.tile([box.start[2], box.stop[2]], (n, 1))
        return cls(box, rows, cols)

    @property
    def pixels(self) -> int:
        """Pixels the UNet runs on, over all slices."""
        return int(self.areas.sum())

    @property
    def areas(self) -> np.ndarray:
        """Pixels run per slice (0 for a slice that is skipped)."""
        return (self.rows[:, 1] - self.rows[:, 0]) * (self.cols[:, 1] - self.cols[:, 0])


def lung_plan(
    ct: CT,
    canonical: Geometry,
    margin_mm: float = LUNG_MARGIN_MM,
    align_rc: int = 1,
    lungs: LungMask | None = None,
) -> UNetPlan:
    """Where to run the UNet on the canonical grid of ``ct`` (everywhere when no lung is found).

    The lungs (``lungs``, or :func:`~lungcad.lungs.parenchyma_mask` of ``ct``) are found on a
    coarse copy (:data:`~lungcad.lungs.LUNG_SEARCH_MM`) and their voxel centres taken to canonical
    coordinates; canonical slice z runs on the rows and cols of every lung voxel
    within the margin of z, widened by the margin. The margin grows by half a coarse voxel's
    diagonal, so lung between two coarse samples stays inside, whatever the CT's orientation.
    """
    lungs = parenchyma_mask(ct) if lungs is None else lungs
    if not lungs.mask.any():
        log.warning("%s: no lung found; the segmentation runs on the whole volume", ct.series_uid)
        return UNetPlan.of_box(Box.whole(canonical.shape_irc))
    margin = margin_mm + 0.5 * float(np.linalg.norm(lungs.geometry.spacing_xyz))
    irc = world_to_voxel(voxel_to_world(np.argwhere(lungs.mask), lungs.geometry), canonical)
    n_z = canonical.shape_irc[0]
    z = np.clip(np.rint(irc[:, 0]).astype(np.int64), 0, n_z - 1)
    lo = np.full((n_z, 2), np.inf)
    hi = np.full((n_z, 2), -np.inf)
    np.minimum.at(lo, z, irc[:, 1:])
    np.maximum.at(hi, z, irc[:, 1:])
    reach = int(np.ceil(margin / canonical.spacing_irc[0] + 0.5))
    lo = ndimage.minimum_filter1d(lo, 2 * reach + 1, axis=0, mode="constant", cval=np.inf)
    hi = ndimage.maximum_filter1d(hi, 2 * reach + 1, axis=0, mode="constant", cval=-np.inf)
    run = np.flatnonzero(np.isfinite(lo[:, 0]))
    z0, z1 = int(run[0]), int(run[-1]) + 1
    pad = margin / np.asarray(canonical.spacing_irc[1:])
    start = np.floor(lo[z0:z1] - pad)
    stop = np.ceil(hi[z0:z1] + pad) + 1
    shape = np.asarray(canonical.shape_irc[1:])
    empty = ~np.isfinite(start[:, 0])  # slices no lung voxel reaches are not run
    start[empty], stop[empty] = 0, 0
    start = start.astype(np.int64)
    start -= start % align_rc  # floor to the pooling multiple (also for negatives)
    start = np.clip(start, 0, shape)
    stop = np.clip(stop.astype(np.int64), start, shape)
    box_start = (z0, *(int(v) for v in start[~empty].min(axis=0)))
    box_stop = (z1, *(int(v) for v in stop[~empty].max(axis=0)))
    start[empty], stop[empty] = box_start[1:], box_start[1:]
    rows = np.stack([start[:, 0], stop[:, 0]], 1)
    cols = np.stack([start[:, 1], stop[:, 1]], 1)
    return UNetPlan(Box(box_start, box_stop), rows, cols)


def lung_box(
    ct: CT, canonical: Geometry, margin_mm: float = LUNG_MARGIN_MM, align_rc: int = 1
) -> Box:
    """The one canonical box around the lungs of ``ct`` (the union of :func:`lung_plan`)."""
    return lung_plan(ct, canonical, margin_mm, align_rc).box
