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
rebuild findings.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

from lungcad.characteristics import Characteristics
from lungcad.ct import Geometry
from lungcad.geometry import voxel_to_world, world_to_voxel
from lungcad.lungrads import (
    SOLID_COMPONENT_HU,
    LungRadsMeasurements,
    assess_nodule,
    measure_segment,
)
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
    "in_lung": np.dtype(np.bool_),
}

#: Arrays a store saved before they existed may lack, with the value each candidate then gets
#: (results saved before the lung mask: every candidate counted as in the lung).
STORE_ARRAY_DEFAULTS: dict[str, bool] = {"in_lung": True}


#: Bytes of finding masks a store remembers across thresholds (boolean blocks, oldest dropped).
MASK_CACHE_BYTES = 64 * 1024**2
#: Findings' Lung-RADS measurements a store remembers across thresholds (oldest dropped).
MEASUREMENT_CACHE_SIZE = 4096


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
    canonical_hu: np.ndarray  # (m,) the CT's HU at each one's nearest original voxel


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
            canonical_hu=self.region_hu[a:b][keep],
        )

    def _voxel_irc_of(self, flat: np.ndarray) -> np.ndarray:
        """(m, 3) canonical (index, row, col) of flat canonical indices."""
        if not len(flat):
            return np.zeros((0, 3), dtype=np.int64)
        return np.stack(np.unravel_index(flat, self.canonical.shape_irc), 1).astype(np.int64)

    def mask(self, region: Region) -> VoxelMask:
        """The region's mask on the CT's own voxels."""
        return self.mapper.mask(region.canonical_irc)

    @cached_property
    def _levels(self) -> _Levels:
        """Per candidate, its voxels by probability (highest first) with prefix sums, and the
        level up to which its region survives one erosion; built on the first :meth:`regions`."""
        return _Levels.of(self)

    def regions(self, threshold: float) -> list[Region | None]:
        """Every candidate's :meth:`region` at ``threshold``, computed for all at once.

        The same regions as ``[self.region(k, threshold) for k in range(self.count)]`` (tested)
        without a per-candidate computation: a region at t is the first ``count`` of its voxels
        by probability, so its size, centre and mean HU come from prefix sums, and whether it
        survives one erosion is one comparison (:class:`_Levels`). A segmentation slider move
        over 200 candidates then costs about a millisecond plus the masks of new findings.
        """
        n = self.count
        if n == 0:
            return []
        levels = self._levels
        counts = np.bincount(self._owner[at_least(self.region_prob, threshold)], minlength=n)
        low, high = self._prob_range
        t32 = np.float32(threshold)
        whole = low >= t32  # grouping made every whole floor region survive an erosion
        alive = (counts > 0) & (whole | at_least(levels.erosion, threshold))
        ks = np.flatnonzero(alive)
        first = self.region_offsets[ks]
        taken = counts[ks]
        sums = levels.irc_sums[first + taken] - levels.irc_sums[first]
        hu = (levels.hu_sums[first + taken] - levels.hu_sums[first]) / taken
        lps = voxel_to_world(sums / taken[:, None], self.canonical).reshape(-1, 3)
        original = world_to_voxel(lps, self.original).reshape(-1, 3)
        voxel_mm3 = self.canonical.voxel_volume_mm3
        out: list[Region | None] = [None] * n
        for j, k in enumerate(ks):
            volume = float(taken[j] * voxel_mm3)
            out[k] = Region(
                candidate=int(k),
                center_lps=_triple(lps[j]),
                center_irc=_triple(original[j]),
                diameter_mm=equivalent_diameter_mm(volume),
                volume_mm3=volume,
                mean_hu=float(hu[j]),
                max_probability=float(high[k]),
                canonical_irc=levels.irc[first[j] : first[j] + taken[j]],
                canonical_hu=levels.hu[first[j] : first[j] + taken[j]],
            )
        return out

    @cached_property
    def _owner(self) -> np.ndarray:
        """The candidate each stored voxel belongs to (CSR rows)."""
        return np.repeat(np.arange(self.count, dtype=np.int64), np.diff(self.region_offsets))

    def _regions_at(self, threshold: float) -> list[Region | None]:
        """Every candidate's region at ``threshold``, kept for the last threshold asked: moving
        the nodule or malignancy slider then costs no region work at all (the store is
        immutable, so the cache cannot go stale)."""
        cached = self.__dict__.get("_last_regions")
        if cached is not None and cached[0] == threshold:
            return cached[1]
        regions = self.regions(threshold)
        self.__dict__["_last_regions"] = (threshold, regions)
        return regions

    @cached_property
    def _masks(self) -> OrderedDict[tuple[int, int], VoxelMask]:
        return OrderedDict()

    def _mask_of(self, region: Region) -> VoxelMask:
        """The region's mask, remembered across thresholds: a candidate's region at any
        threshold is its voxels above it, so (candidate, voxel count) names it exactly, and
        dragging a slider back and forth rebuilds no mask (up to MASK_CACHE_BYTES kept)."""
        key = (region.candidate, len(region.canonical_irc))
        masks = self._masks
        mask = masks.get(key)
        if mask is not None:
            masks.move_to_end(key)
            return mask
        mask = self.mask(region)
        mask.array.setflags(write=False)  # shared by every result that shows this region
        masks[key] = mask
        held = self.__dict__.get("_mask_bytes", 0) + mask.array.nbytes
        while held > MASK_CACHE_BYTES and len(masks) > 1:
            held -= masks.popitem(last=False)[1].array.nbytes
        self.__dict__["_mask_bytes"] = held
        return mask

    @cached_property
    def _measurements(self) -> OrderedDict[tuple[int, int], LungRadsMeasurements]:
        return OrderedDict()

    def _measurements_of(self, region: Region, mask: VoxelMask) -> LungRadsMeasurements:
        """The region's Lung-RADS measurements on the CT's own grid, remembered like its mask.

        The solid component is the region's canonical voxels whose HU (the CT's, at their nearest
        original voxel) reach :data:`~lungcad.lungrads.SOLID_COMPONENT_HU`, mapped onto the
        original grid the way the whole region is: a subset of the finding's mask.
        """
        key = (region.candidate, len(region.canonical_irc))
        cache = self._measurements
        measured = cache.get(key)
        if measured is not None:
            cache.move_to_end(key)
            return measured
        solid = region.canonical_hu >= SOLID_COMPONENT_HU
        solid_mask = self.mapper.mask(region.canonical_irc[solid]) if solid.any() else None
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

    def build(
        self, thresholds: Thresholds, given: Mapping[int, Characteristics] | None = None
    ) -> tuple[tuple[Finding, ...], tuple[CandidateScore, ...]]:
        """Findings and candidate scores at ``thresholds`` (no network, no CT).

        Candidates are those whose region survives ``thresholds.segmentation``, listed by
        p_nodule descending (ties: grouping order); findings are the candidates in the lung with
        p_nodule at or above ``thresholds.nodule``, numbered 1.. by p_malignant descending.
        ``given`` holds the type and margin known for some candidates (by candidate index); the
        others' Lung-RADS category reads them as solid and not spiculated.
        Raises ValueError below either floor (what lies below it was not kept or not scored).
        """
        alive, kept = self._kept(thresholds)
        given = given or {}
        number = {r.candidate: i + 1 for i, r in enumerate(kept)}
        findings = tuple(
            self._finding(number[r.candidate], r, given.get(r.candidate, Characteristics()))
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
                p_malignant=_score(self.p_malignant[r.candidate]),
                finding=number.get(r.candidate),
                in_lung=bool(self.in_lung[r.candidate]),
            )
            for r in alive
        )
        return findings, candidates

    def finding_candidates(self, thresholds: Thresholds) -> tuple[int, ...]:
        """The candidate index of finding 1, 2, ... at ``thresholds``."""
        return tuple(r.candidate for r in self._kept(thresholds)[1])

    def _kept(self, thresholds: Thresholds) -> tuple[list[Region], list[Region]]:
        """The regions alive at ``thresholds`` and, in finding order, those kept as findings."""
        if thresholds.segmentation < self.floor:
            raise ValueError(
                f"segmentation threshold {thresholds.segmentation} is below this result's floor "
                f"{self.floor} (the map below it was not kept); run detection again with "
                f"min_segmentation_threshold <= {thresholds.segmentation}"
            )
        if thresholds.nodule < self.nodule_floor:
            raise ValueError(
                f"nodule threshold {thresholds.nodule} is below this result's nodule floor "
                f"{self.nodule_floor} (candidates below it have no malignancy score); run "
                f"detection again with min_nodule_threshold <= {thresholds.nodule}"
            )
        regions = self._regions_at(float(thresholds.segmentation))
        alive = [r for r in regions if r is not None]
        kept = [
            r
            for r in alive
            if self.in_lung[r.candidate] and self.p_nodule[r.candidate] >= thresholds.nodule
        ]
        kept.sort(key=lambda r: (-self.p_malignant[r.candidate], r.candidate))
        return alive, kept

    def _finding(self, number: int, region: Region, given: Characteristics) -> Finding:
        """Finding ``number`` from its region: mask, Lung-RADS measurements and category (read
        with the ``given`` type and margin; unknown ones as solid and not spiculated)."""
        mask = self._mask_of(region)
        measurements = self._measurements_of(region, mask)
        return Finding(
            number=number,
            center_lps=region.center_lps,
            center_irc=region.center_irc,
            diameter_mm=region.diameter_mm,
            volume_mm3=region.volume_mm3,
            mean_hu=region.mean_hu,
            p_nodule=float(self.p_nodule[region.candidate]),
            p_malignant=float(self.p_malignant[region.candidate]),
            mask=mask,
            measurements=measurements,
            lung_rads=assess_nodule(measurements, given.nodule_type, given.margin),
        )


