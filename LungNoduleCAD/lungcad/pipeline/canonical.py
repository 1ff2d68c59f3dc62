"""The CT resampled onto the models' canonical grid, slab by slab so memory stays bounded."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from lungcad.ct import CT, Geometry
from lungcad.ctio import ct_to_sitk
from lungcad.geometry import voxel_to_world
from lungcad.pipeline.progress import Monitor
from lungcad.preprocess import DEFAULT_HU, canonical_geometry

#: Canonical slices resampled per call: 32 slices of 512x512 float32 is 32 MB of scratch.
SLAB_SLICES = 32


def sub_geometry(geometry: Geometry, start_irc: tuple[int, int, int], shape_irc) -> Geometry:
    """The grid of ``geometry``'s voxels from ``start_irc`` on, ``shape_irc`` of them."""
    origin = voxel_to_world(np.asarray(start_irc, dtype=np.float64), geometry)
    return Geometry.from_arrays(origin, geometry.spacing_xyz, geometry.direction, shape_irc)


def _reference(geometry: Geometry) -> sitk.Image:
    ref = sitk.Image([int(n) for n in geometry.shape_irc[::-1]], sitk.sitkUInt8)
    ref.SetOrigin(geometry.origin_xyz)
    ref.SetSpacing(geometry.spacing_xyz)
    ref.SetDirection(geometry.direction)
    return ref


def resample_to_canonical(ct: CT, monitor: Monitor | None = None) -> CT:
    """Same as :func:`lungcad.preprocess.to_canonical` (linear, rounded, -1024 outside), in slabs.

    Each slab is resampled onto its own piece of the canonical grid; linear interpolation of a
    voxel only depends on where it is, so the slabs join into exactly the whole-volume result.
    """
    monitor = monitor or Monitor()
    target = canonical_geometry(ct.geometry)
    image = ct_to_sitk(ct)
    out = np.empty(target.shape_irc, dtype=np.int16)
    n = target.shape_irc[0]
    lo16, hi16 = np.iinfo(np.int16).min, np.iinfo(np.int16).max
    for z0 in range(0, n, SLAB_SLICES):
        z1 = min(z0 + SLAB_SLICES, n)
        slab = sub_geometry(target, (z0, 0, 0), (z1 - z0, *target.shape_irc[1:]))
        resampled = sitk.Resample(
            image, _reference(slab), sitk.Transform(), sitk.sitkLinear, float(DEFAULT_HU),
            sitk.sitkFloat32,
        )  # fmt: skip
        arr = sitk.GetArrayViewFromImage(resampled)
        out[z0:z1] = np.clip(np.rint(arr), lo16, hi16)
        monitor.report("resample", z1 / n)
    metadata = dict(ct.metadata)
    metadata["canonical_spacing_xyz"] = " ".join(f"{s:g}" for s in target.spacing_xyz)
    return CT(
        hu=out, geometry=target, series_uid=ct.series_uid, source=ct.source, metadata=metadata
    )
