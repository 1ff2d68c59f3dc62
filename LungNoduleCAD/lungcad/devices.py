"""The devices and arithmetic a run can ask for, named once for the engine, Slicer and training.

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


class Precision(enum.Enum):
    """The networks' arithmetic: ``auto`` is bf16 where the device has bf16 matrix units
    (:func:`lungcad.pipeline.precision.resolve_precision`), else float32."""

    AUTO = "auto"
    FLOAT32 = "float32"
    BF16 = "bf16"
