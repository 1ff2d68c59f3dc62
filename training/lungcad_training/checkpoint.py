"""Training checkpoints (``last.pt`` / ``best.pt``): enough to resume exactly and to export.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)``: nothing in it can run code. It is written to a temporary file
and renamed over the old one, so a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
import random
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lungcad.atomic import write_bytes_atomic
from lungcad.models import Task, WeightsError, build_model, load_weights
from lungcad_training.errors import TrainingError

CHECKPOINT_FORMAT = "lungcad-training-checkpoint"
CHECKPOINT_VERSION = 1
LAST = "last.pt"
BEST = "best.pt"


def rng_states() -> dict[str, Any]:
    """Python, numpy and torch (CPU and every CUDA device) generator states."""
    _, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(_as_tuples(states["python"]))
    n = states["numpy"]
    key = n["key"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", key, n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"][: torch.cuda.device_count()])


def _as_tuples(value: Any) -> Any:
    """random.setstate wants tuples; a round trip may hand back lists."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write atomically (temp file in the same folder, fsync, rename)."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (weights only, on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError, ...)
        raise TrainingError(f"{path}: not a readable training checkpoint ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path}: not a lungcad training checkpoint")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise TrainingError(
            f"{path}: checkpoint version {state['version']} is newer than this code reads"
        )
    return state


def model_from_checkpoint(
    path: str | Path, task: Task | None = None, purpose: str = ""
) -> tuple[nn.Module, dict[str, Any]]:
    """The checkpoint's network with its weights (on the CPU, in train mode) and the checkpoint;
    with ``task``, another task's checkpoint is a TrainingError naming the file and ``purpose``."""
    state = load_checkpoint(path)
    if task is not None and state.get("task") != task.value:
        why = f" ({purpose})" if purpose else ""
        raise TrainingError(f"{path}: a {state.get('task')} checkpoint, not {task.value}{why}")
    model = build_model(state["architecture"], state["hyperparameters"])
    model.load_state_dict(state["model_state"])
    return model, state


def load_trained_model(path: str | Path, task: Task, purpose: str) -> nn.Module:
    """``task``'s trained network (on the CPU) from a training checkpoint (``.pt``) or exported
    weights (``.safetensors``, card beside it): the one loader behind ``--init``, ``--finetune``
    and mining, so every caller checks the same things.

    A missing or unreadable file, another task's network or tensors that do not fit the network
    the card describes: a TrainingError naming the file, the problem and ``purpose``.
    """
    path = Path(path)
    if path.suffix == ".pt":
        model, _ = model_from_checkpoint(path, task, purpose)
        return model
    try:
        model, _ = load_weights(path, expected_task=task)
    except WeightsError as exc:
        raise TrainingError(f"{exc} ({purpose})") from None
    return model


@dataclass
class Best:
    """The best epoch so far: its number, the recipe's score (a tuple, compared in order) and
    its validation metrics; epoch 0 and no score before the first validation."""

    epoch: int = 0
    score: list[float] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def improved_by(self, score: Sequence[float]) -> bool:
        return self.score is None or tuple(score) > tuple(self.score)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Best:
        score = data.get("score")
        return cls(
            int(data.get("epoch", 0)),
            None if score is None else list(score),
            dict(data.get("metrics", {})),
        )


@dataclass
class Checkpoint:
    """What ``last.pt`` / ``best.pt`` hold, by name: written as the plain dict
    :func:`save_checkpoint` has always written (same keys), so exports, older code and older
    checkpoints keep working; keys a checkpoint lacks get the defaults below."""

    task: str
    epoch: int
    architecture: str
    hyperparameters: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    best: Best = field(default_factory=Best)
    metrics: dict[str, Any] = field(default_factory=dict)
    args: dict[str, Any] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    rng: dict[str, Any] | None = None
    created: str = ""
    training_seconds: float = 0.0
    hardware: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    input_spec: dict[str, Any] = field(default_factory=dict)
    scaler_state: dict[str, Any] | None = None
    frozen: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        state["best"] = asdict(self.best)
        return state

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], path: str | Path = "checkpoint") -> Checkpoint:
        """A checkpoint from its dict; a TrainingError naming ``path`` when a key it cannot do
        without (task, epoch, the network and the optimiser) is missing."""
        names = {f.name for f in fields(cls)}
        required = {
            f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
        }
        missing = sorted(required - set(state))
        if missing:
            raise TrainingError(f"{path}: checkpoint lacks {', '.join(missing)}")
        known = {k: v for k, v in state.items() if k in names}
        known["best"] = Best.from_dict(state.get("best") or {})
        known["epoch"] = int(state["epoch"])
        known["training_seconds"] = float(state.get("training_seconds", 0.0))
        return cls(**known)

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint:
        return cls.from_dict(load_checkpoint(path), path)

    def save(self, path: Path) -> None:
        save_checkpoint(self.to_dict(), path)
