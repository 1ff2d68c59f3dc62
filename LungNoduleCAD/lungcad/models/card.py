"""The model card: the JSON beside a weights file that says what the network is and was trained on.

``nodule.json`` names the task, the architecture and its hyperparameters, what the weights were
trained on (and the range of scans: :class:`TrainingRange`), and the SHA-256 of
``nodule.safetensors``. A card is read only when it is a regular file of bounded size
(:data:`MAX_CARD_BYTES`), and is checked field by field before anything trusts it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lungcad.models.registry import Task
from lungcad.models.weights_errors import WeightsCardError, WeightsNotFoundError
from lungcad.safefile import UnsafeFileError, read_bounded

log = logging.getLogger(__name__)

CARD_SCHEMA_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"
MAX_CARD_BYTES = 1024**2
"""A model card is a few kilobytes of JSON; a megabyte is already absurd."""


#: What a card's ``training_range.contrast`` may say about the training scans.
CONTRAST_KINDS = ("none", "contrast-enhanced", "both")
_RANGE_FIELDS = (
    "pixel_mm", "slice_thickness_mm", "slice_spacing_mm", "hu_air", "hu_fat", "hu_blood",
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class TrainingRange:
    """What the training scans covered, so detection can say when a scan lies outside it.

    Each ``(min, max)`` is over the series the models were trained on: pixel size, slice
    thickness and slice spacing (mm), and the HU the scans showed for air, fat and blood/muscle
    (their calibration). ``contrast`` is one of :data:`CONTRAST_KINDS`; ``source`` says where the
    numbers came from (headers, generator draws, or a stated assumption).
    """

    pixel_mm: tuple[float, float]
    slice_thickness_mm: tuple[float, float]
    slice_spacing_mm: tuple[float, float]
    contrast: str
    hu_air: tuple[float, float] = (-1000.0, -1000.0)
    hu_fat: tuple[float, float] = (-100.0, -100.0)
    hu_blood: tuple[float, float] = (40.0, 40.0)
    series: int = 0
    source: str = ""

    def __post_init__(self) -> None:
        for name in _RANGE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                raise TypeError(f"training_range.{name} must be [min, max], got {value!r}")
            if len(value) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
            ):
                raise TypeError(f"training_range.{name} must be two numbers, got {value!r}")
            lo, hi = (float(v) for v in value)
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise ValueError(f"training_range.{name} must be finite with min <= max: {value}")
            # to a micrometre / a millionth of a HU, so a card equals itself read back
            object.__setattr__(self, name, (round(lo, 6), round(hi, 6)))
        if self.contrast not in CONTRAST_KINDS:
            raise ValueError(
                f"training_range.contrast must be one of {', '.join(CONTRAST_KINDS)}, "
                f"got {self.contrast!r}"
            )
        if isinstance(self.series, bool) or not isinstance(self.series, int) or self.series < 0:
            raise TypeError("training_range.series must be a count (integer >= 0)")
        if not isinstance(self.source, str):
            raise TypeError("training_range.source must be a string")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (ranges as [min, max] lists)."""
        data = dataclasses.asdict(self)
        for name in _RANGE_FIELDS:
            data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingRange:
        """Parse a card's ``training_range``; unknown keys are logged and ignored."""
        if not isinstance(data, Mapping):
            raise TypeError("model card field 'training_range' must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            log.warning("model card training_range: ignoring unknown fields %s", unknown)
        missing = sorted(
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.name not in data
        )
        if missing:
            raise ValueError(f"training_range lacks {missing}")
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    """What a weights file is and where it came from; written as JSON beside the tensors.

    ``created`` is passed in (ISO 8601), never read from the clock here, so an export can be
    reproduced byte for byte. ``parameter_count`` and ``sha256`` are filled in by
    :func:`save_weights`; so are ``lungcad_version`` / ``torch_version`` when left empty, and
    ``architecture`` / ``hyperparameters`` (from the model) when left empty.
    """

    task: Task
    trained_on: str
    command: str
    created: str
    architecture: str = ""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    input_spec: dict[str, Any] = field(default_factory=dict)
    validation_metrics: dict[str, float] = field(default_factory=dict)
    lungcad_version: str = ""
    torch_version: str = ""
    parameter_count: int = 0
    sha256: str = ""
    training_range: TrainingRange | None = None  # absent from cards made before it existed
    #: how the outputs were calibrated (Platt or temperature scaling folded into the head: method,
    #: task, a and b, ECE before/after, reliability bins; lungcad_training.calibration); absent
    #: when they were not
    calibration: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", Task(self.task))
        if isinstance(self.training_range, Mapping):
            object.__setattr__(self, "training_range", TrainingRange.from_dict(self.training_range))
        elif self.training_range is not None and not isinstance(self.training_range, TrainingRange):
            raise TypeError("model card field 'training_range' must be a mapping or absent")
        for name in ("trained_on", "command", "created", "architecture"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"model card field {name!r} must be a string")
        try:
            datetime.fromisoformat(self.created.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"model card 'created' must be an ISO 8601 timestamp, got {self.created!r}"
            ) from None
        if self.calibration is not None and not isinstance(self.calibration, Mapping):
            raise TypeError("model card field 'calibration' must be a mapping or absent")
        for name in ("hyperparameters", "input_spec", "validation_metrics"):
            if not isinstance(getattr(self, name), Mapping):
                raise TypeError(f"model card field {name!r} must be a mapping")
        for key, value in self.validation_metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"validation metric {key!r} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"validation metric {key!r} must be finite (JSON has no NaN)")
        if isinstance(self.parameter_count, bool) or not isinstance(self.parameter_count, int):
            raise TypeError("model card field 'parameter_count' must be an integer")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (task as its string value, tuples as lists)."""
        data = {"schema_version": CARD_SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            data[f.name] = getattr(self, f.name)
        data["task"] = self.task.value
        if self.calibration is None:
            del data["calibration"]
        if self.training_range is None:
            del data["training_range"]  # old cards stay byte for byte what they were
        else:
            data["training_range"] = self.training_range.to_dict()
        data["validation_metrics"] = {k: float(v) for k, v in self.validation_metrics.items()}
        return json.loads(json.dumps(data, allow_nan=False))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        """Parse a card dict; ValueError/TypeError name the bad or missing field."""
        if not isinstance(data, Mapping):
            raise TypeError("a model card must be a JSON object")
        version = data.get("schema_version", CARD_SCHEMA_VERSION)
        if not isinstance(version, int) or version > CARD_SCHEMA_VERSION:
            raise ValueError(
                f"model card schema_version {version!r} is newer than this lungcad reads "
                f"({CARD_SCHEMA_VERSION})"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"schema_version"})
        if unknown:
            log.warning("model card: ignoring unknown fields %s", unknown)
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in data]
        if missing:
            raise ValueError(f"model card lacks required fields {missing}")
        try:
            task = Task(data["task"])
        except ValueError:
            known = ", ".join(t.value for t in Task)
            raise ValueError(f"unknown task {data['task']!r} (known: {known})") from None
        kwargs = {name: data[name] for name in names if name in data}
        kwargs["task"] = task
        return cls(**kwargs)


def to_json(card: ModelCard) -> str:
    """The card as the text written to disk (stable key order, trailing newline)."""
    return json.dumps(card.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def weights_paths(path: str | Path) -> tuple[Path, Path]:
    """(tensors, card) paths for ``x.safetensors``, ``x.json`` or the bare stem ``x``."""
    path = Path(path)
    if path.suffix in (WEIGHTS_SUFFIX, CARD_SUFFIX):
        path = path.with_suffix("")
    return path.with_name(path.name + WEIGHTS_SUFFIX), path.with_name(path.name + CARD_SUFFIX)


def read_card(path: str | Path) -> ModelCard:
    """The model card beside ``path`` (tensors file, card or stem), without loading tensors."""
    _, card_path = weights_paths(path)
    try:
        text = read_bounded(card_path, MAX_CARD_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise WeightsNotFoundError(card_path, "model card not found") from None
    except UnsafeFileError as exc:
        raise WeightsCardError(card_path, f"model card {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsCardError(card_path, f"cannot read model card: {exc}") from None
    try:
        return ModelCard.from_dict(json.loads(text))
    except json.JSONDecodeError as exc:
        raise WeightsCardError(card_path, f"model card is not valid JSON: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise WeightsCardError(card_path, f"invalid model card: {exc}") from None
