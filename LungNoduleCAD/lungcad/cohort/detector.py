"""The real detector of a cohort run: the cascade, with its weights loaded on first use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lungcad.ct import CT
from lungcad.fingerprint import RunSettings
from lungcad.models.weights import WeightsNotFoundError, read_card
from lungcad.pipeline import CascadeModels, DetectionOptions, Precision, Thresholds, detect
from lungcad.pipeline.models import BUNDLED_MODELS, CASCADE_TASKS
from lungcad.reports import ResultLike


class CascadeDetector:
    """The real detector: the cascade with weights loaded on first use.

    A run whose cases are all done never loads a network (:meth:`settings` reads the model
    cards only). ``models`` is a weights folder (None: the bundled weights), ``device`` auto, cpu
    or cuda, ``precision`` auto, float32 or bf16; ``mirror_nodule`` as
    :func:`lungcad.pipeline.detect`. Call :meth:`load` first to have a bad weights folder
    reported before any case runs.
    """

    def __init__(
        self,
        models: Path | None = None,
        device: str = "auto",
        thresholds: Thresholds | None = None,
        precision: Precision | str = Precision.AUTO,
        mirror_nodule: bool = True,
    ) -> None:
        self.models_dir = models
        self.device = device
        self.thresholds = thresholds if thresholds is not None else Thresholds()
        self.precision = Precision(precision)
        self.mirror_nodule = mirror_nodule
        self._models: CascadeModels | None = None

    def load(self) -> CascadeModels:
        if self._models is None:
            self._models = CascadeModels.load(self.models_dir, self.device, self.precision)
        return self._models

    def settings(self) -> RunSettings:
        """Thresholds, the weights' SHA-256s (from the cards the loader checks them against)
        and the mirror option: what makes a stored result this run's result."""
        if self._models is not None:
            shas = {task: card.sha256 for task, card in self._models.cards.items()}
        else:
            root = BUNDLED_MODELS if self.models_dir is None else Path(self.models_dir)
            if not root.is_dir():
                raise WeightsNotFoundError(root, "weights folder not found")
            shas = {t.value: read_card(root / f"{t.value}.json").sha256 for t in CASCADE_TASKS}
        options: dict[str, Any] = {"mirror_nodule": self.mirror_nodule}
        return RunSettings(self.thresholds, shas, options)

    def __call__(self, ct: CT) -> ResultLike:
        options = DetectionOptions(mirror_nodule=self.mirror_nodule)
        return detect(ct, self.load(), self.thresholds, options)
