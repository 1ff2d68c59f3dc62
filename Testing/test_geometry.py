"""Voxel <-> LPS world mapping in lungcad.geometry, checked against SimpleITK's own transforms.

Our voxel order is (index, row, col); SimpleITK's index order is (col, row, index).
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lungcad.ct import Geometry
from lungcad.geometry import (
    contains_voxel,
    lps_to_ras,
    ras_to_lps,
    voxel_to_world,
    world_to_voxel,
    world_to_voxel_index,
)


def rotation(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    """Rodrigues rotation matrix about ``axis``."""
    k = np.asarray(axis, dtype=float)
    k /= np.linalg.norm(k)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    t = np.deg2rad(degrees)
    return np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * kx @ kx


DIRECTIONS = {
    "identity": np.eye(3),
    "flip_x_y": np.diag([-1.0, -1.0, 1.0]),
    "flip_z_left_handed": np.diag([1.0, 1.0, -1.0]),
    "permuted_flipped": np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),
    "coronal": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
    "oblique": rotation((1.0, 2.0, 3.0), 30.0),
    "oblique_flipped": rotation((-2.0, 1.0, 0.5), 47.0) @ np.diag([1.0, -1.0, -1.0]),
    "oblique_left_handed": rotation((0.3, -1.0, 2.0), 71.0) @ np.diag([-1.0, 1.0, 1.0]),
}

SHAPE_IRC = (7, 11, 13)
SPACING_XYZ = (0.7, 0.8, 2.5)
ORIGIN_XYZ = (-120.5, 33.25, -410.0)


def make_pair(direction: np.ndarray) -> tuple[Geometry, sitk.Image]:
    geometry = Geometry.from_arrays(ORIGIN_XYZ, SPACING_XYZ, direction, SHAPE_IRC)
    image = sitk.Image([SHAPE_IRC[2], SHAPE_IRC[1], SHAPE_IRC[0]], sitk.sitkInt16)
    image.SetOrigin(ORIGIN_XYZ)
    image.SetSpacing(SPACING_XYZ)
    image.SetDirection(tuple(np.ravel(direction)))
    return geometry, image


def random_voxels(n: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # continuous (index, row, col), a little beyond the grid on both sides
    return rng.uniform(-1.0, np.asarray(SHAPE_IRC, dtype=float) + 1.0, size=(n, 3))


@pytest.mark.parametrize("name", DIRECTIONS)
def test_voxel_to_world_matches_simpleitk_for_many_points(name: str) -> None:
    geometry, image = make_pair(DIRECTIONS[name])
    irc = random_voxels()
    expected = np.array(
        [image.TransformContinuousIndexToPhysicalPoint(tuple(p[::-1])) for p in irc]
    )
    world = voxel_to_world(irc, geometry)
    assert world.shape == (len(irc), 3)
    np.testing.assert_allclose(world, expected, atol=1e-9)


@pytest.mark.parametrize("name", DIRECTIONS)
def test_world_to_voxel_matches_simpleitk_for_many_points(name: str) -> None:
    geometry, image = make_pair(DIRECTIONS[name])
    rng = np.random.default_rng(1)
    world = np.asarray(ORIGIN_XYZ) + rng.uniform(-40.0, 40.0, size=(50, 3))
    expected_cri = np.array(
        [image.TransformPhysicalPointToContinuousIndex(tuple(p)) for p in world]
    )
    irc = world_to_voxel(world, geometry)
    assert irc.shape == (50, 3)
    np.testing.assert_allclose(irc, expected_cri[:, ::-1], atol=1e-9)


@pytest.mark.parametrize("name", DIRECTIONS)
def test_single_point_gives_a_3_vector_matching_simpleitk(name: str) -> None:
    geometry, image = make_pair(DIRECTIONS[name])
    irc = (3.25, 4.5, 10.75)
    world = voxel_to_world(irc, geometry)
    assert world.shape == (3,)
    expected = image.TransformContinuousIndexToPhysicalPoint((10.75, 4.5, 3.25))
    np.testing.assert_allclose(world, expected, atol=1e-9)
    back = world_to_voxel(list(world), geometry)
    assert back.shape == (3,)
    np.testing.assert_allclose(back, irc, atol=1e-9)


@pytest.mark.parametrize("name", DIRECTIONS)
def test_voxel_world_round_trip(name: str) -> None:
    geometry, _ = make_pair(DIRECTIONS[name])
    irc = random_voxels(200, seed=3)
    np.testing.assert_allclose(
        world_to_voxel(voxel_to_world(irc, geometry), geometry), irc, atol=1e-9
    )


@pytest.mark.parametrize("name", DIRECTIONS)
def test_one_step_along_each_axis_moves_by_spacing_along_the_direction_column(name: str) -> None:
    direction = DIRECTIONS[name]
    geometry, _ = make_pair(direction)
    np.testing.assert_allclose(voxel_to_world((0, 0, 0), geometry), ORIGIN_XYZ)
    for axis_irc, axis_xyz in ((0, 2), (1, 1), (2, 0)):
        step = np.zeros(3)
        step[axis_irc] = 1.0
        moved = voxel_to_world(step, geometry) - np.asarray(ORIGIN_XYZ)
        np.testing.assert_allclose(
            moved, SPACING_XYZ[axis_xyz] * direction[:, axis_xyz], atol=1e-12
        )


@pytest.mark.parametrize("name", DIRECTIONS)
def test_world_to_voxel_index_rounds_to_the_nearest_voxel_like_simpleitk(name: str) -> None:
    geometry, image = make_pair(DIRECTIONS[name])
    rng = np.random.default_rng(5)
    voxels = rng.integers(0, SHAPE_IRC, size=(40, 3))
    jitter = rng.uniform(-0.3, 0.3, size=(40, 3))
    world = voxel_to_world(voxels + jitter, geometry)
    index = world_to_voxel_index(world, geometry)
    assert index.dtype.kind == "i"
    np.testing.assert_array_equal(index, voxels)
    expected = np.array([image.TransformPhysicalPointToIndex(tuple(p))[::-1] for p in world])
    np.testing.assert_array_equal(index, expected)
    single = world_to_voxel_index(world[0], geometry)
    assert single.shape == (3,)
    np.testing.assert_array_equal(single, voxels[0])


def test_contains_voxel_checks_each_axis_against_the_shape() -> None:
    geometry, _ = make_pair(DIRECTIONS["permuted_flipped"])
    assert contains_voxel(np.array([0, 0, 0]), geometry) is True
    assert contains_voxel(np.array([6, 10, 12]), geometry) is True
    inside = contains_voxel(
        np.array([[6, 10, 12], [7, 0, 0], [0, 11, 0], [0, 0, 13], [-1, 0, 0]]), geometry
    )
    np.testing.assert_array_equal(inside, [True, False, False, False, False])


def test_lps_to_ras_negates_x_and_y_only() -> None:
    np.testing.assert_allclose(lps_to_ras((10.0, -20.0, 30.0)), (-10.0, 20.0, 30.0))
    points = np.array([[1.0, 2.0, 3.0], [-4.0, 5.5, -6.0]])
    original = points.copy()
    ras = lps_to_ras(points)
    np.testing.assert_allclose(ras, [[-1.0, -2.0, 3.0], [4.0, -5.5, -6.0]])
    np.testing.assert_array_equal(points, original)  # input untouched
    np.testing.assert_allclose(ras_to_lps(ras), points)
    assert lps_to_ras((1.0, 2.0, 3.0)).shape == (3,)


def test_points_with_wrong_coordinate_count_are_refused() -> None:
    geometry, _ = make_pair(np.eye(3))
    with pytest.raises(ValueError, match="3 coordinates"):
        voxel_to_world(np.zeros((4, 2)), geometry)
    with pytest.raises(ValueError, match="3 coordinates"):
        world_to_voxel((1.0, 2.0), geometry)
