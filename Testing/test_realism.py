"""Realism statistics on synthetic volumes whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from lungcad.ct import CT, Geometry
from lungcad.realism import (
    HIST_EDGES_HU,
    average_slabs,
    histogram_distance,
    lung_histogram,
    measure_realism,
    noise_sd,
    nps_peak,
    outside_air,
    vessel_cross_sections,
)

PIXEL = (0.7, 0.7)


def _ct(hu: np.ndarray, spacing_xyz=(0.7, 0.7, 2.0), origin=(0.0, 0.0, 0.0), direction=None):
    direction = np.eye(3).ravel() if direction is None else direction
    geometry = Geometry.from_arrays(origin, spacing_xyz, direction, hu.shape)
    return CT(hu=np.rint(hu).clip(-1024, 3000).astype(np.int16), geometry=geometry)


def _disc(shape: tuple[int, int], centre: tuple[float, float], radius_px: float) -> np.ndarray:
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius_px**2


@pytest.mark.parametrize(("level", "low", "high", "sd"), [(40, 20, 80, 15.0), (-100, -150, -50, 8)])
def test_a_gaussian_noise_patch_reads_its_sd(level, low, high, sd):
    rng = np.random.default_rng(1)
    hu = level + rng.normal(0.0, sd, size=(4, 128, 128))
    measured, windows = noise_sd(hu, PIXEL, np.arange(4), low, high)
    assert windows > 1000
    assert measured == pytest.approx(sd, rel=0.03)


def test_air_noise_is_measured_outside_the_body_only():
    rng = np.random.default_rng(2)
    hu = np.full((3, 160, 160), -1000.0)
    body = _disc((160, 160), (80, 80), 60)
    hu[:, body] = 40.0
    lung = _disc((160, 160), (80, 80), 30)
    hu[:, lung] = -980.0  # darker than OUTSIDE_AIR_MEDIAN_HU, but enclosed: not outside air
    hu += rng.normal(0.0, 10.0, size=hu.shape)
    air = outside_air(hu)
    assert not air[:, lung].any() and not air[:, body].any()
    assert air[:, 0, 0].all()
    measured, _ = noise_sd(hu, PIXEL, np.arange(3), -1100, -900, allowed=air)
    assert measured == pytest.approx(10.0, rel=0.05)


def test_the_nps_peaks_at_the_frequency_the_noise_was_filtered_to():
    rng = np.random.default_rng(3)
    n, f0, width = 256, 0.25, 0.03  # cycles/mm
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n, PIXEL[0]), np.fft.fftfreq(n, PIXEL[1])))
    ring = np.exp(-((f - f0) ** 2) / (2 * width**2))
    white = rng.normal(size=(6, n, n))
    noise = np.real(np.fft.ifft2(np.fft.fft2(white) * ring))
    hu = 40.0 + 20.0 * noise / noise.std()
    peak, rois = nps_peak(hu, PIXEL, np.arange(6), ((20.0, 80.0),))
    step = 1.0 / (round(20.0 / PIXEL[0]) * PIXEL[0])
    assert rois > 50
    assert peak == pytest.approx(f0, abs=step)


def test_vessel_discs_are_counted_in_their_depth_bands():
    pixel = (0.5, 0.5)
    radius_mm, shape = 60.0, (260, 260)
    centre = (130.0, 130.0)
    lung = _disc(shape, centre, radius_mm / pixel[0])
    hu = np.where(lung, -850.0, 40.0)
    depths_mm = {"0-10": 5.0, "10-20": 15.0, "20-40": 30.0, ">40": 50.0}
    for k, depth in enumerate(depths_mm.values()):
        angle = k * np.pi / 2
        r_px = (radius_mm - depth) / pixel[0]
        at = (centre[0] + r_px * np.sin(angle), centre[1] + r_px * np.cos(angle))
        hu[_disc(shape, at, 1.5 / pixel[0])] = 40.0
    volume = np.repeat(hu[None], 3, axis=0)
    lungs = np.repeat(lung[None], 3, axis=0)
    counts, areas = vessel_cross_sections(volume, lungs, pixel, np.arange(3))
    assert counts == dict.fromkeys(depths_mm, 3)
    ring = {"0-10": (50, 60), "10-20": (40, 50), "20-40": (20, 40), ">40": (0, 20)}
    for band, (inner, outer) in ring.items():
        expected = 3 * np.pi * (outer**2 - inner**2) / 100.0
        assert areas[band] == pytest.approx(expected, rel=0.03), band


def test_identical_histograms_are_0_apart_and_a_shift_reads_in_hu():
    rng = np.random.default_rng(4)
    hu = rng.normal(-850.0, 40.0, size=(2, 64, 64))
    everywhere = np.ones(hu.shape, dtype=bool)
    a = lung_histogram(hu, everywhere)
    assert a.shape == (len(HIST_EDGES_HU) - 1,) and a.sum() == pytest.approx(1.0)
    assert histogram_distance(a, a.copy()) == 0.0
    b = lung_histogram(hu + 50.0, everywhere)
    assert histogram_distance(a, b) == pytest.approx(50.0, abs=3.0)
    assert lung_histogram(hu, np.zeros(hu.shape, dtype=bool)) is None


def test_a_crop_without_outside_air_says_why_air_noise_is_not_available():
    rng = np.random.default_rng(5)
    hu = np.full((4, 120, 120), 40.0)
    for centre in ((60, 30), (60, 90)):
        hu[:, _disc((120, 120), centre, 22)] = -850.0
    hu += rng.normal(0.0, 12.0, size=hu.shape)
    stats = measure_realism(_ct(hu))
    assert stats.noise_sd_hu["air"] is None
    assert "no air outside the body" in stats.notes["noise air"]
    assert stats.noise_sd_hu["muscle"] == pytest.approx(12.0, rel=0.06)
    assert stats.lung_ml > 0 and stats.histogram is not None
    assert 0.0 <= stats.dense_share < 0.05


def test_thick_slabs_average_the_thin_slices_they_overlap():
    # ten 1.5 mm slices, value = slice index, z axis flipped: three whole 5 mm slabs
    hu = np.repeat(np.arange(10.0)[:, None, None] * 10.0 - 900.0, 4, axis=1).repeat(4, axis=2)
    direction = np.diag([1.0, 1.0, -1.0]).ravel()
    ct = _ct(hu, spacing_xyz=(1.0, 1.0, 1.5), origin=(0.0, 0.0, 100.0), direction=direction)
    thick = average_slabs(ct, 5.0)
    assert thick.shape == (3, 4, 4) and thick.geometry.spacing_xyz == (1.0, 1.0, 5.0)
    # slab 0 covers [0, 5) mm: slices 0, 1, 2 whole and a third of slice 3
    expected = (0 + 1 + 2 + 3 / 3) / (3 + 1 / 3) * 10.0 - 900.0
    assert thick.hu[0, 0, 0] == round(expected)
    # its centre is 2.5 mm from the first slice's outer edge, 1.75 mm from slice 0's centre
    assert thick.geometry.origin_xyz == pytest.approx((0.0, 0.0, 100.0 - 1.75))
    assert "5 mm" in thick.metadata["derived"]
