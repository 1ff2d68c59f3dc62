"""Findings land where the nodules are, in LPS and in the CT's own voxels, whatever the axes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pipeline_support import BALLS, fake_models, tiny_ct

from lungcad.geometry import voxel_to_world
from lungcad.pipeline import Thresholds, detect
from lungcad.pipeline.footprint import VoxelMapper, mask_from_flat
from lungcad.preprocess import canonical_geometry

# identity; x and y flipped; axes permuted (col->z, row->x, index->y) with z flipped
DIRECTIONS = {
    "identity": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "flip-xy": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
    "permuted": (0, 1, 0, 0, 0, 1, -1, 0, 0),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=sorted(DIRECTIONS))
def case(request):
    ct = tiny_ct(DIRECTIONS[request.param], spacing_xyz=(0.9, 1.1, 1.3))
    return ct, detect(ct, fake_models(), Thresholds(0.5, 0.0, 0.5))


def test_findings_sit_on_the_balls(case):
    _, result = case
    assert len(result.findings) == len(BALLS)
    for ball in BALLS:
        f = min(
            result.findings,
            key=lambda f: np.linalg.norm(np.subtract(f.center_lps, ball.center_lps)),
        )
        assert np.linalg.norm(np.subtract(f.center_lps, ball.center_lps)) < 0.6
        # the map is cut at p >= 0.5, i.e. HU >= -25: the ball less a partial-volume rim
        r = ball.radius_mm
        assert 4 / 3 * math.pi * (r - 1.0) ** 3 < f.volume_mm3 < 4 / 3 * math.pi * (r + 0.5) ** 3


def test_centres_in_both_frames_agree_and_lie_in_their_masks(case):
    ct, result = case
    for f in result.findings:
        np.testing.assert_allclose(
            voxel_to_world(f.center_irc, ct.geometry), f.center_lps, atol=1e-9
        )
        full = f.mask.paste(ct.geometry.shape_irc)
        assert full[tuple(np.rint(f.center_irc).astype(int))]
        assert f.mask.array.any(axis=(1, 2))[[0, -1]].all()  # the box is tight


def test_mask_voxels_lie_on_the_ball(case):
    ct, result = case
    for f in result.findings:
        ball = min(BALLS, key=lambda b: np.linalg.norm(np.subtract(f.center_lps, b.center_lps)))
        irc = np.argwhere(f.mask.array) + np.asarray(f.mask.start_irc)
        distance = np.linalg.norm(voxel_to_world(irc, ct.geometry) - ball.center_lps, axis=1)
        half_diagonal = 0.5 * np.linalg.norm(ct.geometry.spacing_xyz)
        assert distance.max() <= ball.radius_mm + half_diagonal + 0.5


def test_sizes_and_hu_follow_their_definitions(case):
    ct, result = case
    for f in result.findings:
        assert f.diameter_mm == pytest.approx((6 * f.volume_mm3 / math.pi) ** (1 / 3), rel=1e-12)
        # the CT's HU at the region's nearest original voxels: close to the mean over the mask
        assert f.mean_hu == pytest.approx(ct.hu[f.mask.paste(ct.geometry.shape_irc)].mean(), abs=25)
    for c in result.candidates:
        assert 0.5 <= c.max_probability <= 1.0


def test_every_orientation_gives_the_same_findings():
    results = [
        detect(tiny_ct(d, spacing_xyz=(0.9, 1.1, 1.3)), fake_models(), Thresholds(0.5, 0.0, 0.5))
        for d in DIRECTIONS.values()
    ]
    first = sorted(results[0].findings, key=lambda f: f.center_lps)
    for other in results[1:]:
        for a, b in zip(first, sorted(other.findings, key=lambda f: f.center_lps), strict=True):
            assert np.linalg.norm(np.subtract(a.center_lps, b.center_lps)) < 0.5
            assert b.volume_mm3 == pytest.approx(a.volume_mm3, rel=0.25)  # sampled differently


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_axis_by_axis_mapping_equals_the_general_one(name):
    ct = tiny_ct(DIRECTIONS[name], spacing_xyz=(0.55, 1.1, 2.6), size_mm=40.0)
    canonical = canonical_geometry(ct.geometry)
    mapper = VoxelMapper(canonical, ct.geometry)
    assert mapper.separable
    rng = np.random.default_rng(1)
    for _ in range(5):
        start = rng.integers(0, np.asarray(canonical.shape_irc) - 6)
        block = rng.random((6, 6, 6)) < 0.3
        irc = np.argwhere(block) + start
        fast = mapper.mask(irc)
        general = mask_from_flat(mapper._flat_general(irc), ct.geometry.shape_irc)
        assert fast.start_irc == general.start_irc
        np.testing.assert_array_equal(fast.array, general.array)
