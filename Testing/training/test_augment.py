"""Batched affine augmentation: identity when off, exact mirrors, known rotations, binary masks."""

from __future__ import annotations

import math

import pytest
import torch

from lungcad_training.augment import AugmentConfig, AugmentParams, augment_2d, augment_3d

ONLY_MIRROR = AugmentConfig(mirror=True, shift=False, scale=False, rotate=False, noise=False)
ONLY_ROTATE = AugmentConfig(mirror=False, shift=False, scale=False, rotate=True, noise=False)
ONLY_SHIFT = AugmentConfig(mirror=False, shift=True, scale=False, rotate=False, noise=False)
ONLY_NOISE = AugmentConfig(mirror=False, shift=False, scale=False, rotate=False, noise=True)


def _batch_2d(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 7, 32, 32, generator=g) * 300
    masks = (torch.rand(n, 1, 32, 32, generator=g) > 0.8).float()
    return images, masks


def test_all_off_is_the_identity() -> None:
    images, masks = _batch_2d()
    out, out_masks = augment_2d(images, masks, AugmentConfig.off(), torch.Generator())
    assert torch.equal(out, images) and torch.equal(out_masks, masks)
    crops = torch.randn(3, 1, 8, 12, 12)
    out3, none = augment_3d(crops, config=AugmentConfig.off())
    assert torch.equal(out3, crops) and none is None


