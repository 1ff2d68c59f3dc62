"""Synthetic nodules implanted into real lungs: placement, partial volume, truth files, the CLI."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from lungcad import cli
from lungcad.ct import CT, Geometry
from lungcad.ctio import read_ct
from lungcad.evaluation.inputs import load_truth
from lungcad.geometry import voxel_to_world, world_to_voxel
from lungcad.lungs import LungMask, parenchyma_mask
from lungcad.phantom.implant import (
    ImplantError,
    draw_nodule,
    implant_nodules,
    implanted_series_uid,
)
from lungcad.phantom.implant_set import write_implanted_set
from lungcad.phantom.nodules import make_nodule_spec
from lungcad.phantom.spec import NoduleLocation, NoduleMargin, NoduleType

LUNG_HU = -850


def _lung_block(spacing_xyz: tuple[float, float, float], direction: np.ndarray) -> CT:
    """A noise-free block of lung HU on an oblique, anisotropic grid centred on the origin."""
    shape = (40, 64, 64)
    centre_offset = direction @ (np.asarray(spacing_xyz) * (np.asarray(shape[::-1]) - 1) / 2)
    geometry = Geometry.from_arrays(-centre_offset, spacing_xyz, direction.ravel(), shape)
    return CT(hu=np.full(shape, LUNG_HU, dtype=np.int16), geometry=geometry, series_uid="1.2.3")


def _round_solid(diameter: float, seed: int = 0):
    nodule = make_nodule_spec(
        1, np.zeros(3), diameter, NoduleType.SOLID, NoduleMargin.ROUND,
        NoduleLocation.ISOLATED, np.random.default_rng(seed),
    )  # fmt: skip
    # a round margin still has two faint lobes; take them out for an exact sphere
    return type(nodule)(**{**nodule.__dict__, "lobe_dirs": (), "lobe_amps": ()})


@pytest.mark.parametrize(
    ("spacing", "angles"),
    [((0.7, 0.7, 1.0), (0.0, 0.0, 0.0)), ((0.6, 0.6, 2.5), (12.0, -20.0, 7.0))],
)
def test_a_sphere_keeps_its_volume_and_hu_on_oblique_anisotropic_grids(spacing, angles):
    direction = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    host = _lung_block(spacing, direction)
    nodule = _round_solid(10.0)
    hu = host.hu.astype(np.float32)
    labels = np.zeros(host.shape, dtype=np.uint8)
    draw_nodule(hu, labels, host.geometry, nodule, 0.0, np.random.default_rng(1))
    sphere_mm3 = math.pi / 6 * 10.0**3
    # the raised HU, summed, is the nodule's volume times its contrast (blur and partial volume
    # move HU around but keep its total)
    raised_mm3 = (hu - LUNG_HU).sum() / (nodule.solid_hu - LUNG_HU) * host.geometry.voxel_volume_mm3
    assert raised_mm3 == pytest.approx(sphere_mm3, rel=0.03)
    labelled_mm3 = (labels == 1).sum() * host.geometry.voxel_volume_mm3
    assert labelled_mm3 == pytest.approx(sphere_mm3, rel=0.12)
    centre = tuple(np.rint(world_to_voxel(np.zeros((1, 3)), host.geometry)[0]).astype(int))
    assert labels[centre] == 1
    assert hu[centre] == pytest.approx(nodule.solid_hu, abs=2.0)


def test_noise_is_added_only_where_the_nodule_replaces_lung():
    host = _lung_block((0.7, 0.7, 1.0), np.eye(3))
    nodule = _round_solid(12.0)
    hu = host.hu.astype(np.float32)
    labels = np.zeros(host.shape, dtype=np.uint8)
    draw_nodule(hu, labels, host.geometry, nodule, 25.0, np.random.default_rng(2))
    core = np.argwhere(labels == 1)
    centre = core.mean(axis=0).round().astype(int)
    inner = hu[centre[0], centre[1] - 3 : centre[1] + 4, centre[2] - 3 : centre[2] + 4]
    assert 10.0 < float(inner.std()) < 40.0  # noisy like the host, not flat
    far = hu[:, :5, :5]
    assert np.all(far == LUNG_HU)


@pytest.fixture(scope="module")
def real_host(real_data) -> CT:
    return read_ct(real_data / "chest_cta_totalseg.nii.gz")


def test_implanted_nodules_lie_in_the_real_lungs_and_leave_the_rest_untouched(real_host):
    result = implant_nodules(real_host, 6, np.random.default_rng(3), series_uid="1.2.826.9")
    assert 4 <= len(result.nodules) <= 6
    assert result.ct.series_uid == "1.2.826.9"
    lungs = parenchyma_mask(real_host)
    centres = np.array([n.center_xyz for n in result.nodules])
    assert lungs.contains(centres, margin_mm=0.0).all()
    for nodule in result.nodules:
        labelled = result.labels == nodule.index
        assert labelled.any()
        centre = np.rint(world_to_voxel(centres[nodule.index - 1][None], real_host.geometry)[0])
        assert result.labels[tuple(centre.astype(int))] == nodule.index
        assert nodule.location in (NoduleLocation.ISOLATED, NoduleLocation.JUXTA_PLEURAL)
    changed = result.ct.hu != real_host.hu
    assert changed.any()
    # every change lies within a nodule's reach: lobes, spicules (<= 2.3 radii + 3 mm) and blur
    world = voxel_to_world(np.argwhere(changed).astype(np.float64), real_host.geometry)
    distance = np.linalg.norm(world[:, None, :] - centres[None], axis=-1)
    reach = np.array([2.5 * n.radius_mm + 6.0 for n in result.nodules])
    assert np.all((distance <= reach[None]).any(axis=1))


def test_juxta_pleural_nodules_reach_the_lung_surface(real_host):
    rng = np.random.default_rng(11)
    result = implant_nodules(real_host, 8, rng)
    lungs = parenchyma_mask(real_host)
    pleural = [n for n in result.nodules if n.location is NoduleLocation.JUXTA_PLEURAL]
    assert pleural, "a seed with juxta-pleural nodules was expected"
    for nodule in pleural:
        # a point one radius out from the centre, in some direction, leaves the lung mask
        directions = np.array(
            [[s * (i == k) for k in range(3)] for i in range(3) for s in (-1.0, 1.0)]
        )
        points = np.asarray(nodule.center_xyz)[None] + 1.2 * nodule.radius_mm * directions
        inside = lungs.contains(points, margin_mm=0.0)
        assert not inside.all(), f"nodule {nodule.index} lies wholly inside the lung"


def test_the_same_seed_gives_the_same_scan(real_host):
    a = implant_nodules(real_host, 2, np.random.default_rng(5))
    b = implant_nodules(real_host, 2, np.random.default_rng(5))
    assert np.array_equal(a.ct.hu, b.ct.hu) and a.nodules == b.nodules
    assert implanted_series_uid("abc", 1, 0) != implanted_series_uid("abc", 1, 1)
    assert implanted_series_uid("abc", 1, 0).startswith("2.25.")


def test_a_scan_without_lungs_is_refused_by_name():
    block = CT(
        hu=np.full((20, 40, 40), 40, dtype=np.int16),
        geometry=Geometry.from_arrays((0, 0, 0), (1, 1, 2), np.eye(3).ravel(), (20, 40, 40)),
        series_uid="1.2.3.4",
    )
    with pytest.raises(ImplantError, match=r"1\.2\.3\.4: no lung found"):
        implant_nodules(block, 2, np.random.default_rng(0))
    tiny = LungMask(np.zeros((20, 40, 40), dtype=bool), block.geometry)
    tiny.mask[10, 20, 20] = True
    with pytest.raises(ImplantError, match="no room for a nodule of 3 mm"):
        implant_nodules(block, 1, np.random.default_rng(0), lungs=tiny, noise_sd_hu=0.0)


def test_lungcad_implant_writes_a_set_that_evaluation_reads(real_data, tmp_path, capsys):
    out = tmp_path / "implanted"
    host = real_data / "chest_cta_totalseg.nii.gz"
    argv = ["implant", str(host), "--out", str(out), "--copies", "2", "--nodules", "2", "--quiet"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    with open(out / "annotations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    manifest = json.loads((out / "implant.json").read_text(encoding="utf-8"))
    assert [s["copy"] for s in manifest["series"]] == [0, 1]
    assert len(rows) == sum(s["nodules"] for s in manifest["series"])
    assert f"wrote 2 series with {len(rows)} implanted nodules" in printed
    truth = load_truth(out)
    assert set(truth.series_paths) == {s["seriesuid"] for s in manifest["series"]}
    assert len(truth.annotations) == len(rows)
    uid = manifest["series"][0]["seriesuid"]
    ct = read_ct(out / "subset0" / f"{uid}.mhd")
    assert ct.series_uid == uid and ct.shape == read_ct(host).shape
    # a second run does not overwrite the set
    assert cli.main(argv) != 0
    assert "already holds a dataset" in capsys.readouterr().err


def test_copies_are_independent_of_how_many_are_made(real_data, tmp_path):
    host = real_data / "chest_cta_totalseg.nii.gz"
    one = write_implanted_set([host], tmp_path / "one", copies=1, nodules=1, seed=4, progress=False)
    two = write_implanted_set([host], tmp_path / "two", copies=2, nodules=1, seed=4, progress=False)
    assert one[0].series_uid == two[0].series_uid
    a = read_ct(one[0].ct_path).hu
    b = read_ct(two[0].ct_path).hu
    assert np.array_equal(a, b)
