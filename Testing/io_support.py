"""Small synthetic CTs on awkward grids (permuted, flipped, oblique) for the lungcad.io tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungcad.ct import CT, Geometry

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
LUNA_UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.105756658031515062000744821260"


def rotation(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    k = np.asarray(axis, dtype=float)
    k /= np.linalg.norm(k)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    t = np.deg2rad(degrees)
    return np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * kx @ kx


PERMUTED_FLIPPED = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
OBLIQUE_LEFT_HANDED = rotation((1.0, 2.0, 3.0), 30.0) @ np.diag([1.0, 1.0, -1.0])


def make_hu(shape: tuple[int, int, int] = (6, 10, 12), seed: int = 0) -> np.ndarray:
    """Air around a soft-tissue block with some bone, plus noise, as int16 HU."""
    rng = np.random.default_rng(seed)
    hu = np.full(shape, -1000, dtype=np.int16)
    hu[:, 2:-2, 2:-2] = 40
    hu[:, 4:6, 4:6] = 900
    hu += rng.integers(-20, 20, size=shape, dtype=np.int16)
    return hu


def make_ct(
    direction: np.ndarray = OBLIQUE_LEFT_HANDED,
    shape: tuple[int, int, int] = (6, 10, 12),
    series_uid: str | None = None,
) -> CT:
    geometry = Geometry.from_arrays((-101.25, 17.5, -303.0), (0.75, 0.8, 2.5), direction, shape)
    return CT(hu=make_hu(shape), geometry=geometry, series_uid=series_uid)


def image_from(arr: np.ndarray, is_vector: bool = False) -> sitk.Image:
    return sitk.GetImageFromArray(arr, isVector=is_vector)


def assert_same_geometry(a: Geometry, b: Geometry, atol: float = 1e-4) -> None:
    assert a.shape_irc == b.shape_irc
    np.testing.assert_allclose(a.origin_xyz, b.origin_xyz, atol=atol)
    np.testing.assert_allclose(a.spacing_xyz, b.spacing_xyz, atol=atol)
    np.testing.assert_allclose(a.direction, b.direction, atol=atol)
