"""classify(): one nodule view for all; mirrors from the mirror floor, malignancy from the
nodule floor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lungcad.crops import centred_crop
from lungcad.pipeline.classify import NODULE_MIRRORS, classify

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
    floor = 0.1
    assert corner_p(volume, low, 0, 0) < floor < min(four_corners(volume, low)[1:])
    p_nodule, p_malignant = classify(
        volume, np.stack([low, high]), CornerReader(), CornerReader(), torch.device("cpu"),
        floor=floor,
    )  # fmt: skip
    assert p_nodule[0] == 0.0
    assert np.isnan(p_malignant[0])  # below the floor: no malignancy score
    assert p_nodule[1] == pytest.approx(np.mean(four_corners(volume, high)), abs=1e-6)
    assert p_malignant[1] == pytest.approx(corner_p(volume, high, 0, 0), abs=1e-6)


class Counting(nn.Module):
    """Wraps a stand-in classifier and counts the crops it is shown."""

    input_shape = CROP

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.crops = 0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.crops += len(x)
        return self.inner(x)


#: HU of the four index-0 corners (first view, rows flipped, cols flipped, both) of five
#: candidates' crops, for floor 0.5 and CornerReader's p = (HU + 1000) / 2000 (exact in float32):
#: A all 0.9; B first view 0.25 (below: no mirrors) though its mirrors read 0.9; C first view
#: 0.75 (mirrored) but mean 0.1875 (no malignancy); D exactly at the floor; E background, p = 0.
CORNER_HU = {
    "A": (800, 800, 800, 800),
    "B": (-500, 800, 800, 800),
    "C": (500, -1000, -1000, -1000),
    "D": (0, 0, 0, 0),
    "E": (-1000, -1000, -1000, -1000),
}
FLOOR = 0.5


def _corner_scene() -> tuple[np.ndarray, np.ndarray]:
    """Five candidates with disjoint crops on a -1000 HU volume, corners set as CORNER_HU."""
    volume = np.full((8, 12, 60), -1000, dtype=np.int16)
    centres = np.array([[4, 6, 6 + 12 * k] for k in range(len(CORNER_HU))], dtype=np.int64)
    r, c = CROP[1] - 1, CROP[2] - 1
    for centre, hus in zip(centres, CORNER_HU.values(), strict=True):
        i, row, col = centre - np.array(CROP) // 2
        for (dr, dc), hu in zip(((0, 0), (r, 0), (0, c), (r, c)), hus, strict=True):
            volume[i, row + dr, col + dc] = hu
    return volume, centres


@pytest.mark.parametrize("batch", [1, 2, 8])
def test_mirrors_and_malignancy_run_only_at_or_above_the_floor(batch):
    volume, centres = _corner_scene()
    nodule, malignancy = Counting(CornerReader()), Counting(CornerReader())
    p_nodule, p_malignant = classify(
        volume, centres, nodule, malignancy, torch.device("cpu"), floor=FLOOR, batch=batch,
        mirror_floor=FLOOR,
    )  # fmt: skip
    np.testing.assert_allclose(p_nodule, [0.9, 0.25, 0.1875, 0.5, 0.0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(p_malignant, [0.9, np.nan, np.nan, 0.5, np.nan], rtol=0, atol=1e-6)
    # one view of all five; three more views of A, C, D (one view at or above the floor);
    # malignancy for A and D (mean at or above the floor)
    assert nodule.crops == 5 + 3 * 3
    assert malignancy.crops == 2


@pytest.mark.parametrize("batch", [1, 3])
def test_a_mirror_floor_under_the_nodule_floor_mirrors_more_but_adds_no_malignancy(batch):
    """B (one view 0.25) is mirrored from a mirror floor of 0.2 and its mean 0.7375 reaches the
    nodule floor, so it gets malignancy too; E (0) stays one view."""
    volume, centres = _corner_scene()
    nodule, malignancy = Counting(CornerReader()), Counting(CornerReader())
    p_nodule, p_malignant = classify(
        volume, centres, nodule, malignancy, torch.device("cpu"), floor=FLOOR, batch=batch,
        mirror_floor=0.2,
    )  # fmt: skip
    np.testing.assert_allclose(p_nodule, [0.9, 0.7375, 0.1875, 0.5, 0.0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(p_malignant, [0.9, 0.25, np.nan, 0.5, np.nan], rtol=0, atol=1e-6)
    assert nodule.crops == 5 + 3 * 4
    assert malignancy.crops == 3


def test_the_default_mirror_floor_lies_under_the_nodule_floor():
    from lungcad.pipeline.classify import MIRROR_FLOOR
    from lungcad.pipeline.detect import MIN_NODULE_THRESHOLD

    assert 0.0 < MIRROR_FLOOR < MIN_NODULE_THRESHOLD


def test_without_mirrors_malignancy_follows_the_one_view_score():
    volume, centres = _corner_scene()
    nodule, malignancy = Counting(CornerReader()), Counting(CornerReader())
    p_nodule, p_malignant = classify(
        volume, centres, nodule, malignancy, torch.device("cpu"), floor=FLOOR, mirror=False
    )
    np.testing.assert_allclose(p_nodule, [0.9, 0.25, 0.75, 0.5, 0.0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(p_malignant, [0.9, np.nan, 0.75, 0.5, np.nan], rtol=0, atol=1e-6)
    assert (nodule.crops, malignancy.crops) == (5, 3)


def test_floor_zero_scores_every_candidate_with_everything():
    volume, centres = _corner_scene()
    nodule, malignancy = Counting(CornerReader()), Counting(CornerReader())
    p_nodule, p_malignant = classify(
        volume, centres, nodule, malignancy, torch.device("cpu"), floor=0.0
    )
    expected = [np.mean([(hu + 1000) / 2000 for hu in hus]) for hus in CORNER_HU.values()]
    np.testing.assert_allclose(p_nodule, expected, rtol=0, atol=1e-6)
    assert not np.isnan(p_malignant).any()
    assert (nodule.crops, malignancy.crops) == (5 * 4, 5)


def test_no_candidates_give_empty_scores(volume):
    p_nodule, p_malignant = classify(
        volume, np.zeros((0, 3), np.int64), CornerReader(), CornerReader(), torch.device("cpu")
    )
    assert p_nodule.shape == p_malignant.shape == (0,)
