"""The classical lung finder, on phantoms (against their truth) and on real chest CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungcad.ctio import read_ct
from lungcad.lungs import find_lungs, lung_statistics
from lungcad.phantom import Tissue


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
