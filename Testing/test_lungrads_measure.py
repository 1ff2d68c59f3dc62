"""Lung-RADS measurements against analytic spheres and ellipsoids on oblique and anisotropic grids.

A binary segment fixes each edge to within half a voxel, so every axis must come out within one
voxel step in the axial plane (half a voxel at each end) of the analytic cross-section at the cut
that was measured, plus the 0.05 mm of rounding to 0.1 mm; volumes within half a voxel layer over
the surface. (Measured here: at most 0.9 of a step; the long axis reads a few tenths of a mm long
on average, since calipers take the widest of all directions on a stepped outline.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from lungcad.ct import Geometry
from lungcad.geometry import voxel_to_world
from lungcad.lungrads.axial import axial_cuts, s_axis
from lungcad.lungrads.caliper import caliper
from lungcad.lungrads.measure import (
    SOLID_COMPONENT_HU,
    AxialAxes,
    measure_segment,
    solid_part,
    tenths,
)


def _rotation(axes: str, degrees: list[float]) -> np.ndarray:
    return Rotation.from_euler(axes, degrees, degrees=True).as_matrix()


#: name -> (spacing_xyz, direction); columns of the direction are the col, row, index axes in LPS
GRIDS = {
    "isotropic identity": ((0.7, 0.7, 0.7), np.eye(3)),
    "anisotropic, x and y flipped, 2.5 mm slices": ((0.6, 0.8, 2.5), np.diag([-1.0, -1.0, 1.0])),
    "rotated 30 degrees about S": ((0.6, 0.8, 1.25), _rotation("z", [30])),
    "coronal slices (S along rows)": ((0.7, 2.0, 0.7), np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]])),
    "gantry tilt 20 degrees": ((0.7, 0.7, 1.25), _rotation("x", [20])),
    "oblique about three axes": ((0.6, 0.7, 1.0), _rotation("xyz", [15, 25, 35])),
}
#: (semi-axes: two in the axial plane, then along S; rotation of the in-plane pair about S)
SHAPES = {
    "sphere r 4 mm": ((4.0, 4.0, 4.0), 0.0),
    "ellipsoid 12 x 7 x 10 mm turned 20 degrees": ((6.0, 3.5, 5.0), 20.0),
}


def _grid(spacing, direction, semi) -> tuple[Geometry, np.ndarray]:
    """A grid wide enough for the shape and the shape's centre (off any voxel centre)."""
    n = int(2 * max(semi) / min(spacing)) + 6
    geometry = Geometry.from_arrays((10.0, -20.0, 30.0), spacing, direction, (n, n, n))
    centre = voxel_to_world(np.full(3, n / 2.0), geometry) + np.array([0.13, -0.27, 0.31])
    return geometry, centre


def _ellipsoid(geometry, centre, semi, turn_degrees) -> np.ndarray:
    irc = np.stack(np.indices(geometry.shape_irc), axis=-1).reshape(-1, 3)
    local = (voxel_to_world(irc, geometry) - centre) @ _rotation("z", [turn_degrees])
    inside = np.sum((local / np.asarray(semi)) ** 2, axis=1) <= 1.0
    return inside.reshape(geometry.shape_irc)


def _in_plane_voxel_width(geometry: Geometry) -> float:
    """The longest voxel step seen in the axial plane (mm): each array axis's spacing vector
    projected onto the plane; for a grid with slices along S, its larger pixel spacing."""
    steps = geometry.direction_matrix * np.asarray(geometry.spacing_xyz)  # columns: axis steps
    return float(np.max(np.hypot(steps[0], steps[1])))


def _slice_step(geometry: Geometry) -> float:
    """How far apart the measured axial cuts are (mm)."""
    axis = s_axis(geometry)
    return geometry.spacing_irc[axis] if axis is not None else min(geometry.spacing_xyz)


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_axes_match_the_analytic_cross_section_within_half_a_voxel_per_edge(grid, shape):
    spacing, direction = GRIDS[grid]
    semi, turn = SHAPES[shape]
    geometry, centre = _grid(spacing, direction, semi)
    mask = _ellipsoid(geometry, centre, semi, turn)

    m = measure_segment((0, 0, 0), mask, geometry)

    # the largest cut is the one nearest the centre or, by a digitisation tie, its neighbour
    assert abs(m.axes.s_mm - centre[2]) <= 1.5 * _slice_step(geometry) + 1e-9
    shrink = math.sqrt(1.0 - ((m.axes.s_mm - centre[2]) / semi[2]) ** 2)
    long_true, short_true = 2 * max(semi[:2]) * shrink, 2 * min(semi[:2]) * shrink
    tolerance = _in_plane_voxel_width(geometry) + 0.05
    assert abs(m.axes.long_axis_mm - long_true) <= tolerance
    assert abs(m.axes.short_axis_mm - short_true) <= tolerance
    assert abs(m.axes.mean_diameter_mm - (long_true + short_true) / 2) <= tolerance
    assert m.recist_longest_mm >= m.axes.long_axis_mm
    assert abs(m.recist_longest_mm - 2 * max(semi[:2])) <= tolerance
    # the axes are drawn where they were measured, at right angles, and as long as reported
    (a, b), (c, d) = (
        (np.asarray(p) for p in m.axes.long_axis_lps),
        (np.asarray(p) for p in m.axes.short_axis_lps),
    )
    assert a[2] == b[2] == c[2] == d[2] == m.axes.s_mm
    assert abs(np.linalg.norm(b - a) - m.axes.long_axis_mm) <= 0.05
    assert abs(np.linalg.norm(d - c) - m.axes.short_axis_mm) <= 0.05
    assert abs(np.dot(b - a, d - c)) <= 1e-9 * np.linalg.norm(b - a) * np.linalg.norm(d - c)


