"""The three networks of the cascade, loaded together from one weights folder onto one device."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lungcad.models import ModelCard, Task, load_weights
from lungcad.models.weights import WeightsNotFoundError
from lungcad.pipeline.precision import Precision, resolve_precision

log = logging.getLogger(__name__)

#: The bundled weights' folder inside an installed wheel (setup.py copies them there).
WHEEL_MODELS = "bundled_models"


def bundled_models_dir(package: Path | None = None) -> Path:
    """The folder of the bundled ``{segmentation,nodule,malignancy}.safetensors`` and cards.

    An installed wheel carries them in the package (``lungcad/bundled_models``); the Slicer
    extension's install tree and a source checkout keep them beside the engine, in
    ``Resources/Models`` next to ``lungcad/``. The first of the two that exists wins; when
    neither does, the Slicer layout's path is returned so that loading names it. ``package``:
    the ``lungcad`` folder (default: this one).
    """
    package = Path(__file__).resolve().parents[1] if package is None else package
    wheel = package / WHEEL_MODELS
    return wheel if wheel.is_dir() else package.parent / "Resources" / "Models"


BUNDLED_MODELS = bundled_models_dir()
"""Where this installation's bundled weights are (:func:`bundled_models_dir`)."""

CASCADE_TASKS = (Task.SEGMENTATION, Task.NODULE, Task.MALIGNANCY)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; ``cpu``/``cuda[:n]`` are taken as is."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this torch build sees no CUDA GPU")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r} (use auto, cpu or cuda)") from None


@dataclass(frozen=True, eq=False)
class CascadeModels:
    """Segmentation UNet, nodule classifier and malignancy classifier, in eval mode on ``device``.

    ``cards`` maps each task name (``segmentation``, ``nodule``, ``malignancy``) to the model card
    its weights came with, so a result can say exactly which weights produced it. ``precision``
    is what :func:`lungcad.pipeline.detect` runs them in (float32 or bf16, never ``auto``).
    """

    segmentation: nn.Module
    nodule: nn.Module
    malignancy: nn.Module
    cards: dict[str, ModelCard]
    device: torch.device
    precision: Precision = Precision.FLOAT32

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", resolve_precision(self.precision, self.device))

    @property
    def bf16(self) -> bool:
        return self.precision is Precision.BF16

    @classmethod
    def load(
        cls,
        folder: str | Path | None = None,
        device: str = "auto",
        precision: Precision | str = Precision.AUTO,
    ) -> CascadeModels:
        """Load and check the three weights files in ``folder`` (default: the bundled ones).

        Every problem (missing folder or file, damaged file, wrong task or architecture) raises a
        :class:`~lungcad.models.WeightsError` whose message names the file. ``precision`` ``auto``
        is bf16 where the device has bf16 matrix units (:mod:`lungcad.pipeline.precision`).
        """
        root = BUNDLED_MODELS if folder is None else Path(folder)
        if not root.is_dir():
            raise WeightsNotFoundError(root, "weights folder not found")
        target = resolve_device(device)
        nets: dict[str, nn.Module] = {}
        cards: dict[str, ModelCard] = {}
        for task in CASCADE_TASKS:
            model, card = load_weights(root / f"{task.value}.safetensors", task, target)
            model.requires_grad_(False)
            # weights in the layout the inputs arrive in (segment.py, classify.py): channels-last
            # runs the 3D classifiers and the UNet faster on a CPU (the dated benchmark figures,
            # with their machines, are in the project's docs)
            layout = torch.channels_last if task is Task.SEGMENTATION else torch.channels_last_3d
            nets[task.value] = model.to(memory_format=layout)
            cards[task.value] = card
        models = cls(device=target, cards=cards, precision=precision, **nets)
        log.info("cascade models loaded from %s on %s (%s)", root, target, models.precision.value)
        return models

    def versions(self) -> dict[str, str]:
        """Per task: architecture, start of the weights' SHA-256, when they were made, and the
        precision they run in."""
        return {
            task: f"{card.architecture} sha256:{card.sha256[:12]} created {card.created} "
            f"({self.precision.value})"
            for task, card in self.cards.items()
        }
