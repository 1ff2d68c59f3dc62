"""Batched augmentation on the batch's device: mirror, shift, scale, rotation, noise, and (opt-in)
domain randomisation.

The seeds' recipe (flip, offset 0.1, scale 0.2, rotation about the head-foot axis, noise 25 HU),
applied to a whole batch at once with one affine grid per sample (``affine_grid`` +
``grid_sample``), so it runs on the GPU next to the model instead of in DataLoader workers.

Conventions, in voxel units about the crop's centre: scale ``s`` > 1 enlarges the content; shift
moves it by ``offset`` times the half-extent per axis (the seeds' units: 0.1 on a 64-pixel crop is
up to 3.2 pixels); rotation by angle a turns the (col, row) plane from +col towards +row, so at
90 degrees what lay right of the centre lies below it. 3D crops rotate about the index axis, the
head-foot axis of the canonical grid. Mirroring uses exact flips, not resampling. Images are
resampled bilinearly with border padding, masks with nearest neighbour (they stay binary). Noise
is in the input's units: HU after :func:`lungcad.preprocess.normalise_hu`.

Domain randomisation (``domain``, off by default so existing recipes reproduce exactly) varies
what differs between scanners rather than between patients, so that a model trained on phantoms
does not learn one scanner: per sample, thick slices (a box average of 1 to ``thick_max``
canonical slices along the head-foot axis, as a 1.25-5 mm slab resampled to the canonical grid
looks: the index axis of a 3D crop, the channel axis of a 2D slice stack, whose context slices
are neighbouring canonical slices), the kernel (Gaussian blur up to ``blur_sigma_max`` voxels
in-plane, or an unsharp-mask sharpening up to ``sharpen_max``), the HU calibration (offset up
to +-``hu_offset``, scale up to +-``hu_scale``, then the HU window again) and the noise (level
uniform in [0, 2 x ``noise_std``], white or blurred into a coarser texture).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional


@dataclass(frozen=True)
class AugmentConfig:
    """Each augmentation on/off with its magnitude; defaults are the seeds' values."""

    mirror: bool = True
    shift: bool = True
    offset: float = 0.1
    scale: bool = True
    scale_range: float = 0.2
    rotate: bool = True
    max_rotation_deg: float = 180.0
    noise: bool = True
    noise_std: float = 25.0
    domain: bool = False
    thick_max: int = 4
    blur_sigma_max: float = 1.0
    sharpen_max: float = 0.5
    hu_offset: float = 40.0
    hu_scale: float = 0.05
    hu_window: tuple[float, float] = (-1000.0, 1000.0)

    @classmethod
    def off(cls) -> AugmentConfig:
        """Everything off: augmentation is the identity."""
        return cls(mirror=False, shift=False, scale=False, rotate=False, noise=False, domain=False)

    @property
    def resamples(self) -> bool:
        """Whether a grid resampling is needed (shift, scale or rotation on)."""
        return self.shift or self.scale or self.rotate


@dataclass
class AugmentParams:
    """Per-sample random draws, spatial axes in array order ((index,) row, col).

    ``flips`` (N, S) bool; ``shifts`` (N, S) in half-extents; ``scales`` (N, S) factors;
    ``angles`` (N,) radians about the head-foot axis.
    """

    flips: torch.Tensor
    shifts: torch.Tensor
    scales: torch.Tensor
    angles: torch.Tensor

    @classmethod
    def identity(cls, n: int, spatial_dims: int) -> AugmentParams:
        return cls(
            flips=torch.zeros(n, spatial_dims, dtype=torch.bool),
            shifts=torch.zeros(n, spatial_dims),
            scales=torch.ones(n, spatial_dims),
            angles=torch.zeros(n),
        )

    def to(self, device: torch.device) -> AugmentParams:
        return AugmentParams(
            *(t.to(device) for t in (self.flips, self.shifts, self.scales, self.angles))
        )


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    """Uniform in [-1, 1) (the seeds' ``random.random() * 2 - 1``)."""
    device = generator.device if generator is not None else None
    return torch.rand(shape, generator=generator, device=device) * 2 - 1


