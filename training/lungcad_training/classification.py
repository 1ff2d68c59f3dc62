"""The classifier trainers' recipes: nodule vs non-nodule, and benign vs malignant.

Both train the seeds' 3D CNN on balanced, augmented crops with cross-entropy. The nodule model is
kept by validation F1; the malignancy model by validation ROC AUC, reported beside the AUC of the
annotated diameter alone on the same nodules (the baseline it has to beat).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from lungcad.models import CandidateClassifier, Task
from lungcad_training.augment import AugmentConfig, augment_3d
from lungcad_training.config import TrainConfig
from lungcad_training.datasets import (
    CachedSeriesDataset,
    MalignancyDataset,
    NoduleClassificationDataset,
)
from lungcad_training.errors import TrainingError
from lungcad_training.finetune import finetune_model, load_nodule_classifier
from lungcad_training.losses import classification_loss
from lungcad_training.metrics import Metrics, Tally
from lungcad_training.recipe import Recipe, to_device, value_or_floor

log = logging.getLogger(__name__)

CLASSIFIER_AUGMENT = AugmentConfig()  # the seeds': flip, offset 0.1, scale 0.2, rotate, noise 25
#: Malignancy keeps the size: diameter is its strongest cue (the phantoms' rule adds 2.1 ln d, so
#: the seeds' +-20 % scaling would blur the score by up to +-0.4, the size of the margin terms).
MALIGNANCY_AUGMENT = AugmentConfig(scale=False)
CropDataset = NoduleClassificationDataset | MalignancyDataset


class CropValidationView(Dataset):
    """Validation crops as (crop, label, diameter mm): the diameter feeds the baseline AUC."""

    def __init__(self, dataset: CropDataset, with_diameters: bool) -> None:
        self.dataset = dataset
        self.diameters = [0.0] * len(dataset.items)
        if with_diameters:
            self.diameters = [
                _diameter(dataset, item.series_uid, item.center_xyz) for item in dataset.items
            ]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        crop, label, _, _ = self.dataset[index]
        return crop, label, torch.tensor(self.diameters[index], dtype=torch.float32)


def _diameter(dataset: CropDataset, series_uid: str, center_xyz: tuple[float, ...]) -> float:
    """The diameter of the series' annotation nearest ``center_xyz`` (items sit on one)."""
    annotations = dataset.cache.annotations_for(series_uid)
    if not annotations:
        raise TrainingError(f"{series_uid}: a malignancy nodule missing from annotations.csv")
    nearest = min(
        annotations,
        key=lambda a: sum((p - q) ** 2 for p, q in zip(a.center_xyz, center_xyz, strict=True)),
    )
    return nearest.diameter_mm


