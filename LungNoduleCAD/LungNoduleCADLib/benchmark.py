"""Threshold-update benchmark: synthetic candidate cache, real scene, sliders dragged end to end.

The result is built from a :class:`lungcad.pipeline.store.CandidateStore` whose candidates are
balls with a probability that falls off from the centre (so the segmentation slider grows and
shrinks them), on a full-size CT grid, with the canonical grid equal to the CT grid. Nothing here
runs a network; what is timed is exactly what a slider move does: ``refilter`` plus the scene
update.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from lungcad.cli_types import bounded_int
from lungcad.ct import CT, Geometry
from lungcad.pipeline import DetectionResult, Thresholds
from lungcad.pipeline.store import CandidateStore
from LungNoduleCADLib.mrml import SlicerServices
from LungNoduleCADLib.parameters import field_range


def synthetic_result(
    candidates: int = 200,
    shape_irc: tuple[int, int, int] = (300, 512, 512),
    spacing_xyz: tuple[float, float, float] = (0.7, 0.7, 1.25),
    seed: int = 0,
    thresholds: Thresholds | None = None,
) -> DetectionResult:
    """A detection result with ``candidates`` ball-shaped candidates (5-14 mm) and random scores."""
    rng = np.random.default_rng(seed)
    geometry = Geometry.from_arrays((-180.0, -180.0, -350.0), spacing_xyz, np.eye(3), shape_irc)
    spacing_irc = np.array(geometry.spacing_irc)
    region_index, region_prob, offsets = [], [], [0]
    centres = []
    for _ in range(candidates):
        radius_mm = rng.uniform(2.5, 7.0)
        half = np.ceil(radius_mm / spacing_irc).astype(int) + 1
        centre = np.array([rng.integers(h, s - h) for h, s in zip(half, shape_irc, strict=True)])
        grids = np.meshgrid(*(np.arange(-h, h + 1) for h in half), indexing="ij")
        dist = np.sqrt(sum((g * s) ** 2 for g, s in zip(grids, spacing_irc, strict=True)))
        inside = dist <= radius_mm
        prob = np.clip(1.0 - 0.8 * dist / radius_mm, 0.0, 1.0)[inside] * rng.uniform(0.85, 1.0)
        irc = np.stack([g[inside] for g in grids], 1) + centre
        region_index.append(np.ravel_multi_index(tuple(irc.T), shape_irc))
        region_prob.append(prob)
        offsets.append(offsets[-1] + int(inside.sum()))
        centres.append(centre)
    flat = np.concatenate(region_index)
    # the store's layout (lungcad.pipeline.store): CSR offsets into flat canonical-grid arrays
    store = CandidateStore(
        canonical=geometry,
        original=geometry,
        floor=0.2,
        p_nodule=rng.uniform(0.0, 1.0, candidates),
        p_malignant=rng.uniform(0.0, 1.0, candidates),
        crop_center_irc=np.array(centres),
        region_offsets=np.array(offsets),
        region_index=flat,
        region_prob=np.concatenate(region_prob).astype(np.float16),
        region_hu=rng.integers(-100, 100, len(flat)),
    )
    return DetectionResult.from_store(
        store, thresholds or Thresholds(), series_uid=None, timings_s={}, model_versions={}
    )


@dataclass
class Timing:
    slider: str
    value: float
    findings: int
    refilter_ms: float
    scene_ms: float

    @property
    def total_ms(self) -> float:
        return self.refilter_ms + self.scene_ms


def sweep(core, slider: str, values: Sequence[float]) -> list[Timing]:
    """Move one slider through ``values`` (others at their defaults), timing each update."""
    timings = []
    for value in values:
        thresholds = replace(Thresholds(), **{slider: float(value)})
        started = time.perf_counter()
        result = core.update_thresholds(thresholds)
        total = 1000 * (time.perf_counter() - started)
        timings.append(
            Timing(
                slider,
                float(value),
                len(result.findings),
                total - core.last_update_ms,
                core.last_update_ms,
            )
        )
    return timings


def run(candidates: int = 200, steps: int = 41, services: SlicerServices | None = None):
    """Build the result, show it, drag all three sliders; returns (core, timings)."""
    from LungNoduleCADLib.logic import LungNoduleCADCore
    from LungNoduleCADLib.volume import add_volume_node_from_ct

    result = synthetic_result(candidates)
    services = services or SlicerServices.current()
    g = result.geometry
    volume = add_volume_node_from_ct(
        services.scene, CT(np.full(g.shape_irc, -800, np.int16), g), name="benchmark CT"
    )
    core = LungNoduleCADCore(services)
    core.show_result(volume, result)
    timings = []
    for slider in ("segmentation", "nodule", "malignancy"):
        low, high = field_range(f"{slider}Threshold")  # the slider's own range
        values = np.linspace(low, high, steps)
        timings += sweep(core, slider, [*values, *values[::-1]])
    return core, timings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--candidates", type=bounded_int(1), default=200, help="candidates in the result (200)"
    )
    parser.add_argument(
        "--steps", type=bounded_int(2), default=41, help="slider positions per sweep (41)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    core, timings = run(args.candidates, args.steps)
    print(
        f"{args.candidates} candidates on a {core.result.geometry.shape_irc} grid; first display "
        f"took {time.perf_counter() - started:.1f} s in all (building the synthetic cache included)"
    )
    print(
        f"{'slider':13s} {'updates':>7s} {'findings':>9s} {'median ms':>10s} {'p95 ms':>8s} "
        f"{'max ms':>8s} {'refilter':>9s} {'scene':>7s}"
    )
    for slider in ("segmentation", "nodule", "malignancy"):
        rows = [t for t in timings if t.slider == slider]
        totals = sorted(t.total_ms for t in rows)
        counts = [t.findings for t in rows]
        print(
            f"{slider:13s} {len(rows):7d} {min(counts):4d}-{max(counts):<4d} "
            f"{statistics.median(totals):10.1f} {totals[int(0.95 * (len(totals) - 1))]:8.1f} "
            f"{totals[-1]:8.1f} {statistics.median(t.refilter_ms for t in rows):9.1f} "
            f"{statistics.median(t.scene_ms for t in rows):7.1f}"
        )
    worst = max(t.total_ms for t in timings)
    median = statistics.median(t.total_ms for t in timings)
    print(f"all updates: median {median:.1f} ms, worst {worst:.1f} ms (target: under 100 ms)")
    return 0
