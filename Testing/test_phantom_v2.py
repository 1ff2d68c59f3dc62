"""Phantom realism version 2 (issue 13, item 4): thick slices with a slice profile, contrast,
and version 1 left byte for byte as the bundled weights were trained on it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lungcad.cli import main
from lungcad.geometry import voxel_to_world, world_to_voxel_index
from lungcad.luna16 import find_series
from lungcad.phantom import PhantomSize, RealismVersion, Tissue, make_case, make_spec
from lungcad.phantom.cases import _NOISE, case_rng, series_uid_for
from lungcad.phantom.dataset import write_dataset
from lungcad.phantom.grid import fine_grid, sample_full_grid, sub_slices
from lungcad.phantom.render import _average_slices, _Canvas, _draw_nodules, render_case
from lungcad.phantom.spec import NoduleLocation, NoduleMargin, NoduleSpec, NoduleType, ScanGrid
from lungcad.phantom.trees import MIN_VESSEL_RADIUS_MM

# sha256 of the HU and label arrays of small version-1 cases, taken before version 2 existed
V1_HASHES = {
    (1000, 0): (
        "b15083703a104c4d9105a21ecb763fd407c1d426d479658ac90613ce48665a2d",
        "8ace26982ad8dff225506bc65e97d0ca9d98ab956977baf246fde499185d9e74",
    ),
    (7000, 2): (
        "ba9e744cc0c21ac7c0a9a0d669cd9477cbce762407982bf32a72c22e7402716d",
        "064f35d174288d7d2aa8c29c0b7485c98856d86a8d3c551f9c0ef8ab6057bc79",
    ),
}
# sha256 of the HU and label arrays of small version-2 cases (seed 7000), taken before the chest's
# shape was split from its tubes (lungcad.phantom.shape)
V2_HASHES = {
    0: (
        "fd57aef9adde9f5207b0b0fa1f6180b7ee628fe819db81e281c0e6d8f33f6a3b",
        "b355429e20ba4d645582ed8a669465f7a5c578114d7bb925009ff3e464e58bb6",
    ),
    1: (
        "ea7d8f190137b5212fe8f934f1ea94651b47565292bf91f20381d26723de233e",
        "c43ec15731aa0bf82e0de765d1c597bf1c08458b209b976fe6f171ecb3df7822",
    ),
}
SEED = 7000
CONTRAST_CASE, PLAIN_CASE = 1, 0  # seed 7000, version 2: case 1 is enhanced, case 0 is not


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(a.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def v2_cases():
    return {i: make_case(SEED, i, PhantomSize.SMALL, 2) for i in (PLAIN_CASE, CONTRAST_CASE)}


@pytest.mark.parametrize(("seed", "index"), sorted(V1_HASHES))
def test_version_1_renders_the_same_bytes_as_before(seed: int, index: int) -> None:
    case = make_case(seed, index, PhantomSize.SMALL)
    assert case.spec.version is RealismVersion.V1 and not case.spec.contrast
    assert (_sha(case.rendered.hu), _sha(case.rendered.nodule_labels)) == V1_HASHES[seed, index]
    assert case.rendered.grid.profile_mm is None
    assert case.spec.series_uid == series_uid_for(seed, index)


def test_version_2_renders_the_same_bytes_as_before(v2_cases) -> None:
    got = {
        i: (_sha(case.rendered.hu), _sha(case.rendered.nodule_labels))
        for i, case in v2_cases.items()
    }
    assert got == V2_HASHES


def test_version_2_is_another_series_of_the_same_chest() -> None:
    v1, v2 = make_spec(SEED, 0), make_spec(SEED, 0, RealismVersion.V2)
    assert v2.series_uid != v1.series_uid
    assert v2.anatomy.body_ax == v1.anatomy.body_ax
    assert len(v2.anatomy.vessels) >= len(v1.anatomy.vessels)


def test_version_2_draws_thick_slices_for_about_a_fifth_of_cases() -> None:
    anatomy = make_spec(SEED, 0).anatomy
    rng = np.random.default_rng(0)
    grids = [sample_full_grid(anatomy, rng, RealismVersion.V2) for _ in range(400)]
    thick = np.mean([g.spacing_xyz[2] >= 3.0 for g in grids])
    assert 0.14 < thick < 0.26
    assert {g.spacing_xyz[2] for g in grids} >= {0.625, 2.5, 3.0, 5.0}
    for g in grids:
        assert g.slice_thickness_mm == g.profile_mm == g.spacing_xyz[2]
        assert 40 <= g.shape_irc[0] <= 400
        if g.spacing_xyz[2] < 3.0:
            continue  # (400 slices of 0.625 mm may clip the apex, as in version 1)
        lo, hi = g.z_range_mm  # thick slices: 40-100 of them cover the lungs, no more
        assert g.shape_irc[0] * g.spacing_xyz[2] < 500.0
        assert lo < min(lung.z_dome for lung in anatomy.lungs) and hi > anatomy.lungs[0].z_apex


def _sphere_scene(grid: ScanGrid) -> tuple[_Canvas, np.ndarray, list[NoduleSpec]]:
    """A 20 mm solid sphere (50 HU) at the origin, in lung-labelled air, drawn on ``grid``."""
    nodule = NoduleSpec(
        index=1, center_xyz=(0.0, 0.0, 0.0), diameter_mm=20.0, kind=NoduleType.SOLID,
        margin=NoduleMargin.ROUND, location=NoduleLocation.ISOLATED, solid_hu=50.0,
        ggo_hu=-600.0, core_fraction=0.5, lobe_dirs=(), lobe_amps=(), spicules=(),
        malignancy_score=0.0, reader_ratings=(3,), is_malignant=False,
    )  # fmt: skip
    canvas = _Canvas(grid)
    canvas.tissue[...] = Tissue.LUNG
    labels = np.zeros(grid.shape_irc, dtype=np.uint8)
    _draw_nodules(canvas, [nodule], labels)
    return canvas, labels, [nodule]


def test_a_thick_slice_through_a_sphere_shows_partial_volume_where_a_thin_one_does_not() -> None:
    # 5 mm slices centred at z = -21.5 + 5 i: slice 6 covers 6..11 mm, the sphere ends at 10 mm
    thick = ScanGrid((10, 41, 41), (1.0, 1.0, 5.0), (-20.0, -20.0, -21.5), profile_mm=5.0)
    thin = ScanGrid((50, 41, 41), (1.0, 1.0, 1.0), (-20.0, -20.0, -23.5))
    assert sub_slices(thick) == 5 and sub_slices(thin) == 1
    fine, fine_labels, nodules = _sphere_scene(fine_grid(thick))
    canvas, labels = _average_slices(fine, fine_labels, thick, nodules)
    # the slice average is the mean of the fine sub-slices
    np.testing.assert_allclose(canvas.vol, fine.vol.reshape(10, 5, 41, 41).mean(axis=1), atol=1e-3)
    column = canvas.vol[:, 20, 20]
    assert column[6] == pytest.approx(0.8 * 50.0 + 0.2 * -1000.0, abs=1.0)  # 4 of 5 mm inside
    assert column[4] == pytest.approx(50.0) and column[7] == pytest.approx(-1000.0)
    # 1 mm slices at the same place: inside or outside, never the thick slice's grey
    thin_canvas, _, _ = _sphere_scene(thin)
    thin_column = thin_canvas.vol[:, 20, 20]
    zs = thin.axis_mm("z")
    assert np.all(thin_column[(zs > 6.0) & (zs < 9.5)] == pytest.approx(50.0))
    assert np.all(thin_column[zs > 10.5] == pytest.approx(-1000.0))
    # the rim of the sphere in the thick slice is grey, in a thin slice through it sharp
    grey = (canvas.vol[6] > -900) & (canvas.vol[6] < -100)
    assert grey.sum() > 3 * ((thin_canvas.vol[32] > -900) & (thin_canvas.vol[32] < -100)).sum()
    # truth: labelled where at least half the slice is nodule
    assert labels[6, 20, 20] == 1 and labels[7, 20, 20] == 0


def test_a_thick_slice_of_a_whole_case_is_the_mean_of_its_sub_slices() -> None:
    spec = make_spec(SEED, 8, RealismVersion.V2)  # 5 mm slices
    grid = dataclasses.replace(spec.grid(PhantomSize.SMALL), axis_signs_xyz=(1, 1, 1))
    k = sub_slices(grid)
    assert grid.slice_thickness_mm >= 5.0 and k >= 5
    # noise-free: blur is in-plane and linear, so it commutes with the slice average
    rng = case_rng(SEED, 8, _NOISE)
    thick = render_case(spec.anatomy, spec.nodules, grid, rng, 0.0, spec.blood_hu)
    fine = render_case(spec.anatomy, spec.nodules, fine_grid(grid), rng, 0.0, spec.blood_hu)
    mean = fine.hu.astype(np.float32).reshape(grid.shape_irc[0], k, *grid.shape_irc[1:]).mean(1)
    assert np.abs(thick.hu - mean).max() <= 1.0


def _hu_at(case, xyz: tuple[float, float, float], half: int = 1) -> float:
    """Median HU of a small block around an LPS point of a rendered case."""
    k, j, i = world_to_voxel_index(np.asarray([xyz]), case.ct.geometry)[0]
    block = case.rendered.hu[
        max(k - half, 0) : k + half + 1, max(j - half, 0) : j + half + 1, i - half : i + half + 1
    ]
    return float(np.median(block))


def test_contrast_cases_have_blood_pool_vessels_and_heart_and_plain_cases_do_not(v2_cases) -> None:
    plain, enhanced = v2_cases[PLAIN_CASE], v2_cases[CONTRAST_CASE]
    assert not plain.spec.contrast and plain.spec.blood_hu is None
    assert enhanced.spec.contrast and 150.0 <= enhanced.spec.blood_hu <= 400.0
    for case in (plain, enhanced):
        hx, hy, hz = case.spec.anatomy.heart_center
        chamber = _hu_at(case, (hx + 25.0, hy, hz))
        aorta = _hu_at(case, tuple(case.spec.anatomy.aorta.p0[4]))
        vessels = case.rendered.hu[case.rendered.tissue == Tissue.VESSEL]
        if case.spec.contrast:
            blood = case.spec.blood_hu
            assert blood - 40 < chamber < blood + 40 and blood - 40 < aorta < blood + 40
            assert np.percentile(vessels, 90) > 150.0
        else:
            assert chamber < 100.0 and aorta < 100.0
            assert np.percentile(vessels, 99) < 120.0


def test_version_2_nodule_truth_matches_the_label_maps(v2_cases) -> None:
    for case in v2_cases.values():
        labels = case.rendered.nodule_labels
        geometry = case.ct.geometry
        assert case.rendered.grid.profile_mm is not None
        for n in case.spec.nodules:
            centre = world_to_voxel_index(np.asarray([n.center_xyz]), geometry)[0]
            assert labels[tuple(centre)] == n.index
            mine = labels == n.index
            volume = mine.sum() * np.prod(geometry.spacing_xyz)
            sphere = np.pi / 6 * n.diameter_mm**3
            if n.diameter_mm >= 8.0 and n.margin is NoduleMargin.ROUND:
                assert 0.4 * sphere < volume < 2.0 * sphere, (n, volume)
        assert set(np.unique(labels)) <= {0, *(n.index for n in case.spec.nodules)}


def test_the_manifest_records_version_contrast_and_thickness(tmp_path: Path) -> None:
    out = tmp_path / "v2"
    args = ["phantom", str(out), "--cases", "2", "--seed", str(SEED), "--size", "small"]
    assert main([*args, "--quiet", "--realism-version", "2"]) == 0
    manifest = json.loads((out / "phantom.json").read_text(encoding="utf-8"))
    assert manifest["realism_version"] == 2
    series = {s["seriesuid"]: s for s in manifest["series"]}
    assert set(series) == {series_uid_for(SEED, i, RealismVersion.V2) for i in range(2)}
    assert [s["contrast"] for s in manifest["series"]] == [False, True]
    for uid, mhd in find_series(out).items():
        entry = series[uid]
        assert (entry["blood_hu"] is not None) == entry["contrast"]
        spacing_z = sitk.ReadImage(str(mhd)).GetSpacing()[2]
        assert entry["slice_thickness_mm"] == pytest.approx(spacing_z, abs=1e-5)
    # version 1 keeps its manifest exactly as before: no realism_version, no new keys
    write_dataset(tmp_path / "v1", cases=1, seed=SEED, size=PhantomSize.SMALL, progress=False)
    v1 = json.loads((tmp_path / "v1" / "phantom.json").read_text(encoding="utf-8"))
    assert "realism_version" not in v1 and set(v1["series"][0]) == {
        "seriesuid",
        "subset",
        "nodules",
    }


def test_version_2_has_more_and_thicker_vessels_near_the_pleura() -> None:
    v1, v2 = make_spec(SEED, 2).anatomy, make_spec(SEED, 2, RealismVersion.V2).anatomy

    def outer_length(anatomy) -> float:
        v = anatomy.vessels
        depth = anatomy.lung_depth((v.p0 + v.p1) / 2)
        length = np.linalg.norm(v.p1 - v.p0, axis=1)
        return float(length[(depth > 0) & (depth < 20.0)].sum())

    assert outer_length(v2) > 2.5 * outer_length(v1)
    vessels = v2.vessels
    assert min(vessels.r0.min(), vessels.r1.min()) >= MIN_VESSEL_RADIUS_MM
    added = slice(len(v1.vessels), None)
    assert np.all(v2.lung_depth(vessels.p1[added]) > 1.0)  # sprouts end inside the lung
    assert vessels.is_leaf[added].any()


def test_version_2_has_fissures_and_dependent_atelectasis_bands(v2_cases) -> None:
    assert make_spec(SEED, 0).anatomy.fissures == ()
    assert len(make_spec(SEED, 0).anatomy.atelectasis) == 0
    case = v2_cases[PLAIN_CASE]
    anatomy = case.spec.anatomy
    assert sorted(f.side for f in anatomy.fissures) == [-1, -1, 1]  # right: major and minor
    bands = anatomy.atelectasis
    if len(bands):
        ends = np.concatenate([bands.p0, bands.p1])
        assert np.all(anatomy.lung_depth(ends) > 1.0)
        assert np.all(ends[:, 2] < max(lung.z_dome for lung in anatomy.lungs) + 80.0)
    # the major fissure is a line of raised HU through the lung
    major = next(f for f in anatomy.fissures if f.side == 1)
    lung = np.argwhere(case.rendered.tissue == Tissue.LUNG)
    xyz = voxel_to_world(lung, case.ct.geometry)
    left = np.sign(xyz[:, 0]) == 1
    dist = np.abs((xyz - np.asarray(major.point)) @ np.asarray(major.normal))
    hu = case.rendered.hu[tuple(lung.T)]
    on = np.median(hu[left & (dist < 0.5)])
    off = np.median(hu[left & (dist > 5.0) & (dist < 10.0)])
    assert on > off + 30.0, (on, off)


# sha256 of a version-1 set (seed 1000, 2 small cases) written by the code before version 2
V1_SET_HASHES = {
    "annotations.csv": "a2100582816db52b62608ef30e936010def44b35e7294cbfc7214ba81c84f30c",
    "annotations_with_malignancy.csv": (
        "81189da60a01d624c4901585f408ba2006bbdcac104729e2448dc6aa3d5c4093"
    ),
    "candidates.csv": "61a13a90d9b3b9730339c7a04b87068681bf5f0389eabe485ab5a2d0d3ffbb27",
    "phantom_nodules.csv": "6f146903a7b97515d47239402fa79139d1238e8c885078a89d247b312ee16c27",
    "subset0/2.25.149488898318276909945271493100906253819.raw": (
        "6bb26df7bdc7e5d9fa8b4fef4303711a4447f2b7ad65f5b591164f820f723b52"
    ),
    "subset0/2.25.160291846415379829033795987125247805468.raw": (
        "b15083703a104c4d9105a21ecb763fd407c1d426d479658ac90613ce48665a2d"
    ),
}


def test_a_version_1_set_has_the_same_truth_files_and_voxels_as_before(tmp_path: Path) -> None:
    write_dataset(tmp_path, cases=2, seed=1000, size=PhantomSize.SMALL, progress=False)
    got = {
        name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() for name in V1_SET_HASHES
    }
    assert got == V1_SET_HASHES