class ClassifierRecipe(Recipe):
    """Shared by both classifiers; subclasses pick the dataset and the selection metric."""

    dataset_class: type[CropDataset]
    positive_class = "positive"
    memory_format = torch.channels_last_3d
    augmentation = CLASSIFIER_AUGMENT

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        self._source: nn.Module | None = None
        self._frozen: list[str] = []

    @property
    def crop_size(self) -> tuple[int, int, int]:
        return self.cfg.classifier_crop

    def datasets(self, progress: bool) -> tuple[CropDataset, CropDataset]:
        cfg = self.cfg
        common: dict[str, Any] = {
            "val_stride": cfg.val_stride,
            "crop_size": self.crop_size,
            "spacing_xyz": cfg.spacing,
            "seed": cfg.seed,
        }
        if self.task is Task.NODULE:
            common["extra_candidates"] = cfg.extra_candidates
        train = self.dataset_class(
            cfg.data, cfg.cache_dir, ratio=cfg.ratio, epoch_length=cfg.epoch_length, **common
        )
        val = self.dataset_class(cfg.data, cfg.cache_dir, is_validation=True, **common)
        return train, val

    def build_model(self) -> nn.Module:
        return CandidateClassifier(input_shape=self.crop_size)

    def frozen_modules(self, model: nn.Module) -> list[nn.Module]:
        return [getattr(model, name) for name in self._frozen]

    def train_loss(
        self,
        model: nn.Module,
        batch: Any,
        device: torch.device,
        generator: torch.Generator | None,
        tally: Tally,
    ) -> torch.Tensor:
        crops, labels = to_device(batch[0], device), to_device(batch[1], device)
        if self.cfg.augment:
            augmentation = replace(self.augmentation, domain=self.cfg.domain_randomization)
            crops, _ = augment_3d(crops, None, augmentation, generator)
        logits, probabilities = model(crops.contiguous(memory_format=self.memory_format))
        loss = classification_loss(logits, labels)
        tally.add_loss(loss)
        tally.add_binary(probabilities[:, 1] >= 0.5, labels == 1)
        return loss.mean()

    def validation_view(self, dataset: CachedSeriesDataset) -> Dataset:
        assert isinstance(dataset, CropDataset)
        return CropValidationView(dataset, with_diameters="diameter_auc" in self.extras)

    def validate_batch(
        self, model: nn.Module, batch: Any, device: torch.device, tally: Tally
    ) -> None:
        crops, labels, diameters = (to_device(t, device) for t in batch)
        logits, probabilities = model(crops.contiguous(memory_format=self.memory_format))
        tally.add_loss(classification_loss(logits, labels))
        tally.add_binary(probabilities[:, 1] >= 0.5, labels == 1)
        if self.extras:
            tally.add_scores(probabilities[:, 1], labels, diameters)

    def input_spec(self, model: nn.Module) -> dict[str, Any]:
        return {
            "channels": 1,
            "crop_size_irc": list(self.crop_size),
            "layout": "(N, 1, index, row, col) block centred on the candidate, on the canonical "
            "grid, padded with -1000 HU past the volume",
            "output": f"softmax over (not {self.positive_class}, {self.positive_class})",
            **self.common_input_spec(),
        }


class NoduleRecipe(ClassifierRecipe):
    task = Task.NODULE
    dataset_class = NoduleClassificationDataset
    positive_class = "nodule"

    def build_model(self) -> nn.Module:
        """A new classifier, or (``init``) one carrying a trained classifier's weights."""
        if self.cfg.init is None:
            return super().build_model()
        source = load_nodule_classifier(self.cfg.init, "--init needs a nodule classifier")
        if not isinstance(source, CandidateClassifier):
            raise TrainingError(f"{self.cfg.init}: not a candidate classifier")
        if tuple(source.input_shape) != tuple(self.crop_size):
            raise TrainingError(
                f"{self.cfg.init} crops {tuple(source.input_shape)}, this run {self.crop_size}"
            )
        model = CandidateClassifier(**source.hyperparameters)
        model.load_state_dict(source.state_dict())
        return model

    def score(self, metrics: Metrics) -> tuple[float, ...]:
        return (value_or_floor(metrics.get("f1")),)


class MalignancyRecipe(ClassifierRecipe):
    task = Task.MALIGNANCY
    dataset_class = MalignancyDataset
    positive_class = "malignant"
    extras = ("auc", "diameter_auc")
    augmentation = MALIGNANCY_AUGMENT

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        if cfg.finetune is not None:
            self._source = load_nodule_classifier(cfg.finetune)
            shape = tuple(self._source.input_shape)
            if cfg.crop_size is not None and tuple(cfg.crop_size) != shape:
                raise TrainingError(
                    f"--crop-size {' '.join(map(str, cfg.crop_size))} differs from the "
                    f"fine-tuning source's input {' '.join(map(str, shape))}"
                )

    @property
    def crop_size(self) -> tuple[int, int, int]:
        if self._source is not None:
            return tuple(self._source.input_shape)
        return self.cfg.classifier_crop

    def build_model(self) -> nn.Module:
        if self._source is None:
            return super().build_model()
        model, self._frozen = finetune_model(self._source, self.cfg.finetune_depth)
        return model

    def score(self, metrics: Metrics) -> tuple[float, ...]:
        return (value_or_floor(metrics.get("auc")),)
