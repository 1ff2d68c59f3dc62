"""Model inputs (lungcad.crops): the detector and the training tree cut them with these."""

from __future__ import annotations

import numpy as np
import pytest

from lungcad.crops import (
    PAD_HU,
    centred_crop,
    centred_start,
    context_indices,
    padded_crop,
    slice_stack,
)

FILL = -7


@pytest.fixture
def volume() -> np.ndarray:
    """4x5x6 with every voxel's value its flat index, so a crop's values say where it came from."""
    return np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)


def test_crop_inside_is_a_copy_of_the_block(volume: np.ndarray) -> None:
    crop = padded_crop(volume, (1, 2, 3), (2, 3, 2), FILL)
    np.testing.assert_array_equal(crop, volume[1:3, 2:5, 3:5])
    assert crop.dtype == volume.dtype
    crop[...] = 0
    assert volume[1, 2, 3] != 0  # a copy, not a view


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_crop_past_the_low_border_is_filled(volume: np.ndarray, axis: int) -> None:
    start = [0, 0, 0]
    start[axis] = -2
    crop = padded_crop(volume, start, (3, 3, 3), FILL)
    lead = [slice(None)] * 3
    lead[axis] = slice(0, 2)
    rest = [slice(None)] * 3
    rest[axis] = slice(2, 3)
    assert np.all(crop[tuple(lead)] == FILL)
    source = tuple(slice(0, 1 if a == axis else 3) for a in range(3))
    np.testing.assert_array_equal(crop[tuple(rest)], volume[source])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_crop_past_the_high_border_is_filled(volume: np.ndarray, axis: int) -> None:
    start = [1, 1, 1]
    start[axis] = volume.shape[axis] - 1  # one voxel inside, two past the end
    crop = padded_crop(volume, start, (3, 3, 3), FILL)
    inside = [slice(None)] * 3
    inside[axis] = slice(0, 1)
    past = [slice(None)] * 3
    past[axis] = slice(1, 3)
    assert np.all(crop[tuple(past)] == FILL)
    source = tuple(slice(s, s + (1 if a == axis else 3)) for a, s in enumerate(start))
    np.testing.assert_array_equal(crop[tuple(inside)], volume[source])


def test_crop_past_both_ends_of_every_axis(volume: np.ndarray) -> None:
    crop = padded_crop(volume, (-1, -2, -3), (6, 9, 12), FILL)
    assert crop.shape == (6, 9, 12)
    np.testing.assert_array_equal(crop[1:5, 2:7, 3:9], volume)
    crop[1:5, 2:7, 3:9] = FILL
    assert np.all(crop == FILL)


@pytest.mark.parametrize("start", [(4, 0, 0), (0, -3, 0), (0, 0, 6), (-9, -9, -9)])
def test_crop_entirely_outside_is_all_fill(volume: np.ndarray, start) -> None:
    crop = padded_crop(volume, start, (2, 3, 3), FILL)
    assert crop.shape == (2, 3, 3) and np.all(crop == FILL)


def test_crop_needs_a_start_and_size_per_axis(volume: np.ndarray) -> None:
    with pytest.raises(ValueError, match="starts and sizes"):
        padded_crop(volume, (0, 0), (2, 2, 2), FILL)


def test_centred_start_puts_the_centre_at_size_over_two() -> None:
    assert centred_start((10, 10, 10), (32, 48, 48)) == [-6, -14, -14]
    assert centred_start((5, 5), (3, 4)) == [4, 3]


def test_centred_crop_is_air_padded_around_its_centre(volume: np.ndarray) -> None:
    crop = centred_crop(volume, (0, 4, 5), (3, 4, 4))
    assert crop[1, 2, 2] == volume[0, 4, 5]
    assert np.all(crop[0] == PAD_HU)  # above the first slice
    assert np.all(crop[:, 3] == PAD_HU) and np.all(crop[:, :, 3] == PAD_HU)  # past row and col
    np.testing.assert_array_equal(crop[1:, :3, :3], volume[0:2, 2:5, 3:6])
    assert PAD_HU == -1000


def test_context_indices_are_clamped_at_both_ends() -> None:
    assert context_indices(0, 3, 10) == [0, 0, 0, 0, 1, 2, 3]
    assert context_indices(1, 3, 10) == [0, 0, 0, 1, 2, 3, 4]
    assert context_indices(5, 3, 10) == [2, 3, 4, 5, 6, 7, 8]
    assert context_indices(9, 3, 10) == [6, 7, 8, 9, 9, 9, 9]
    assert context_indices(0, 3, 1) == [0] * 7
    assert context_indices(1, 2, 3) == [0, 0, 1, 2, 2]


def test_slice_stack_whole_slices_repeat_the_edges(volume: np.ndarray) -> None:
    stack = slice_stack(volume, 0, 2)
    assert stack.shape == (5, 5, 6)
    np.testing.assert_array_equal(stack, volume[[0, 0, 0, 1, 2]])


def test_slice_stack_window_is_padded_per_slice(volume: np.ndarray) -> None:
    stack = slice_stack(volume, 3, 1, (-1, 4), (3, 3), FILL)
    assert stack.shape == (3, 3, 3)
    np.testing.assert_array_equal(stack[:, 1:, :2], volume[[2, 3, 3], 0:2, 4:6])
    assert np.all(stack[:, 0] == FILL) and np.all(stack[:, :, 2] == FILL)


def test_slice_stack_window_needs_its_size(volume: np.ndarray) -> None:
    with pytest.raises(ValueError, match="size_rc"):
        slice_stack(volume, 0, 1, (0, 0))
