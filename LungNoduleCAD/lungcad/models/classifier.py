"""The candidate classifier: the seeds' LunaModel, used for nodule/non-nodule and malignancy.

Submodule names follow the seeds (``tail_batchnorm``, ``block1.conv1``, ``head_linear``) so
their checkpoints import without renaming keys.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from lungcad.models._init import seed_init_
from lungcad.models.limits import check_int

MAX_INPUT_SIZE = 512


class _Block(nn.Module):
    """Two 3x3x3 conv + ReLU, then a 2x2x2 max-pool."""

    def __init__(self, in_channels: int, conv_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, conv_channels, kernel_size=3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(conv_channels, conv_channels, kernel_size=3, padding=1)
        self.relu2 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))


class CandidateClassifier(nn.Module):
    """Two-class 3D CNN over a fixed crop (index x row x col voxels) around a candidate.

    Input batch norm, ``n_blocks`` blocks (``conv_channels`` doubling per block), flatten, a
    linear head to 2 logits. ``forward`` returns ``(logits, softmax probabilities)``; class 1 is
    the positive class (nodule, or malignant).

    Parameter count with the defaults (1, 8, 4, (32, 48, 48)): 222,220 (trainable parameters,
    batch-norm running statistics not included).
    """

    #: Allowed integer hyperparameters (checked before any layer is built; see models.limits);
    #: each ``input_shape`` size lies in [2**n_blocks, MAX_INPUT_SIZE].
    HYPERPARAMETER_RANGES: ClassVar[dict[str, tuple[int, int]]] = {
        "in_channels": (1, 16),
        "conv_channels": (1, 128),
        "n_blocks": (1, 6),
    }

    def __init__(
        self,
        in_channels: int = 1,
        conv_channels: int = 8,
        n_blocks: int = 4,
        input_shape: Sequence[int] = (32, 48, 48),
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("conv_channels", conv_channels),
            ("n_blocks", n_blocks),
        ):
            check_int(name, value, *self.HYPERPARAMETER_RANGES[name])
        if isinstance(input_shape, (str, bytes)) or len(input_shape) != 3:
            raise ValueError(f"input_shape must be 3 sizes, got {input_shape!r}")
        shape = tuple(
            check_int("input_shape size", s, 2**n_blocks, MAX_INPUT_SIZE) for s in input_shape
        )
        self.in_channels = in_channels
        self.conv_channels = conv_channels
        self.n_blocks = n_blocks
        self.input_shape = shape
        self.tail_batchnorm = nn.BatchNorm3d(in_channels)
        self._block_names = tuple(f"block{i + 1}" for i in range(n_blocks))
        prev = in_channels
        for i, name in enumerate(self._block_names):
            self.add_module(name, _Block(prev, conv_channels * 2**i))
            prev = conv_channels * 2**i
        flat = prev * math.prod(s // 2**n_blocks for s in shape)
        self.head_linear = nn.Linear(flat, 2)
        self.head_softmax = nn.Softmax(dim=1)
        seed_init_(self)

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """Constructor kwargs, as the model card records them."""
        return {
            "in_channels": self.in_channels,
            "conv_channels": self.conv_channels,
            "n_blocks": self.n_blocks,
            "input_shape": list(self.input_shape),
        }

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, in_channels, *input_shape) -> ((N, 2) logits, (N, 2) probabilities)."""
        if tuple(x.shape[1:]) != (self.in_channels, *self.input_shape):
            raise ValueError(
                f"CandidateClassifier expects (N, {self.in_channels}, "
                f"{', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}"
            )
        x = self.tail_batchnorm(x)
        for name in self._block_names:
            x = getattr(self, name)(x)
        # flatten, not view: a channels_last_3d tensor is not contiguous in NCDHW order
        logits = self.head_linear(torch.flatten(x, 1))
        return logits, self.head_softmax(logits)
