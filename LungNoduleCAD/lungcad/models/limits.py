"""What a model card may ask the engine to build: checked before any layer takes memory.

A card is a small JSON file; a card asking for ``conv_channels=30000`` or ``depth=40`` would
otherwise make the loader allocate tens of gigabytes before the tensors are ever compared. Each
architecture states the range of each integer hyperparameter (``HYPERPARAMETER_RANGES``, wide
around what the cascade uses), and the whole network is first built on PyTorch's ``meta``
device, which allocates nothing, to count its parameters against :data:`MAX_PARAMETERS`.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

MAX_PARAMETERS = 50_000_000
"""Largest network a card may describe (200 MB of float32; the bundled ones have ~0.2 M)."""


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` if it is an integer in [lo, hi], else ValueError naming the allowed range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def check_ranges(cls: type[nn.Module], hyperparameters: Mapping[str, Any]) -> None:
    """Check the integers ``cls.HYPERPARAMETER_RANGES`` names (others are left to ``cls``)."""
    ranges: Mapping[str, tuple[int, int]] = getattr(cls, "HYPERPARAMETER_RANGES", {})
    for name, (lo, hi) in ranges.items():
        if name in hyperparameters:
            check_int(name, hyperparameters[name], lo, hi)


def check_buildable(cls: type[nn.Module], hyperparameters: Mapping[str, Any]) -> int:
    """The parameter count of ``cls(**hyperparameters)``, measured without allocating.

    Raises ValueError / TypeError for hyperparameters out of range, unknown or too many
    parameters in all.
    """
    check_ranges(cls, hyperparameters)
    with torch.device("meta"):
        model = cls(**dict(hyperparameters))
    count = sum(p.numel() for p in model.parameters())
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"{cls.__name__} with these hyperparameters has {count:,} parameters, more than "
            f"the {MAX_PARAMETERS:,} a weights file may describe"
        )
    return count
