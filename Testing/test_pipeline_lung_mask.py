"""Candidates outside the lung are never classified, and a mass is one finding, not fragments."""

from __future__ import annotations

import csv
import io

import numpy as np
from pipeline_support import BALLS, BODY_HU, NODULE_HU, Ball, fake_models, tiny_ct

from lungcad.ct import CT, Geometry
from lungcad.pipeline import DetectionResult, Thresholds, detect
from lungcad.pipeline.findings import MASS_DIAMETER_MM, OUTSIDE_LUNG_STATUS
from lungcad.pipeline.grouping import MAX_REGION_ML, group_candidates
from lungcad.pipeline.region import Box
from lungcad.reports.candidates_csv import candidates_csv_text

#: A ball in the body below the lung (19 mm from it, 15.5 mm from its edge): soft tissue.
OUTSIDE_BALL = Ball((0.0, 0.0, 38.0), 3.5)
LOW = Thresholds(0.5, 0.0, 0.5)  # nodule threshold 0: every classified candidate is a finding


def test_a_candidate_outside_the_lung_is_marked_never_classified_nor_a_finding(tmp_path):
    ct = tiny_ct(size_mm=96.0, balls=(*BALLS, OUTSIDE_BALL))
    result = detect(ct, fake_models(), LOW)
    outside = [c for c in result.candidates if not c.in_lung]
    assert len(outside) == 1
    (speck,) = outside
    assert np.linalg.norm(np.subtract(speck.center_lps, OUTSIDE_BALL.center_lps)) < 1.0
    assert (speck.p_nodule, speck.p_malignant, speck.finding) == (0.0, None, None)
    assert speck.status == OUTSIDE_LUNG_STATUS
    # the balls in the lung are findings even at nodule threshold 0; the outside one never is
    assert len(result.findings) == len(BALLS)
    assert all(c.in_lung and c.status == "finding" for c in result.candidates if c is not speck)
    rows = candidates_csv_text(result, "tiny").splitlines()
    assert "status" in rows[0].split(",")
    (row,) = [r for r in csv.DictReader(rows) if r["status"] == OUTSIDE_LUNG_STATUS]
    assert (row["p_nodule"], row["p_malignant"]) == ("0.000000", "")  # no made-up malignancy
    # the mark survives saving and refiltering
    loaded = DetectionResult.load(result.save(tmp_path / "r.npz"))
    assert [c.in_lung for c in loaded.candidates] == [c.in_lung for c in result.candidates]
    assert len(loaded.refilter(Thresholds(0.5, 0.0, 0.0)).findings) == len(BALLS)


def test_a_result_saved_before_the_lung_mask_loads_with_every_candidate_in_lung(tmp_path):
    result = detect(tiny_ct(), fake_models(), LOW)
    path = result.save(tmp_path / "r.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "in_lung"}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    old = tmp_path / "old.npz"
    old.write_bytes(buffer.getvalue())
    loaded = DetectionResult.load(old)
    assert len(loaded.findings) == len(result.findings) == len(BALLS)
    assert all(c.in_lung for c in loaded.candidates)


def _chest_with_a_mass(radius_mm: float) -> CT:
    """A body with one big lung (-850 HU) holding a lesion of ``radius_mm`` at its centre."""
    spacing = np.array([1.5, 1.5, 2.0])  # x, y, z
    shape_irc = (60, 100, 100)
    geometry = Geometry.from_arrays(
        -(np.array(shape_irc[::-1]) - 1) / 2 * spacing, spacing, np.eye(3), shape_irc
    )
    z, y, x = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in
                            zip(shape_irc, spacing[::-1], strict=True)], indexing="ij")  # fmt: skip
    hu = np.full(shape_irc, -1000.0)
    hu[(x / 72) ** 2 + (y / 72) ** 2 <= 1] = BODY_HU  # the stand-in UNet ignores it
    hu[(x / 62) ** 2 + (y / 62) ** 2 + (z / 50) ** 2 <= 1] = -850.0
    hu[x**2 + y**2 + z**2 <= radius_mm**2] = NODULE_HU
    hu += np.random.default_rng(0).normal(0.0, 10.0, shape_irc)
    return CT(hu=np.rint(hu).astype(np.int16), geometry=geometry, series_uid="1.2.3.mass")


def test_a_45_mm_lesion_is_one_finding_labelled_a_mass():
    result = detect(_chest_with_a_mass(22.5), fake_models(), LOW)
    assert len(result.findings) == 1
    (mass,) = result.findings
    assert mass.volume_mm3 > MAX_REGION_ML * 1000.0  # larger than the region cap
    assert 40.0 < mass.diameter_mm < 50.0
    assert mass.kind == "mass" and mass.label().startswith("Mass 1 ")
    assert np.linalg.norm(mass.center_lps) < 2.0


def test_a_nodule_up_to_30_mm_is_labelled_a_nodule():
    result = detect(_chest_with_a_mass(7.0), fake_models(), LOW)
    (nodule,) = result.findings
    assert nodule.diameter_mm <= MASS_DIAMETER_MM
    assert nodule.kind == "nodule" and nodule.label().startswith("Nodule 1 ")


def test_grouping_keeps_a_mass_whole_but_splits_a_large_thin_region():
    spacing = (1.25, 0.75, 0.75)
    shape = (60, 100, 100)
    z, y, x = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in
                            zip(shape, spacing, strict=True)], indexing="ij")  # fmt: skip
    ball = np.where(x**2 + y**2 + z**2 <= 22.5**2, 0.9, 0.0).astype(np.float16)
    voxel_mm3 = float(np.prod(spacing))
    box = Box.whole(shape)
    whole = group_candidates(ball, box, shape, 0.5, voxel_mm3, spacing_irc=spacing)
    assert len(whole) == 1 and len(whole[0].region_index) * voxel_mm3 > MAX_REGION_ML * 1000
    # without the spacing the old rule holds: too large at every level, so dropped
    assert group_candidates(ball, box, shape, 0.5, voxel_mm3) == []
    # a slab 10 mm thick and larger than the cap is no mass: it is split or dropped, not kept
    slab = np.where(np.abs(z) <= 5.0, 0.9, 0.0).astype(np.float16)
    assert len(slab[slab > 0]) * voxel_mm3 > MAX_REGION_ML * 1000
    assert group_candidates(slab, box, shape, 0.5, voxel_mm3, spacing_irc=spacing) == []
