"""Which arithmetic the networks run in: float32, or bfloat16 autocast where the hardware has it.

bfloat16 halves memory traffic and, on CPUs with AMX tiles (Intel Sapphire Rapids and later) and
on CUDA GPUs with bf16 tensor cores, runs the convolutions on matrix units: measured on this
project's 2-core Xeon with AMX, the UNet takes 66 ms per 512x512 slice in bf16 against 166 ms in
float32 (one thread), and a classifier crop 8 vs 14 ms. Without such units bf16 is emulated and
slower than float32 (an AVX2-only AMD EPYC: ~9x), and AVX-512's bf16 instructions alone do not pay
either (the same Xeon with oneDNN capped below AMX: 112 ms bf16 vs 96 ms float32 per 512x512
slice), so ``auto`` only picks it where the matrix units are present. bf16 moves probabilities
slightly (it keeps 8 bits of mantissa); docs/evaluation.md gives the detection figures in both.
"""

from __future__ import annotations

import torch

from lungcad.devices import Precision  # torch-free, so the command lines can offer it

__all__ = ["Precision", "native_bf16", "resolve_precision"]


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` has matrix units for bfloat16 (AMX on a CPU, bf16 tensor cores)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(amx is not None and amx())
    return False


def resolve_precision(precision: Precision | str, device: torch.device) -> Precision:
    """``auto`` -> bf16 where :func:`native_bf16`, else float32; explicit choices are kept."""
    precision = Precision(precision)
    if precision is Precision.AUTO:
        return Precision.BF16 if native_bf16(device) else Precision.FLOAT32
    return precision
