"""The segmentation trainer's recipe: the seeds' 2D UNet on 64x64 crops, validated on whole slices.

Validation also reports ``recall_5mm``: the recall over label pixels of nodules of at least 5 mm
(diameter from ``annotations.csv``; label k of a series is its k-th annotation), the nodules a
screening reader must not miss. Recall first, as in the seeds, but not recall alone (a network
calling every lung pixel nodule has recall 1): the best epoch is the one with the highest F1 among
the epochs whose ``recall_5mm`` reaches ``seg_recall_target``, else the highest ``recall_5mm``.

``init`` starts from a trained UNet's weights (every layer trainable); ``domain_randomization``
adds :func:`lungcad_training.augment.randomise_domain` to the crops' augmentation, thick slices
averaged over the context-slice channels.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from lungcad.crops import padded_crop
from lungcad.models import SegmentationUNet, Task
from lungcad_training.augment import AugmentConfig, augment_2d
from lungcad_training.checkpoint import load_trained_model
from lungcad_training.config import TrainConfig
from lungcad_training.datasets import CachedSeriesDataset, SegmentationDataset
from lungcad_training.errors import TrainingError
from lungcad_training.losses import segmentation_loss
from lungcad_training.metrics import Metrics, Tally
from lungcad_training.recipe import Recipe, to_device, value_or_floor

log = logging.getLogger(__name__)

BIG_NODULE_MM = 5.0
# the seeds' segmentation augmentation: a smaller shift than the classifiers' (0.03 vs 0.1)
SEGMENTATION_AUGMENT = AugmentConfig(offset=0.03)


def _init_source(path: Path, channels: int) -> SegmentationUNet:
    """The UNet ``--init`` names, checked against this run's input channels."""
    source = load_trained_model(path, Task.SEGMENTATION, "--init needs a segmentation UNet")
    if not isinstance(source, SegmentationUNet):
        raise TrainingError(f"{path}: a {type(source).__name__}, not a SegmentationUNet (--init)")
    if source.in_channels != channels:
        raise TrainingError(
            f"{path}: a UNet with {source.in_channels} input channels (--context-slices "
            f"{(source.in_channels - 1) // 2}), this run has {channels} (--context-slices "
            f"{(channels - 1) // 2})"
        )
    return source


