"""The devices a run can ask for, named once for the engine, the Slicer module and training.

Torch-free, so the Slicer panel can offer the choices before PyTorch is installed;
:func:`lungcad.pipeline.models.resolve_device` turns a name into a ``torch.device``.
"""

from __future__ import annotations

import enum


class Device(enum.StrEnum):
    """``auto`` picks CUDA when PyTorch sees a GPU, else the CPU."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


#: The names, in the order the command lines and the panel offer them.
DEVICES = tuple(d.value for d in Device)
