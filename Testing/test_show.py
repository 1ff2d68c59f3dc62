"""Tests of lungcad.show: the PNG is written, and anatomy lands on the correct side of each view.

The phantom is defined in patient LPS millimetres and sampled on grids with different direction
matrices covering the same box, so every geometry must give the same picture.
"""

from __future__ import annotations

import math

import matplotlib.image as mpimg
import numpy as np
import pytest

from lungcad.ct import CT, Geometry
from lungcad.geometry import voxel_to_world
from lungcad.show import Marker, OrthogonalViews, orthogonal_views, parse_point, render_views

# Box covered by every grid: voxel centres at LO + n * SPACING along L, P, S.
LO = np.array([-60.0, -50.0, -40.0])
SPACING = np.array([0.8, 1.0, 2.0])  # anisotropic on purpose
COUNT = np.array([150, 100, 41])
# A bright sphere on the patient's Left, Anterior, Superior side (LPS: +x, -y, +z).
SPHERE_XYZ = (25.0, -20.0, 20.0)
SPHERE_RADIUS = 8.0

IDENTITY = np.eye(3)
# Columns = LPS direction of the (col, row, index) axes: col -> toward R, row -> toward I,
# index -> toward A: flipped and permuted, as a sagittal-acquired or odd-exported scan might be.
FLIPPED_PERMUTED = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, -1.0, 0.0]])


def _phantom_hu(world: np.ndarray) -> np.ndarray:
    """HU at LPS points: air, an elliptical body (soft-tissue wall, lung inside), a dense sphere."""
    x, y = world[:, 0], world[:, 1]
    hu = np.full(len(world), -1000.0)
    body = (x / 52) ** 2 + (y / 42) ** 2 <= 1
    lung = (x / 46) ** 2 + (y / 36) ** 2 <= 1
    hu[body] = 40
    hu[lung] = -850
    sphere = np.linalg.norm(world - np.asarray(SPHERE_XYZ), axis=1) <= SPHERE_RADIUS
    hu[sphere] = 400
    return hu


def _make_ct(direction: np.ndarray, uid: str = "1.2.3.synthetic") -> CT:
    """Sample the phantom on a grid whose axes follow ``direction`` and cover the common box."""
    axis_of = [
        int(np.argmax(np.abs(direction[:, a]))) for a in range(3)
    ]  # LPS axis per col/row/idx
    sign = [float(np.sign(direction[axis_of[a], a])) for a in range(3)]
    spacing_xyz = [SPACING[p] for p in axis_of]
    size_cri = [int(COUNT[p]) for p in axis_of]
    hi = LO + (COUNT - 1) * SPACING
    origin = np.zeros(3)
    for a, p in enumerate(axis_of):
        origin[p] = LO[p] if sign[a] > 0 else hi[p]
    shape_irc = (size_cri[2], size_cri[1], size_cri[0])
    geometry = Geometry.from_arrays(origin, spacing_xyz, direction, shape_irc)
    irc = np.stack(np.meshgrid(*[np.arange(n) for n in shape_irc], indexing="ij"), -1)
    world = voxel_to_world(irc.reshape(-1, 3).astype(np.float64), geometry)
    hu = _phantom_hu(world).reshape(shape_irc).astype(np.int16)
    return CT(hu=hu, geometry=geometry, series_uid=uid)


def _oblique_ct() -> CT:
    """A grid rotated 15 degrees about the head-foot axis (not a permutation: needs resampling)."""
    a = math.radians(15)
    direction = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    shape_irc = (41, 130, 160)
    centre = np.array([0.0, 0.0, 0.0])
    half = np.array([(160 - 1) * 0.8, (130 - 1) * 0.8, (41 - 1) * 2.0]) / 2
    origin = centre - direction @ half
    geometry = Geometry.from_arrays(origin, (0.8, 0.8, 2.0), direction, shape_irc)
    irc = np.stack(np.meshgrid(*[np.arange(n) for n in shape_irc], indexing="ij"), -1)
    world = voxel_to_world(irc.reshape(-1, 3).astype(np.float64), geometry)
    hu = _phantom_hu(world).reshape(shape_irc).astype(np.int16)
    return CT(hu=hu, geometry=geometry, series_uid="1.2.3.oblique")


@pytest.fixture(scope="module")
def cts() -> dict[str, CT]:
    return {
        "identity": _make_ct(IDENTITY),
        "flipped": _make_ct(FLIPPED_PERMUTED),
        "oblique": _oblique_ct(),
    }


def _blob_centre_mm(image: np.ndarray, extent: tuple[float, float, float, float]) -> tuple:
    """Centroid (horizontal, vertical) in mm of the bright blob, via the view's extent."""
    rows, cols = np.nonzero(image > 200)
    assert rows.size, "sphere not visible in this view"
    left, right, bottom, top = extent
    h = left + (cols.mean() + 0.5) * (right - left) / image.shape[1]
    v = top + (rows.mean() + 0.5) * (bottom - top) / image.shape[0]
    return h, v


