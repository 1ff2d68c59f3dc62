"""The explicit cache behind refiltering: finding masks and Lung-RADS measurements by region.

A candidate's region at any threshold is its voxels above it, so (candidate, voxel count) names
it exactly; dragging a slider back and forth then rebuilds no mask and measures nothing twice.
Both caches drop their oldest entries past a bound (bytes of masks, number of measurements).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from lungcad.ct import Geometry
from lungcad.lungrads import SOLID_COMPONENT_HU, LungRadsMeasurements, measure_segment
from lungcad.pipeline.findings import VoxelMask
from lungcad.pipeline.footprint import VoxelMapper

#: Bytes of finding masks a store remembers across thresholds (boolean blocks, oldest dropped).
MASK_CACHE_BYTES = 64 * 1024**2
#: Findings' Lung-RADS measurements a store remembers across thresholds (oldest dropped).
MEASUREMENT_CACHE_SIZE = 4096

#: (candidate index, number of canonical voxels): one region of one candidate.
RegionKey = tuple[int, int]


class FindingCache:
    """Masks on the CT's own voxels and their measurements, for regions of one store."""

    def __init__(self, mapper: VoxelMapper, original: Geometry) -> None:
        self.mapper = mapper
        self.original = original
        self._masks: OrderedDict[RegionKey, VoxelMask] = OrderedDict()
        self._mask_bytes = 0
        self._measurements: OrderedDict[RegionKey, LungRadsMeasurements] = OrderedDict()

    def mask(self, key: RegionKey, canonical_irc: np.ndarray) -> VoxelMask:
        """The region's mask (read-only: shared by every result that shows this region)."""
        masks = self._masks
        mask = masks.get(key)
        if mask is not None:
            masks.move_to_end(key)
            return mask
        mask = self.mapper.mask(canonical_irc)
        mask.array.setflags(write=False)
        masks[key] = mask
        self._mask_bytes += mask.array.nbytes
        while self._mask_bytes > MASK_CACHE_BYTES and len(masks) > 1:
            self._mask_bytes -= masks.popitem(last=False)[1].array.nbytes
        return mask

    def measurements(
        self, key: RegionKey, canonical_irc: np.ndarray, canonical_hu: np.ndarray, mask: VoxelMask
    ) -> LungRadsMeasurements:
        """The region's Lung-RADS measurements on the CT's own grid.

        The solid component is the region's canonical voxels whose HU (the CT's, at their nearest
        original voxel) reach :data:`~lungcad.lungrads.SOLID_COMPONENT_HU`, mapped onto the
        original grid the way the whole region is: a subset of the finding's mask.
        """
        cache = self._measurements
        measured = cache.get(key)
        if measured is not None:
            cache.move_to_end(key)
            return measured
        solid = canonical_hu >= SOLID_COMPONENT_HU
        solid_mask = self.mapper.mask(canonical_irc[solid]) if solid.any() else None
        measured = measure_segment(
            mask.start_irc,
            mask.array,
            self.original,
            solid_array=None if solid_mask is None else solid_mask.array,
            solid_start_irc=None if solid_mask is None else solid_mask.start_irc,
        )
        cache[key] = measured
        while len(cache) > MEASUREMENT_CACHE_SIZE:
            cache.popitem(last=False)
        return measured
