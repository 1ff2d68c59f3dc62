"""Weights on disk: safetensors (no pickle) plus a model card JSON with the same stem.

``nodule.safetensors`` holds the state dict; ``nodule.json`` says what the network is, what it
was trained on and the SHA-256 of the tensors file. Loading checks that checksum, builds the
network from a fixed registry and loads the tensors strictly, so a wrong or damaged file fails
with a message naming the file and the problem instead of producing silent garbage.

Hostile files cost nothing: cards and tensors are read only when they are regular files of
bounded size (:data:`MAX_CARD_BYTES`, :data:`MAX_WEIGHTS_BYTES`; a FIFO or a link to /dev/zero
is refused at once, see :mod:`lungcad.safefile`), and the card's hyperparameters are checked
against the architecture's ranges and parameter budget (:mod:`lungcad.models.limits`) before any
layer is built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from lungcad import __version__
from lungcad.atomic import write_bytes_atomic
from lungcad.errors import LungCADError
from lungcad.models.limits import check_buildable
from lungcad.models.registry import (
    ARCHITECTURES,
    DEFAULT_ARCHITECTURE,
    TASK_ARCHITECTURES,
    Task,
    build_model,
    parameter_count,
)
from lungcad.safefile import UnsafeFileError, read_bounded

log = logging.getLogger(__name__)

CARD_SCHEMA_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile wrappers
MAX_CARD_BYTES = 1024**2
"""A model card is a few kilobytes of JSON; a megabyte is already absurd."""
MAX_WEIGHTS_BYTES = 512 * 1024**2
"""Room for the largest network a card may describe (models.limits.MAX_PARAMETERS float32)."""


# --- errors -------------------------------------------------------------------------------------


class WeightsError(LungCADError):
    """Weights or their model card could not be used; the message names the file and why."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """The weights file or its model card does not exist."""


class WeightsExistsError(WeightsError, FileExistsError):
    """Saving would overwrite an existing file and ``overwrite`` was not given."""


class WeightsChecksumError(WeightsError):
    """The tensors file's SHA-256 differs from the card's: damaged, truncated or swapped."""


class WeightsCardError(WeightsError):
    """The model card is not valid JSON or lacks / mistypes a field."""


class WeightsFormatError(WeightsError):
    """The tensors file (or an imported checkpoint) cannot be parsed."""


class WeightsArchitectureError(WeightsError):
    """Unknown architecture, bad hyperparameters, or tensors that do not fit the network."""


class WeightsTaskError(WeightsError):
    """The weights are for another task than the caller expected."""


# --- model card ---------------------------------------------------------------------------------


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


# --- paths and low-level IO ---------------------------------------------------------------------


def weights_paths(path: str | Path) -> tuple[Path, Path]:
    """(tensors, card) paths for ``x.safetensors``, ``x.json`` or the bare stem ``x``."""
    path = Path(path)
    if path.suffix in (WEIGHTS_SUFFIX, CARD_SUFFIX):
        path = path.with_suffix("")
    return path.with_name(path.name + WEIGHTS_SUFFIX), path.with_name(path.name + CARD_SUFFIX)


def _unwrap(model: nn.Module) -> nn.Module:
    """The network inside DataParallel/DDP or torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def _strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a 'module.' / '_orig_mod.' prefix that every key carries (wrapped-model saves)."""
    changed = True
    while changed and state:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def _plain(value: Any) -> Any:
    """JSON-normal form (tuples -> lists) so card and model kwargs compare equal."""
    return json.loads(json.dumps(value))


def _check_task_architecture(path: Path, task: Task, architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise WeightsArchitectureError(
            path, f"unknown architecture {architecture!r} (known: {known})"
        )
    if architecture not in TASK_ARCHITECTURES[task]:
        raise WeightsArchitectureError(
            path, f"architecture {architecture!r} does not do the {task.value} task"
        )


def _check_buildable(path: Path, architecture: str, hyperparameters: Mapping[str, Any]) -> int:
    """Parameter count of the network the hyperparameters describe, without allocating it."""
    try:
        return check_buildable(ARCHITECTURES[architecture], hyperparameters)
    except (TypeError, ValueError) as exc:
        raise WeightsArchitectureError(
            path, f"cannot build {architecture} from hyperparameters {dict(hyperparameters)}: {exc}"
        ) from None


def _build(path: Path, architecture: str, hyperparameters: Mapping[str, Any]) -> nn.Module:
    _check_buildable(path, architecture, hyperparameters)
    try:
        return build_model(architecture, dict(hyperparameters))
    except (TypeError, ValueError) as exc:
        raise WeightsArchitectureError(
            path, f"cannot build {architecture} from hyperparameters {dict(hyperparameters)}: {exc}"
        ) from None


def _describe(architecture: str, hyperparameters: Mapping[str, Any]) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in hyperparameters.items())
    return f"{architecture}({args})"


def _load_state_strict(
    path: Path, model: nn.Module, state: Mapping[str, torch.Tensor], described: str
) -> None:
    """load_state_dict(strict) with a message that says which keys or shapes disagree."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k} is {tuple(state[k].shape)} in the file but {tuple(expected[k].shape)} in {described}"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if mismatched:
        problems.append(f"shape mismatch: {_first(mismatched)}")
    if missing:
        problems.append(f"missing keys (the network has them, the file not): {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys (in the file, not in the network): {_first(unexpected)}")
    if problems:
        raise WeightsArchitectureError(
            path,
            "the tensors do not fit the card's architecture/hyperparameters; "
            + "; ".join(problems),
        )
    model.load_state_dict(state, strict=True)


