"""Where the segmentation network runs: the canonical slices, and the part of each, near lung.

The lungs are found classically (:func:`lungcad.lungs.parenchyma_mask`, no network) on a coarse
copy of the CT. A canonical slice is run on the rows and cols of the lung within a margin (mm, in
all three directions) of it, its row/col start rounded down to the UNet's pooling multiple so every
pixel sees the same pooling grid as in a whole-slice run. Near the apex and the bases the lungs are
much smaller than at the hila, so this runs the UNet on far fewer pixels than one box would.
"""

from __future__ import annotations

import itertools
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


@dataclass(frozen=True, eq=False)
class UNetPlan:
    """Which pixels the UNet runs on: a box, and within it each slice's rows and cols.

    ``rows[k]`` / ``cols[k]`` are the absolute half-open [start, stop) of slice
    ``box.start[0] + k``; they always lie inside ``box``. ``computed[k]`` says whether the UNet
    runs on slice k or its map is interpolated from the nearest run slices either side (None: every
    slice runs; see :func:`thin_slices`).
    """

    box: Box
    rows: np.ndarray  # (n_slices, 2) int
    cols: np.ndarray  # (n_slices, 2) int
    computed: np.ndarray | None = None  # (n_slices,) bool

    @classmethod
    def of_box(cls, box: Box) -> UNetPlan:
        n = box.shape[0]
        rows = np.tile([box.start[1], box.stop[1]], (n, 1))
        cols = np.tile([box.start[2], box.stop[2]], (n, 1))
        return cls(box, rows, cols)

    @property
    def pixels(self) -> int:
        """Pixels the UNet runs on, over all the slices it runs."""
        return int(self.areas[self.run_slices].sum())

    @property
    def areas(self) -> np.ndarray:
        """Pixels of the map per slice (0 for a slice that is skipped)."""
        return (self.rows[:, 1] - self.rows[:, 0]) * (self.cols[:, 1] - self.cols[:, 0])

    @property
    def run_slices(self) -> np.ndarray:
        """The slices (relative to ``box.start[0]``) the UNet runs on, ascending."""
        if self.computed is None:
            return np.arange(len(self.rows))
        return np.flatnonzero(self.computed)


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


#: A source whose slices lie at least this many canonical slices apart gets its UNet run only on
#: the canonical slices at the source slices' centres (:func:`thin_slices`).
MIN_THINNING_GAP = 2.0

#: How closely the source's slice axis must follow the canonical z axis (cosine) for thinning.
ALIGNED_COSINE = 0.99


def thin_slices(plan: UNetPlan, source: Geometry, canonical: Geometry) -> UNetPlan:
    """``plan`` with the UNet run only on the canonical slices nearest the source's slice centres.

    Canonical slices between two source slices are linear blends of them: they carry no
    information the source slices do not, so the UNet's map there is interpolated instead of
    computed (on a 5 mm scan, 1 slice in 4 runs). Each run slice covers the rows and cols of the
    slices it is interpolated into. The plan's first and last slices always run. Unchanged when
    the source's slices are under :data:`MIN_THINNING_GAP` canonical slices apart, or its slice
    axis is not the head-foot axis (sagittal, coronal, strongly tilted acquisitions).
    """
    axis = source.direction_matrix[:, 2]  # the source index axis in LPS
    gap = source.spacing_irc[0] * abs(axis[2]) / canonical.spacing_irc[0]
    if abs(axis[2]) < ALIGNED_COSINE or gap < MIN_THINNING_GAP or len(plan.rows) < 3:
        return plan
    n_source = source.shape_irc[0]
    centre_rc = [(source.shape_irc[1] - 1) / 2, (source.shape_irc[2] - 1) / 2]
    centres = np.array([[i, *centre_rc] for i in range(n_source)], dtype=np.float64)
    z = np.rint(world_to_voxel(voxel_to_world(centres, source), canonical)[:, 0]).astype(int)
    z0 = plan.box.start[0]
    computed = np.zeros(len(plan.rows), dtype=bool)
    inside = z[(z >= z0) & (z < z0 + len(plan.rows))] - z0
    computed[inside] = True
    computed[[0, -1]] = True
    rows, cols = plan.rows.copy(), plan.cols.copy()
    anchors = np.flatnonzero(computed)
    for left, right in itertools.pairwise(anchors):
        between = slice(left, right + 1)  # each anchor also covers the slices up to the next
        for k in (left, right):
            rows[k] = _union(plan.rows[between], rows[k])
            cols[k] = _union(plan.cols[between], cols[k])
    return UNetPlan(plan.box, rows, cols, computed)


def _union(windows: np.ndarray, current: np.ndarray) -> np.ndarray:
    """The smallest [start, stop) holding ``current`` and every non-empty window of ``windows``."""
    windows = np.vstack([windows, current[None]])
    full = windows[windows[:, 1] > windows[:, 0]]
    if not len(full):
        return current
    return np.array([full[:, 0].min(), full[:, 1].max()])
