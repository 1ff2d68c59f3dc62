"""2D segmentation samples: 7-slice stacks (a slice with 3 above and below) and nodule masks.

Training crops 64x64 at a random position inside the 96x96 window centred on a nodule in one of
its slices, so the network sees it off-centre; validation returns whole canonical slices (every
slice with nodule voxels, plus some without), as the seeds do. Unlike the seeds, training also
shows background crops centred on the candidate list's non-nodules (vessels, mostly):
``background_ratio`` of them per nodule crop. With nodule crops only, the Dice + 8 x FN-Dice loss
on the phantoms drifted to "everything in the lung is nodule" (whole-slice precision 0.003).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lungcad.geometry import world_to_voxel_index
from lungcad.preprocess import CANONICAL_SPACING_XYZ, normalise_hu
from lungcad_training.cache import NoduleSummary, geometry_from_json
from lungcad_training.crops import PAD_HU, padded_crop, slice_stack
from lungcad_training.datasets._base import DEFAULT_VAL_STRIDE, CachedSeriesDataset

log = logging.getLogger(__name__)


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
        self.epoch_length = epoch_length
        candidates = self.split_candidates()
        self.series_uids = sorted({c.series_uid for c in candidates})
        self.samples = self._collect(progress)
        self.background = self._background(candidates) if self.background_ratio else []
        self.background_count = (
            round(len(self.samples) * self.background_ratio) if self.background else 0
        )
        self.order = np.arange(len(self.samples) + self.background_count)
        self.on_epoch()
        log.info(
            "segmentation %s: %d series, %d samples (+ %d background crops per pass from %d "
            "non-nodule candidates)",
            self.split_name,
            len(self.series_uids),
            len(self.samples),
            self.background_count,
            len(self.background),
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

    def on_epoch(self) -> None:
        """Training walks nodule and background crops in a new random order each epoch."""
        if not self.is_validation and len(self.order):
            self.order = self.epoch_rng().permutation(len(self.samples) + self.background_count)

    def _sample(self, index: int) -> SliceSample:
        if self.is_validation:
            return self.samples[index]
        slot = int(self.order[index % len(self.order)])
        if slot < len(self.samples):
            return self.samples[slot]
        pick = self.epoch_rng(index, 1).integers(len(self.background))
        return self.background[int(pick)]

    def __len__(self) -> int:
        if self.is_validation or not self.samples:
            return len(self.samples)
        return len(self.order) if self.epoch_length is None else self.epoch_length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str, int]:
        sample = self._sample(index)
        series = self.cache.get(sample.series_uid)
        if sample.center_rc is None:
            stack = slice_stack(series.hu, sample.index, self.context_slices)
            mask = np.asarray(series.labels[sample.index]) > 0
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
