"""Canonical regions mapped back onto the CT's own voxels (nearest neighbour, both ways).

An original voxel belongs to a region when its centre's nearest canonical voxel is in the region
(what :func:`lungcad.preprocess.labels_from_canonical` does), and also when it is the nearest
original voxel of some region voxel, so a region smaller than one original voxel (thick slices)
still shows. This is a pure function of the two grids: refiltering redoes it for each finding
without the CT. When the CT's axes are a (signed) permutation of LPS, as for nearly every scan,
both nearest-neighbour maps work axis by axis and cost a few array operations per region; an
oblique grid takes a slower general path with the same definition.
"""

from __future__ import annotations

import numpy as np

from lungcad.ct import Geometry
from lungcad.geometry import voxel_to_world, world_to_voxel
from lungcad.pipeline.findings import VoxelMask

#: Original voxels handled per step when an oblique grid is scanned (bounds scratch memory).
_CHUNK_VOXELS = 1 << 20


def _nearest(values: np.ndarray) -> np.ndarray:
    return np.floor(values + 0.5).astype(np.int64)


def axis_permutation(geometry: Geometry) -> list[tuple[int, int]] | None:
    """Per array axis (index, row, col): (LPS axis, sign) when the direction permutes axes."""
    matrix = geometry.direction_matrix  # columns: LPS directions of col, row, index
    out = []
    for array_axis in range(3):
        column = matrix[:, 2 - array_axis]
        world = int(np.argmax(np.abs(column)))
        if not np.isclose(abs(column[world]), 1.0, atol=1e-9):
            return None
        out.append((world, 1 if column[world] > 0 else -1))
    return out