class SegmentationValidationView(Dataset):
    """Validation slices (cropped to the UNet region) with a third item: the pixels of nodules
    >= 5 mm."""

    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset = dataset
        self.big_labels: dict[str, np.ndarray] = {}
        for uid in dataset.series_uids:
            annotations = dataset.cache.annotations_for(uid)
            n_labels = len(dataset.cache.meta(uid)["nodules"])
            if n_labels > len(annotations):
                log.warning(
                    "%s: %d labelled nodules but %d annotations; labels past the annotations "
                    "count as < 5 mm",
                    uid,
                    n_labels,
                    len(annotations),
                )
            big = [k for k, a in enumerate(annotations, start=1) if a.diameter_mm >= BIG_NODULE_MM]
            self.big_labels[uid] = np.asarray(big, dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        stack, mask, uid, slice_index = self.dataset[index]
        labels = np.asarray(self.dataset.cache.get(uid).labels[slice_index])
        window = self.dataset.window(uid)
        if window is not None:
            labels = padded_crop(labels, *window, 0)
        big = np.isin(labels, self.big_labels[uid])
        return stack, mask, torch.from_numpy(big[None])


class SegmentationRecipe(Recipe):
    task = Task.SEGMENTATION
    extras = ("recall_5mm",)
    cpu_validation_batch = 1  # whole slices one at a time: 2.5x faster than 16 on a 2-core CPU
    memory_format = torch.channels_last  # a training step 1.25x faster on the CPU than NCHW

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        self._source: SegmentationUNet | None = None
        if cfg.init is not None:  # here, so a bad --init fails before an old run is cleared
            self._source = _init_source(cfg.init, 2 * cfg.context_slices + 1)

    def datasets(self, progress: bool) -> tuple[SegmentationDataset, SegmentationDataset]:
        cfg = self.cfg
        common: dict[str, Any] = {
            "val_stride": cfg.val_stride,
            "context_slices": cfg.context_slices,
            "crop_size": cfg.seg_crop,
            "window_size": cfg.seg_crop + cfg.seg_crop // 2,
            "spacing_xyz": cfg.spacing,
            "seed": cfg.seed,
            "progress": progress,
        }
        train = SegmentationDataset(
            cfg.data,
            cfg.cache_dir,
            epoch_length=cfg.epoch_length,
            background_ratio=cfg.seg_background_ratio,
            region_ratio=cfg.seg_region_ratio,
            dense_ratio=cfg.seg_dense_ratio,
            **common,
        )
        val = SegmentationDataset(
            cfg.data,
            cfg.cache_dir,
            is_validation=True,
            negative_slices=cfg.val_negative_slices,
            in_region=True,
            **common,
        )
        return train, val

    def build_model(self) -> nn.Module:
        """A new UNet, or (``init``) one carrying a trained UNet's weights, all trainable."""
        if self._source is None:
            return SegmentationUNet(in_channels=2 * self.cfg.context_slices + 1)
        model = SegmentationUNet(**self._source.hyperparameters)
        model.load_state_dict(self._source.state_dict())
        log.info("segmentation: starting from the weights of %s", self.cfg.init)
        return model

    def train_loss(
        self,
        model: nn.Module,
        batch: Any,
        device: torch.device,
        generator: torch.Generator | None,
        tally: Tally,
    ) -> torch.Tensor:
        stacks, masks = to_device(batch[0], device), to_device(batch[1], device)
        if self.cfg.augment:
            augmentation = replace(SEGMENTATION_AUGMENT, domain=self.cfg.domain_randomization)
            stacks, masks = augment_2d(stacks, masks, augmentation, generator)
        prediction = model(stacks.contiguous(memory_format=self.memory_format))
        loss = segmentation_loss(prediction, masks, over_batch=True)
        tally.add_loss(loss)
        tally.add_binary(prediction >= 0.5, masks > 0.5)
        return loss.mean()

    def validation_view(self, dataset: CachedSeriesDataset) -> Dataset:
        assert isinstance(dataset, SegmentationDataset)
        return SegmentationValidationView(dataset)

    def validation_batches(self, view: Dataset, batch_size: int) -> list[list[int]]:
        """Consecutive slices of one series per batch: whole slices differ in size by series."""
        assert isinstance(view, SegmentationValidationView)
        batches: list[list[int]] = []
        previous = None
        for index, sample in enumerate(view.dataset.samples):
            if sample.series_uid != previous or len(batches[-1]) >= batch_size:
                batches.append([])
            batches[-1].append(index)
            previous = sample.series_uid
        return batches

    def validate_batch(
        self, model: nn.Module, batch: Any, device: torch.device, tally: Tally
    ) -> None:
        stacks, masks, big = (to_device(t, device) for t in batch)
        prediction = model(stacks.contiguous(memory_format=self.memory_format))
        tally.add_loss(segmentation_loss(prediction, masks))
        predicted = prediction >= 0.5
        tally.add_binary(predicted, masks > 0.5)
        tally.add_big_nodules(predicted, big)

    def score(self, metrics: Metrics) -> tuple[float, ...]:
        recall = value_or_floor(metrics.get("recall_5mm"))
        return min(recall, self.cfg.seg_recall_target), value_or_floor(metrics.get("f1"))

    def input_spec(self, model: nn.Module) -> dict[str, Any]:
        return {
            "channels": 2 * self.cfg.context_slices + 1,
            "context_slices": self.cfg.context_slices,
            "training_crop_rc": [self.cfg.seg_crop, self.cfg.seg_crop],
            "layout": "(N, channels, rows, cols): an axial slice with its context slices above "
            "and below as channels, on the canonical grid; any rows x cols",
            "output": "per-pixel nodule probability (sigmoid)",
            **self.common_input_spec(),
        }
