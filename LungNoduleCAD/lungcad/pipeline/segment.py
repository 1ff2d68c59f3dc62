"""The segmentation stage: the UNet over canonical slices, in batches, into a float16 map.

Inputs are built as training builds them, by :func:`lungcad.crops.slice_stack`: the slice and
``context`` slices above and below as channels, edge slices repeated past the volume's ends, HU
clamped by :func:`lungcad.preprocess.normalise_hu`. Only the rows/cols of ``box`` are fed; the
context slices come from the whole canonical volume, so a box run and a whole-volume run see the
same neighbours.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from lungcad.crops import slice_stack
from lungcad.pipeline.progress import Monitor
from lungcad.pipeline.region import Box, UNetPlan
from lungcad.preprocess import normalise_hu

#: Slices per UNet call. On the CPU one slice at a time is fastest (measured: 372 ms per 512x512
#: slice at batch 1 vs 547 at 4 and 767 at 8, one thread, channels_last): a slice's activations
#: already overflow the caches, and bigger batches only add memory traffic.
SLICE_BATCH = 1


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def segment_box(
    volume: np.ndarray,
    box: Box | UNetPlan,
    model: nn.Module,
    device: torch.device,
    *,
    context: int = 3,
    batch: int = SLICE_BATCH,
    bf16: bool = False,
    channels_last: bool = True,
    monitor: Monitor | None = None,
) -> np.ndarray:
    """The UNet's probability on ``box`` (float16, ``box.shape``); 0 where a plan skips pixels.

    With a :class:`UNetPlan` each slice runs on its own rows and cols (a batch of several slices
    runs on the union of theirs).
    """
    monitor = monitor or Monitor()
    plan = box if isinstance(box, UNetPlan) else UNetPlan.of_box(box)
    z0, z1 = plan.box.start[0], plan.box.stop[0]
    out = np.zeros(plan.box.shape, dtype=np.float16)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    with torch.inference_mode(), autocast(device, bf16):
        for b0 in range(z0, z1, batch):
            b1 = min(b0 + batch, z1)
            k0, k1 = b0 - z0, b1 - z0
            r0, r1 = plan.rows[k0:k1, 0].min(), plan.rows[k0:k1, 1].max()
            c0, c1 = plan.cols[k0:k1, 0].min(), plan.cols[k0:k1, 1].max()
            if r1 > r0 and c1 > c0:
                window = ((r0, c0), (r1 - r0, c1 - c0))
                stacks = np.stack([slice_stack(volume, i, context, *window) for i in range(b0, b1)])
                x = torch.from_numpy(normalise_hu(stacks)).to(device, memory_format=memory_format)
                p = model(x)[:, 0].float().cpu().numpy()
                rr = slice(r0 - plan.box.start[1], r1 - plan.box.start[1])
                cc = slice(c0 - plan.box.start[2], c1 - plan.box.start[2])
                out[k0:k1, rr, cc] = p
            monitor.report("segmentation", k1 / max(z1 - z0, 1))
    return out
