"""What differs between the three trainers, behind one interface the training loop drives.

A recipe builds the datasets and the network, computes the loss of a training batch (with
augmentation), scores validation batches, and says which validation metric picks the best epoch.
"""

from __future__ import annotations

import abc
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from lungcad.models import Task
from lungcad.preprocess import HU_WINDOW, spacing_policy
from lungcad_training.config import TrainConfig
from lungcad_training.datasets import CachedSeriesDataset
from lungcad_training.metrics import Metrics, Tally

log = logging.getLogger(__name__)


class Recipe(abc.ABC):
    """One task's datasets, model, losses and selection metric."""

    task: Task
    extras: tuple[str, ...] = ()
    """Validation-only metric columns beyond loss / precision / recall / f1."""
    cpu_validation_batch: int | None = None
    """Validation batch size on the CPU when it should differ from the training batch size."""
    memory_format: torch.memory_format = torch.contiguous_format
    """Layout of the model's weights and inputs (channels-last 3D trains the classifiers ~1.7x
    faster on the CPU)."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    @abc.abstractmethod
    def datasets(self, progress: bool) -> tuple[CachedSeriesDataset, CachedSeriesDataset]:
        """(training, validation) datasets over the cached series."""

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """A new network (seeded by the caller), fine-tuning source loaded where asked."""

    def frozen_modules(self, model: nn.Module) -> list[nn.Module]:
        """Submodules kept in eval mode while training (fine-tuning freezes them)."""
        return []

    @abc.abstractmethod
    def train_loss(
        self,
        model: nn.Module,
        batch: Any,
        device: torch.device,
        generator: torch.Generator | None,
        tally: Tally,
    ) -> torch.Tensor:
        """Mean loss of a training batch (augmented when the config says so), tallied."""

    @abc.abstractmethod
    def validation_view(self, dataset: CachedSeriesDataset) -> Dataset:
        """The validation dataset as :meth:`validate_batch` reads it."""

    def validation_batches(self, view: Dataset, batch_size: int) -> list[list[int]]:
        """Index batches over the view (consecutive chunks; segmentation groups by slice size)."""
        n = len(view)  # type: ignore[arg-type]
        return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]

    @abc.abstractmethod
    def validate_batch(
        self, model: nn.Module, batch: Any, device: torch.device, tally: Tally
    ) -> None:
        """Tally a validation batch (called under ``torch.no_grad`` in eval mode)."""

    @abc.abstractmethod
    def score(self, metrics: Metrics) -> tuple[float, ...]:
        """Validation metrics -> a key to maximise (None counts as -inf)."""

    @abc.abstractmethod
    def input_spec(self, model: nn.Module) -> dict[str, Any]:
        """What the model expects as input, for the model card."""

    def common_input_spec(self) -> dict[str, Any]:
        return {"hu_window": list(HU_WINDOW), "spacing_policy": spacing_policy(self.cfg.spacing)}


def value_or_floor(value: float | None) -> float:
    return float("-inf") if value is None else float(value)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    return tensor.to(device, non_blocking=device.type == "cuda")


def phantom_info(data_dir: Path) -> dict[str, Any] | None:
    """Seed, size and case count from ``phantom.json`` when the folder holds phantoms."""
    manifest = data_dir / "phantom.json"
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", manifest, exc)
        return None
    return {k: data[k] for k in ("seed", "size", "cases", "lungcad_version") if k in data}
