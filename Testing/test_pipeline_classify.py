"""classify(): p_nodule averaged over the crop's in-plane mirrors, above the floor only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lungcad.crops import centred_crop
from lungcad.pipeline.classify import MIRROR_FLOOR, NODULE_MIRRORS, classify

CROP = (4, 6, 6)


class CornerReader(nn.Module):
    """A stand-in classifier whose p(class 1) is the crop's first voxel mapped from HU to [0, 1],
    so each mirrored view reads a different corner of the crop."""

    input_shape = CROP

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = (x[:, 0, 0, 0, 0] + 1000.0) / 2000.0
        probabilities = torch.stack([1.0 - p, p], dim=1)
        return torch.log(probabilities.clamp_min(1e-12)), probabilities


def corner_p(volume: np.ndarray, center, row: int, col: int) -> float:
    crop = centred_crop(volume, center, CROP)
    return (float(crop[0, row, col]) + 1000.0) / 2000.0


def four_corners(volume: np.ndarray, center) -> list[float]:
    r, c = CROP[1] - 1, CROP[2] - 1
    return [corner_p(volume, center, *corner) for corner in ((0, 0), (r, 0), (0, c), (r, c))]


@pytest.fixture
def volume() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(-800, 1000, size=(12, 20, 20)).astype(np.int16)


CENTRES = np.array([[5, 6, 6], [6, 10, 9], [4, 13, 12], [7, 8, 14], [6, 12, 7]], dtype=np.int64)


def test_nodule_score_is_the_mean_of_the_four_in_plane_mirrors(volume):
    assert len(NODULE_MIRRORS) == 4
    p_nodule, _ = classify(
        volume, CENTRES, CornerReader(), CornerReader(), torch.device("cpu"), batch=2
    )
    expected = [np.mean(four_corners(volume, c)) for c in CENTRES]
    np.testing.assert_allclose(p_nodule, expected, rtol=0, atol=1e-6)


def test_malignancy_and_the_unmirrored_run_see_one_view(volume):
    cpu = torch.device("cpu")
    mirrored = classify(volume, CENTRES, CornerReader(), CornerReader(), cpu, batch=3)
    single = classify(volume, CENTRES, CornerReader(), CornerReader(), cpu, mirror=False)
    first_corner = [corner_p(volume, c, 0, 0) for c in CENTRES]
    np.testing.assert_allclose(mirrored[1], first_corner, rtol=0, atol=1e-6)
    np.testing.assert_allclose(single[0], first_corner, rtol=0, atol=1e-6)
    np.testing.assert_allclose(single[1], first_corner, rtol=0, atol=1e-6)
    assert not np.allclose(mirrored[0], single[0])


def test_a_candidate_below_the_floor_keeps_its_one_view_score(volume):
    low, high = CENTRES[0], CENTRES[1]
    start = low - np.array(CROP) // 2
    volume[tuple(start)] = -1000  # the first view of the low candidate reads p = 0
    assert corner_p(volume, low, 0, 0) < MIRROR_FLOOR < min(four_corners(volume, low)[1:])
    p_nodule, _ = classify(
        volume, np.stack([low, high]), CornerReader(), CornerReader(), torch.device("cpu")
    )
    assert p_nodule[0] == 0.0
    assert p_nodule[1] == pytest.approx(np.mean(four_corners(volume, high)), abs=1e-6)


def test_no_candidates_give_empty_scores(volume):
    p_nodule, p_malignant = classify(
        volume, np.zeros((0, 3), np.int64), CornerReader(), CornerReader(), torch.device("cpu")
    )
    assert p_nodule.shape == p_malignant.shape == (0,)
