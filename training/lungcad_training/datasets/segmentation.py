"""2D segmentation samples: 7-slice stacks (a slice with 3 above and below) and nodule masks.

Training crops 64x64 at a random position inside the 96x96 window centred on a nodule in one of
its slices, so the network sees it off-centre; validation returns whole canonical slices (every
slice with nodule voxels, plus some without), as the seeds do. Unlike the seeds, training also
shows two kinds of background crop: crops centred on the candidate list's non-nodules (vessels,
mostly; ``background_ratio`` of them per nodule crop), crops at random places of the region the
detector runs the UNet on (``region_ratio`` per nodule crop): the lungs' slices and boxes from
:func:`lungcad.pipeline.region.lung_plan`, mediastinum, heart and chest wall included, and crops
centred on dense tissue in or next to the lungs (``dense_ratio``): vessels in cross-section,
airway walls, pleura, the diaphragm's dome and the heart's border, the look-alikes a
whole-slice UNet marks first. With nodule and candidate crops only, the UNet never saw soft tissue
and called most of it nodule (1.2 million voxels above 0.5 on one phantom, 0.3 % of them nodule).

``in_region`` validation crops each whole slice to its series' UNet region (the box of
:func:`lungcad.pipeline.region.lung_plan`) and leaves out slices detection never runs, so the
validation precision is the one detection sees.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from tqdm import tqdm

from lungcad.crops import PAD_HU, padded_crop, slice_stack
from lungcad.ct import CT
from lungcad.geometry import world_to_voxel_index
from lungcad.lungs import find_lungs
from lungcad.pipeline.region import UNetPlan, coarse_ct, lung_plan
from lungcad.preprocess import CANONICAL_SPACING_XYZ, normalise_hu
from lungcad_training.cache import NoduleSummary, geometry_from_json
from lungcad_training.datasets._base import DEFAULT_VAL_STRIDE, CachedSeriesDataset

log = logging.getLogger(__name__)

#: Row/col multiple region windows start on: the UNet's pooling grid (depth 3), as detection.
UNET_ALIGN = 4
#: Dense tissue: at or above this HU (vessels, walls, soft tissue; lung parenchyma is ~-850).
DENSE_HU = -500
#: How far outside the lungs dense tissue still counts (coarse voxels of ~2.5 mm): the pleura,
#: the diaphragm's dome and the heart's border next to the lung.
DENSE_REACH_VOXELS = 2
#: At most this many dense crop centres are kept per series (a random, seeded subset).
MAX_DENSE_POINTS = 20000


@dataclass(frozen=True)
class SliceSample:
    """One sample: a slice of a series, and (training) the nodule centre to crop around."""

    series_uid: str
    index: int
    center_rc: tuple[float, float] | None = None


def _spread(items: list[int], count: int) -> list[int]:
    """``count`` items evenly spread over ``items`` (all of them when there are fewer)."""
    if count >= len(items):
        return list(items)
    return [items[int((j + 0.5) * len(items) / count)] for j in range(count)]


class SegmentationDataset(CachedSeriesDataset):
    """(stack float32 (C, H, W), mask float32 (1, H, W), series_uid, slice_index).

    C = 2 * ``context_slices`` + 1. Training: one sample per (nodule, slice it touches), H = W =
    ``crop_size``; ``epoch_length`` (default: one pass) cycles them. Validation: whole slices
    (sizes differ between series: use batch size 1 or a padding collate), the slices holding
    nodule voxels plus ``negative_slices`` per series spread evenly over the others. Building the
    sample list needs every series' nodule summary, so missing cache entries are built here.
    """

    def __init__(
        self,
        data_dir: str | Path,
        cache_dir: str | Path,
        *,
        val_stride: int = DEFAULT_VAL_STRIDE,
        is_validation: bool = False,
        context_slices: int = 3,
        crop_size: int = 64,
        window_size: int = 96,
        negative_slices: int = 0,
        background_ratio: float = 0.0,
        region_ratio: float = 0.0,
        dense_ratio: float = 0.0,
        in_region: bool = False,
        epoch_length: int | None = None,
        spacing_xyz: tuple[float, float, float] = CANONICAL_SPACING_XYZ,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        super().__init__(
            data_dir,
            cache_dir,
            val_stride=val_stride,
            is_validation=is_validation,
            spacing_xyz=spacing_xyz,
            seed=seed,
        )
        if window_size < crop_size:
            raise ValueError(f"window_size {window_size} is smaller than crop_size {crop_size}")
        self.context_slices = context_slices
        self.crop_size = crop_size
        self.window_size = window_size
        self.negative_slices = negative_slices
        if background_ratio < 0:
            raise ValueError(f"background_ratio must be >= 0, got {background_ratio}")
        self.background_ratio = 0.0 if is_validation else float(background_ratio)
        if region_ratio < 0:
            raise ValueError(f"region_ratio must be >= 0, got {region_ratio}")
        self.region_ratio = 0.0 if is_validation else float(region_ratio)
        if dense_ratio < 0:
            raise ValueError(f"dense_ratio must be >= 0, got {dense_ratio}")
        self.dense_ratio = 0.0 if is_validation else float(dense_ratio)
        self.in_region = bool(in_region) and is_validation
        self.epoch_length = epoch_length
        candidates = self.split_candidates()
        self.series_uids = sorted({c.series_uid for c in candidates})
        needs_regions = self.in_region or self.region_ratio or self.dense_ratio
        self.regions = self._regions(progress) if needs_regions else {}
        self.samples = self._collect(progress)
        self.background = self._background(candidates) if self.background_ratio else []
        self.background_count = (
            round(len(self.samples) * self.background_ratio) if self.background else 0
        )
        self.region_count = round(len(self.samples) * self.region_ratio) if self.regions else 0
        self.dense = self._dense(progress) if self.dense_ratio and self.samples else {}
        self.dense_count = round(len(self.samples) * self.dense_ratio) if self.dense else 0
        self.order = np.arange(
            len(self.samples) + self.background_count + self.region_count + self.dense_count
        )
        self.on_epoch()
        log.info(
            "segmentation %s: %d series, %d samples (+ %d background crops per pass from %d "
            "non-nodule candidates, + %d at random in the lung regions, + %d on dense tissue)",
            self.split_name,
            len(self.series_uids),
            len(self.samples),
            self.background_count,
            len(self.background),
            self.region_count,
            self.dense_count,
        )
        if not self.samples:
            log.warning("segmentation %s set has no samples", self.split_name)

    def _collect(self, progress: bool) -> list[SliceSample]:
        samples: list[SliceSample] = []
        for uid in tqdm(self.series_uids, desc="nodule slices", disable=not progress):
            meta = self.cache.meta(uid)
            nodules = [NoduleSummary.from_json(n) for n in meta["nodules"]]
            if self.is_validation:
                n_slices = geometry_from_json(meta["geometry"]).shape_irc[0]
                positive = sorted({s[0] for n in nodules for s in n.slices})
                taken = set(positive)
                others = [i for i in range(n_slices) if i not in taken]
                if self.in_region:
                    plan = self.regions.get(uid)
                    runs = set() if plan is None else set(self.region_slices(uid))
                    positive = [i for i in positive if i in runs]
                    others = [i for i in others if i in runs]
                chosen = sorted(positive + _spread(others, self.negative_slices))
                samples += [SliceSample(uid, i) for i in chosen]
            else:
                samples += [SliceSample(uid, i, (r, c)) for n in nodules for i, r, c, _ in n.slices]
        return samples

    def _background(self, candidates: list) -> list[SliceSample]:
        """Crop centres on this split's non-nodule candidates, in canonical voxels."""
        out: list[SliceSample] = []
        geometries = {
            uid: geometry_from_json(self.cache.meta(uid)["geometry"]) for uid in self.series_uids
        }
        for c in candidates:
            if c.is_nodule:
                continue
            geometry = geometries[c.series_uid]
            i, r, col = world_to_voxel_index(c.center_xyz, geometry)
            if 0 <= i < geometry.shape_irc[0]:
                out.append(SliceSample(c.series_uid, int(i), (float(r), float(col))))
        return out

    def _regions(self, progress: bool) -> dict[str, UNetPlan]:
        """Per series, where the detector would run the UNet (series without lung left out)."""
        plans: dict[str, UNetPlan] = {}
        for uid in tqdm(self.series_uids, desc="lung regions", disable=not progress):
            series = self.cache.get(uid)
            ct = CT(hu=series.hu, geometry=series.geometry, series_uid=uid)
            plan = lung_plan(ct, series.geometry, align_rc=UNET_ALIGN)
            if np.any(plan.areas > 0):
                plans[uid] = plan
        return plans

    def region_slices(self, uid: str) -> list[int]:
        """Slices of series ``uid`` that detection runs the UNet on."""
        plan = self.regions[uid]
        return [int(plan.box.start[0]) + int(k) for k in np.flatnonzero(plan.areas > 0)]

    def window(self, uid: str) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """(start, size) rows/cols an ``in_region`` validation slice is cropped to, else None."""
        if not self.in_region:
            return None
        box = self.regions[uid].box
        start = (int(box.start[1]), int(box.start[2]))
        return start, (int(box.stop[1]) - start[0], int(box.stop[2]) - start[1])

    def _dense(self, progress: bool) -> dict[str, np.ndarray]:
        """Per series, canonical (index, row, col) centres on dense tissue in or at the lungs.

        Found on a coarse copy (as detection finds the lungs): voxels of at least DENSE_HU inside
        the lung mask (vessels and nodules fill its holes) or within DENSE_REACH_VOXELS of it.
        """
        points: dict[str, np.ndarray] = {}
        for uid in tqdm(self.series_uids, desc="dense tissue", disable=not progress):
            series = self.cache.get(uid)
            coarse = coarse_ct(CT(hu=series.hu, geometry=series.geometry, series_uid=uid))
            lungs = find_lungs(coarse)
            if not lungs.any():
                continue
            near = ndimage.binary_dilation(lungs, iterations=DENSE_REACH_VOXELS)
            found = np.argwhere(near & (coarse.hu >= DENSE_HU))
            if not len(found):
                continue
            stride = np.rint(
                np.asarray(coarse.geometry.spacing_irc) / np.asarray(series.geometry.spacing_irc)
            ).astype(np.int64)
            if len(found) > MAX_DENSE_POINTS:
                pick = np.random.default_rng([self.seed, len(points)]).choice(
                    len(found), MAX_DENSE_POINTS, replace=False
                )
                found = found[np.sort(pick)]
            points[uid] = (found * stride).astype(np.int32)
        return points

    def _dense_sample(self, index: int) -> SliceSample:
        """A crop centre on dense tissue of a random series, jittered within a coarse voxel."""
        rng = self.epoch_rng(index, 3)
        uids = sorted(self.dense)
        uid = uids[int(rng.integers(len(uids)))]
        i, r, c = self.dense[uid][int(rng.integers(len(self.dense[uid])))]
        r += rng.uniform(0, 3)
        c += rng.uniform(0, 3)
        return SliceSample(uid, int(i), (float(r), float(c)))

    def _region_sample(self, index: int) -> SliceSample:
        """A crop centre drawn uniformly from a random series' UNet region (slice, row, col)."""
        rng = self.epoch_rng(index, 2)
        uids = sorted(self.regions)
        uid = uids[int(rng.integers(len(uids)))]
        plan = self.regions[uid]
        runs = np.flatnonzero(plan.areas > 0)
        k = int(runs[int(rng.integers(len(runs)))])
        r = rng.uniform(plan.rows[k, 0], plan.rows[k, 1])
        c = rng.uniform(plan.cols[k, 0], plan.cols[k, 1])
        return SliceSample(uid, int(plan.box.start[0]) + k, (float(r), float(c)))

    def on_epoch(self) -> None:
        """Training walks nodule and background crops in a new random order each epoch."""
        if not self.is_validation and len(self.order):
            self.order = self.epoch_rng().permutation(len(self.order))

    def _sample(self, index: int) -> SliceSample:
        if self.is_validation:
            return self.samples[index]
        slot = int(self.order[index % len(self.order)])
        if slot < len(self.samples):
            return self.samples[slot]
        if slot < len(self.samples) + self.background_count:
            pick = self.epoch_rng(index, 1).integers(len(self.background))
            return self.background[int(pick)]
        if slot < len(self.samples) + self.background_count + self.region_count:
            return self._region_sample(index)
        return self._dense_sample(index)

    def __len__(self) -> int:
        if self.is_validation or not self.samples:
            return len(self.samples)
        return len(self.order) if self.epoch_length is None else self.epoch_length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str, int]:
        sample = self._sample(index)
        series = self.cache.get(sample.series_uid)
        if sample.center_rc is None:
            window = self.window(sample.series_uid)
            if window is None:
                stack = slice_stack(series.hu, sample.index, self.context_slices)
                mask = np.asarray(series.labels[sample.index]) > 0
            else:
                start, size = window
                stack = slice_stack(
                    series.hu, sample.index, self.context_slices, start, size, PAD_HU
                )
                mask = padded_crop(series.labels[sample.index], start, size, 0) > 0
        else:
            rng = self.epoch_rng(index)
            half = self.window_size // 2
            offset = rng.integers(0, self.window_size - self.crop_size + 1, size=2)
            start = [
                round(c) - half + int(o) for c, o in zip(sample.center_rc, offset, strict=True)
            ]
            size = (self.crop_size, self.crop_size)
            stack = slice_stack(series.hu, sample.index, self.context_slices, start, size, PAD_HU)
            mask = padded_crop(series.labels[sample.index], start, size, 0) > 0
        return (
            torch.from_numpy(normalise_hu(stack)),
            torch.from_numpy(mask[None].astype(np.float32)),
            sample.series_uid,
            sample.index,
        )
