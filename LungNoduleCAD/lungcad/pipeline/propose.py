"""The cascade's first half, shared by detection and the training tree's mining: UNet -> grouping
-> candidate centres, each marked in or outside the lung.

Mining labels what this proposes and the nodule classifier learns from it, so detection and
mining must propose exactly the same candidates: one function does it for both. A candidate whose
centre lies outside the lung mask (:meth:`lungcad.lungs.LungMask.contains`: mediastinum, chest
wall, below the diaphragm, outside the body) is kept but marked, so that it is never classified
and the outputs can say why it is not a finding.

Regions smaller than a :data:`MIN_CANDIDATE_DIAMETER_MM` ball at the floor are not candidates at
all: the reference standards count nodules from 3 mm (LUNA16; Lung-RADS does not report smaller
micronodules), and on real CT such specks were a third of all candidates and most findings under
5 mm. Every phantom nodule the UNet finds has a larger region.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lungcad.ct import Geometry
from lungcad.geometry import voxel_to_world, world_to_voxel_index
from lungcad.lungs import LungMask
from lungcad.pipeline.grouping import Group, group_candidates
from lungcad.pipeline.progress import Monitor, Stage
from lungcad.pipeline.region import UNetPlan
from lungcad.pipeline.segment import SLICE_BATCH, segment_box

#: The smallest candidate: a region at the floor holding at least this ball's volume (mm).
MIN_CANDIDATE_DIAMETER_MM = 3.0


@dataclass(frozen=True, eq=False)
class Proposals:
    """Candidates on the canonical grid: their regions, centres and whether they lie in lung."""

    groups: list[Group]
    centres_lps: np.ndarray  # (n, 3) float64, each group's centre of mass in LPS mm
    crop_centres_irc: np.ndarray  # (n, 3) int64, the nearest canonical voxel: what crops centre on
    in_lung: np.ndarray  # (n,) bool

    @property
    def count(self) -> int:
        return len(self.groups)


def propose_candidates(
    volume: np.ndarray,
    canonical: Geometry,
    plan: UNetPlan,
    lungs: LungMask,
    model: nn.Module,
    device: torch.device,
    floor: float,
    *,
    batch: int = SLICE_BATCH,
    bf16: bool = False,
    channels_last: bool = True,
    monitor: Monitor | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> Proposals:
    """Candidates of the canonical HU ``volume`` (grid ``canonical``) grouped at ``floor``, each
    at least :data:`MIN_CANDIDATE_DIAMETER_MM` across.

    The UNet runs on ``plan`` (:func:`lungcad.pipeline.region.lung_plan`); ``on_stage`` is
    called with "segmentation" and "grouping" as each ends (detection times its stages so).
    """
    monitor = monitor or Monitor()
    context = int(getattr(model, "in_channels", 7)) // 2
    prob = segment_box(
        volume, plan, model, device, context=context, batch=batch, bf16=bf16,
        channels_last=channels_last, monitor=monitor,
    )  # fmt: skip
    if on_stage:
        on_stage(Stage.SEGMENTATION)
    groups = group_candidates(
        prob, plan.box, canonical.shape_irc, floor, canonical.voxel_volume_mm3, monitor,
        canonical.spacing_irc,
    )  # fmt: skip
    del prob
    smallest = math.pi / 6 * MIN_CANDIDATE_DIAMETER_MM**3 / canonical.voxel_volume_mm3
    groups = [g for g in groups if len(g.region_index) >= smallest]
    centroids = np.array([g.centroid_irc for g in groups], dtype=np.float64).reshape(-1, 3)
    centres_lps = voxel_to_world(centroids, canonical).reshape(-1, 3)
    crop_centres = world_to_voxel_index(centres_lps, canonical).reshape(-1, 3)
    in_lung = lungs.contains(centres_lps) if len(groups) else np.zeros(0, dtype=bool)
    if on_stage:
        on_stage(Stage.GROUPING)
    return Proposals(groups, centres_lps, crop_centres.astype(np.int64), in_lung)
