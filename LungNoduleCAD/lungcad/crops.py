"""Model inputs cut from canonical volumes: padded crops, centred blocks and slice-context stacks.

One implementation for the detector (:mod:`lungcad.pipeline`) and the training tree, so the
networks see at inference exactly the inputs they were trained on. Crops copy only the block they
cover, so on a memory-mapped cache entry they read only those pages.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lungcad.preprocess import HU_WINDOW

__all__ = [
    "PAD_HU",
    "centred_crop",
    "centred_start",
    "context_indices",
    "padded_crop",
    "slice_stack",
]

PAD_HU = HU_WINDOW[0]
"""Crops that run past the volume are filled with air (-1000 HU)."""


def padded_crop(
    volume: np.ndarray, start: Sequence[int], size: Sequence[int], fill: float | int
) -> np.ndarray:
    """``volume[start : start + size]`` along every axis; voxels outside are ``fill``.

    ``fill`` has no default because HU crops want air and label crops want 0.
    """
    if len(start) != volume.ndim or len(size) != volume.ndim:
        raise ValueError(f"need {volume.ndim} starts and sizes, got {start} and {size}")
    out = np.full(tuple(int(s) for s in size), fill, dtype=volume.dtype)
    src, dst = [], []
    for a, n, dim in zip(start, size, volume.shape, strict=True):
        lo, hi = max(int(a), 0), min(int(a) + int(n), dim)
        if lo >= hi:
            return out  # entirely outside
        src.append(slice(lo, hi))
        dst.append(slice(lo - int(a), hi - int(a)))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def centred_start(center: Sequence[int], size: Sequence[int]) -> list[int]:
    """Start of a block of ``size`` whose voxel ``size // 2`` is ``center``."""
    return [int(c) - int(n) // 2 for c, n in zip(center, size, strict=True)]


def centred_crop(
    volume: np.ndarray, center: Sequence[int], size: Sequence[int], fill: float | int = PAD_HU
) -> np.ndarray:
    """The block of ``size`` whose voxel ``size // 2`` is ``center`` (a classifier's input)."""
    return padded_crop(volume, centred_start(center, size), size, fill)


def context_indices(index: int, context: int, n_slices: int) -> list[int]:
    """The slice and ``context`` slices above and below, edge slices repeated past the ends."""
    return [min(max(i, 0), n_slices - 1) for i in range(index - context, index + context + 1)]


def slice_stack(
    volume: np.ndarray,
    index: int,
    context: int,
    row_col_start: Sequence[int] | None = None,
    size_rc: Sequence[int] | None = None,
    fill: float | int = PAD_HU,
) -> np.ndarray:
    """(2 * context + 1, H, W): the UNet's input channels around slice ``index``.

    Whole slices, or the rows/cols window ``row_col_start`` + ``size_rc`` of each (padded with
    ``fill`` where it runs past the slice).
    """
    idx = context_indices(index, context, volume.shape[0])
    if row_col_start is None:
        return np.stack([np.asarray(volume[i]) for i in idx])
    if size_rc is None:
        raise ValueError("a row/col window needs both row_col_start and size_rc")
    return np.stack([padded_crop(volume[i], row_col_start, size_rc, fill) for i in idx])
