"""Refiltering: a store's regions, findings and candidate scores at any thresholds.

At a segmentation threshold t >= the store's floor a candidate's region is its floor region's
voxels with p >= t; it survives when one erosion (6-connected cross, as in grouping) leaves a
voxel. All candidates' regions at t are computed at once from prefix sums (:class:`_Levels`),
and masks and measurements come from an explicit cache
(:class:`~lungcad.pipeline.mask_cache.FindingCache`), so a slider move costs about a millisecond
plus the masks of new findings, with no network, no CT and no resampling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from lungcad.characteristics import Characteristics
from lungcad.geometry import voxel_to_world, world_to_voxel
from lungcad.lungrads import assess_nodule
from lungcad.pipeline.findings import CandidateScore, Finding, Thresholds
from lungcad.pipeline.mask_cache import FindingCache

if TYPE_CHECKING:
    from lungcad.pipeline.store import CandidateStore


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
    (so weighted by volume). Its mask on the CT's own voxels comes from
    :class:`~lungcad.pipeline.mask_cache.FindingCache`.
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


class Refilter:
    """One store's regions at any threshold, and findings built from them.

    The store is immutable, so every cache here (voxels by level, the last threshold's regions,
    masks and measurements) stays valid for the store's life.
    """

    def __init__(self, store: CandidateStore) -> None:
        self.store = store
        self.cache = FindingCache(store.mapper, store.original)
        self._last_regions: tuple[float, list[Region | None]] | None = None

    @cached_property
    def prob_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Per candidate: lowest and highest stored probability (float32)."""
        store = self.store
        if store.count == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        values = store.region_prob.astype(np.float32)
        starts = store.region_offsets[:-1]
        return np.minimum.reduceat(values, starts), np.maximum.reduceat(values, starts)

    @cached_property
    def owner(self) -> np.ndarray:
        """The candidate each stored voxel belongs to (CSR rows)."""
        store = self.store
        return np.repeat(np.arange(store.count, dtype=np.int64), np.diff(store.region_offsets))

    def voxel_irc_of(self, flat: np.ndarray) -> np.ndarray:
        """(m, 3) canonical (index, row, col) of flat canonical indices."""
        if not len(flat):
            return np.zeros((0, 3), dtype=np.int64)
        return np.stack(np.unravel_index(flat, self.store.canonical.shape_irc), 1).astype(np.int64)

    @cached_property
    def levels(self) -> _Levels:
        """Per candidate, its voxels by probability (highest first) with prefix sums, and the
        level up to which its region survives one erosion; built on the first :meth:`regions`."""
        return _Levels.of(self)

    def regions(self, threshold: float) -> list[Region | None]:
        """Every candidate's region at ``threshold`` (None where it is gone), all at once.

        The same regions as computing each candidate's alone (the per-region oracle in the
        tests) without a per-candidate computation: a region at t is the first ``count`` of its
        voxels by probability, so its size, centre and mean HU come from prefix sums, and whether it
        survives one erosion is one comparison (:class:`_Levels`). A segmentation slider move
        over 200 candidates then costs about a millisecond plus the masks of new findings.
        """
        store = self.store
        n = store.count
        if n == 0:
            return []
        levels = self.levels
        counts = np.bincount(self.owner[at_least(store.region_prob, threshold)], minlength=n)
        low, high = self.prob_range
        t32 = np.float32(threshold)
        whole = low >= t32  # grouping made every whole floor region survive an erosion
        alive = (counts > 0) & (whole | at_least(levels.erosion, threshold))
        ks = np.flatnonzero(alive)
        first = store.region_offsets[ks]
        taken = counts[ks]
        sums = levels.irc_sums[first + taken] - levels.irc_sums[first]
        hu = (levels.hu_sums[first + taken] - levels.hu_sums[first]) / taken
        lps = voxel_to_world(sums / taken[:, None], store.canonical).reshape(-1, 3)
        original = world_to_voxel(lps, store.original).reshape(-1, 3)
        voxel_mm3 = store.canonical.voxel_volume_mm3
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

    def regions_at(self, threshold: float) -> list[Region | None]:
        """Every candidate's region at ``threshold``, kept for the last threshold asked: moving
        the nodule or malignancy slider then costs no region work at all."""
        cached = self._last_regions
        if cached is not None and cached[0] == threshold:
            return cached[1]
        regions = self.regions(threshold)
        self._last_regions = (threshold, regions)
        return regions

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
        store = self.store
        alive, kept = self._kept(thresholds)
        given = given or {}
        number = {r.candidate: i + 1 for i, r in enumerate(kept)}
        findings = tuple(
            self._finding(number[r.candidate], r, given.get(r.candidate, Characteristics()))
            for r in kept
        )
        alive.sort(key=lambda r: (-store.p_nodule[r.candidate], r.candidate))
        candidates = tuple(
            CandidateScore(
                center_lps=r.center_lps,
                center_irc=r.center_irc,
                diameter_mm=r.diameter_mm,
                volume_mm3=r.volume_mm3,
                mean_hu=r.mean_hu,
                max_probability=r.max_probability,
                p_nodule=float(store.p_nodule[r.candidate]),
                p_malignant=_score(store.p_malignant[r.candidate]),
                finding=number.get(r.candidate),
                in_lung=bool(store.in_lung[r.candidate]),
            )
            for r in alive
        )
        return findings, candidates

    def finding_candidates(self, thresholds: Thresholds) -> tuple[int, ...]:
        """The candidate index of finding 1, 2, ... at ``thresholds``."""
        return tuple(r.candidate for r in self._kept(thresholds)[1])

    def _kept(self, thresholds: Thresholds) -> tuple[list[Region], list[Region]]:
        """The regions alive at ``thresholds`` and, in finding order, those kept as findings."""
        store = self.store
        if thresholds.segmentation < store.floor:
            raise ValueError(
                f"segmentation threshold {thresholds.segmentation} is below this result's floor "
                f"{store.floor} (the map below it was not kept); run detection again with "
                f"min_segmentation_threshold <= {thresholds.segmentation}"
            )
        if thresholds.nodule < store.nodule_floor:
            raise ValueError(
                f"nodule threshold {thresholds.nodule} is below this result's nodule floor "
                f"{store.nodule_floor} (candidates below it have no malignancy score); run "
                f"detection again with min_nodule_threshold <= {thresholds.nodule}"
            )
        regions = self.regions_at(float(thresholds.segmentation))
        alive = [r for r in regions if r is not None]
        kept = [
            r
            for r in alive
            if store.in_lung[r.candidate] and store.p_nodule[r.candidate] >= thresholds.nodule
        ]
        kept.sort(key=lambda r: (-store.p_malignant[r.candidate], r.candidate))
        return alive, kept

    def _finding(self, number: int, region: Region, given: Characteristics) -> Finding:
        """Finding ``number`` from its region: mask, Lung-RADS measurements and category (read
        with the ``given`` type and margin; unknown ones as solid and not spiculated)."""
        store = self.store
        key = (region.candidate, len(region.canonical_irc))
        mask = self.cache.mask(key, region.canonical_irc)
        measurements = self.cache.measurements(key, region.canonical_irc, region.canonical_hu, mask)
        return Finding(
            number=number,
            center_lps=region.center_lps,
            center_irc=region.center_irc,
            diameter_mm=region.diameter_mm,
            volume_mm3=region.volume_mm3,
            mean_hu=region.mean_hu,
            p_nodule=float(store.p_nodule[region.candidate]),
            p_malignant=float(store.p_malignant[region.candidate]),
            mask=mask,
            measurements=measurements,
            lung_rads=assess_nodule(measurements, given.nodule_type, given.margin),
        )