@pytest.mark.parametrize("grid", GRIDS)
def test_volume_is_the_voxel_count_within_half_a_voxel_layer(grid):
    spacing, direction = GRIDS[grid]
    semi = (4.0, 4.0, 4.0)
    geometry, centre = _grid(spacing, direction, semi)
    mask = _ellipsoid(geometry, centre, semi, 0.0)

    m = measure_segment((0, 0, 0), mask, geometry)

    assert m.volume_mm3 == round(mask.sum() * geometry.voxel_volume_mm3)
    layer = 4 * math.pi * 4.0**2 * geometry.voxel_volume_mm3 ** (1 / 3) / 2
    assert abs(m.volume_mm3 - 4 / 3 * math.pi * 4.0**3) <= layer


def test_solid_component_is_measured_from_the_voxels_at_or_above_the_threshold():
    spacing, direction = GRIDS["rotated 30 degrees about S"]
    semi = (7.0, 7.0, 7.0)
    geometry, centre = _grid(spacing, direction, semi)
    whole = _ellipsoid(geometry, centre, semi, 0.0)
    core = _ellipsoid(geometry, centre, (2.5, 2.5, 2.5), 0.0)
    hu = np.where(core, 40, np.where(whole, -550, -850)).astype(np.int16)
    hu[whole & ~core & (np.indices(hu.shape)[0] == 0)] = int(SOLID_COMPONENT_HU)  # at: solid
    solid = solid_part(whole, hu)

    m = measure_segment((0, 0, 0), whole, geometry, solid_array=solid)

    tolerance = _in_plane_voxel_width(geometry) + 0.05
    assert abs(m.axes.mean_diameter_mm - 14.0) <= tolerance
    assert m.solid is not None
    assert abs(m.solid_mean_diameter_mm - 5.0) <= tolerance
    assert m.solid_hu_threshold == SOLID_COMPONENT_HU == -300.0
    assert np.array_equal(solid, whole & (hu >= -300))


def test_no_solid_voxel_gives_no_solid_component():
    geometry, centre = _grid((0.7, 0.7, 0.7), np.eye(3), (3.0, 3.0, 3.0))
    whole = _ellipsoid(geometry, centre, (3.0, 3.0, 3.0), 0.0)
    hu = np.full(whole.shape, -301, dtype=np.int16)

    m = measure_segment((0, 0, 0), whole, geometry, solid_array=solid_part(whole, hu))

    assert m.solid is None
    assert m.solid_mean_diameter_mm == 0.0


def test_mean_diameter_takes_the_cut_with_the_largest_mean_and_recist_the_longest_axis():
    """A 12-mm bar on one slice and a 9-mm disc on another: Lung-RADS measures the disc,
    RECIST's longest diameter is the bar's."""
    geometry = Geometry.from_arrays((0.0, 0.0, 0.0), (0.5, 0.5, 2.0), np.eye(3), (2, 40, 40))
    mask = np.zeros(geometry.shape_irc, dtype=bool)
    mask[0, 20, 8:32] = True  # 24 voxels of 0.5 mm: outline 12.0 x 1.0 mm
    rows, cols = np.indices((40, 40))
    mask[1] = (rows - 19.5) ** 2 + (cols - 19.5) ** 2 <= 4.5**2 / 0.25  # radius 4.5 mm

    m = measure_segment((0, 0, 0), mask, geometry)

    assert m.axes.s_mm == 2.0
    assert abs(m.axes.mean_diameter_mm - 9.0) <= 0.5 + 0.05
    assert m.recist_longest_mm == tenths(math.hypot(12.0, 1.0)) / 10 == 12.0


def test_segment_placed_off_the_grid_origin_measures_in_world_space():
    spacing, direction = GRIDS["anisotropic, x and y flipped, 2.5 mm slices"]
    geometry, centre = _grid(spacing, direction, (4.0, 4.0, 4.0))
    mask = _ellipsoid(geometry, centre, (4.0, 4.0, 4.0), 0.0)
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(mask))
    start = tuple(s.start for s in box)

    whole = measure_segment((0, 0, 0), mask, geometry)
    boxed = measure_segment(start, mask[box], geometry)

    assert boxed == whole