class VoxelMapper:
    """Maps sets of canonical voxels to masks on the original grid (see the module docstring)."""

    def __init__(self, canonical: Geometry, original: Geometry) -> None:
        self.canonical = canonical
        self.original = original
        self._axes = axis_permutation(original)
        if self._axes is not None:
            self._tables = [self._axis_tables(axis) for axis in range(3)]

    @property
    def separable(self) -> bool:
        return self._axes is not None

    def _axis_tables(self, axis: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """For original array ``axis``: its canonical axis, and per canonical index the nearest
        original index and the first/count of the original indices whose nearest it is."""
        world, sign = self._axes[axis]
        can_axis = 2 - world  # the canonical grid is LPS-aligned: array axis = 2 - LPS axis
        n_orig = self.original.shape_irc[axis]
        n_can = self.canonical.shape_irc[can_axis]
        o_origin = self.original.origin_xyz[world]
        o_step = sign * self.original.spacing_irc[axis]
        c_origin = self.canonical.origin_xyz[world]
        c_step = self.canonical.spacing_xyz[world]
        o = np.arange(n_orig)
        to_can = _nearest((o_origin + o * o_step - c_origin) / c_step)
        j = np.arange(n_can)
        nearest = np.clip(_nearest((c_origin + j * c_step - o_origin) / o_step), 0, n_orig - 1)
        order = np.argsort(to_can, kind="stable")
        sorted_can = to_can[order]
        first_pos = np.searchsorted(sorted_can, j, side="left")
        count = np.searchsorted(sorted_can, j, side="right") - first_pos
        # the original indices mapping to one canonical index are contiguous (the map is
        # monotone) and the stable sort lists them in ascending order: the first is the lowest
        first = np.where(count > 0, order[np.minimum(first_pos, n_orig - 1)], 0)
        return can_axis, nearest, first, count

    def mask(self, canonical_irc: np.ndarray) -> VoxelMask:
        """The original-grid mask of the canonical voxels ``canonical_irc`` (m, 3)."""
        if self._axes is None:
            flat = self._flat_general(canonical_irc)
            return mask_from_flat(flat, self.original.shape_irc)
        per_axis = [canonical_irc[:, t[0]] for t in self._tables]
        nearest = np.stack([t[1][v] for t, v in zip(self._tables, per_axis, strict=True)], 1)
        firsts = [t[2][v] for t, v in zip(self._tables, per_axis, strict=True)]
        counts = [t[3][v] for t, v in zip(self._tables, per_axis, strict=True)]
        has_all = (counts[0] > 0) & (counts[1] > 0) & (counts[2] > 0)
        f = np.stack([first[has_all] for first in firsts], 1)
        c = np.stack([count[has_all] for count in counts], 1)
        lo, hi = nearest.min(axis=0), nearest.max(axis=0)
        if len(f):
            lo = np.minimum(lo, f.min(axis=0))
            hi = np.maximum(hi, (f + c - 1).max(axis=0))
        array = np.zeros(tuple(hi - lo + 1), dtype=bool)
        local = nearest - lo
        array[local[:, 0], local[:, 1], local[:, 2]] = True
        f -= lo
        for d in np.ndindex(*(c.max(axis=0) if len(c) else (0, 0, 0))):
            take = np.all(np.asarray(d) < c, axis=1)
            array[f[take, 0] + d[0], f[take, 1] + d[1], f[take, 2] + d[2]] = True
        return VoxelMask(tuple(int(v) for v in lo), array)

    def nearest_irc(self, canonical_irc: np.ndarray) -> np.ndarray:
        """(m, 3) original (index, row, col) of each canonical voxel's nearest original voxel."""
        if self._axes is not None:
            out = np.empty_like(canonical_irc, dtype=np.int64)
            for axis, (can_axis, nearest, _, _) in enumerate(self._tables):
                out[:, axis] = nearest[canonical_irc[:, can_axis]]
            return out
        world = voxel_to_world(canonical_irc, self.canonical)
        near = _nearest(world_to_voxel(world, self.original))
        return np.clip(near, 0, np.asarray(self.original.shape_irc) - 1)

    def nearest_flat(self, canonical_irc: np.ndarray) -> np.ndarray:
        """Flat original index of each canonical voxel's nearest original voxel."""
        return np.ravel_multi_index(self.nearest_irc(canonical_irc).T, self.original.shape_irc)

    def sample(self, canonical_flat: np.ndarray, volume: np.ndarray) -> np.ndarray:
        """``volume`` (on the original grid) at each canonical voxel's nearest original voxel."""
        out = np.empty(len(canonical_flat), dtype=volume.dtype)
        for a in range(0, len(canonical_flat), _CHUNK_VOXELS):
            chunk = canonical_flat[a : a + _CHUNK_VOXELS]
            irc = np.stack(np.unravel_index(chunk, self.canonical.shape_irc), 1)
            near = self.nearest_irc(irc)
            out[a : a + len(chunk)] = volume[near[:, 0], near[:, 1], near[:, 2]]
        return out

    def _flat_general(self, canonical_irc: np.ndarray) -> np.ndarray:
        """Any direction: nearest original voxels, plus a scan of the region's original box."""
        parts = [self.nearest_flat(canonical_irc)]
        lo, hi = canonical_irc.min(axis=0), canonical_irc.max(axis=0)
        inside = np.zeros(tuple(hi - lo + 1), dtype=bool)
        local = canonical_irc - lo
        inside[local[:, 0], local[:, 1], local[:, 2]] = True
        corners = np.array([[i, r, c] for i in (lo[0] - 0.5, hi[0] + 0.5)
                            for r in (lo[1] - 0.5, hi[1] + 0.5)
                            for c in (lo[2] - 0.5, hi[2] + 0.5)])  # fmt: skip
        o_irc = world_to_voxel(voxel_to_world(corners, self.canonical), self.original)
        shape = np.asarray(self.original.shape_irc)
        o_lo = np.maximum(np.floor(o_irc.min(axis=0)).astype(int) - 1, 0)
        o_hi = np.minimum(np.ceil(o_irc.max(axis=0)).astype(int) + 1, shape - 1)
        if np.all(o_hi >= o_lo):
            rr, cc = np.meshgrid(np.arange(o_lo[1], o_hi[1] + 1), np.arange(o_lo[2], o_hi[2] + 1),
                                 indexing="ij")  # fmt: skip
            plane = rr.size
            step = max(1, _CHUNK_VOXELS // plane)
            for i0 in range(o_lo[0], o_hi[0] + 1, step):
                idx = np.arange(i0, min(i0 + step, o_hi[0] + 1))
                grid = np.empty((len(idx), plane, 3), dtype=np.int64)
                grid[..., 0] = idx[:, None]
                grid[..., 1] = rr.ravel()
                grid[..., 2] = cc.ravel()
                grid = grid.reshape(-1, 3)
                c = _nearest(world_to_voxel(voxel_to_world(grid, self.original), self.canonical))
                c -= lo
                ok = np.all((c >= 0) & (c <= hi - lo), axis=1)
                ok[ok] = inside[c[ok, 0], c[ok, 1], c[ok, 2]]
                if ok.any():
                    parts.append(np.ravel_multi_index(grid[ok].T, self.original.shape_irc))
        return np.unique(np.concatenate(parts))


def mask_from_flat(flat: np.ndarray, shape_irc: tuple[int, int, int]) -> VoxelMask:
    """The bounding-box mask of a set of flat voxel indices (a 1-voxel mask if the set is empty)."""
    if len(flat) == 0:
        return VoxelMask((0, 0, 0), np.zeros((1, 1, 1), dtype=bool))
    irc = np.stack(np.unravel_index(flat, shape_irc), 1)
    lo = irc.min(axis=0)
    array = np.zeros(tuple(irc.max(axis=0) - lo + 1), dtype=bool)
    local = irc - lo
    array[local[:, 0], local[:, 1], local[:, 2]] = True
    return VoxelMask(tuple(int(v) for v in lo), array)
