"""3D crops around candidates: nodule vs non-nodule, and benign vs malignant.

A crop is 32x48x48 canonical voxels (index x row x col) centred on the candidate's LPS centre
converted with the canonical geometry; past the volume's edge it is filled with -1000 HU. In
training, positives are re-presented to balance the negatives (:mod:`lungcad_training.sampling`);
validation returns every item once, in list order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from lungcad.crops import PAD_HU, centred_start, padded_crop
from lungcad.geometry import world_to_voxel_index
from lungcad.luna16 import (
    ANNOTATIONS_CSV,
    CandidateInfo,
    join_candidates,
    read_annotations,
    read_candidates,
    split_by_series,
)
from lungcad.preprocess import CANONICAL_SPACING_XYZ, normalise_hu
from lungcad_training.datasets._base import DEFAULT_VAL_STRIDE, CachedSeriesDataset
from lungcad_training.sampling import balanced_pick

log = logging.getLogger(__name__)

CROP_SIZE_IRC = (32, 48, 48)


@dataclass(frozen=True)
class CropItem:
    """What one sample crops and predicts."""

    series_uid: str
    center_xyz: tuple[float, float, float]
    label: int


class _CropDataset(CachedSeriesDataset):
    """(crop float32 (1, D, H, W), label int64, series_uid, center_xyz float32 (3,))."""

    def __init__(
        self,
        data_dir: str | Path,
        cache_dir: str | Path,
        *,
        val_stride: int = DEFAULT_VAL_STRIDE,
        is_validation: bool = False,
        ratio: int = 1,
        extra_candidates: str | Path | None = None,
        epoch_length: int | None = None,
        crop_size: Sequence[int] = CROP_SIZE_IRC,
        spacing_xyz: tuple[float, float, float] = CANONICAL_SPACING_XYZ,
        seed: int = 0,
    ) -> None:
        super().__init__(
            data_dir,
            cache_dir,
            val_stride=val_stride,
            is_validation=is_validation,
            spacing_xyz=spacing_xyz,
            seed=seed,
        )
        if ratio < 0:
            raise ValueError(f"ratio must be >= 0 (0 = no balancing), got {ratio}")
        self.crop_size = tuple(int(s) for s in crop_size)
        candidates = self.split_candidates()
        if extra_candidates is not None:
            candidates += self._extra_candidates(Path(extra_candidates))
        self.items = self._items(candidates)
        self.positives = [item for item in self.items if item.label]
        self.negatives = [item for item in self.items if not item.label]
        self.ratio = 0 if is_validation else ratio
        if self.ratio and not (self.positives and self.negatives):
            log.warning(
                "%s %s: %d positives and %d negatives, cannot balance; presenting the list as is",
                type(self).__name__,
                self.split_name,
                len(self.positives),
                len(self.negatives),
            )
            self.ratio = 0
        self.epoch_length = epoch_length
        self.on_epoch()
        log.info(
            "%s %s: %d items (%d positive, %d negative) over %d series",
            type(self).__name__,
            self.split_name,
            len(self.items),
            len(self.positives),
            len(self.negatives),
            len({item.series_uid for item in self.items}),
        )

    def _items(self, candidates: list[CandidateInfo]) -> list[CropItem]:
        raise NotImplementedError

    def _extra_candidates(self, path: Path) -> list[CandidateInfo]:
        """This split's rows of another candidates csv (``lungcad-train mine``), labelled by its
        class column, over the series this dataset knows."""
        known = set(self.cache.series_paths()) | self.cache.cached_series()
        rows = [c for c in read_candidates(path) if c.series_uid in known]
        joined = join_candidates(rows, read_annotations(self.data_dir / ANNOTATIONS_CSV))
        log.info("%s: %d extra candidates (%d nodules)", path, len(joined),
                 sum(c.is_nodule for c in joined))  # fmt: skip
        return split_by_series(joined, self.val_stride, self.is_validation)

    def on_epoch(self) -> None:
        """Training reshuffles both lists each epoch (the seeds' shuffleSamples)."""
        if self.is_validation:
            return
        rng = self.epoch_rng()
        self._positive_order = rng.permutation(len(self.positives))
        self._negative_order = rng.permutation(len(self.negatives))

    def __len__(self) -> int:
        if self.is_validation or self.epoch_length is None:
            return len(self.items)
        return self.epoch_length

    def item(self, index: int) -> CropItem:
        """The item sample ``index`` presents."""
        if not self.ratio:
            return self.items[index % len(self.items)]
        positive, k = balanced_pick(index, self.ratio, len(self.positives), len(self.negatives))
        if positive:
            return self.positives[self._positive_order[k]]
        return self.negatives[self._negative_order[k]]

    def crop(self, item: CropItem) -> torch.Tensor:
        series = self.cache.get(item.series_uid)
        center = world_to_voxel_index(item.center_xyz, series.geometry)
        block = padded_crop(
            series.hu, centred_start(center, self.crop_size), self.crop_size, PAD_HU
        )
        return torch.from_numpy(normalise_hu(block)[None])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str, torch.Tensor]:
        item = self.item(index)
        return (
            self.crop(item),
            torch.tensor(item.label, dtype=torch.int64),
            item.series_uid,
            torch.tensor(item.center_xyz, dtype=torch.float32),
        )


class NoduleClassificationDataset(_CropDataset):
    """Every ``candidates.csv`` row of the split (plus the ``extra_candidates`` csv's, e.g. the
    UNet's own candidates from :mod:`lungcad_training.mining`), labelled ``is_nodule``.

    Training presents ``ratio`` negatives per positive (0 = the raw list); ``epoch_length``
    defaults to the number of candidates.
    """

    def _items(self, candidates: list[CandidateInfo]) -> list[CropItem]:
        return [CropItem(c.series_uid, c.center_xyz, int(c.is_nodule)) for c in candidates]


class MalignancyDataset(_CropDataset):
    """Annotated nodules with a known malignancy, one per annotation, centred on it.

    Label ``is_malignant``; ``ratio`` benign per malignant in training (1 = alternate). Nodules are
    reached through the candidates that match them, as :func:`lungcad.luna16.candidate_list`
    joins malignancy only there.
    """

    def _items(self, candidates: list[CandidateInfo]) -> list[CropItem]:
        seen: dict[tuple[str, tuple[float, float, float]], CropItem] = {}
        for c in candidates:
            if c.is_malignant is None or c.annotation_center_xyz is None:
                continue
            key = (c.series_uid, c.annotation_center_xyz)
            seen.setdefault(
                key, CropItem(c.series_uid, c.annotation_center_xyz, int(c.is_malignant))
            )
        return list(seen.values())