@dataclass(frozen=True, eq=False)
class _Levels:
    """What makes :meth:`Refilter.regions` whole-array work.

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
    def of(cls, refilter: Refilter) -> _Levels:
        store = refilter.store
        owner = refilter.owner
        prob = store.region_prob.astype(np.float32)
        order = np.lexsort((-prob, owner))  # by candidate, then probability descending
        irc = refilter.voxel_irc_of(store.region_index[order])
        irc_sums = np.zeros((len(order) + 1, 3), dtype=np.float64)
        np.cumsum(irc, axis=0, out=irc_sums[1:])
        hu_sums = np.zeros(len(order) + 1, dtype=np.float64)
        np.cumsum(store.region_hu[order], out=hu_sums[1:])
        return cls(irc, store.region_hu[order], irc_sums, hu_sums, _erosion_levels(refilter))


def _erosion_levels(refilter: Refilter) -> np.ndarray:
    """Per candidate, the highest threshold at which its region survives one erosion."""
    store = refilter.store
    n = store.count
    levels = np.full(n, -np.inf, dtype=np.float16)
    if n == 0 or not len(store.region_index):
        return levels
    shape = np.asarray(store.canonical.shape_irc, dtype=np.int64)
    owner = refilter.owner
    # ascending over the store: candidates in order, each region's flat indices ascending
    keys = owner * int(np.prod(shape)) + store.region_index.astype(np.int64)
    irc = refilter.voxel_irc_of(store.region_index)
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
