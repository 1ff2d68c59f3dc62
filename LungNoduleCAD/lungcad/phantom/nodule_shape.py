"""A nodule's analytic body: how much of each point it fills and at what HU.

One definition shared by the renderer (:mod:`.render`, nodules drawn with the phantom) and the
implanter (:mod:`.implant`, nodules put into a real CT), so an implanted nodule has exactly the
shape and density of a rendered one.
"""

from __future__ import annotations

import numpy as np

from lungcad.phantom.spec import NoduleSpec, NoduleType


def nodule_body(
    nodule: NoduleSpec, x: np.ndarray, y: np.ndarray, z: np.ndarray, soft: float
) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy (0-1, edges soft over ``soft`` mm) and target HU of a nodule's body at points
    ``x, y, z`` (mm from its centre, broadcastable); spicules are tubes, drawn apart."""
    r = nodule.radius_mm
    dist = np.sqrt(x * x + y * y + z * z) + 1e-6
    radius = np.full(dist.shape, r, dtype=np.float32)
    for direction, amp in zip(nodule.lobe_dirs, nodule.lobe_amps, strict=True):
        cos = (x * direction[0] + y * direction[1] + z * direction[2]) / dist
        radius += r * amp * (np.maximum(cos, 0.0) ** 4 - 0.1)
    occ = np.clip((radius - dist) / soft + 0.5, 0.0, 1.0)
    core = np.clip((radius * nodule.core_fraction - dist) / soft + 0.5, 0.0, 1.0)
    if nodule.kind is NoduleType.SOLID:
        target = np.full(dist.shape, nodule.solid_hu, dtype=np.float32)
    elif nodule.kind is NoduleType.GROUND_GLASS:
        target = np.full(dist.shape, nodule.ggo_hu, dtype=np.float32)
    elif nodule.kind is NoduleType.PART_SOLID:
        target = nodule.ggo_hu + (nodule.solid_hu - nodule.ggo_hu) * core
    else:  # calcified: soft-tissue rim, dense calcium inside (ggo_hu holds the calcium HU)
        target = nodule.solid_hu + (nodule.ggo_hu - nodule.solid_hu) * core
    return occ, target


def nodule_reach_mm(nodule: NoduleSpec, soft: float) -> float:
    """How far from its centre a nodule's body can reach (mm), soft edge included."""
    return nodule.radius_mm * (1.0 + sum(nodule.lobe_amps)) + soft * 2