@pytest.mark.parametrize("name", ["identity", "flipped", "oblique"])
def test_sphere_at_left_anterior_superior_lands_right_top(cts: dict[str, CT], name: str) -> None:
    views = orthogonal_views(cts[name], SPHERE_XYZ)
    ny, nx = views.axial.shape
    nz = views.coronal.shape[0]

    # Axial: patient left is on the image's right, anterior at the top.
    rows, cols = np.nonzero(views.axial > 200)
    assert cols.min() > nx / 2 and rows.max() < ny / 2
    # Coronal: patient left on the image's right, superior at the top.
    rows, cols = np.nonzero(views.coronal > 200)
    assert cols.min() > nx / 2 and rows.max() < nz / 2
    # Sagittal: anterior on the image's left, superior at the top.
    rows, cols = np.nonzero(views.sagittal > 200)
    assert cols.max() < ny / 2 and rows.max() < nz / 2

    # And in millimetres: the extents put the sphere where it is in the patient.
    x, y, z = SPHERE_XYZ
    for image, extent, expected in [
        (views.axial, views.axial_extent, (x, y)),
        (views.coronal, views.coronal_extent, (x, z)),
        (views.sagittal, views.sagittal_extent, (y, z)),
    ]:
        assert _blob_centre_mm(image, extent) == pytest.approx(expected, abs=1.5)


def test_identity_views_match_the_raw_array(cts: dict[str, CT]) -> None:
    """With identity direction the display is the plain array (axial) or flipped upside down."""
    ct = cts["identity"]
    views = orthogonal_views(ct, SPHERE_XYZ)
    k, j, i = np.rint((np.asarray(SPHERE_XYZ) - LO) / SPACING).astype(int)[::-1]
    np.testing.assert_array_equal(views.axial, ct.hu[k])
    np.testing.assert_array_equal(views.coronal, ct.hu[::-1, j, :])
    np.testing.assert_array_equal(views.sagittal, ct.hu[::-1, :, i])


def test_flipped_geometry_gives_identical_views(cts: dict[str, CT]) -> None:
    a = orthogonal_views(cts["identity"], SPHERE_XYZ)
    b = orthogonal_views(cts["flipped"], SPHERE_XYZ)
    assert isinstance(b, OrthogonalViews)
    for name in ("axial", "coronal", "sagittal"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert getattr(a, f"{name}_extent") == pytest.approx(getattr(b, f"{name}_extent"))
    assert b.spacing_xyz == pytest.approx(tuple(SPACING))
    assert b.slice_xyz == pytest.approx(a.slice_xyz)


def _red_pixels(png: np.ndarray) -> int:
    r, g, b = png[..., 0], png[..., 1], png[..., 2]
    return int(np.count_nonzero((r > 0.8) & (g < 0.25) & (b < 0.25)))


@pytest.mark.parametrize("name", ["identity", "flipped"])
def test_render_writes_png_of_expected_size(cts: dict[str, CT], name: str, tmp_path) -> None:
    out = tmp_path / "sub" / "views.png"
    near = Marker(SPHERE_XYZ, 16.0, "TP 1", "red")
    result = render_views(cts[name], SPHERE_XYZ, out, title="finding 1", markers=[near])
    assert result == out and out.is_file()
    png = mpimg.imread(out)
    assert png.shape[:2] == (450, 1600)
    assert png.std() > 0.1  # not blank
    assert _red_pixels(png) > 100  # the marker's circle was drawn
    assert [p.name for p in out.parent.iterdir()] == ["views.png"]  # no temporary left behind


def test_marker_far_from_every_plane_is_not_drawn(cts: dict[str, CT], tmp_path) -> None:
    far = Marker((SPHERE_XYZ[0] - 40, SPHERE_XYZ[1] + 40, SPHERE_XYZ[2] - 30), 6.0, "FP", "red")
    out = render_views(cts["identity"], SPHERE_XYZ, tmp_path / "v.png", markers=[far])
    assert _red_pixels(mpimg.imread(out)) == 0


def test_render_replaces_existing_file(cts: dict[str, CT], tmp_path) -> None:
    out = tmp_path / "v.png"
    out.write_bytes(b"old")
    render_views(cts["oblique"], (0.0, 0.0, 0.0), out, crop_mm=40.0)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("point", [(0.0, 0.0, 200.0), (-80.0, 0.0, 0.0), (0.0, 60.0, 0.0)])
def test_point_outside_volume_raises(cts: dict[str, CT], point, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"outside the volume") as info:
        render_views(cts["flipped"], point, tmp_path / "v.png")
    message = str(info.value)
    assert f"({point[0]:.1f}, {point[1]:.1f}, {point[2]:.1f})" in message
    assert "x -60.0..59.2" in message and "z -40.0..40.0" in message
    assert not list(tmp_path.iterdir())


def test_bad_window_and_marker_raise(cts: dict[str, CT], tmp_path) -> None:
    with pytest.raises(ValueError, match="window width"):
        render_views(cts["identity"], SPHERE_XYZ, tmp_path / "v.png", window=(-600, 0))
    with pytest.raises(ValueError, match="diameter"):
        Marker((0.0, 0.0, 0.0), 0.0, "x", "red")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,2,3", (1.0, 2.0, 3.0)),
        (" -12.5, 30 , -1e2 ", (-12.5, 30.0, -100.0)),
        ("(-12.5, 30.0, -100.2)", (-12.5, 30.0, -100.2)),
        ("[.5,+2.,3]", (0.5, 2.0, 3.0)),
    ],
)
def test_parse_point_good(text: str, expected: tuple[float, float, float]) -> None:
    assert parse_point(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    ["", "1,2", "1,2,3,4", "a,b,c", "1,,3", "nan,1,2", "inf,0,0", "1 2 3", "1;2;3", "(1,2,3"],
)
def test_parse_point_bad(text: str) -> None:
    with pytest.raises(ValueError, match=r"X,Y,Z|not a number"):
        parse_point(text)
