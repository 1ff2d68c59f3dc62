"""The scale policy: models see every CT at one physical scale, whatever the scanner.

Real scans range from 0.5 to 0.9 mm pixels and 0.6 to 5 mm slices; a network that crops in voxels
would see a different physical size on each. So the engine and the training tree resample every CT
onto an LPS-aligned (identity direction) grid at :data:`CANONICAL_SPACING_XYZ` before any model
looks at it, and map masks back to the original voxels afterwards. The grid covers the volume's
whole physical extent, so flipped, permuted and oblique scans all land the same way up.
:data:`SPACING_POLICY` is what model cards record. :func:`to_canonical` is the one resampler: the
detector (:mod:`lungcad.pipeline.canonical`) and the training cache both call it.

The grid is checked before anything is resampled (:func:`check_canonical_grid`): a CT whose
physical extent exceeds :data:`MAX_EXTENT_MM` (no scanner's field is that large; a 32x32x4 CT
labelled with 40 mm voxels would ask for 1707x1707x128 canonical voxels) or whose grid would
not fit the memory budget of :mod:`lungcad.budget` is refused with a message saying why.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import SimpleITK as sitk

from lungcad.budget import check_voxels
from lungcad.ct import CT, Geometry
from lungcad.errors import CTTooLargeError
from lungcad.geometry import voxel_to_world
from lungcad.io import IN_MEMORY, ct_to_sitk, on_grid

log = logging.getLogger(__name__)

__all__ = [
    "CANONICAL_DIRECTION",
    "CANONICAL_SPACING_XYZ",
    "DEFAULT_HU",
    "HU_WINDOW",
    "SPACING_POLICY",
    "canonical_geometry",
    "check_canonical_grid",
    "labels_from_canonical",
    "labels_to_canonical",
    "normalise_hu",
    "spacing_policy",
    "to_canonical",
]

CANONICAL_SPACING_XYZ: tuple[float, float, float] = (0.75, 0.75, 1.25)
"""Voxel size (mm) along x (col), y (row) and z (index) of the canonical grid."""

CANONICAL_DIRECTION: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
"""Identity: col, row and index run along +x (L), +y (P) and +z (S) in LPS."""

DEFAULT_HU = -1024
"""Value of canonical voxels outside the source volume (the readers' padding value)."""

HU_WINDOW: tuple[int, int] = (-1000, 1000)
"""Models see HU clamped to this window (as the seeds do); their input batch norm scales it."""

SLAB_SLICES = 32
"""Canonical slices resampled per SimpleITK call (32 slices of 512x512 float32: 32 MB scratch)."""

MAX_EXTENT_MM: tuple[float, float, float] = (1000.0, 1000.0, 2500.0)
"""Largest physical box (mm, along x, y, z) a CT may span: scanner bores are 70-80 cm wide
(an oblique 70 cm field still fits in 1 m), and a whole-body scan is about 2 m long."""

CANONICAL_BYTES_PER_VOXEL = 8
"""Memory per canonical voxel the detector holds: the int16 grid, the probability map, masks."""

# tolerance so that an extent of exactly n voxels does not round up to n + 1 from float noise
_EXTENT_EPS = 1e-6


def spacing_policy(spacing_xyz: tuple[float, float, float] = CANONICAL_SPACING_XYZ) -> dict:
    """The policy as a JSON-ready dict; a non-default spacing is for tests and experiments."""
    return {
        "spacing_xyz": [float(s) for s in spacing_xyz],
        "direction": list(CANONICAL_DIRECTION),
        "grid": "LPS-aligned box covering the volume's voxel corners, centred on it",
        "interpolation": "linear",
        "label_interpolation": "nearest",
        "default_hu": DEFAULT_HU,
        "window_hu": list(HU_WINDOW),
    }


SPACING_POLICY: dict = spacing_policy()
"""What model cards record: spacing, direction, interpolation and HU window."""


def canonical_geometry(
    geometry: Geometry, spacing_xyz: tuple[float, float, float] = CANONICAL_SPACING_XYZ
) -> Geometry:
    """The LPS-aligned grid at ``spacing_xyz`` covering ``geometry``'s physical extent.

    The extent is the bounding box of the volume's outer voxel corners (so a volume of n voxels of
    size s spans n * s mm along that axis); the canonical grid has ceil(extent / spacing) voxels
    per axis and is centred on that box.
    """
    shape = np.asarray(geometry.shape_irc, dtype=np.float64)
    lo_irc, hi_irc = -0.5 * np.ones(3), shape - 0.5
    corners = np.array(
        [[i, r, c] for i in (lo_irc[0], hi_irc[0]) for r in (lo_irc[1], hi_irc[1])
         for c in (lo_irc[2], hi_irc[2])]
    )  # fmt: skip
    world = voxel_to_world(corners, geometry)
    lo, hi = world.min(axis=0), world.max(axis=0)
    spacing = np.asarray(spacing_xyz, dtype=np.float64)
    size_xyz = [
        max(1, math.ceil(e / s - _EXTENT_EPS)) for e, s in zip(hi - lo, spacing, strict=True)
    ]
    centre = (lo + hi) / 2
    origin = centre - (np.asarray(size_xyz) - 1) / 2 * spacing
    return Geometry.from_arrays(origin, spacing, CANONICAL_DIRECTION, tuple(size_xyz[::-1]))


def check_canonical_grid(
    ct_geometry: Geometry, target: Geometry, where: object = IN_MEMORY
) -> None:
    """Refuse a canonical ``target`` grid too large for any real CT, or for memory.

    Raises :class:`~lungcad.errors.CTTooLargeError` naming ``where`` (the CT's source).
    """
    extent = [n * s for n, s in zip(target.shape_irc[::-1], target.spacing_xyz, strict=True)]
    if any(e > limit for e, limit in zip(extent, MAX_EXTENT_MM, strict=True)):
        nz, ny, nx = ct_geometry.shape_irc
        sx, sy, sz = ct_geometry.spacing_xyz
        raise CTTooLargeError(
            str(where),
            f"the CT spans {' x '.join(f'{e:.0f}' for e in extent)} mm (x, y, z), more than any "
            f"scanner's field ({' x '.join(f'{m:.0f}' for m in MAX_EXTENT_MM)} mm): its "
            f"{nx}x{ny}x{nz} voxels of {sx:g} x {sy:g} x {sz:g} mm are probably mislabelled; "
            "resampling would need "
            f"{'x'.join(str(n) for n in target.shape_irc[::-1])} canonical voxels, so it is "
            "refused before resampling",
        )
    check_voxels(
        str(where),
        target.shape_irc[::-1],
        CANONICAL_BYTES_PER_VOXEL,
        what=f"its canonical grid ({'x'.join(f'{v:g}' for v in target.spacing_xyz)} mm) needs",
    )


def _reference_image(geometry: Geometry) -> sitk.Image:
    """An empty image carrying ``geometry`` (what sitk.Resample takes as the output grid)."""
    size_xyz = [int(n) for n in geometry.shape_irc[::-1]]
    return on_grid(sitk.Image(size_xyz, sitk.sitkUInt8), geometry)


def _sub_geometry(
    geometry: Geometry, start_irc: tuple[int, int, int], shape_irc: tuple[int, int, int]
) -> Geometry:
    """The grid of ``geometry``'s voxels from ``start_irc`` on, ``shape_irc`` of them."""
    origin = voxel_to_world(np.asarray(start_irc, dtype=np.float64), geometry)
    return Geometry.from_arrays(origin, geometry.spacing_xyz, geometry.direction, shape_irc)


def to_canonical(
    ct: CT,
    spacing_xyz: tuple[float, float, float] = CANONICAL_SPACING_XYZ,
    progress: Callable[[float], None] | None = None,
) -> CT:
    """``ct`` resampled (linear, outside = -1024 HU, int16) onto its canonical grid.

    Interpolation runs in float32 and is rounded, so that int16 truncation does not bias HU. It
    runs in slabs of :data:`SLAB_SLICES` canonical slices so that the float32 scratch stays small
    on a full-size CT; each slab is resampled onto its own piece of the grid, and a voxel's linear
    interpolation depends only on where it is, so the slabs join into the whole-volume result.
    ``progress`` gets the fraction of slices done after each slab. The grid is checked first
    (:func:`check_canonical_grid`).
    """
    target = canonical_geometry(ct.geometry, spacing_xyz)
    check_canonical_grid(ct.geometry, target, ct.source or IN_MEMORY)
    image = ct_to_sitk(ct)
    hu = np.empty(target.shape_irc, dtype=np.int16)
    n = target.shape_irc[0]
    lo16, hi16 = np.iinfo(np.int16).min, np.iinfo(np.int16).max
    for z0 in range(0, n, SLAB_SLICES):
        z1 = min(z0 + SLAB_SLICES, n)
        slab = _sub_geometry(target, (z0, 0, 0), (z1 - z0, *target.shape_irc[1:]))
        resampled = sitk.Resample(
            image, _reference_image(slab), sitk.Transform(), sitk.sitkLinear, float(DEFAULT_HU),
            sitk.sitkFloat32,
        )  # fmt: skip
        hu[z0:z1] = np.clip(np.rint(sitk.GetArrayViewFromImage(resampled)), lo16, hi16)
        if progress is not None:
            progress(z1 / n)
    metadata = dict(ct.metadata)
    metadata["canonical_spacing_xyz"] = " ".join(f"{s:g}" for s in spacing_xyz)
    log.debug(
        "%s: resampled %s -> %s voxels at %s mm",
        ct.series_uid or "CT",
        ct.geometry.shape_irc,
        target.shape_irc,
        spacing_xyz,
    )
    return CT(hu=hu, geometry=target, series_uid=ct.series_uid, source=ct.source, metadata=metadata)


def _resample_labels(labels: np.ndarray, source: Geometry, target: Geometry) -> np.ndarray:
    """Nearest-neighbour resampling of an integer (or bool) map; outside = 0; dtype kept."""
    if tuple(labels.shape) != tuple(source.shape_irc):
        raise ValueError(f"label map shape {labels.shape} does not match grid {source.shape_irc}")
    is_bool = labels.dtype == np.bool_
    if not (is_bool or np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"a label map holds integers or booleans, got {labels.dtype}")
    work = labels.astype(np.uint8) if is_bool else np.ascontiguousarray(labels)
    image = on_grid(sitk.GetImageFromArray(work), source)
    out = sitk.Resample(
        image, _reference_image(target), sitk.Transform(), sitk.sitkNearestNeighbor, 0
    )
    result = sitk.GetArrayFromImage(out)
    return result.astype(bool) if is_bool else result.astype(labels.dtype, copy=False)


def labels_to_canonical(
    labels: np.ndarray, geometry: Geometry, canonical_geometry: Geometry
) -> np.ndarray:
    """A label map on ``geometry``'s voxels mapped onto the canonical grid (nearest neighbour)."""
    return _resample_labels(labels, geometry, canonical_geometry)


def labels_from_canonical(
    labels: np.ndarray, canonical_geometry: Geometry, target_geometry: Geometry
) -> np.ndarray:
    """A label map on the canonical grid mapped back onto the original voxels (nearest)."""
    return _resample_labels(labels, canonical_geometry, target_geometry)


def normalise_hu(array: np.ndarray) -> np.ndarray:
    """HU clamped to :data:`HU_WINDOW` as float32 (units stay HU, as the seeds feed them)."""
    lo, hi = HU_WINDOW
    return np.clip(np.asarray(array, dtype=np.float32), lo, hi)
