"""The scale policy: resampling to the canonical grid keeps world positions, any direction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from lungcad import preprocess
from lungcad.ct import CT, Geometry
from lungcad.geometry import voxel_to_world, world_to_voxel, world_to_voxel_index
from lungcad.preprocess import (
    CANONICAL_DIRECTION,
    CANONICAL_SPACING_XYZ,
    HU_WINDOW,
    SPACING_POLICY,
    canonical_geometry,
    labels_from_canonical,
    labels_to_canonical,
    normalise_hu,
    to_canonical,
)

SHAPE_IRC = (20, 24, 28)
SPACING_XYZ = (1.6, 1.4, 2.0)
BLOB_IRC = (9, 14, 10)


def _rotation_z(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


DIRECTIONS = {
    "identity": np.eye(3),
    "flipped": np.diag([-1.0, -1.0, 1.0]),
    "flipped-z": np.diag([1.0, 1.0, -1.0]),
    # col axis along +z, row axis along -x, index axis along +y
    "permuted": np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),
    "oblique": _rotation_z(30) @ np.diag([1.0, -1.0, 1.0]),
}


def _geometry(direction: np.ndarray, spacing_xyz=SPACING_XYZ, shape_irc=SHAPE_IRC) -> Geometry:
    return Geometry.from_arrays((12.5, -40.0, 100.0), spacing_xyz, direction, shape_irc)


def _blob(shape_irc, center_irc, radius: float = 1.5) -> np.ndarray:
    grid = np.indices(shape_irc).astype(float)
    dist2 = sum((g - c) ** 2 for g, c in zip(grid, center_irc, strict=True))
    return dist2 <= radius**2


def _ct_with_blob(direction: np.ndarray) -> CT:
    hu = np.full(SHAPE_IRC, -1000, dtype=np.int16)
    hu[_blob(SHAPE_IRC, BLOB_IRC)] = 1000
    return CT(hu=hu, geometry=_geometry(direction), series_uid="1.2.3")


@pytest.mark.parametrize("name", DIRECTIONS)
def test_blob_keeps_its_world_position(name: str) -> None:
    ct = _ct_with_blob(DIRECTIONS[name])
    point = voxel_to_world(BLOB_IRC, ct.geometry)

    canon = to_canonical(ct)

    g = canon.geometry
    assert g.spacing_xyz == CANONICAL_SPACING_XYZ
    assert g.direction == CANONICAL_DIRECTION
    assert canon.hu.dtype == np.int16 and canon.series_uid == "1.2.3"
    expected = world_to_voxel(point, g)
    assert canon.hu[tuple(world_to_voxel_index(point, g))] > 500
    weights = np.clip(canon.hu.astype(float) + 1000, 0, None)
    centroid = np.array(ndimage.center_of_mass(weights))
    np.testing.assert_allclose(centroid, expected, atol=0.5)


@pytest.mark.parametrize("name", ["identity", "flipped", "permuted"])
def test_shape_follows_the_physical_extent(name: str) -> None:
    geometry = _geometry(DIRECTIONS[name])
    extent_xyz = np.abs(DIRECTIONS[name]) @ (np.array(SHAPE_IRC[::-1]) * SPACING_XYZ)
    expected_xyz = [
        math.ceil(e / s - 1e-6) for e, s in zip(extent_xyz, CANONICAL_SPACING_XYZ, strict=True)
    ]

    canon = canonical_geometry(geometry)

    assert canon.shape_irc == tuple(expected_xyz[::-1])
    assert to_canonical(CT(np.full(SHAPE_IRC, -1000, np.int16), geometry)).shape == canon.shape_irc


def test_oblique_grid_covers_every_corner() -> None:
    geometry = _geometry(DIRECTIONS["oblique"])
    canon = canonical_geometry(geometry)
    corners = [(i, r, c) for i in (-0.5, 19.5) for r in (-0.5, 23.5) for c in (-0.5, 27.5)]

    inside = world_to_voxel(voxel_to_world(corners, geometry), canon)

    assert np.all(inside >= -0.5 - 1e-6)
    assert np.all(inside <= np.array(canon.shape_irc) - 0.5 + 1e-6)


def test_canonical_input_is_left_unchanged() -> None:
    rng = np.random.default_rng(0)
    hu = rng.integers(-1024, 1500, size=(6, 7, 8)).astype(np.int16)
    ct = CT(hu, Geometry.from_arrays((1.0, 2.0, 3.0), CANONICAL_SPACING_XYZ, np.eye(3), hu.shape))

    canon = to_canonical(ct)

    assert canon.geometry == ct.geometry
    np.testing.assert_array_equal(canon.hu, hu)


# Source grids whose voxel centres are canonical voxel centres, so every canonical voxel is one
# source voxel exactly: (direction, source spacing_xyz, canonical array from the source array).
ALIGNED = {
    "flipped": (
        np.diag([-1.0, -1.0, 1.0]),
        CANONICAL_SPACING_XYZ,
        lambda hu: hu[:, ::-1, ::-1],
    ),
    # col axis along -z, row axis along +x, index axis along +y: canonical (z, y, x) is
    # source (index=y, row=x, col=last-z)
    "permuted": (
        np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]]),
        (1.25, 0.75, 0.75),
        lambda hu: np.transpose(hu, (2, 0, 1))[::-1],
    ),
}


@pytest.mark.parametrize("name", sorted(ALIGNED))
def test_aligned_flipped_and_permuted_grids_resample_exactly(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    direction, spacing_xyz, expected = ALIGNED[name]
    monkeypatch.setattr(preprocess, "SLAB_SLICES", 3)  # several slabs, one ragged
    hu = np.random.default_rng(2).integers(-1024, 2000, size=(6, 7, 8)).astype(np.int16)
    ct = CT(hu, Geometry.from_arrays((12.5, -40.0, 100.0), spacing_xyz, direction, hu.shape))
    fractions: list[float] = []

    canon = to_canonical(ct, progress=fractions.append)

    np.testing.assert_array_equal(canon.hu, expected(hu))
    assert canon.hu.dtype == np.int16
    first = voxel_to_world((0, 0, 0), canon.geometry)
    assert hu[tuple(world_to_voxel_index(first, ct.geometry))] == canon.hu[0, 0, 0]
    n = canon.hu.shape[0]
    assert fractions == [min(z + 3, n) / n for z in range(0, n, 3)]


@pytest.mark.parametrize("name", ["flipped-z", "permuted", "oblique"])
def test_slabs_join_into_the_whole_volume(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    hu = np.random.default_rng(3).integers(-1024, 2000, size=SHAPE_IRC).astype(np.int16)
    ct = CT(hu, _geometry(DIRECTIONS[name]))
    monkeypatch.setattr(preprocess, "SLAB_SLICES", 10_000)
    whole = to_canonical(ct, spacing_xyz=(0.9, 1.1, 0.7))
    assert whole.hu.shape[0] > 40
    for slab in (1, 7):
        monkeypatch.setattr(preprocess, "SLAB_SLICES", slab)
        slabs = to_canonical(ct, spacing_xyz=(0.9, 1.1, 0.7))
        assert slabs.geometry == whole.geometry
        np.testing.assert_array_equal(slabs.hu, whole.hu)


def test_outside_is_padding_and_spacing_is_configurable() -> None:
    ct = _ct_with_blob(DIRECTIONS["oblique"])
    canon = to_canonical(ct, spacing_xyz=(2.0, 2.0, 3.0))
    assert canon.geometry.spacing_xyz == (2.0, 2.0, 3.0)
    assert canon.hu[0, 0, 0] == -1024  # the rotated volume leaves the box's corners empty


@pytest.mark.parametrize("name", ["identity", "flipped", "permuted", "oblique"])
def test_labels_round_trip_within_one_voxel(name: str) -> None:
    geometry = _geometry(DIRECTIONS[name])
    labels = np.zeros(SHAPE_IRC, dtype=np.uint8)
    labels[_blob(SHAPE_IRC, BLOB_IRC, radius=3.2)] = 2
    canon_geometry = canonical_geometry(geometry)

    canon = labels_to_canonical(labels, geometry, canon_geometry)
    back = labels_from_canonical(canon, canon_geometry, geometry)

    assert canon.dtype == np.uint8 and set(np.unique(canon)) == {0, 2}
    centroid = np.array(ndimage.center_of_mass(canon > 0))
    expected = world_to_voxel(voxel_to_world(BLOB_IRC, geometry), canon_geometry)
    np.testing.assert_allclose(centroid, expected, atol=0.5)
    assert back.shape == labels.shape and back.dtype == np.uint8
    near = np.ones((3, 3, 3), dtype=bool)
    assert np.all(ndimage.binary_dilation(back > 0, near)[labels > 0])
    assert np.all(ndimage.binary_dilation(labels > 0, near)[back > 0])
    assert set(np.unique(back)) == {0, 2}


def test_boolean_labels_stay_boolean() -> None:
    geometry = _geometry(DIRECTIONS["flipped"])
    mask = _blob(SHAPE_IRC, BLOB_IRC, radius=3)
    out = labels_to_canonical(mask, geometry, canonical_geometry(geometry))
    assert out.dtype == np.bool_ and out.any()
    with pytest.raises(ValueError, match="shape"):
        labels_to_canonical(mask[1:], geometry, canonical_geometry(geometry))


def test_normalise_hu_clamps_to_the_window() -> None:
    out = normalise_hu(np.array([-3024, -1000, 0, 40, 3000], dtype=np.int16))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [-1000, -1000, 0, 40, 1000])
    assert HU_WINDOW == (-1000, 1000)


def test_policy_records_spacing_direction_interpolation_window() -> None:
    assert SPACING_POLICY["spacing_xyz"] == [0.75, 0.75, 1.25]
    assert SPACING_POLICY["direction"] == list(CANONICAL_DIRECTION)
    assert SPACING_POLICY["interpolation"] == "linear"
    assert SPACING_POLICY["label_interpolation"] == "nearest"
    assert SPACING_POLICY["window_hu"] == [-1000, 1000]
