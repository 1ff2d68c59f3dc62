"""A tiny chest-like CT and deterministic stand-in networks for fast pipeline tests.

The scene is defined in patient LPS millimetres and sampled on any grid, so the same anatomy can
be written with flipped or permuted axes. The stand-in networks have the real ones' interfaces
(shapes, ``depth``, ``input_shape``) but compute simple, known functions of HU: tests of the
pipeline's plumbing (grouping, mapping back, refiltering, saving) then do not depend on how well
the bundled weights are trained.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lungcad.ct import CT, Geometry
from lungcad.geometry import voxel_to_world
from lungcad.models import Task, read_card
from lungcad.pipeline import BUNDLED_MODELS, CascadeModels, Precision

BODY_HU = -200
LUNG_HU = -850
NODULE_HU = 100


@dataclass(frozen=True)
class Ball:
    center_lps: tuple[float, float, float]
    radius_mm: float


#: Nodules inside the lung of the tiny scene (LPS mm, radius mm).
BALLS = (Ball((-6.0, 4.0, 2.0), 4.5), Ball((8.0, -5.0, -6.0), 3.5), Ball((7.0, 8.0, 9.0), 3.0))


@dataclass(frozen=True)
class Rod:
    """A cylinder from ``a`` to ``b`` (LPS mm) of ``radius_mm`` at ``hu``."""

    a: tuple[float, float, float]
    b: tuple[float, float, float]
    radius_mm: float
    hu: float


def scene_hu(
    lps: np.ndarray,
    rng: np.random.Generator,
    balls: tuple[Ball, ...] = BALLS,
    rods: tuple[Rod, ...] = (),
    noise_hu: float = 15.0,
) -> np.ndarray:
    """HU of the tiny chest at LPS points (N, 3): air, a body cylinder, a lung, balls and rods."""
    x, y, z = lps[:, 0], lps[:, 1], lps[:, 2]
    hu = np.full(len(lps), -1000.0)
    body = (x / 30.0) ** 2 + (y / 27.0) ** 2 <= 1.0
    hu[body] = BODY_HU
    lung = (x / 21.0) ** 2 + (y / 19.0) ** 2 + (z / 19.0) ** 2 <= 1.0
    hu[lung] = LUNG_HU
    for rod in rods:
        a, b = np.asarray(rod.a), np.asarray(rod.b)
        t = np.clip((lps - a) @ (b - a) / np.dot(b - a, b - a), 0.0, 1.0)
        inside = np.linalg.norm(lps - (a + t[:, None] * (b - a)), axis=1) <= rod.radius_mm
        hu[inside] = rod.hu
    for ball in balls:
        inside = np.sum((lps - np.asarray(ball.center_lps)) ** 2, axis=1) <= ball.radius_mm**2
        hu[inside] = NODULE_HU
    hu += rng.normal(0.0, noise_hu, len(lps))
    return hu


def tiny_ct(
    direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1),
    spacing_xyz: tuple[float, float, float] = (1.0, 1.0, 1.5),
    size_mm: float = 64.0,
    seed: int = 0,
    balls: tuple[Ball, ...] = BALLS,
    rods: tuple[Rod, ...] = (),
    noise_hu: float = 15.0,
) -> CT:
    """The tiny scene on a grid centred on the origin with the given direction and spacing."""
    spacing = np.asarray(spacing_xyz, dtype=np.float64)
    shape_xyz = np.round(size_mm / spacing).astype(int)
    matrix = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    origin = -matrix @ ((shape_xyz - 1) / 2 * spacing)
    geometry = Geometry.from_arrays(origin, spacing, direction, tuple(shape_xyz[::-1]))
    irc = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.shape_irc], indexing="ij"), -1)
    lps = voxel_to_world(irc.reshape(-1, 3), geometry)
    hu = scene_hu(lps, np.random.default_rng(seed), balls, rods, noise_hu).reshape(
        geometry.shape_irc
    )
    return CT(hu=np.rint(hu).astype(np.int16), geometry=geometry, series_uid=f"1.2.3.4242.{seed}")


class FakeUNet(nn.Module):
    """p = exp(-((HU_centre - 100) / 150)^2) of the centre slice: high on the balls only."""

    depth = 3
    in_channels = 7

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centre = x[:, self.in_channels // 2 : self.in_channels // 2 + 1]
        return torch.exp(-(((centre - NODULE_HU) / 150.0) ** 2))


class FakeClassifier(nn.Module):
    """Probabilities from the crop's dense-voxel fraction (bigger balls score higher)."""

    input_shape = (32, 48, 48)

    def __init__(self, scale: float, offset: float) -> None:
        super().__init__()
        self.scale = scale
        self.offset = offset

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dense = (x > 0).float().mean(dim=(1, 2, 3, 4))
        logit = (dense * 1000.0 - self.offset) * self.scale
        logits = torch.stack([-logit, logit], dim=1)
        return logits, torch.softmax(logits, dim=1)


class CentreClassifier(FakeClassifier):
    """Probabilities from the dense-voxel fraction of the crop's central 16 x 16 rows and cols,
    which an in-plane mirror maps onto itself: every view scores the same, so the mirrors' mean
    equals one view. On :func:`tiny_ct` the three balls score about 0.998, 0.3 and 0.05 as the
    nodule classifier of :func:`graded_models`. Counts the crops it is shown (``crops``)."""

    def __init__(self, scale: float, offset: float) -> None:
        super().__init__(scale, offset)
        self.crops = 0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.crops += len(x)
        rows, cols = x.shape[-2], x.shape[-1]
        centre = x[..., rows // 2 - 8 : rows // 2 + 8, cols // 2 - 8 : cols // 2 + 8]
        dense = (centre > 0).float().mean(dim=(1, 2, 3, 4))
        logit = (dense * 1000.0 - self.offset) * self.scale
        logits = torch.stack([-logit, logit], dim=1)
        return logits, torch.softmax(logits, dim=1)


def graded_models() -> CascadeModels:
    """:func:`fake_models` with :class:`CentreClassifier` networks: spread-out, mirror-invariant
    scores, one candidate of :func:`tiny_ct` below the default nodule floor, one between it and
    0.5, one above."""
    return dataclasses.replace(
        fake_models(), nodule=CentreClassifier(0.15, 22.0), malignancy=CentreClassifier(0.1, 20.0)
    )


def fake_models(precision: Precision = Precision.FLOAT32) -> CascadeModels:
    """Stand-in networks with the bundled model cards (so ``versions()`` works)."""
    cards = {t.value: read_card(BUNDLED_MODELS / f"{t.value}.json") for t in Task}
    return CascadeModels(
        segmentation=FakeUNet(),
        nodule=FakeClassifier(0.5, 2.0),
        malignancy=FakeClassifier(0.2, 6.0),
        cards=cards,
        device=torch.device("cpu"),
        precision=precision,
    )