def _flipped(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return t.flip(dims) if dims else t


def test_mirror_flips_exactly_and_alike() -> None:
    images, masks = _batch_2d(n=16)
    out, out_masks = augment_2d(images, masks, ONLY_MIRROR, torch.Generator().manual_seed(3))
    seen = set()
    for i in range(16):
        for dims in ((), (-1,), (-2,), (-2, -1)):
            if torch.equal(out[i], _flipped(images[i], dims)):
                assert torch.equal(out_masks[i], _flipped(masks[i], dims))
                seen.add(dims)
                break
        else:
            pytest.fail(f"sample {i} is not an exact mirror of its input")
    assert len(seen) >= 3


def test_mirror_3d_flips_the_index_axis_too() -> None:
    crops = torch.arange(2 * 4 * 5 * 6, dtype=torch.float32).reshape(2, 1, 4, 5, 6)
    params = AugmentParams.identity(2, 3)
    params.flips[0] = torch.tensor([True, False, False])
    params.flips[1] = torch.tensor([True, True, True])
    out, _ = augment_3d(crops, config=ONLY_MIRROR, params=params)
    assert torch.equal(out[0], crops[0].flip(1))
    assert torch.equal(out[1], crops[1].flip((1, 2, 3)))


def test_quarter_turn_moves_a_known_pixel() -> None:
    images = torch.zeros(1, 7, 32, 32)
    masks = torch.zeros(1, 1, 32, 32)
    images[0, :, 15, 25] = 500.0  # 9.5 px right of the centre (15.5, 15.5), 0.5 above
    masks[0, 0, 15, 25] = 1.0
    params = AugmentParams.identity(1, 2)
    params.angles[0] = math.pi / 2

    out, out_masks = augment_2d(images, masks, ONLY_ROTATE, params=params)

    # right of the centre turns to below it: (row, col) = (15.5 + 9.5, 15.5 + 0.5)
    assert torch.allclose(out[0, :, 25, 16], torch.full((7,), 500.0), atol=1e-2)
    assert out[0].abs().sum() == pytest.approx(7 * 500.0, rel=1e-4)
    assert out_masks[0, 0].nonzero().tolist() == [[25, 16]]


def test_rotation_3d_is_about_the_index_axis() -> None:
    crops = torch.zeros(1, 1, 8, 16, 16)
    crops[0, 0, 2, 7, 12] = 1.0
    params = AugmentParams.identity(1, 3)
    params.angles[0] = math.pi / 2
    out, _ = augment_3d(crops, config=ONLY_ROTATE, params=params)
    peak = (out[0, 0] == out.max()).nonzero().tolist()
    assert peak == [[2, 12, 8]] and out.max() == pytest.approx(1.0, abs=1e-4)


def test_shift_is_in_half_extents() -> None:
    masks = torch.zeros(1, 1, 32, 32)
    masks[0, 0, 10, 10] = 1.0
    params = AugmentParams.identity(1, 2)
    params.shifts[0] = torch.tensor([0.0, 0.25])  # a quarter of 16 px half-width: 4 px along col
    _, out = augment_2d(torch.zeros(1, 1, 32, 32), masks, ONLY_SHIFT, params=params)
    assert out[0, 0].nonzero().tolist() == [[10, 14]]


def test_masks_stay_binary_under_everything() -> None:
    images, masks = _batch_2d(n=8)
    out, out_masks = augment_2d(images, masks, AugmentConfig(), torch.Generator().manual_seed(1))
    assert set(out_masks.unique().tolist()) <= {0.0, 1.0}
    assert out.shape == images.shape and out_masks.shape == masks.shape
    crops = torch.randn(4, 1, 8, 12, 12)
    crop_masks = (crops > 1).float()
    out3, out3_masks = augment_3d(crops, crop_masks, generator=torch.Generator().manual_seed(2))
    assert out3.shape == crops.shape and set(out3_masks.unique().tolist()) <= {0.0, 1.0}


def test_noise_has_the_configured_std() -> None:
    images = torch.zeros(8, 7, 64, 64)
    masks = torch.ones(8, 1, 64, 64)
    out, out_masks = augment_2d(images, masks, ONLY_NOISE, torch.Generator().manual_seed(0))
    assert out.std().item() == pytest.approx(25.0, rel=0.02)
    assert abs(out.mean().item()) < 0.5
    assert torch.equal(out_masks, masks)


def test_same_generator_seed_same_result() -> None:
    crops = torch.randn(4, 1, 8, 12, 12)
    a, _ = augment_3d(crops, generator=torch.Generator().manual_seed(7))
    b, _ = augment_3d(crops, generator=torch.Generator().manual_seed(7))
    c, _ = augment_3d(crops, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_wrong_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        augment_2d(torch.zeros(1, 1, 4, 4, 4))
    with pytest.raises(ValueError, match="mask shape"):
        augment_2d(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5))
    with pytest.raises(ValueError, match=r"\(N, C, D, H, W\)"):
        augment_3d(torch.zeros(1, 1, 4, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_batch_device() -> None:
    images, masks = _batch_2d()
    out, out_masks = augment_2d(images.cuda(), masks.cuda(), generator=torch.Generator())
    assert out.is_cuda and out_masks.is_cuda


def test_domain_randomisation_is_off_by_default_and_stays_in_the_hu_window() -> None:
    from lungcad_training.augment import AugmentConfig, randomise_domain

    assert AugmentConfig().domain is False and AugmentConfig.off().domain is False
    crops = torch.full((16, 1, 8, 16, 16), -850.0)
    crops[:, :, 3:5, 6:10, 6:10] = 900.0
    out = randomise_domain(crops, AugmentConfig(domain=True), torch.Generator().manual_seed(0))
    assert out.shape == crops.shape
    assert out.min() >= -1000.0 and out.max() <= 1000.0
    # every sample differs from the input, and samples differ from each other
    assert all(not torch.equal(o, c) for o, c in zip(out, crops, strict=True))
    assert not torch.equal(out[0], out[1])
    # the same generator state draws the same domain
    again = randomise_domain(crops, AugmentConfig(domain=True), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, again)


def test_thick_slices_box_average_along_the_head_foot_axis() -> None:
    from lungcad_training.augment import _thick_slices

    crop = torch.zeros(1, 6, 2, 2)
    crop[0, 2] = 4.0  # one bright slice
    thick = _thick_slices(crop, 4)  # slices i-1 .. i+2 averaged, edges repeated
    assert thick[0, :, 0, 0].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert torch.equal(_thick_slices(crop, 1), crop)
    assert thick.sum() == pytest.approx(crop.sum())  # the bright slice spread, not lost


def test_hu_calibration_moves_a_flat_crop_by_at_most_its_range() -> None:
    from lungcad_training.augment import AugmentConfig, randomise_domain

    flat = torch.full((64, 1, 4, 8, 8), 40.0)
    config = AugmentConfig(domain=True, noise=False, thick_max=1, blur_sigma_max=0.0,
                           sharpen_max=0.0)  # fmt: skip
    out = randomise_domain(flat, config, torch.Generator().manual_seed(3))
    per_sample = out.mean(dim=(1, 2, 3, 4))
    assert torch.allclose(out, per_sample.view(-1, 1, 1, 1, 1).expand_as(out))
    low, high = 40.0 * 0.95 - 40.0, 40.0 * 1.05 + 40.0
    assert per_sample.min() >= low and per_sample.max() <= high
    assert per_sample.max() - per_sample.min() > 40.0  # the offsets are really drawn


def test_thick_slices_of_a_slice_stack_average_over_the_context_channels() -> None:
    """A 2D stack's channels are its context slices, the head-foot axis: k of them averaged,
    edges repeated as in a 3D crop; nothing else changes when the other draws are zeroed."""
    from lungcad_training.augment import randomise_domain

    profile = torch.tensor([4.0, 0.0, 0.0, 8.0, 0.0, 0.0, 0.0])  # 7 context slices
    stacks = profile.view(1, 7, 1, 1).expand(32, 7, 2, 2).contiguous()
    expected = {  # window of k slices: i - (k - 1) // 2 .. i + k // 2, ends repeated
        1: [4.0, 0.0, 0.0, 8.0, 0.0, 0.0, 0.0],
        2: [2.0, 0.0, 4.0, 4.0, 0.0, 0.0, 0.0],  # (x[i] + x[i+1]) / 2
        3: [8 / 3, 4 / 3, 8 / 3, 8 / 3, 8 / 3, 0.0, 0.0],  # (x[i-1] + x[i] + x[i+1]) / 3
        4: [2.0, 3.0, 2.0, 2.0, 2.0, 0.0, 0.0],  # (x[i-1] + ... + x[i+2]) / 4
    }
    config = AugmentConfig(domain=True, noise=False, blur_sigma_max=0.0, sharpen_max=0.0,
                           hu_offset=0.0, hu_scale=0.0)  # fmt: skip
    out = randomise_domain(stacks, config, torch.Generator().manual_seed(5))
    # randomise_domain's first draw: (thickness, kernel, strength, texture) per sample
    draws = torch.rand((32, 4), generator=torch.Generator().manual_seed(5))
    ks = [1 + int(u * config.thick_max) for u in draws[:, 0].tolist()]
    assert set(ks) == {1, 2, 3, 4}
    for sample, k in zip(out, ks, strict=True):
        want = torch.tensor(expected[k]).view(7, 1, 1).expand(7, 2, 2)
        torch.testing.assert_close(sample, want, rtol=0, atol=1e-6)


def test_domain_randomisation_of_slice_stacks_leaves_masks_alone() -> None:
    images, masks = _batch_2d()
    domain = AugmentConfig(mirror=False, shift=False, scale=False, rotate=False, domain=True)
    out, out_masks = augment_2d(images, masks, domain, torch.Generator().manual_seed(1))
    assert torch.equal(out_masks, masks) and out.shape == images.shape
    assert not torch.equal(out, images.clamp(-1000, 1000))
