"""Optimisers as the seeds chose them: Adam for the UNet, SGD with heavy momentum for the CNNs."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from lungcad_training.errors import TrainingError

OPTIMIZERS = ("adam", "sgd")


def make_optimizer(
    name: str, parameters: Iterable[nn.Parameter], lr: float, momentum: float = 0.99
) -> torch.optim.Optimizer:
    """``adam`` (``momentum`` unused) or ``sgd`` over the parameters that require gradients.

    Frozen parameters are left out so fine-tuning cannot move them (not even by weight decay).
    """
    trainable = [p for p in parameters if p.requires_grad]
    if not trainable:
        raise TrainingError("nothing to train: every parameter is frozen")
    if lr <= 0:
        raise TrainingError(f"--lr must be positive, got {lr}")
    if name == "adam":
        return torch.optim.Adam(trainable, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(trainable, lr=lr, momentum=momentum)
    raise TrainingError(f"unknown optimizer {name!r} (known: {', '.join(OPTIMIZERS)})")
