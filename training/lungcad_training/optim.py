"""Optimisers as the seeds chose them: Adam for the UNet, SGD with heavy momentum for the CNNs."""

from __future__ import annotations

import enum
from collections.abc import Iterable

import torch
from torch import nn

from lungcad_training.errors import TrainingError


class Optimizer(enum.StrEnum):
    ADAM = "adam"
    SGD = "sgd"


OPTIMIZERS = tuple(o.value for o in Optimizer)


def make_optimizer(
    name: Optimizer | str, parameters: Iterable[nn.Parameter], lr: float, momentum: float = 0.99
) -> torch.optim.Optimizer:
    """``adam`` (``momentum`` unused) or ``sgd`` over the parameters that require gradients.

    Frozen parameters are left out so fine-tuning cannot move them (not even by weight decay).
    """
    trainable = [p for p in parameters if p.requires_grad]
    if not trainable:
        raise TrainingError("nothing to train: every parameter is frozen")
    if lr <= 0:
        raise TrainingError(f"--lr must be positive, got {lr}")
    if name not in OPTIMIZERS:
        raise TrainingError(f"unknown optimizer {name!r} (known: {', '.join(OPTIMIZERS)})")
    if Optimizer(name) is Optimizer.ADAM:
        return torch.optim.Adam(trainable, lr=lr)
    return torch.optim.SGD(trainable, lr=lr, momentum=momentum)
