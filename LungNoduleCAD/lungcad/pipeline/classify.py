"""Classifier crops (as training cuts them) and the two classifiers run over the candidates.

A crop is ``input_shape`` canonical voxels (32x48x48, index x row x col) whose voxel
``size // 2`` is the candidate's centre, filled with -1000 HU past the volume, HU clamped by
:func:`lungcad.preprocess.normalise_hu`: :func:`lungcad.crops.centred_crop`, which the training
tree cuts its crops with too.

Every candidate gets one view of the nodule classifier. Only candidates that can matter get more:
those whose one-view p_nodule reaches :data:`MIRROR_FLOOR` (or the *nodule floor*, the lowest
nodule threshold the result can be refiltered to,
:data:`lungcad.pipeline.detect.MIN_NODULE_THRESHOLD`, when that is lower) have p_nodule averaged
over the crop and its three in-plane mirrors (rows, cols, both): the classifier was trained on
randomly mirrored crops, and the average ranks candidates better than one view. The mirror floor
sits well under the nodule floor because the calibrated classifier is conservative: the FROC's
operating points (1-8 false positives per scan) lie among candidates scored 0.01-0.1, which
mirroring from the nodule floor up left at one view (docs/evaluation.md has the figures). Only
candidates whose final p_nodule reaches the nodule floor get the malignancy classifier (one view);
the others have none (NaN): no threshold the result accepts can make them findings. Scoring
everything cost up to five passes per candidate (~2200 on a real 5 mm scan with ~700 candidates in
the lung); most candidates now cost one.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from lungcad.crops import centred_crop
from lungcad.pipeline.progress import Monitor, Stage
from lungcad.pipeline.segment import autocast
from lungcad.preprocess import normalise_hu

log = logging.getLogger(__name__)

#: One-view p_nodule from which a candidate's nodule views are averaged (when it is below the
#: nodule floor). The mirrors change the order of candidates well under the floor, where the
#: FROC's operating points lie; see the module docstring.
MIRROR_FLOOR = 0.02

#: Crops per classifier call (measured on the CPU, one thread, channels_last_3d: 23 ms per crop
#: at 8, 38 ms at 32).
CROP_BATCH = 8

#: In-plane mirrors of an (N, 1, index, row, col) crop batch averaged for p_nodule: the crop as it
#: is, rows flipped, cols flipped, both.
NODULE_MIRRORS: tuple[tuple[int, ...], ...] = ((), (3,), (4,), (3, 4))


def _input_shape(model: nn.Module) -> tuple[int, int, int]:
    return tuple(getattr(model, "input_shape", (32, 48, 48)))


def classify(
    volume: np.ndarray,
    centers_irc: np.ndarray,
    nodule: nn.Module,
    malignancy: nn.Module,
    device: torch.device,
    *,
    floor: float = 0.0,
    batch: int = CROP_BATCH,
    bf16: bool = False,
    mirror: bool = True,
    mirror_floor: float = MIRROR_FLOOR,
    monitor: Monitor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(p_nodule, p_malignant) as float64 arrays, one per centre (see the module docstring).

    Every centre gets one view of the nodule classifier; those whose one-view p_nodule is at or
    above ``min(floor, mirror_floor)`` get the :data:`NODULE_MIRRORS` average when ``mirror``
    (False: one view only), and those whose final p_nodule is at or above ``floor`` get
    p_malignant; the others' p_malignant is NaN. ``floor`` 0 scores every centre with
    everything.
    """
    monitor = monitor or Monitor()
    size = _input_shape(nodule)
    if _input_shape(malignancy) != size:
        raise ValueError(
            f"nodule and malignancy classifiers crop differently: {size} vs "
            f"{_input_shape(malignancy)}"
        )
    n = len(centers_irc)
    p_nodule = np.zeros(n, dtype=np.float64)
    p_malignant = np.full(n, np.nan, dtype=np.float64)
    with torch.inference_mode(), autocast(device, bf16):
        for b0 in range(0, n, batch):
            b1 = min(b0 + batch, n)
            x = _crops(volume, centers_irc[b0:b1], size, device)
            p_nodule[b0:b1] = _positive(nodule, x)
            monitor.report(Stage.CLASSIFICATION, 0.5 * b1 / n)
        # Crops are cut again rather than kept from the first pass: 0.24 ms per crop against
        # ~8 ms per candidate in the networks, and no ~0.3 MB per candidate held meanwhile.
        again = np.flatnonzero(p_nodule >= (min(floor, mirror_floor) if mirror else floor))
        for b0 in range(0, len(again), batch):
            chosen = again[b0 : b0 + batch]
            x = _crops(volume, centers_irc[chosen], size, device)
            if mirror:
                total = p_nodule[chosen].copy()
                for dims in NODULE_MIRRORS[1:]:
                    flipped = x.flip(dims).contiguous(memory_format=torch.channels_last_3d)
                    total += _positive(nodule, flipped)
                p_nodule[chosen] = total / len(NODULE_MIRRORS)
            kept = p_nodule[chosen] >= floor  # below the floor (or fallen below it): no malignancy
            if kept.all():
                p_malignant[chosen] = _positive(malignancy, x)
            elif kept.any():
                rows = torch.from_numpy(np.flatnonzero(kept)).to(x.device)
                x = x[rows].contiguous(memory_format=torch.channels_last_3d)
                p_malignant[chosen[kept]] = _positive(malignancy, x)
            monitor.report(Stage.CLASSIFICATION, 0.5 + 0.5 * (b0 + len(chosen)) / len(again))
    log.debug(
        "classified %d candidates: %d %s, %d given malignancy",
        n, len(again),
        f"mirrored (one view >= {min(floor, mirror_floor):g})" if mirror
        else f"at or above the nodule floor {floor:g} (one view)",
        int(np.count_nonzero(~np.isnan(p_malignant))),
    )  # fmt: skip
    return p_nodule, p_malignant


def _crops(
    volume: np.ndarray, centers_irc: np.ndarray, size: tuple[int, int, int], device: torch.device
) -> torch.Tensor:
    """Normalised crops around ``centers_irc`` as an (N, 1, index, row, col) channels-last batch."""
    crops = np.stack([centred_crop(volume, c, size) for c in centers_irc])
    x = torch.from_numpy(normalise_hu(crops)[:, None])
    return x.to(device, memory_format=torch.channels_last_3d)


def _positive(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The classifier's probability of class 1 for each crop of ``x``."""
    return model(x)[1][:, 1].float().cpu().numpy()
