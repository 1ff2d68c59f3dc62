"""Grouping: probability map -> candidates, as the seeds do it, at the floor threshold.

Threshold the map, erode once (6-connected cross: drops specks a 3x3x3 block would not survive),
label connected components (6-connected), and take each component's centre of mass (unweighted)
as the point the classifiers look at. A candidate's *region* is its eroded component grown back
by one dilation inside the thresholded map (a binary opening, per component), so its mask has the
nodule's full extent, not the eroded core; regions of touching components may share their rim.

A region larger than any nodule (:data:`MAX_REGION_ML`) is usually not one candidate: a low floor
can merge vessels and nodules into one tree. Such a region is grouped again inside itself at the
next level (floor + 0.1, + 0.2, ...) until its pieces are nodule-sized; a piece still too large at
the last level is dropped with a warning. The exception is a mass: a region that holds a ball of
:data:`MASS_MIN_RADIUS_MM` (larger than any nodule, and far thicker than any vessel) is one lesion,
kept whole as one candidate rather than cut into fragments at higher levels. This depends on the
map only, never on the thresholds a result is shown at, so refiltering and a fresh detection
agree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungcad.pipeline.progress import Monitor, Stage
from lungcad.pipeline.refilter import at_least
from lungcad.pipeline.region import Box, mask_box

log = logging.getLogger(__name__)

#: Largest region kept as one candidate (ml): a 30 mm nodule is 14 ml; room for its vessels.
MAX_REGION_ML = 35.0
LEVEL_STEP = 0.1
#: A too-large region holding a ball of this radius (a 30 mm diameter: no nodule is larger, no
#: vessel nearly as thick) is a mass and stays one candidate.
MASS_MIN_RADIUS_MM = 15.0


@dataclass(frozen=True)
class Group:
    """One candidate on the canonical grid."""

    centroid_irc: np.ndarray  # (3,) float64, centre of mass of the eroded component
    region_index: np.ndarray  # flat canonical indices, ascending
    region_prob: np.ndarray  # float16, the map at those voxels
    level: float  # the threshold it was grouped at (the floor, or higher for split regions)


def _levels(floor: float) -> list[float]:
    levels, i = [], 1
    while round(floor + LEVEL_STEP * i, 6) < 1.0:
        levels.append(round(floor + LEVEL_STEP * i, 6))
        i += 1
    return levels


def group_candidates(
    prob: np.ndarray,
    box: Box,
    canonical_shape: tuple[int, int, int],
    floor: float,
    voxel_volume_mm3: float,
    monitor: Monitor | None = None,
    spacing_irc: tuple[float, float, float] | None = None,
) -> list[Group]:
    """Candidates of the map ``prob`` (covering ``box`` of the canonical grid) at ``floor``.

    ``spacing_irc`` (mm) lets a too-large region be recognised as a mass; without it every
    too-large region is grouped again higher.
    """
    monitor = monitor or Monitor()
    above = at_least(prob, floor)
    inner = mask_box(above)
    if inner is None:
        return []
    # work inside the bounding box of what is above the floor, plus one voxel for the dilation
    lo = np.maximum(np.asarray(inner.start) - 1, 0)
    hi = np.minimum(np.asarray(inner.stop) + 1, prob.shape)
    view = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    max_voxels = MAX_REGION_ML * 1000.0 / voxel_volume_mm3
    grouper = _Grouper(canonical_shape, max_voxels, monitor, spacing_irc)
    grouper.run(prob[view], above[view], np.asarray(box.start) + lo, floor, _levels(floor))
    monitor.report(Stage.GROUPING, 1.0)
    return grouper.groups


class _Grouper:
    """Groups level by level; regions too large wait in a queue (box, mask) for the next level,
    so only one level's label image is alive at a time."""

    def __init__(self, canonical_shape, max_voxels: float, monitor: Monitor, spacing_irc) -> None:
        self.shape = canonical_shape
        self.max_voxels = max_voxels
        self.monitor = monitor
        self.spacing_irc = spacing_irc
        self.groups: list[Group] = []

    def run(self, prob, above, offset, level: float, higher: list[float]) -> None:
        """Group ``above`` (the map at ``level`` inside ``prob``, a box at ``offset``)."""
        queue = [(prob, above, np.asarray(offset), level, higher)]
        while queue:
            prob, above, offset, level, higher = queue.pop(0)
            for region_prob, region, start in self._level(prob, above, offset, level):
                if not higher:
                    log.warning(
                        "dropped a region of %d voxels still above %.2f (larger than any nodule)",
                        int(region.sum()), level,
                    )  # fmt: skip
                    continue
                sub = region & at_least(region_prob, higher[0])
                queue.append((region_prob, sub, start, higher[0], higher[1:]))
            del prob, above

    def _level(self, prob, above, offset, level):
        """Adds the nodule-sized candidates of one level; yields the too-large regions."""
        labels, count = ndimage.label(ndimage.binary_erosion(above))
        for k, found in enumerate(ndimage.find_objects(labels), start=1):
            if found is None:
                continue
            grow = tuple(
                slice(max(s.start - 1, 0), min(s.stop + 1, n))
                for s, n in zip(found, labels.shape, strict=True)
            )
            core = labels[grow] == k
            region = ndimage.binary_dilation(core) & above[grow]
            start = np.array([s.start for s in grow]) + offset
            if region.sum() > self.max_voxels and not self._is_mass(region):
                yield prob[grow], region, start
                continue
            irc = np.argwhere(region) + start  # C order: ascending flat index
            self.groups.append(
                Group(
                    centroid_irc=(np.argwhere(core) + start).mean(axis=0),
                    region_index=np.ravel_multi_index(irc.T, self.shape).astype(np.int64),
                    region_prob=prob[grow][region],
                    level=level,
                )
            )
            if len(self.groups) % 32 == 0:
                self.monitor.report(Stage.GROUPING, k / max(count, 1))

    def _is_mass(self, region: np.ndarray) -> bool:
        """Whether ``region`` holds a ball of :data:`MASS_MIN_RADIUS_MM` (its deepest voxel)."""
        if self.spacing_irc is None:
            return False
        # Most too-large regions are vessel trees a few mm thick spanning the lung, whose exact
        # distance transform is slow (0.2 s each on a 5 mm scan). Every second voxel first: its
        # depth is within a coarse voxel's diagonal of the exact one, so a region far thinner
        # than the ball is ruled out there.
        coarse_spacing = 2 * np.asarray(self.spacing_irc)
        coarse = ndimage.distance_transform_edt(
            np.pad(region[::2, ::2, ::2], 1), sampling=coarse_spacing
        )
        if coarse.max() < MASS_MIN_RADIUS_MM - float(np.linalg.norm(coarse_spacing)):
            return False
        depth = ndimage.distance_transform_edt(np.pad(region, 1), sampling=self.spacing_irc)
        return bool(depth.max() >= MASS_MIN_RADIUS_MM)
