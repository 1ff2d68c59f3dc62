"""The segmentation network: the seeds' 2D UNet (DLwPT ch. 13 UNetWrapper) for any slice size.

Submodule names follow the seeds (``input_batchnorm``, ``unet.down_path.0.block.0`` ...) so their
checkpoints import without renaming keys.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional

from lungcad.models._init import seed_init_
from lungcad.models.limits import check_int


class _ConvBlock(nn.Module):
    """Two 3x3 convs, each followed by ReLU then (optionally) batch norm, as in the seeds."""

    def __init__(self, in_size: int, out_size: int, batch_norm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for cin in (in_size, out_size):
            layers += [nn.Conv2d(cin, out_size, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_size))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class _UpBlock(nn.Module):
    """2x2 stride-2 transposed conv, concatenate the skip, then a conv block."""

    def __init__(self, in_size: int, out_size: int, batch_norm: bool) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_size, out_size, kernel_size=2, stride=2)
        self.conv_block = _ConvBlock(in_size, out_size, batch_norm)

    def forward(self, x: torch.Tensor, bridge: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([self.up(x), bridge], dim=1))


class _UNet(nn.Module):
    """The inner padded UNet; sizes must already be multiples of 2**(depth-1)."""

    def __init__(
        self, in_channels: int, n_classes: int, depth: int, first_filters: int, batch_norm: bool
    ) -> None:
        super().__init__()
        self.down_path = nn.ModuleList()
        prev = in_channels
        for i in range(depth):
            self.down_path.append(_ConvBlock(prev, first_filters * 2**i, batch_norm))
            prev = first_filters * 2**i
        self.up_path = nn.ModuleList()
        for i in reversed(range(depth - 1)):
            self.up_path.append(_UpBlock(prev, first_filters * 2**i, batch_norm))
            prev = first_filters * 2**i
        self.last = nn.Conv2d(prev, n_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bridges = []
        for i, down in enumerate(self.down_path):
            x = down(x)
            if i != len(self.down_path) - 1:
                bridges.append(x)
                x = functional.max_pool2d(x, 2)
        for up, bridge in zip(self.up_path, reversed(bridges), strict=True):
            x = up(x, bridge)
        return self.last(x)


class SegmentationUNet(nn.Module):
    """Per-pixel nodule probability for an axial slice with context slices as channels.

    Input batch norm, a ``depth``-level UNet (``first_filters`` doubling per level, two 3x3
    conv + ReLU (+ batch norm) per level, max-pool down, transposed-conv up with skips), a 1x1
    conv and a sigmoid. Any H, W works: the input is padded (edge-replicated, bottom/right so
    the pooling grid stays anchored at the top-left as in training crops) to a multiple of
    ``2**(depth-1)`` and the output cropped back.

    Parameter count with the defaults (7, 1, 3, 16, True): 118,271 (trainable parameters,
    batch-norm running statistics not included).
    """

    #: Allowed integer hyperparameters (checked before any layer is built; see models.limits).
    HYPERPARAMETER_RANGES: ClassVar[dict[str, tuple[int, int]]] = {
        "in_channels": (1, 64),
        "n_classes": (1, 16),
        "depth": (1, 6),
        "first_filters": (1, 128),
    }

    def __init__(
        self,
        in_channels: int = 7,
        n_classes: int = 1,
        depth: int = 3,
        first_filters: int = 16,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("n_classes", n_classes),
            ("depth", depth),
            ("first_filters", first_filters),
        ):
            check_int(name, value, *self.HYPERPARAMETER_RANGES[name])
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.depth = depth
        self.first_filters = first_filters
        self.batch_norm = bool(batch_norm)
        self.input_batchnorm = nn.BatchNorm2d(in_channels)
        self.unet = _UNet(in_channels, n_classes, depth, first_filters, self.batch_norm)
        self.final = nn.Sigmoid()
        seed_init_(self)

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """Constructor kwargs, as the model card records them."""
        return {
            "in_channels": self.in_channels,
            "n_classes": self.n_classes,
            "depth": self.depth,
            "first_filters": self.first_filters,
            "batch_norm": self.batch_norm,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) float -> (N, n_classes, H, W) probabilities in [0, 1]."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SegmentationUNet expects (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        height, width = x.shape[-2:]
        multiple = 2 ** (self.depth - 1)
        pad_h, pad_w = -height % multiple, -width % multiple
        x = self.input_batchnorm(x)
        if pad_h or pad_w:
            x = functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        out = self.final(self.unet(x))
        return out[..., :height, :width]
