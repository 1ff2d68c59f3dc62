"""Thick-sliced scans: the UNet runs only on the canonical slices at the scan's own slices, and its
map is interpolated between them (lungcad.pipeline.region.thin_slices, segment_box)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from pipeline_support import BALLS, fake_models, tiny_ct
from torch import nn

from lungcad.geometry import voxel_to_world, world_to_voxel
from lungcad.pipeline import DetectionOptions, DetectionStats, Thresholds, detect
from lungcad.pipeline.region import Box, UNetPlan, lung_plan, thin_slices
from lungcad.pipeline.segment import segment_box
from lungcad.preprocess import canonical_geometry, normalise_hu

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAGITTAL = (0, 0, 1, 1, 0, 0, 0, 1, 0)  # the index axis runs along x (L)


def test_a_5mm_scan_runs_the_canonical_slices_at_its_own_slices():
    ct = tiny_ct(spacing_xyz=(1.0, 1.0, 5.0))
    canonical = canonical_geometry(ct.geometry)
    plan = lung_plan(ct, canonical, 3.0, align_rc=4)
    thinned = thin_slices(plan, ct.geometry, canonical)
    centres = [[i, 0.0, 0.0] for i in range(ct.shape[0])]
    z = np.rint(world_to_voxel(voxel_to_world(np.array(centres), ct.geometry), canonical)[:, 0])
    k = z.astype(int) - plan.box.start[0]
    expected = set(k[(k >= 0) & (k < len(plan.rows))]) | {0, len(plan.rows) - 1}
    assert set(thinned.run_slices.tolist()) == expected
    assert np.diff(thinned.run_slices).max() <= 4  # 5 mm / 1.25 mm
    assert thinned.pixels < 0.45 * plan.pixels
    # each run slice's window holds the windows of the slices interpolated from it
    run = thinned.run_slices
    for left, right in itertools.pairwise(run):
        for k in range(left, right + 1):
            for anchor in (left, right):
                assert thinned.rows[anchor, 0] <= plan.rows[k, 0]
                assert thinned.rows[anchor, 1] >= plan.rows[k, 1]
                assert thinned.cols[anchor, 0] <= plan.cols[k, 0]
                assert thinned.cols[anchor, 1] >= plan.cols[k, 1]
    # the interpolated slices keep their own windows
    others = np.setdiff1d(np.arange(len(plan.rows)), run)
    assert np.array_equal(thinned.rows[others], plan.rows[others])


@pytest.mark.parametrize(
    ("spacing", "direction"),
    [((1.0, 1.0, 1.5), (1, 0, 0, 0, 1, 0, 0, 0, 1)), ((5.0, 1.0, 1.0), SAGITTAL)],
    ids=["1.5 mm axial", "5 mm sagittal"],
)
def test_thin_and_non_axial_scans_run_every_slice(spacing, direction):
    ct = tiny_ct(direction, spacing_xyz=spacing)
    canonical = canonical_geometry(ct.geometry)
    plan = lung_plan(ct, canonical, 3.0, align_rc=4)
    assert thin_slices(plan, ct.geometry, canonical) is plan


class SliceEcho(nn.Module):
    """Returns the stack's centre slice as the 'probability', and counts the slices it ran on."""

    in_channels = 7

    def __init__(self) -> None:
        super().__init__()
        self.slices = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.slices += x.shape[0]
        return x[:, 3:4]


def test_the_map_between_run_slices_is_their_linear_blend():
    n, rows, cols = 9, 16, 20
    volume = np.zeros((n, rows, cols), dtype=np.int16)
    volume += (np.arange(n) * 100 - 400).astype(np.int16)[:, None, None]
    volume[:, 5:9, 6:12] += 50  # something in-plane, so a window's placement matters
    box = Box((0, 0, 0), (n, rows, cols))
    full = UNetPlan.of_box(box)
    plan_rows = full.rows.copy()
    plan_rows[2] = (4, 12)  # an interpolated slice with a smaller window
    computed = np.zeros(n, dtype=bool)
    computed[[0, 4, 8]] = True
    plan = UNetPlan(box, plan_rows, full.cols.copy(), computed)
    model = SliceEcho()
    out = segment_box(volume, plan, model, torch.device("cpu")).astype(np.float32)
    assert model.slices == 3
    echo = normalise_hu(volume.astype(np.float32))
    for k in (0, 4, 8):
        np.testing.assert_allclose(out[k], echo[k], atol=1e-3)
    for k, (left, right, t) in {1: (0, 4, 0.25), 3: (0, 4, 0.75), 6: (4, 8, 0.5)}.items():
        np.testing.assert_allclose(out[k], (1 - t) * echo[left] + t * echo[right], atol=2e-3)
    inside = (1 - 0.5) * echo[0, 4:12] + 0.5 * echo[4, 4:12]
    np.testing.assert_allclose(out[2, 4:12], inside, atol=2e-3)
    assert not out[2, :4].any() and not out[2, 12:].any()


def test_detection_on_a_5mm_scan_finds_every_ball_with_a_third_of_the_unet_work():
    """The stand-in UNet sees a small ball on one 5 mm slice only; the full run's map on the blended
    slices either side is near 0 there, so erosion loses two of the three balls. Interpolating the
    map keeps all three, a quarter of the slices run."""
    ct = tiny_ct(spacing_xyz=(1.0, 1.0, 5.0))
    thresholds = Thresholds(0.5, 0.0, 0.5)
    thin, every = DetectionStats(), DetectionStats()
    models = fake_models()
    fast = detect(ct, models, thresholds, DetectionOptions(lung_margin_mm=3.0), stats=thin)
    every_slice = DetectionOptions(lung_margin_mm=3.0, interpolate_thick_slices=False)
    slow = detect(ct, models, thresholds, every_slice, stats=every)
    assert thin.slices_run <= every.slices_run // 3 + 2
    assert len(slow.findings) == 1
    assert len(fast.findings) == len(BALLS)
    for ball in BALLS:
        nearest = min(
            np.linalg.norm(np.subtract(f.center_lps, ball.center_lps)) for f in fast.findings
        )
        assert nearest < 2.5  # half a slice
