"""Lung-RADS measurements of one segment on its CT's own voxel grid.

Lung-RADS v2022 sizes a nodule by its *mean diameter*: the long axis and the short axis
perpendicular to it, each to 0.1 mm, and their mean to 0.1 mm, on the image where the nodule is
largest. Here the image is the axial cut (:mod:`lungcad.lungrads.axial`) whose mean of long and
short axis is largest, since that is the size the category is read from. RECIST 1.1's longest
diameter is the longest long axis on any axial cut (a spicule may make it another cut). Volumes
are counted on the original grid, as the segmentation file stores the segment, to 1 mm³.

A binary segment fixes each edge to within half a voxel, so an axis (two edges) is exact to
within one voxel spacing and a volume to within half a voxel layer over its surface.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

from lungcad.ct import Geometry
from lungcad.lungrads.axial import axial_cuts
from lungcad.lungrads.caliper import Caliper, caliper

Point3 = tuple[float, float, float]

#: HU at or above which a voxel of a segment belongs to its solid component. Ground-glass
#: (non-solid) attenuation lies roughly between -800 and -300 HU on lung windows, the solid
#: component of a part-solid nodule obscures vessels and lies near soft tissue (-100..+100 HU);
#: -300 HU is the cut most semi-automatic tools use between the two, and the phantoms' ground-glass
#: parts (-700..-450 HU) and solid parts (+10..+60 HU) lie well on either side of it.
SOLID_COMPONENT_HU = -300.0


def tenths(mm: float) -> int:
    """``mm`` to the nearest 0.1 mm (halves up, as a person rounds the printed value), in tenths."""
    return int(Decimal(repr(float(mm))).scaleb(1).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class AxialAxes:
    """Long and short axis on one axial cut, rounded to 0.1 mm, and their Lung-RADS mean.

    ``s_mm`` is the cut's S position (LPS z); the end points are LPS mm, for drawing the axes
    (Slicer line markups, DICOM SR spatial coordinates).
    """

    long_axis_mm: float
    short_axis_mm: float
    mean_diameter_mm: float
    s_mm: float
    long_axis_lps: tuple[Point3, Point3]
    short_axis_lps: tuple[Point3, Point3]

    @classmethod
    def of(cls, cut: Caliper, s_mm: float) -> AxialAxes:
        long_t, short_t = tenths(cut.long_mm), tenths(cut.short_mm)
        mean_t = (long_t + short_t + 1) // 2  # the mean of two tenths, halves up

        def lps(ends: tuple[tuple[float, float], ...]) -> tuple[Point3, Point3]:
            (x0, y0), (x1, y1) = ends
            return ((x0, y0, s_mm), (x1, y1, s_mm))

        return cls(
            long_axis_mm=long_t / 10,
            short_axis_mm=short_t / 10,
            mean_diameter_mm=mean_t / 10,
            s_mm=float(s_mm),
            long_axis_lps=lps(cut.long_ends),
            short_axis_lps=lps(cut.short_ends),
        )


@dataclass(frozen=True)
class LungRadsMeasurements:
    """What Lung-RADS and RECIST read from one finding's segment (see the module docstring).

    ``axes``: the whole segment's long/short axis and mean diameter on its largest axial cut.
    ``solid``: the same for its part at or above ``solid_hu_threshold`` (None where no voxel
    reaches it, or the HU were not known); the category reads it for part-solid nodules only.
    """

    axes: AxialAxes
    solid: AxialAxes | None
    volume_mm3: float
    recist_longest_mm: float
    solid_hu_threshold: float = SOLID_COMPONENT_HU

    @property
    def mean_diameter_mm(self) -> float:
        return self.axes.mean_diameter_mm

    @property
    def solid_mean_diameter_mm(self) -> float:
        """The solid component's mean diameter; 0 where there is none."""
        return 0.0 if self.solid is None else self.solid.mean_diameter_mm


def largest_axial(
    start_irc: tuple[int, int, int], array: np.ndarray, geometry: Geometry
) -> tuple[AxialAxes, float] | None:
    """The axes on the axial cut of largest mean diameter (ties: the lowest S), and the longest
    long axis on any cut (RECIST, mm, unrounded); None for an empty segment.

    Cuts are measured widest first and the rest skipped once neither answer can change: no axis
    of a cut is longer than the diagonal of its outline's bounding box.
    """
    cuts = axial_cuts(start_irc, array, geometry)
    bounds = [float(np.hypot(*np.ptp(cut.outline_xy, axis=0))) for cut in cuts]
    best: tuple[float, float, float] | None = None  # (long + short, long, -S)
    best_axes: AxialAxes | None = None
    longest = 0.0
    for k in sorted(range(len(cuts)), key=lambda k: (-bounds[k], cuts[k].s_mm)):
        if best is not None and 2 * bounds[k] < best[0] and bounds[k] < longest:
            break
        measured = caliper(cuts[k].outline_xy)
        longest = max(longest, measured.long_mm)
        key = (measured.long_mm + measured.short_mm, measured.long_mm, -cuts[k].s_mm)
        if best is None or key > best:
            best, best_axes = key, AxialAxes.of(measured, cuts[k].s_mm)
    return None if best_axes is None else (best_axes, longest)


def measure_segment(
    start_irc: tuple[int, int, int],
    array: np.ndarray,
    geometry: Geometry,
    solid_array: np.ndarray | None = None,
    solid_start_irc: tuple[int, int, int] | None = None,
) -> LungRadsMeasurements:
    """Lung-RADS measurements of the bool segment ``array`` placed at ``start_irc`` on
    ``geometry``; ``solid_array`` (placed at ``solid_start_irc``, default ``start_irc``) is its
    part at or above :data:`SOLID_COMPONENT_HU`, when the HU are known."""
    whole = largest_axial(start_irc, array, geometry)
    if whole is None:
        raise ValueError("cannot measure an empty segment")
    axes, longest = whole
    solid = None
    if solid_array is not None and solid_array.any():
        part = largest_axial(solid_start_irc or start_irc, solid_array, geometry)
        solid = None if part is None else part[0]
    volume = float(np.count_nonzero(array)) * geometry.voxel_volume_mm3
    return LungRadsMeasurements(
        axes=axes,
        solid=solid,
        volume_mm3=float(round(volume)),
        recist_longest_mm=tenths(longest) / 10,
    )


def solid_part(array: np.ndarray, hu: np.ndarray) -> np.ndarray:
    """The voxels of ``array`` whose HU (same shape) is at or above :data:`SOLID_COMPONENT_HU`."""
    return array & (hu >= SOLID_COMPONENT_HU)
