"""The seeds' weight initialisation, shared by both networks so retraining starts alike."""

from __future__ import annotations

import math

from torch import nn

_INIT_TYPES = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


def seed_init_(module: nn.Module) -> None:
    """He (kaiming normal, fan_out, relu) weights; biases drawn as the seeds draw them.

    The seeds call ``nn.init.normal_(bias, -bound, bound)`` with ``bound = 1/sqrt(fan_out)``,
    i.e. mean ``-bound`` and std ``bound``; kept as is so our runs are comparable to theirs.
    """
    for m in module.modules():
        if type(m) in _INIT_TYPES:
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                _, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = 1.0 / math.sqrt(fan_out)
                nn.init.normal_(m.bias, -bound, bound)
