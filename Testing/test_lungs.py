"""The classical lung finder, on phantoms (against their truth) and on real chest CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from lungcad.ctio import read_ct
from lungcad.geometry import voxel_to_world
from lungcad.lungs import find_lungs, lung_statistics, parenchyma_mask
from lungcad.phantom import PhantomSize, Tissue, make_case
from lungcad.phantom.spec import NoduleLocation


def test_finds_the_phantom_lungs(small_cases) -> None:
    for case in small_cases:
        truth = np.isin(case.rendered.tissue, [Tissue.LUNG, Tissue.VESSEL, Tissue.NODULE])
        found = find_lungs(case.ct)
        dice = 2 * (truth & found).sum() / (truth.sum() + found.sum())
        assert dice > 0.9


def test_finds_real_lungs_in_a_cropped_chest_ct(real_data: Path) -> None:
    ct = read_ct(real_data / "chest_cta_totalseg.nii.gz")
    stats = lung_statistics(ct)
    assert stats.volume_ml > 200
    assert -900 < stats.parenchyma_mean_hu < -700


def test_phantom_lungs_resemble_real_lungs(small_cases, real_data: Path) -> None:
    """Parenchyma density and the share of dense structures (vessels) fall in the real range."""
    real = [
        lung_statistics(read_ct(real_data / "chest_cta_totalseg.nii.gz")),
        lung_statistics(read_ct(real_data / "dicom_totalseg")),
    ]
    phantom = [lung_statistics(case.ct) for case in small_cases]
    real_hu = [s.parenchyma_mean_hu for s in real]
    for s in phantom:
        assert min(real_hu) - 40 <= s.parenchyma_mean_hu <= max(real_hu) + 40
        assert 0.02 <= s.dense_fraction <= 0.15
    for s in real:
        assert 0.02 <= s.dense_fraction <= 0.15


def test_empty_volume_has_no_lungs(small_cases) -> None:
    ct = small_cases[0].ct
    ct.hu = np.full_like(ct.hu, 40)  # soft tissue everywhere: no air, no lung
    assert not find_lungs(ct).any()
    assert lung_statistics(ct).volume_ml == 0.0


def _phantoms_with_every_location() -> list:
    """Small phantoms (seed 4, then 5) until isolated, juxta-pleural and juxta-vascular nodules
    have all been seen, so the tests below cannot pass on a set lacking one."""
    cases, seen = [], set()
    for seed, index in [(4, i) for i in range(4)] + [(5, i) for i in range(6)]:
        case = make_case(seed, index, PhantomSize.SMALL)
        cases.append(case)
        seen |= {n.location for n in case.spec.nodules}
        if seen >= set(NoduleLocation):
            return cases
    raise AssertionError(f"phantoms lack a location: seen {seen}")


def test_every_phantom_nodule_lies_in_the_parenchyma_mask() -> None:
    """Juxta-pleural and juxta-vascular nodules included: none is lost to the mask."""
    for case in _phantoms_with_every_location():
        mask = parenchyma_mask(case.ct)
        centres = np.array([n.center_xyz for n in case.spec.nodules], dtype=float).reshape(-1, 3)
        inside = mask.contains(centres)
        lost = [
            (n.location.value, n.diameter_mm)
            for n, i in zip(case.spec.nodules, inside, strict=True)
            if not i
        ]
        assert not lost, f"{case.ct.series_uid}: nodules outside the lung mask: {lost}"


def test_mediastinum_and_chest_wall_lie_outside_the_parenchyma_mask() -> None:
    """Soft tissue and bone at least 15 mm from any lung (mediastinum, chest wall, abdomen)."""
    for case in [make_case(4, i, PhantomSize.SMALL) for i in range(2)]:
        tissue = case.rendered.tissue
        lung = np.isin(tissue, [Tissue.LUNG, Tissue.VESSEL, Tissue.NODULE, Tissue.AIRWAY])
        depth = ndimage.distance_transform_edt(~lung, sampling=case.ct.geometry.spacing_irc)
        solid = np.isin(tissue, [Tissue.SOFT_TISSUE, Tissue.FAT, Tissue.BONE]) & (depth >= 15.0)
        irc = np.argwhere(solid)
        pick = irc[np.random.default_rng(0).choice(len(irc), size=500, replace=False)]
        points = voxel_to_world(pick.astype(float), case.ct.geometry)
        assert not parenchyma_mask(case.ct).contains(points).any()
        # and the lungs themselves are covered: the truth's lung voxels lie in the mask
        lung_points = voxel_to_world(np.argwhere(lung)[::50].astype(float), case.ct.geometry)
        assert parenchyma_mask(case.ct).contains(lung_points, margin_mm=0.0).mean() > 0.97


def test_parenchyma_mask_of_the_real_scans(real_data: Path) -> None:
    """The cropped CTA's lungs touch the crop's edges and still count; the abdominal series with
    stomach gas and no lung has no lung; the two-slice chest has both lungs."""
    cta = parenchyma_mask(read_ct(real_data / "chest_cta_totalseg.nii.gz"))
    # air below -400 HU inside the crop is 3.0 l (35.7 % of 8.4 l): the lungs, nearly all of it
    assert 2500 < cta.volume_ml < 3200
    assert parenchyma_mask(read_ct(real_data / "dicom_totalseg")).volume_ml == 0.0
    two_slices = parenchyma_mask(read_ct(real_data / "dicom_lungmask"))
    assert 25 < two_slices.volume_ml < 50
    left, right = two_slices.mask[0][:, :64].sum(), two_slices.mask[0][:, 64:].sum()
    assert min(left, right) > 0.3 * max(left, right)  # both lungs, not one
