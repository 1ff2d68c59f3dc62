"""The compact cache that lets a result re-threshold in milliseconds without any network.

Candidates are grouped once, at a *floor* segmentation threshold. For each candidate the store
keeps, in CSR layout (``offsets[k]:offsets[k + 1]`` slices the flat arrays of candidate k):

- its floor region on the canonical grid: flat voxel indices (int32 when the grid allows) and
  the probability map there (float16);
- the CT's own HU at each region voxel's nearest original voxel (int16), for the mean HU;
- its classifier scores (computed once, for every candidate).

That is 8 bytes per voxel at or above the floor that belongs to a candidate; nothing of the CT
or of the rest of the map is kept. At a segmentation threshold t >= floor a candidate's region
is its floor region's voxels with p >= t; it survives when one erosion (6-connected cross, as in
grouping) leaves a voxel. Its mask on the CT's voxels is computed from the two grids alone
(:class:`lungcad.pipeline.footprint.VoxelMapper`), so no CT and no resampling are needed to
rebuild findings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

from lungcad.ct import Geometry
from lungcad.geometry import voxel_to_world, world_to_voxel
from lungcad.pipeline.findings import CandidateScore, Finding, Thresholds, VoxelMask
from lungcad.pipeline.footprint import VoxelMapper

#: Arrays a store is made of, with the dtype each is kept (and saved) in.
STORE_ARRAYS: dict[str, np.dtype] = {
    "p_nodule": np.dtype(np.float64),
    "p_malignant": np.dtype(np.float64),
    "crop_center_irc": np.dtype(np.int64),
    "region_offsets": np.dtype(np.int64),
    "region_index": np.dtype(np.int64),  # stored as int32 when the canonical grid allows
    "region_prob": np.dtype(np.float16),
    "region_hu": np.dtype(np.int16),
}


def index_dtype(shape_irc: tuple[int, int, int]) -> np.dtype:
    """int32 flat indices when the grid has fewer than 2**31 voxels (every CT), else int64."""
    return np.dtype(np.int32 if math.prod(shape_irc) < 2**31 else np.int64)


def at_least(values: np.ndarray, threshold: float) -> np.ndarray:
    """``values >= threshold`` compared in float32: the one comparison grouping and refilter use.

    A float16 map is compared without a float32 copy, against the smallest float16 at or above
    the float32 threshold (float16 values are exact in float32, so the answer is the same).
    """
    t32 = np.float32(threshold)
    if values.dtype == np.float16 and abs(t32) <= np.finfo(np.float16).max:
        t16 = np.float16(t32)
        if np.float32(t16) < t32:
            t16 = np.nextafter(t16, np.float16(np.inf))
        if np.isfinite(t16):
            return values >= t16
    return np.asarray(values, dtype=np.float32) >= t32


def equivalent_diameter_mm(volume_mm3: float) -> float:
    """Diameter of the sphere with the same volume."""
    return float((6.0 * volume_mm3 / math.pi) ** (1.0 / 3.0)) if volume_mm3 > 0 else 0.0


@dataclass(frozen=True, eq=False)
class Region:
    """One candidate's region at some threshold, described in both grids.

    ``center_*``: the region's (unweighted) centre of mass on the canonical grid, in LPS mm and
    as continuous original voxel (index, row, col). ``volume_mm3``: canonical voxel count times
    the canonical voxel volume; ``diameter_mm``: the equivalent-sphere diameter of that volume.
    ``mean_hu``: mean of the CT's own HU sampled at each region voxel's nearest original voxel
    (so weighted by volume). Its mask on the CT's own voxels is :meth:`CandidateStore.mask`.
    """

    candidate: int
    center_lps: tuple[float, float, float]
    center_irc: tuple[float, float, float]
    diameter_mm: float
    volume_mm3: float
    mean_hu: float
    max_probability: float
    canonical_irc: np.ndarray  # (m, 3) its canonical voxels


_CROSS = ndimage.generate_binary_structure(3, 1)


def _survives_erosion(irc: np.ndarray) -> bool:
    """Whether one erosion (6-connected cross, voxels outside = False) leaves any voxel."""
    lo = irc.min(axis=0)
    box = np.zeros(tuple(irc.max(axis=0) - lo + 3), dtype=bool)  # one voxel of border
    local = irc - lo + 1
    box[local[:, 0], local[:, 1], local[:, 2]] = True
    # the cross erosion written out as shifted ANDs: the same answer as
    # ndimage.binary_erosion(box, _CROSS).any() (tested), without its per-call overhead, which
    # dominated the segmentation slider's refilter on small regions
    core = box[1:-1, 1:-1, 1:-1].copy()
    core &= box[:-2, 1:-1, 1:-1]
    core &= box[2:, 1:-1, 1:-1]
    core &= box[1:-1, :-2, 1:-1]
    core &= box[1:-1, 2:, 1:-1]
    core &= box[1:-1, 1:-1, :-2]
    core &= box[1:-1, 1:-1, 2:]
    return bool(core.any())


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

    def __post_init__(self) -> None:
        n = len(self.p_nodule)
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
            (len(self.region_offsets) == n + 1, "region_offsets"),
            (len(self.region_prob) == len(self.region_index), "region_prob"),
            (len(self.region_hu) == len(self.region_index), "region_hu"),
            (self.region_offsets[-1] == len(self.region_index), "region_offsets end"),
        )
        for ok, name in checks:
            if not ok:
                raise ValueError(f"candidate store is inconsistent: {name} has the wrong length")

    @property
    def count(self) -> int:
        return len(self.p_nodule)

    @cached_property
    def mapper(self) -> VoxelMapper:
        return VoxelMapper(self.canonical, self.original)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in STORE_ARRAYS}

    @cached_property
    def _prob_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Per candidate: lowest and highest stored probability (float32)."""
        if self.count == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        values = self.region_prob.astype(np.float32)
        starts = self.region_offsets[:-1]
        return np.minimum.reduceat(values, starts), np.maximum.reduceat(values, starts)

    def region(self, k: int, threshold: float) -> Region | None:
        """Candidate ``k``'s region at ``threshold``, or None when one erosion empties it."""
        low, high = self._prob_range
        if high[k] < np.float32(threshold):
            return None
        a, b = self.region_offsets[k], self.region_offsets[k + 1]
        keep = at_least(self.region_prob[a:b], threshold)
        irc = np.stack(np.unravel_index(self.region_index[a:b][keep], self.canonical.shape_irc), 1)
        # the whole floor region survives one erosion (grouping made it so); a cut one may not
        if low[k] < np.float32(threshold) and not _survives_erosion(irc):
            return None
        center_can = irc.mean(axis=0)
        center_lps = voxel_to_world(center_can, self.canonical)
        center_irc = world_to_voxel(center_lps, self.original)
        volume = float(len(irc) * self.canonical.voxel_volume_mm3)
        return Region(
            candidate=k,
            center_lps=_triple(center_lps),
            center_irc=_triple(center_irc),
            diameter_mm=equivalent_diameter_mm(volume),
            volume_mm3=volume,
            mean_hu=float(self.region_hu[a:b][keep].mean(dtype=np.float64)),
            max_probability=float(high[k]),
            canonical_irc=irc,
        )

    def mask(self, region: Region) -> VoxelMask:
        """The region's mask on the CT's own voxels."""
        return self.mapper.mask(region.canonical_irc)

    def _regions_at(self, threshold: float) -> tuple[list[Region | None], dict[int, VoxelMask]]:
        """Every candidate's region at ``threshold`` and the masks made so far, kept for the
        last threshold asked: moving the nodule or malignancy slider then costs no region or
        mask work at all (the store is immutable, so the cache cannot go stale)."""
        cached = self.__dict__.get("_last_regions")
        if cached is not None and cached[0] == threshold:
            return cached[1], cached[2]
        regions = [self.region(k, threshold) for k in range(self.count)]
        masks: dict[int, VoxelMask] = {}
        self.__dict__["_last_regions"] = (threshold, regions, masks)
        return regions, masks

    def _mask_of(self, region: Region, masks: dict[int, VoxelMask]) -> VoxelMask:
        if region.candidate not in masks:
            mask = self.mask(region)
            mask.array.setflags(write=False)  # shared by every result at this threshold
            masks[region.candidate] = mask
        return masks[region.candidate]

    def build(
        self, thresholds: Thresholds
    ) -> tuple[tuple[Finding, ...], tuple[CandidateScore, ...]]:
        """Findings and candidate scores at ``thresholds`` (no network, no CT).

        Candidates are those whose region survives ``thresholds.segmentation``, listed by
        p_nodule descending (ties: grouping order); findings are the candidates with p_nodule at
        or above ``thresholds.nodule``, numbered 1.. by p_malignant descending.
        """
        if thresholds.segmentation < self.floor:
            raise ValueError(
                f"segmentation threshold {thresholds.segmentation} is below this result's floor "
                f"{self.floor} (the map below it was not kept); run detection again with "
                f"min_segmentation_threshold <= {thresholds.segmentation}"
            )
        regions, masks = self._regions_at(float(thresholds.segmentation))
        alive = [r for r in regions if r is not None]
        kept = [r for r in alive if self.p_nodule[r.candidate] >= thresholds.nodule]
        kept.sort(key=lambda r: (-self.p_malignant[r.candidate], r.candidate))
        number = {r.candidate: i + 1 for i, r in enumerate(kept)}
        findings = tuple(
            Finding(
                number=number[r.candidate],
                center_lps=r.center_lps,
                center_irc=r.center_irc,
                diameter_mm=r.diameter_mm,
                volume_mm3=r.volume_mm3,
                mean_hu=r.mean_hu,
                p_nodule=float(self.p_nodule[r.candidate]),
                p_malignant=float(self.p_malignant[r.candidate]),
                mask=self._mask_of(r, masks),
            )
            for r in kept
        )
        alive.sort(key=lambda r: (-self.p_nodule[r.candidate], r.candidate))
        candidates = tuple(
            CandidateScore(
                center_lps=r.center_lps,
                center_irc=r.center_irc,
                diameter_mm=r.diameter_mm,
                volume_mm3=r.volume_mm3,
                mean_hu=r.mean_hu,
                max_probability=r.max_probability,
                p_nodule=float(self.p_nodule[r.candidate]),
                p_malignant=float(self.p_malignant[r.candidate]),
                finding=number.get(r.candidate),
            )
            for r in alive
        )
        return findings, candidates


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def empty_store(canonical: Geometry, original: Geometry, floor: float) -> CandidateStore:
    zeros = {name: np.zeros(0, dtype=dtype) for name, dtype in STORE_ARRAYS.items()}
    zeros["region_offsets"] = np.zeros(1, dtype=np.int64)
    zeros["crop_center_irc"] = np.zeros((0, 3), dtype=np.int64)
    return CandidateStore(canonical=canonical, original=original, floor=floor, **zeros)
