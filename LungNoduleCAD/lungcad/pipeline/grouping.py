"""Grouping: probability map -> candidates, as the seeds do it, at the floor threshold.

Threshold the map, erode once (6-connected cross: drops specks a 3x3x3 block would not survive),
label connected components (6-connected), and take each component's centre of mass (unweighted)
as the point the classifiers look at. A candidate's *region* is its eroded component grown back
by one dilation inside the thresholded map (a binary opening, per component), so its mask has the
nodule's full extent, not the eroded core; regions of touching components may share their rim.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungcad.pipeline.progress import Monitor
from lungcad.pipeline.region import Box, mask_box
from lungcad.pipeline.store import at_least


@dataclass(frozen=True)
class Group:
    """One candidate on the canonical grid."""

    centroid_irc: np.ndarray  # (3,) float64, centre of mass of the eroded component
    region_index: np.ndarray  # flat canonical indices, ascending
    region_prob: np.ndarray  # float16, the map at those voxels


def group_candidates(
    prob: np.ndarray,
    box: Box,
    canonical_shape: tuple[int, int, int],
    floor: float,
    monitor: Monitor | None = None,
) -> list[Group]:
    """Candidates of the map ``prob`` (covering ``box`` of the canonical grid) at ``floor``."""
    monitor = monitor or Monitor()
    above = at_least(prob, floor)
    inner = mask_box(above)
    if inner is None:
        return []
    # work inside the bounding box of what is above the floor, plus one voxel for the dilation
    lo = np.maximum(np.asarray(inner.start) - 1, 0)
    hi = np.minimum(np.asarray(inner.stop) + 1, prob.shape)
    view = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    above = above[view]
    sub_prob = prob[view]
    labels, count = ndimage.label(ndimage.binary_erosion(above))
    offset = np.asarray(box.start) + lo
    groups = []
    for k, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        grow = tuple(
            slice(max(s.start - 1, 0), min(s.stop + 1, n))
            for s, n in zip(found, labels.shape, strict=True)
        )
        core = labels[grow] == k
        region = ndimage.binary_dilation(core) & above[grow]
        start = np.array([s.start for s in grow])
        core_irc = np.argwhere(core) + start + offset
        local = np.argwhere(region)  # C order: ascending flat index
        irc = local + start + offset
        groups.append(
            Group(
                centroid_irc=core_irc.mean(axis=0),
                region_index=np.ravel_multi_index(irc.T, canonical_shape).astype(np.int64),
                region_prob=sub_prob[grow][region],
            )
        )
        if k % 16 == 0:
            monitor.report("grouping", k / count)
    monitor.report("grouping", 1.0)
    return groups