@dataclass(frozen=True, eq=False)
class _Levels:
    """What makes :meth:`CandidateStore.regions` whole-array work.

    Each candidate's voxels keep their CSR rows but are sorted by probability, highest first, so
    the region at any threshold is a prefix of its row. ``irc`` and ``hu`` hold the voxels and
    their HU in that order, ``irc_sums`` / ``hu_sums`` their running sums (one leading zero row;
    exact, since they add integers). ``erosion[k]`` is the highest threshold at which candidate
    k's region survives one erosion: a voxel survives at t when it and its six face neighbours in
    the region have p >= t, so it survives up to the lowest of those seven probabilities (never,
    when a neighbour lies outside the region), and the region survives while its best voxel does.
    """

    irc: np.ndarray  # (M, 3) int64
    hu: np.ndarray  # (M,) int16
    irc_sums: np.ndarray  # (M + 1, 3) float64
    hu_sums: np.ndarray  # (M + 1,) float64
    erosion: np.ndarray  # (n,) float16; -inf: never survives

    @classmethod
    def of(cls, store: CandidateStore) -> _Levels:
        owner = store._owner
        prob = store.region_prob.astype(np.float32)
        order = np.lexsort((-prob, owner))  # by candidate, then probability descending
        irc = store._voxel_irc_of(store.region_index[order])
        irc_sums = np.zeros((len(order) + 1, 3), dtype=np.float64)
        np.cumsum(irc, axis=0, out=irc_sums[1:])
        hu_sums = np.zeros(len(order) + 1, dtype=np.float64)
        np.cumsum(store.region_hu[order], out=hu_sums[1:])
        return cls(irc, store.region_hu[order], irc_sums, hu_sums, _erosion_levels(store))


