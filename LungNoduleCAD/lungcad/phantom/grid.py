"""Scan grids like real chest CT: 512x512, varied pixel size, slice spacing, coverage, flips."""

from __future__ import annotations

import numpy as np

from lungcad.phantom.anatomy import ChestAnatomy
from lungcad.phantom.spec import RealismVersion, ScanGrid

FULL_MATRIX = 512
FULL_SLICES = (120, 400)
SMALL_MATRIX = 160
SMALL_SLICES = 96
# slice spacings seen in LUNA16-like cohorts, with rough frequencies
SLICE_SPACINGS = (0.625, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5)
SLICE_WEIGHTS = (0.14, 0.08, 0.1, 0.14, 0.18, 0.08, 0.1, 0.18)
# version 2 adds the thick slices of older and low-dose scans: about 20 % at 3 or 5 mm
SLICE_SPACINGS_V2 = (*SLICE_SPACINGS, 3.0, 5.0)
SLICE_WEIGHTS_V2 = (*(0.8 * w for w in SLICE_WEIGHTS), 0.08, 0.12)
FULL_SLICES_V2 = (40, 400)  # a chest in 5 mm slices is about 60 of them
#: sub-slices of a thick slice are at most this far apart (the scene is drawn on them, then
#: averaged over the slice: its slice-sensitivity profile)
SUB_SLICE_MM = 1.0
# stored orientations: identity (most), head-to-foot slice order, and x/y flipped
AXIS_SIGNS = ((1, 1, 1), (1, 1, -1), (-1, -1, 1))
AXIS_SIGN_WEIGHTS = (0.7, 0.2, 0.1)


def sample_full_grid(
    anatomy: ChestAnatomy,
    rng: np.random.Generator,
    version: RealismVersion = RealismVersion.V1,
) -> ScanGrid:
    """A clinical 512x512 grid that covers the chest: 120-400 slices of 0.6-2.5 mm (version 1);
    version 2 adds 3 and 5 mm slices (40 slices at least) with a slice thickness equal to the
    spacing, drawn by averaging over the slice."""
    v2 = version >= RealismVersion.V2
    spacings, weights = (
        (SLICE_SPACINGS_V2, SLICE_WEIGHTS_V2) if v2 else (SLICE_SPACINGS, SLICE_WEIGHTS)
    )
    fit = (2 * anatomy.body_ax + 12) / FULL_MATRIX
    pixel = float(np.clip(max(rng.uniform(0.5, 0.9), fit), 0.5, 0.9))
    fov = round(pixel * FULL_MATRIX)
    pixel = fov / FULL_MATRIX
    dz = float(rng.choice(spacings, p=weights))
    z_top = max(lung.z_apex for lung in anatomy.lungs) + rng.uniform(12, 35)
    z_bottom = min(lung.z_dome - lung.recess_mm for lung in anatomy.lungs) - rng.uniform(5, 25)
    n = int(np.clip(round((z_top - z_bottom) / dz), *(FULL_SLICES_V2 if v2 else FULL_SLICES)))
    extent = (n - 1) * dz
    z_bottom = (z_top + z_bottom) / 2 - extent / 2  # centre the coverage on the lungs
    origin = (
        -fov / 2 + pixel / 2 + rng.uniform(-8, 8),
        -fov / 2 + pixel / 2 + rng.uniform(0, 25),
        round(z_bottom, 3),
    )
    signs = AXIS_SIGNS[int(rng.choice(len(AXIS_SIGNS), p=AXIS_SIGN_WEIGHTS))]
    return ScanGrid(
        shape_irc=(n, FULL_MATRIX, FULL_MATRIX),
        spacing_xyz=(pixel, pixel, dz),
        canonical_origin_xyz=tuple(round(float(v), 4) for v in origin),
        axis_signs_xyz=signs,
        profile_mm=dz if v2 else None,
    )


def small_grid(full: ScanGrid) -> ScanGrid:
    """The same field of view on at most 160x160x96 voxels (coarser spacing, same anatomy)."""
    nz, ny, nx = full.shape_irc
    sx, sy, sz = full.spacing_xyz
    new_n = (min(nz, SMALL_SLICES), SMALL_MATRIX, SMALL_MATRIX)
    new_spacing = (sx * nx / SMALL_MATRIX, sy * ny / SMALL_MATRIX, sz * nz / new_n[0])
    # keep the outer edges of the field of view where they were
    origin = tuple(
        o - s_old / 2 + s_new / 2
        for o, s_old, s_new in zip(
            full.canonical_origin_xyz, full.spacing_xyz, new_spacing, strict=True
        )
    )
    return ScanGrid(
        shape_irc=new_n,
        spacing_xyz=tuple(round(s, 6) for s in new_spacing),
        canonical_origin_xyz=tuple(round(o, 4) for o in origin),
        axis_signs_xyz=full.axis_signs_xyz,
        # coarser slices average over proportionally more of the scene
        profile_mm=None if full.profile_mm is None else round(full.profile_mm * nz / new_n[0], 6),
    )


def sub_slices(grid: ScanGrid) -> int:
    """How many sub-slices a slice of ``grid`` is drawn on: 1 (its centre) without a profile."""
    if grid.profile_mm is None:
        return 1
    return max(1, int(np.ceil(grid.profile_mm / SUB_SLICE_MM - 1e-6)))


def fine_grid(grid: ScanGrid) -> ScanGrid:
    """The grid the scene is drawn on before each slice averages its sub-slices.

    Slice i covers [z_i - T/2, z_i + T/2] (T = profile width, equal to the spacing here); its
    k sub-slices sit at the centres of k equal parts of that interval, so the mean over them is
    the midpoint rule for a rectangular slice-sensitivity profile.
    """
    k = sub_slices(grid)
    if k == 1:
        return grid
    if abs(grid.profile_mm - grid.spacing_xyz[2]) > 1e-6:
        raise ValueError("a slice profile wider or narrower than the spacing is not supported")
    nz, ny, nx = grid.shape_irc
    sx, sy, sz = grid.spacing_xyz
    ox, oy, oz = grid.canonical_origin_xyz
    return ScanGrid(
        shape_irc=(nz * k, ny, nx),
        spacing_xyz=(sx, sy, sz / k),
        canonical_origin_xyz=(ox, oy, oz - sz / 2 + sz / (2 * k)),
        axis_signs_xyz=(1, 1, 1),
    )