def _first(items: list[str], n: int = 5) -> str:
    more = f" (and {len(items) - n} more)" if len(items) > n else ""
    return "; ".join(items[:n]) + more


# --- public API ---------------------------------------------------------------------------------


def save_weights(
    model: nn.Module, card: ModelCard, path: str | Path, *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically; returns both paths.

    The card's ``sha256`` and ``parameter_count`` are computed here. The card must describe the
    model (architecture = its class, hyperparameters = its constructor kwargs, a task the
    architecture does), so that what is saved can always be loaded back.
    """
    st_path, card_path = weights_paths(path)
    if not overwrite:
        for existing in (st_path, card_path):
            if existing.exists():
                raise WeightsExistsError(existing, "exists; pass overwrite=True to replace it")
    if not st_path.parent.is_dir():
        raise WeightsNotFoundError(st_path.parent, "folder to save weights in does not exist")
    net = _unwrap(model)
    architecture = type(net).__name__
    if card.architecture and card.architecture != architecture:
        raise WeightsArchitectureError(
            card_path, f"card says {card.architecture!r} but the model is a {architecture}"
        )
    _check_task_architecture(card_path, card.task, architecture)
    model_hparams = _plain(getattr(net, "hyperparameters", {}))
    if card.hyperparameters and _plain(dict(card.hyperparameters)) != model_hparams:
        raise WeightsArchitectureError(
            card_path,
            f"card hyperparameters {dict(card.hyperparameters)} differ from the model's "
            f"{model_hparams}",
        )
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    # one metadata key only: safetensors writes the metadata map in hash order, so several keys
    # would make two exports of the same model differ byte for byte (the card says the rest)
    blob = st_save(tensors, metadata={"format": "pt"})
    card = dataclasses.replace(
        card,
        architecture=architecture,
        hyperparameters=model_hparams,
        lungcad_version=card.lungcad_version or __version__,
        torch_version=card.torch_version or torch.__version__,
        parameter_count=parameter_count(net),
        sha256=hashlib.sha256(blob).hexdigest(),
    )
    # tensors first, card last: a card on disk always describes a complete tensors file
    write_bytes_atomic(st_path, blob)
    write_bytes_atomic(card_path, to_json(card).encode("utf-8"))
    log.info(
        "saved %s weights (%s, %d parameters) to %s",
        card.task.value,
        architecture,
        card.parameter_count,
        st_path,
    )
    return st_path, card_path


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


def load_weights(
    path: str | Path,
    expected_task: Task | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, ModelCard]:
    """Build and load the network ``path`` names, checked, in eval mode; returns (model, card).

    Checks, in order: both files exist as regular files of bounded size, the card parses, the
    task is the expected one, the architecture is registered and its hyperparameters are in
    range (counted on the meta device, nothing allocated), the tensors file matches the card's
    SHA-256, and the tensors fit the built network exactly. Safetensors only: nothing here
    unpickles.
    """
    st_path, card_path = weights_paths(path)
    card = read_card(card_path)
    if expected_task is not None and card.task is not Task(expected_task):
        raise WeightsTaskError(
            card_path,
            f"weights are for the {card.task.value} task, expected {Task(expected_task).value}",
        )
    _check_task_architecture(card_path, card.task, card.architecture)
    _check_buildable(card_path, card.architecture, card.hyperparameters)
    try:
        # hash and parse the same bytes: no swap in between
        blob = read_bounded(st_path, MAX_WEIGHTS_BYTES)
    except FileNotFoundError:
        raise WeightsNotFoundError(st_path, "weights file not found (the card is there)") from None
    except UnsafeFileError as exc:
        raise WeightsFormatError(st_path, f"weights file {exc}") from None
    except OSError as exc:
        raise WeightsFormatError(st_path, f"cannot read the weights file: {exc}") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != card.sha256:
        raise WeightsChecksumError(
            st_path,
            f"SHA-256 is {digest} but the model card {card_path.name} says "
            f"{card.sha256 or '(none)'} (damaged, truncated or replaced file)",
        )
    try:
        state = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise WeightsFormatError(st_path, f"not a readable safetensors file: {exc}") from None
    model = _build(card_path, card.architecture, card.hyperparameters)
    _load_state_strict(st_path, model, state, _describe(card.architecture, card.hyperparameters))
    count = parameter_count(model)
    if card.parameter_count and count != card.parameter_count:
        raise WeightsArchitectureError(
            card_path, f"card says {card.parameter_count} parameters, the network has {count}"
        )
    model.to(device).eval()
    log.info("loaded %s weights %s (%s)", card.task.value, st_path, card.architecture)
    return model, card


def import_checkpoint(
    pt_path: str | Path,
    task: Task,
    hyperparameters: Mapping[str, Any],
    out_path: str | Path,
    *,
    trained_on: str,
    created: str,
    command: str = "",
    architecture: str | None = None,
    input_spec: Mapping[str, Any] | None = None,
    validation_metrics: Mapping[str, float] | None = None,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Convert an external PyTorch checkpoint to safetensors + card (the one torch.load here).

    Accepts a plain state dict or a dict holding one under ``'model_state'`` (as the seeds save);
    ``module.`` / ``_orig_mod.`` key prefixes of wrapped models are dropped. ``torch.load`` runs
    with ``weights_only=True``, so the checkpoint cannot execute code while it is read.
    """
    pt_path = Path(pt_path)
    task = Task(task)
    architecture = architecture or DEFAULT_ARCHITECTURE[task]
    _check_task_architecture(pt_path, task, architecture)
    if not pt_path.is_file():
        raise WeightsNotFoundError(pt_path, "checkpoint not found")
    try:
        checkpoint = torch.load(pt_path, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError, ...)
        raise WeightsFormatError(
            pt_path, f"cannot read as a weights-only PyTorch checkpoint: {exc}"
        ) from None
    if not isinstance(checkpoint, Mapping):
        raise WeightsFormatError(pt_path, f"expected a dict, found {type(checkpoint).__name__}")
    state = checkpoint.get("model_state", checkpoint)
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsFormatError(
            pt_path, "no state dict found (expected str -> tensor, or one under 'model_state')"
        )
    state = _strip_wrapper_prefixes(dict(state))
    model = _build(pt_path, architecture, hyperparameters)
    _load_state_strict(pt_path, model, state, _describe(architecture, hyperparameters))
    if not command:
        command = f"lungcad.models.import_checkpoint({pt_path.name!r})"
        argv = checkpoint.get("sys_argv")
        if isinstance(argv, (list, tuple)) and all(isinstance(a, str) for a in argv):
            command += f" (checkpoint trained by: {' '.join(argv)})"
    card = ModelCard(
        task=task,
        trained_on=trained_on,
        command=command,
        created=created,
        architecture=architecture,
        hyperparameters=dict(hyperparameters),
        input_spec=dict(input_spec or {}),
        validation_metrics=dict(validation_metrics or {}),
    )
    log.info("importing checkpoint %s as %s weights", pt_path, task.value)
    return save_weights(model, card, out_path, overwrite=overwrite)