def draw_params(
    n: int, spatial_dims: int, config: AugmentConfig, generator: torch.Generator | None = None
) -> AugmentParams:
    """Random parameters for ``n`` samples (identity for whatever ``config`` turns off)."""
    params = AugmentParams.identity(n, spatial_dims)
    device = generator.device if generator is not None else None
    if config.mirror:
        params.flips = torch.rand((n, spatial_dims), generator=generator, device=device) < 0.5
    if config.shift:
        params.shifts = config.offset * _uniform((n, spatial_dims), generator)
    if config.scale:
        params.scales = 1.0 + config.scale_range * _uniform((n, spatial_dims), generator)
    if config.rotate:
        params.angles = math.radians(config.max_rotation_deg) * _uniform((n,), generator)
    return params


def _flip(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Flip spatial axis a of sample i where ``flips[i, a]`` (exact, no resampling)."""
    spatial = x.ndim - 2
    view = (x.shape[0],) + (1,) * (x.ndim - 1)
    for axis in range(spatial):
        x = torch.where(flips[:, axis].view(view), x.flip(2 + axis), x)
    return x


def affine_theta(params: AugmentParams, size: tuple[int, ...]) -> torch.Tensor:
    """(N, S, S + 1) matrices for ``affine_grid`` (align_corners=False) from the parameters.

    ``size`` is the spatial shape in array order. The forward map in centred voxel units is
    M = R(angle) diag(scales) plus shift; the grid samples the input at M^-1 (q - t).
    """
    n, s = params.scales.shape
    device = params.scales.device
    half = torch.tensor(size[::-1], dtype=torch.float32, device=device) / 2  # xyz order
    scales = params.scales.flip(1).float()  # array order -> affine_grid's (x, y[, z]) order
    shifts = params.shifts.flip(1).float()
    cos, sin = torch.cos(params.angles.float()), torch.sin(params.angles.float())
    rot = torch.eye(s, device=device).repeat(n, 1, 1)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = cos, -sin, sin, cos
    forward = rot * scales[:, None, :]  # R @ diag(scales)
    to_voxels = torch.diag_embed(half.expand(n, s))
    to_norm = torch.diag_embed((1 / half).expand(n, s))
    a = to_norm @ torch.linalg.inv(forward) @ to_voxels
    b = -(a @ shifts[:, :, None])
    return torch.cat([a, b], dim=2)


def _augment(
    images: torch.Tensor,
    masks: torch.Tensor | None,
    config: AugmentConfig,
    generator: torch.Generator | None,
    params: AugmentParams | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    spatial = images.ndim - 2
    if masks is not None and (
        masks.shape[0] != images.shape[0] or masks.shape[2:] != images.shape[2:]
    ):
        raise ValueError(
            f"mask shape {tuple(masks.shape)} does not fit images {tuple(images.shape)}"
        )
    if params is None:
        params = draw_params(images.shape[0], spatial, config, generator)
    params = params.to(images.device)
    images = _flip(images, params.flips)
    if masks is not None:
        masks = _flip(masks, params.flips)
    if config.resamples:
        theta = affine_theta(params, tuple(images.shape[2:])).to(images.dtype)
        grid = functional.affine_grid(theta, list(images.shape), align_corners=False)
        images = functional.grid_sample(
            images, grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        if masks is not None:
            warped = functional.grid_sample(
                masks.to(grid.dtype),
                grid,
                mode="nearest",
                padding_mode="border",
                align_corners=False,
            )
            masks = warped.to(masks.dtype)
    if config.domain:
        return randomise_domain(images, config, generator), masks
    if config.noise and config.noise_std > 0:
        device = generator.device if generator is not None else images.device
        noise = torch.randn(images.shape, generator=generator, device=device, dtype=images.dtype)
        images = images + config.noise_std * noise.to(images.device)
    return images, masks


def _draw(n: int, generator: torch.Generator | None, images: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) per sample, shaped to broadcast over ``images``."""
    device = generator.device if generator is not None else None
    u = torch.rand(n, generator=generator, device=device).to(images.device, images.dtype)
    return u.view((n,) + (1,) * (images.ndim - 1))


def _gaussian_in_plane(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur over the last two (row, col) axes, edges replicated."""
    if sigma <= 0.05:
        return images
    radius = max(1, math.ceil(2.5 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = images
    for axis in (-1, -2):
        moved = out.movedim(axis, -1)
        shape = moved.shape
        flat = functional.pad(moved.reshape(-1, 1, shape[-1]), (radius, radius), mode="replicate")
        moved = functional.conv1d(flat, kernel.view(1, 1, -1)).reshape(shape)
        out = moved.movedim(-1, axis)
    return out


def _thick_slices(crop: torch.Tensor, k: int) -> torch.Tensor:
    """Box average of ``k`` slices along the head-foot axis (dim 1 of a (C, D, H, W) crop)."""
    if k <= 1:
        return crop
    before, after = (k - 1) // 2, k // 2
    padded = torch.cat([crop[:, :1].expand(-1, before, -1, -1), crop,
                        crop[:, -1:].expand(-1, after, -1, -1)], dim=1)  # fmt: skip
    return padded.unfold(1, k, 1).mean(dim=-1)


def _coarse(noise: torch.Tensor) -> torch.Tensor:
    """White noise blurred into a coarser texture (a soft kernel's), rescaled to unit SD."""
    blurred = _gaussian_in_plane(noise, 0.8)
    return blurred / blurred.std().clamp_min(1e-6)


def randomise_domain(
    images: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per sample: thick slices, kernel, HU calibration, then noise level and texture (see the
    module docstring); HU in and out, clamped to ``config.hu_window``.

    ``images`` are crops (N, C, D, H, W), thickened along D, or slice stacks (N, C, H, W),
    thickened along C: there the channels are the context slices, the head-foot axis.
    """
    n = images.shape[0]
    out = []
    device = generator.device if generator is not None else None
    draws = torch.rand((n, 4), generator=generator, device=device)
    for i, (u_thick, u_kernel, u_strength, _) in enumerate(draws.tolist()):
        x = images[i]
        k = 1 + int(u_thick * config.thick_max)
        if images.ndim == 5:
            x = _thick_slices(x, k)
        elif images.ndim == 4:  # (C, H, W): C is the head-foot axis, as D of a (1, D, H, W) crop
            x = _thick_slices(x[None], k)[0]
        if u_kernel < 0.5:  # soft kernel
            x = _gaussian_in_plane(x, u_strength * config.blur_sigma_max)
        else:  # sharp kernel: unsharp mask
            x = x + u_strength * config.sharpen_max * (x - _gaussian_in_plane(x, 1.0))
        out.append(x)
    x = torch.stack(out)
    scale = 1.0 + config.hu_scale * (2 * _draw(n, generator, x) - 1)
    offset = config.hu_offset * (2 * _draw(n, generator, x) - 1)
    x = x * scale + offset
    if config.noise and config.noise_std > 0:
        device = generator.device if generator is not None else x.device
        noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
        textured = [_coarse(noise[i]) if draws[i, 3] >= 0.5 else noise[i] for i in range(n)]
        level = 2.0 * config.noise_std * _draw(n, generator, x)
        x = x + level * torch.stack(textured)
    return x.clamp(*config.hu_window)


def augment_2d(
    images: torch.Tensor,
    masks: torch.Tensor | None = None,
    config: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
    params: AugmentParams | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Augment slice stacks (N, C, H, W) and their masks (N, 1, H, W) alike.

    Mirror flips rows and/or cols; rotation is in-plane. Random draws come from ``generator``
    (on its device; CPU by default) unless ``params`` are given.
    """
    if images.ndim != 4:
        raise ValueError(f"augment_2d needs (N, C, H, W), got {tuple(images.shape)}")
    return _augment(images, masks, config or AugmentConfig(), generator, params)


def augment_3d(
    crops: torch.Tensor,
    masks: torch.Tensor | None = None,
    config: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
    params: AugmentParams | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Augment crops (N, C, D, H, W) (and optional masks alike); D is the head-foot axis.

    Mirror flips the index, row and/or col axes; rotation turns about the index axis.
    """
    if crops.ndim != 5:
        raise ValueError(f"augment_3d needs (N, C, D, H, W), got {tuple(crops.shape)}")
    return _augment(crops, masks, config or AugmentConfig(), generator, params)
