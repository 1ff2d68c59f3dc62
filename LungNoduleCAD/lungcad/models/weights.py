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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from lungcad import __version__
from lungcad.atomic import write_bytes_atomic
from lungcad.models.card import (
    CARD_SCHEMA_VERSION,
    CARD_SUFFIX,
    MAX_CARD_BYTES,
    WEIGHTS_SUFFIX,
    ModelCard,
    TrainingRange,
    read_card,
    to_json,
    weights_paths,
)
from lungcad.models.limits import check_buildable
from lungcad.models.registry import (
    ARCHITECTURES,
    DEFAULT_ARCHITECTURE,
    TASK_ARCHITECTURES,
    Task,
    build_model,
    parameter_count,
)
from lungcad.models.weights_errors import (
    WeightsArchitectureError,
    WeightsCardError,
    WeightsChecksumError,
    WeightsError,
    WeightsExistsError,
    WeightsFormatError,
    WeightsNotFoundError,
    WeightsTaskError,
)
from lungcad.safefile import UnsafeFileError, read_bounded

log = logging.getLogger(__name__)

#: The card's names are re-exported: callers import the weights format from this one module.
__all__ = [
    "CARD_SCHEMA_VERSION",
    "CARD_SUFFIX",
    "MAX_CARD_BYTES",
    "MAX_WEIGHTS_BYTES",
    "WEIGHTS_SUFFIX",
    "ModelCard",
    "TrainingRange",
    "WeightsArchitectureError",
    "WeightsCardError",
    "WeightsChecksumError",
    "WeightsError",
    "WeightsExistsError",
    "WeightsFormatError",
    "WeightsNotFoundError",
    "WeightsTaskError",
    "import_checkpoint",
    "load_weights",
    "read_card",
    "save_weights",
    "to_json",
    "weights_paths",
]

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile wrappers
MAX_WEIGHTS_BYTES = 512 * 1024**2
"""Room for the largest network a card may describe (models.limits.MAX_PARAMETERS float32)."""


# --- low-level IO -------------------------------------------------------------------------------


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
