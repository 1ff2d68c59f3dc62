"""Canonical regions mapped back onto the CT's own voxels (nearest neighbour, both ways).

An original voxel belongs to a region when its centre's nearest canonical voxel is in the region
(what :func:`lungcad.preprocess.labels_from_canonical` does), and also when it is the nearest
original voxel of some region voxel, so a region smaller than one original voxel (thick slices)
still shows. Each such pair (original voxel, region voxel) is kept, so a region cut at a higher
threshold maps back without redoing any of this.
"""

from __future__ import annotations

import numpy as np

from lungcad.ct import Geometry
from lungcad.geometry import voxel_to_world, world_to_voxel

#: Original voxels handled per step when scanning a region's box (bounds scratch memory).
_CHUNK_VOXELS = 1 << 20


def _nearest(irc: np.ndarray) -> np.ndarray:
    return np.floor(irc + 0.5).astype(np.int64)


def footprint(
    region_index: np.ndarray, canonical: Geometry, original: Geometry, hu: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(original flat index, position in ``region_index``, original HU) pairs, by original index.

    ``region_index`` holds flat canonical indices in ascending order; ``hu`` is the original CT.
    """
    n = len(region_index)
    orig_shape = np.asarray(original.shape_irc)
    can_irc = np.stack(np.unravel_index(region_index, canonical.shape_irc), 1)
    lo, hi = can_irc.min(axis=0), can_irc.max(axis=0)
    lookup = np.full(tuple(hi - lo + 1), -1, dtype=np.int64)
    local = can_irc - lo
    lookup[local[:, 0], local[:, 1], local[:, 2]] = np.arange(n)

    # region voxel -> its nearest original voxel (clipped into the grid)
    near = np.clip(_nearest(world_to_voxel(voxel_to_world(can_irc, canonical), original)),
                   0, orig_shape - 1)  # fmt: skip
    pairs_orig = [np.ravel_multi_index(near.T, original.shape_irc)]
    pairs_vox = [np.arange(n, dtype=np.int64)]

    # original voxels whose nearest canonical voxel is in the region
    corners = np.array([[i, r, c] for i in (lo[0] - 0.5, hi[0] + 0.5)
                        for r in (lo[1] - 0.5, hi[1] + 0.5)
                        for c in (lo[2] - 0.5, hi[2] + 0.5)])  # fmt: skip
    o_irc = world_to_voxel(voxel_to_world(corners, canonical), original)
    o_lo = np.maximum(np.floor(o_irc.min(axis=0)).astype(int) - 1, 0)
    o_hi = np.minimum(np.ceil(o_irc.max(axis=0)).astype(int) + 1, orig_shape - 1)
    if np.all(o_hi >= o_lo):
        rows = np.arange(o_lo[1], o_hi[1] + 1)
        cols = np.arange(o_lo[2], o_hi[2] + 1)
        plane = len(rows) * len(cols)
        step = max(1, _CHUNK_VOXELS // max(plane, 1))
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        for i0 in range(o_lo[0], o_hi[0] + 1, step):
            idx = np.arange(i0, min(i0 + step, o_hi[0] + 1))
            grid = np.empty((len(idx), plane, 3), dtype=np.float64)
            grid[..., 0] = idx[:, None]
            grid[..., 1] = rr.ravel()
            grid[..., 2] = cc.ravel()
            grid = grid.reshape(-1, 3)
            c = _nearest(world_to_voxel(voxel_to_world(grid, original), canonical)) - lo
            inside = np.all((c >= 0) & (c <= hi - lo), axis=1)
            hit = np.full(len(grid), -1, dtype=np.int64)
            hit[inside] = lookup[c[inside, 0], c[inside, 1], c[inside, 2]]
            take = hit >= 0
            if take.any():
                pairs_orig.append(
                    np.ravel_multi_index(grid[take].astype(np.int64).T, original.shape_irc)
                )
                pairs_vox.append(hit[take])
    orig = np.concatenate(pairs_orig)
    vox = np.concatenate(pairs_vox)
    key = np.unique(orig * max(n, 1) + vox)
    orig, vox = key // max(n, 1), key % max(n, 1)
    values = hu[tuple(np.unravel_index(orig, original.shape_irc))]
    return orig, vox, values.astype(np.int16)
