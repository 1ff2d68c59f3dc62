"""The compact cache that lets a result re-threshold in milliseconds without any network.

Candidates are grouped once, at a *floor* segmentation threshold. For each candidate the store
keeps, in CSR layout (``offsets[k]:offsets[k + 1]`` slices the flat arrays of candidate k):

- its floor region on the canonical grid: flat voxel indices (int32 when the grid allows) and
  the probability map there (float16);
- the CT's own HU at each region voxel's nearest original voxel (int16), for the mean HU;
- its classifier scores (computed once): p_nodule for every candidate in the lung, p_malignant
  for those whose p_nodule reaches the *nodule floor* (NaN for the others, which no nodule
  threshold at or above the floor can make findings; see :mod:`lungcad.pipeline.classify`);
- whether its centre lies in the lung (:func:`lungcad.lungs.parenchyma_mask`): a candidate
  outside is never classified (p_nodule 0, p_malignant NaN; 0 in results saved before the
  nodule floor) and never becomes a finding, at any threshold.

That is 8 bytes per voxel at or above the floor that belongs to a candidate; nothing of the CT
or of the rest of the map is kept. At a segmentation threshold t >= floor a candidate's region
is its floor region's voxels with p >= t; it survives when one erosion (6-connected cross, as in
grouping) leaves a voxel. Its mask on the CT's voxels is computed from the two grids alone
(:class:`lungcad.pipeline.footprint.VoxelMapper`), so no CT and no resampling are needed to
rebuild findings: :mod:`lungcad.pipeline.refilter` does that, with the masks and measurements
held by :mod:`lungcad.pipeline.mask_cache`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from lungcad.characteristics import Characteristics
from lungcad.ct import Geometry
from lungcad.pipeline.findings import CandidateScore, Finding, Thresholds
from lungcad.pipeline.footprint import VoxelMapper
from lungcad.pipeline.refilter import Refilter

#: Arrays a store is made of, with the dtype each is kept (and saved) in.
STORE_ARRAYS: dict[str, np.dtype] = {
    "p_nodule": np.dtype(np.float64),
    "p_malignant": np.dtype(np.float64),
    "crop_center_irc": np.dtype(np.int64),
    "region_offsets": np.dtype(np.int64),
    "region_index": np.dtype(np.int64),  # stored as int32 when the canonical grid allows
    "region_prob": np.dtype(np.float16),
    "region_hu": np.dtype(np.int16),
    "in_lung": np.dtype(np.bool_),
}

#: Arrays a store saved before they existed may lack, with the value each candidate then gets
#: (results saved before the lung mask: every candidate counted as in the lung).
STORE_ARRAY_DEFAULTS: dict[str, bool] = {"in_lung": True}


def index_dtype(shape_irc: tuple[int, int, int]) -> np.dtype:
    """int32 flat indices when the grid has fewer than 2**31 voxels (every CT), else int64."""
    return np.dtype(np.int32 if math.prod(shape_irc) < 2**31 else np.int64)


@dataclass(frozen=True, eq=False)
class CandidateStore:
    """Everything refiltering needs, and nothing else (see the module docstring)."""

    canonical: Geometry
    original: Geometry
    floor: float
    p_nodule: np.ndarray
    p_malignant: np.ndarray
    crop_center_irc: np.ndarray
    region_offsets: np.ndarray
    region_index: np.ndarray
    region_prob: np.ndarray
    region_hu: np.ndarray
    in_lung: np.ndarray | None = None  # None: every candidate (results saved before the mask)
    #: The lowest nodule threshold :meth:`build` accepts: candidates in the lung with p_nodule at
    #: or above it have p_malignant (0: all of them; results saved before the nodule floor).
    nodule_floor: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.p_nodule)
        if not 0.0 <= float(self.nodule_floor) <= 1.0:
            raise ValueError(f"nodule floor must lie in [0, 1], got {self.nodule_floor}")
        object.__setattr__(self, "nodule_floor", float(self.nodule_floor))
        if self.in_lung is None:
            object.__setattr__(self, "in_lung", np.ones(n, dtype=bool))
        for name, dtype in STORE_ARRAYS.items():
            if name == "region_index":
                dtype = index_dtype(self.canonical.shape_irc)
            arr = np.ascontiguousarray(getattr(self, name), dtype=dtype)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if self.crop_center_irc.shape != (n, 3):
            object.__setattr__(self, "crop_center_irc", self.crop_center_irc.reshape(n, 3))
        checks = (
            (len(self.p_malignant) == n, "p_malignant"),
            (len(self.in_lung) == n, "in_lung"),
            (len(self.region_offsets) == n + 1, "region_offsets"),
            (len(self.region_prob) == len(self.region_index), "region_prob"),
            (len(self.region_hu) == len(self.region_index), "region_hu"),
            (self.region_offsets[-1] == len(self.region_index), "region_offsets end"),
        )
        for ok, name in checks:
            if not ok:
                raise ValueError(f"candidate store is inconsistent: {name} has the wrong length")
        reachable = self.in_lung & (self.p_nodule >= self.nodule_floor)
        if not np.isfinite(self.p_malignant[reachable]).all():
            raise ValueError(
                "candidate store is inconsistent: a candidate at or above the nodule floor "
                f"{self.nodule_floor} has no malignancy score"
            )

    @property
    def count(self) -> int:
        return len(self.p_nodule)

    @cached_property
    def mapper(self) -> VoxelMapper:
        return VoxelMapper(self.canonical, self.original)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in STORE_ARRAYS}

    @cached_property
    def refilter(self) -> Refilter:
        """Regions and findings at any thresholds, with their caches (:mod:`.refilter`)."""
        return Refilter(self)

    def build(
        self, thresholds: Thresholds, given: Mapping[int, Characteristics] | None = None
    ) -> tuple[tuple[Finding, ...], tuple[CandidateScore, ...]]:
        """Findings and candidate scores at ``thresholds`` (:meth:`.refilter.Refilter.build`)."""
        return self.refilter.build(thresholds, given)

    def finding_candidates(self, thresholds: Thresholds) -> tuple[int, ...]:
        """The candidate index of finding 1, 2, ... at ``thresholds``."""
        return self.refilter.finding_candidates(thresholds)


def empty_store(
    canonical: Geometry, original: Geometry, floor: float, nodule_floor: float = 0.0
) -> CandidateStore:
    zeros = {name: np.zeros(0, dtype=dtype) for name, dtype in STORE_ARRAYS.items()}
    zeros["region_offsets"] = np.zeros(1, dtype=np.int64)
    zeros["crop_center_irc"] = np.zeros((0, 3), dtype=np.int64)
    return CandidateStore(
        canonical=canonical, original=original, floor=floor, nodule_floor=nodule_floor, **zeros
    )