def test_an_empty_segment_is_refused():
    geometry = Geometry.from_arrays((0, 0, 0), (1, 1, 1), np.eye(3), (3, 3, 3))
    with pytest.raises(ValueError, match="cannot measure an empty segment"):
        measure_segment((0, 0, 0), np.zeros((3, 3, 3), dtype=bool), geometry)
    assert axial_cuts((0, 0, 0), np.zeros((3, 3, 3), dtype=bool), geometry) == []


def test_one_voxel_is_one_voxel_wide():
    geometry = Geometry.from_arrays((0, 0, 0), (0.7, 0.9, 1.5), np.eye(3), (1, 1, 1))
    m = measure_segment((0, 0, 0), np.ones((1, 1, 1), dtype=bool), geometry)
    # outline: the four edge midpoints, a diamond 0.7 x 0.9 mm
    assert (m.axes.long_axis_mm, m.axes.short_axis_mm) == (0.9, 0.7)
    assert m.axes.mean_diameter_mm == 0.8
    assert m.volume_mm3 == 1.0  # 0.945 mm3 to the nearest mm3


def test_caliper_of_a_rectangle_is_its_diagonal_and_the_perpendicular_chord():
    corners = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 2.0], [0.0, 2.0], [2.0, 1.0]])
    c = caliper(corners)
    assert c.long_mm == pytest.approx(math.sqrt(20.0), abs=1e-12)
    # perpendicular to the diagonal, the longest chord runs from a corner: h * d / w
    assert c.short_mm == pytest.approx(2.0 * math.sqrt(20.0) / 4.0, abs=1e-12)


def test_caliper_of_a_dense_ellipse_is_its_axes():
    angles = np.linspace(0, 2 * np.pi, 3601)
    turn = np.deg2rad(35)
    x, y = 5.0 * np.cos(angles), 2.0 * np.sin(angles)
    points = np.stack([x * np.cos(turn) - y * np.sin(turn), x * np.sin(turn) + y * np.cos(turn)], 1)
    c = caliper(points)
    assert c.long_mm == pytest.approx(10.0, abs=1e-5)
    assert c.short_mm == pytest.approx(4.0, abs=1e-3)


def test_caliper_of_collinear_points_has_no_width():
    c = caliper(np.array([[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]]))
    assert c.long_mm == pytest.approx(math.sqrt(18.0))
    assert c.short_mm == 0.0


@pytest.mark.parametrize(
    ("mm", "expected"),
    [(5.95, 60), (5.949, 59), (5.94999, 59), (6.05, 61), (0.04, 0), (0.05, 1), (14.95, 150)],
)
def test_tenths_round_halves_up_as_printed(mm, expected):
    assert tenths(mm) == expected


def test_mean_diameter_is_the_mean_of_the_rounded_axes_rounded_half_up():
    from lungcad.lungrads.caliper import Caliper

    ends = ((0.0, 0.0), (1.0, 0.0))
    # 6.04 -> 6.0 and 5.86 -> 5.9; their mean 5.95 -> 6.0
    axes = AxialAxes.of(Caliper(6.04, 5.86, ends, ends), s_mm=-12.5)
    assert (axes.long_axis_mm, axes.short_axis_mm, axes.mean_diameter_mm) == (6.0, 5.9, 6.0)
    assert axes.long_axis_lps == ((0.0, 0.0, -12.5), (1.0, 0.0, -12.5))
    # 5.94 -> 5.9 and 5.86 -> 5.9: mean 5.9
    assert AxialAxes.of(Caliper(5.94, 5.86, ends, ends), 0.0).mean_diameter_mm == 5.9


@pytest.mark.parametrize("grid", [g for g in GRIDS if s_axis(Geometry.from_arrays(
    (0, 0, 0), GRIDS[g][0], GRIDS[g][1], (1, 1, 1))) is not None])  # fmt: skip
def test_every_outline_point_lies_within_half_a_voxel_of_the_true_boundary(grid):
    """On a grid with slices along S each outline point is the midpoint between a voxel inside
    the sphere and its neighbour outside, so the true boundary crosses within half a step."""
    spacing, direction = GRIDS[grid]
    geometry, centre = _grid(spacing, direction, (4.0, 4.0, 4.0))
    mask = _ellipsoid(geometry, centre, (4.0, 4.0, 4.0), 0.0)
    half_step = _in_plane_voxel_width(geometry) / 2

    cuts = axial_cuts((0, 0, 0), mask, geometry)

    assert len(cuts) >= 8 / _slice_step(geometry) - 1
    for cut in cuts:
        radius = math.sqrt(16.0 - (cut.s_mm - centre[2]) ** 2)
        off = np.abs(np.linalg.norm(cut.outline_xy - centre[:2], axis=1) - radius)
        assert off.max() <= half_step + 1e-9
