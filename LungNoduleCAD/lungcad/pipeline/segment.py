"""The segmentation stage: the UNet over canonical slices, in batches, into a float16 map.

Inputs are built as training builds them, by :func:`lungcad.crops.slice_stack`: the slice and
``context`` slices above and below as channels, edge slices repeated past the volume's ends, HU
clamped by :func:`lungcad.preprocess.normalise_hu`. Only the rows/cols of ``box`` are fed; the
context slices come from the whole canonical volume, so a box run and a whole-volume run see the
same neighbours.
"""

from __future__ import annotations

import contextlib
import itertools

import numpy as np
import torch
from torch import nn

from lungcad.crops import slice_stack
from lungcad.pipeline.progress import Monitor, Stage
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
    runs on the union of theirs); slices the plan does not run (see
    :func:`lungcad.pipeline.region.thin_slices`) are interpolated between the run ones.
    """
    monitor = monitor or Monitor()
    plan = box if isinstance(box, UNetPlan) else UNetPlan.of_box(box)
    z0 = plan.box.start[0]
    out = np.zeros(plan.box.shape, dtype=np.float16)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    run = plan.run_slices
    with torch.inference_mode(), autocast(device, bf16):
        for b in range(0, len(run), batch):
            ks = run[b : b + batch]
            r0, r1 = plan.rows[ks, 0].min(), plan.rows[ks, 1].max()
            c0, c1 = plan.cols[ks, 0].min(), plan.cols[ks, 1].max()
            if r1 > r0 and c1 > c0:
                window = ((r0, c0), (r1 - r0, c1 - c0))
                stacks = np.stack([slice_stack(volume, z0 + k, context, *window) for k in ks])
                x = torch.from_numpy(normalise_hu(stacks)).to(device, memory_format=memory_format)
                p = model(x)[:, 0].float().cpu().numpy()
                rr = slice(r0 - plan.box.start[1], r1 - plan.box.start[1])
                cc = slice(c0 - plan.box.start[2], c1 - plan.box.start[2])
                out[ks, rr, cc] = p
            monitor.report(Stage.SEGMENTATION, (b + len(ks)) / max(len(run), 1))
    if len(run) < len(plan.rows):
        _interpolate_between(out, plan)
    return out


def _interpolate_between(out: np.ndarray, plan: UNetPlan) -> None:
    """Fill the slices the plan does not run, linearly between the run slices either side, on each
    slice's own rows and cols (the run slices' windows cover them; 0 elsewhere, as for a full run).
    """
    run = plan.run_slices
    r_off, c_off = plan.box.start[1], plan.box.start[2]
    for left, right in itertools.pairwise(run):
        for k in range(left + 1, right):
            t = (k - left) / (right - left)
            rr = slice(plan.rows[k, 0] - r_off, plan.rows[k, 1] - r_off)
            cc = slice(plan.cols[k, 0] - c_off, plan.cols[k, 1] - c_off)
            blend = (1 - t) * out[left, rr, cc].astype(np.float32)
            blend += t * out[right, rr, cc].astype(np.float32)
            out[k, rr, cc] = blend