def _erosion_levels(store: CandidateStore) -> np.ndarray:
    """Per candidate, the highest threshold at which its region survives one erosion."""
    n = store.count
    levels = np.full(n, -np.inf, dtype=np.float16)
    if n == 0 or not len(store.region_index):
        return levels
    shape = np.asarray(store.canonical.shape_irc, dtype=np.int64)
    owner = store._owner
    # ascending over the store: candidates in order, each region's flat indices ascending
    keys = owner * int(np.prod(shape)) + store.region_index.astype(np.int64)
    irc = store._voxel_irc_of(store.region_index)
    voxel_level = store.region_prob.copy()
    strides = (shape[1] * shape[2], shape[2], 1)
    for axis, stride in enumerate(strides):
        for step in (-1, 1):
            wanted = keys + step * stride
            pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
            coord = irc[:, axis] + step
            present = (coord >= 0) & (coord < shape[axis]) & (keys[pos] == wanted)
            neighbour = np.where(present, store.region_prob[pos], np.float16(-np.inf))
            np.minimum(voxel_level, neighbour, out=voxel_level)
    np.maximum.at(levels, owner, voxel_level)
    return levels


def _score(value: float) -> float | None:
    """A stored score as a float, or None where it was never computed (NaN)."""
    return None if np.isnan(value) else float(value)


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def empty_store(
    canonical: Geometry, original: Geometry, floor: float, nodule_floor: float = 0.0
) -> CandidateStore:
    zeros = {name: np.zeros(0, dtype=dtype) for name, dtype in STORE_ARRAYS.items()}
    zeros["region_offsets"] = np.zeros(1, dtype=np.int64)
    zeros["crop_center_irc"] = np.zeros((0, 3), dtype=np.int64)
    return CandidateStore(
        canonical=canonical, original=original, floor=floor, nodule_floor=nodule_floor, **zeros
    )
