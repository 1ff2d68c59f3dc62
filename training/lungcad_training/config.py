"""What defines a training run, and the per-task defaults (sized for a CPU; scale up by flags).

A :class:`TrainConfig` is stored in every checkpoint (as a plain dict) so ``--resume`` and
``export`` know how a model was made.
"""

from __future__ import annotations

import dataclasses
import enum
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lungcad.devices import Device
from lungcad.models import Task
from lungcad.preprocess import CANONICAL_SPACING_XYZ
from lungcad_training.optim import Optimizer
from lungcad_training.runtime import AmpMode

CLASSIFIER_CROP_IRC = (32, 48, 48)


@dataclass(frozen=True)
class TaskDefaults:
    epochs: int
    batch_size: int
    epoch_length: int
    optimizer: Optimizer
    lr: float


DEFAULTS: dict[Task, TaskDefaults] = {
    # The bundled weights' recipe (training/README.md): `lungcad-train all --data D --out O
    # --val-stride 5` on the documented phantom set reproduces them. The seeds used Adam (lr 1e-3)
    # for the UNet and SGD lr 1e-3 momentum 0.99 for the classifiers; on the phantoms SGD with
    # momentum 0.99 collapsed to "everything is a non-nodule" (validation F1 0) where Adam
    # learned, so both classifiers use Adam (see training/README.md).
    Task.SEGMENTATION: TaskDefaults(
        epochs=12, batch_size=16, epoch_length=8192, optimizer=Optimizer.ADAM, lr=1e-3
    ),
    Task.NODULE: TaskDefaults(
        epochs=7, batch_size=32, epoch_length=4096, optimizer=Optimizer.ADAM, lr=1e-3
    ),
    Task.MALIGNANCY: TaskDefaults(
        epochs=8, batch_size=32, epoch_length=1024, optimizer=Optimizer.ADAM, lr=1e-3
    ),
}


@dataclass(frozen=True)
class TrainConfig:
    """One run of one task. ``None`` for epochs/batch/epoch length/optimizer/lr = task default.

    The field defaults are the command line's too: ``lungcad_training.cli_parser`` adds each
    option with its field's default, so a default is changed here and nowhere else.
    """

    task: Task
    data: Path
    out: Path
    cache: Path | None = None
    epochs: int | None = None
    batch_size: int | None = None
    epoch_length: int | None = None
    optimizer: Optimizer | None = None
    lr: float | None = None
    momentum: float = 0.99
    device: Device = Device.AUTO
    amp: AmpMode = AmpMode.AUTO
    workers: int = 2
    val_stride: int = 10
    seed: int = 0
    augment: bool = True
    domain_randomization: bool = False  # all three: lungcad_training.augment's domain
    spacing: tuple[float, float, float] = CANONICAL_SPACING_XYZ
    # classifiers
    ratio: int = 1
    crop_size: tuple[int, int, int] | None = None
    finetune: Path | None = None
    finetune_depth: int = 2
    extra_candidates: Path | None = None  # nodule: another candidates csv (lungcad-train mine)
    init: Path | None = None  # nodule, segmentation: start from these weights (.pt, .safetensors)
    # segmentation
    context_slices: int = 3
    seg_crop: int = 64
    val_negative_slices: int = 8
    seg_background_ratio: float = 1.0
    seg_region_ratio: float = 1.0
    seg_dense_ratio: float = 2.0
    seg_recall_target: float = 0.9
    # run control
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    command: str = field(default_factory=lambda: shlex.join(sys.argv))

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "task", Task(self.task))  # plain strings too: checkpoints store values
        set_(self, "device", Device(self.device))
        set_(self, "amp", AmpMode(self.amp))
        if self.optimizer is not None:
            set_(self, "optimizer", Optimizer(self.optimizer))
        set_(self, "data", Path(self.data))
        set_(self, "out", Path(self.out))
        if self.cache is not None:
            set_(self, "cache", Path(self.cache))
        if self.finetune is not None:
            set_(self, "finetune", Path(self.finetune))
        if self.extra_candidates is not None:
            set_(self, "extra_candidates", Path(self.extra_candidates))
        if self.init is not None:
            set_(self, "init", Path(self.init))
        set_(self, "spacing", tuple(float(s) for s in self.spacing))
        if self.crop_size is not None:
            set_(self, "crop_size", tuple(int(s) for s in self.crop_size))
        defaults = DEFAULTS[self.task]
        for name in ("epochs", "batch_size", "epoch_length", "optimizer", "lr"):
            if getattr(self, name) is None:
                set_(self, name, getattr(defaults, name))

    # ---------------------------------------------------------------- derived paths

    @property
    def task_dir(self) -> Path:
        return self.out / self.task.value

    @property
    def runs_dir(self) -> Path:
        return self.out / "runs" / self.task.value

    @property
    def cache_dir(self) -> Path:
        return self.cache if self.cache is not None else self.out / "cache"

    @property
    def classifier_crop(self) -> tuple[int, int, int]:
        return self.crop_size or CLASSIFIER_CROP_IRC

    # ---------------------------------------------------------------- (de)serialisation

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (str, int, float, bool, list, None): safe in a weights-only file."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)
