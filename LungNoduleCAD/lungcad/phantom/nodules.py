"""Synthetic nodules: type, size, margin and location, placement in the lungs, and malignancy.

Malignancy rule (documented in docs/phantoms.md). A latent suspicion score
    s = 2.1 ln(d / 14 mm) + margin term + type term + N(0, 1.0)
with margin terms round 0, lobulated +0.8, spiculated +1.6 and type terms solid 0,
part-solid +0.6, ground-glass -0.3, calcified -3.0. Each of 1-4 simulated readers rates
clip(round(3 + 1.1 (s + N(0, 0.5))), 1, 5). A nodule is malignant (mal_bool) when at least two
readers rate it 4 or 5, or its only reader does. Diameter alone therefore predicts malignancy
well but not perfectly: over many nodules about 31 % are malignant and diameter alone reaches a
ROC AUC near 0.86 (`lungcad phantom` prints both for the set it writes).
"""

from __future__ import annotations

import numpy as np

from lungcad.phantom.anatomy import ChestAnatomy
from lungcad.phantom.spec import NoduleLocation, NoduleMargin, NoduleSpec, NoduleType

TYPE_WEIGHTS = {
    NoduleType.SOLID: 0.52,
    NoduleType.PART_SOLID: 0.16,
    NoduleType.GROUND_GLASS: 0.16,
    NoduleType.CALCIFIED: 0.16,
}
MARGIN_WEIGHTS = {
    NoduleType.SOLID: (0.45, 0.3, 0.25),
    NoduleType.PART_SOLID: (0.3, 0.35, 0.35),
    NoduleType.GROUND_GLASS: (0.6, 0.3, 0.1),
    NoduleType.CALCIFIED: (0.85, 0.15, 0.0),
}
LOCATION_WEIGHTS = (0.5, 0.3, 0.2)  # isolated, juxta-pleural, juxta-vascular
MARGIN_TERM = {NoduleMargin.ROUND: 0.0, NoduleMargin.LOBULATED: 0.8, NoduleMargin.SPICULATED: 1.6}
TYPE_TERM = {
    NoduleType.SOLID: 0.0,
    NoduleType.PART_SOLID: 0.6,
    NoduleType.GROUND_GLASS: -0.3,
    NoduleType.CALCIFIED: -3.0,
}
READER_COUNT_WEIGHTS = (0.15, 0.2, 0.3, 0.35)  # 1, 2, 3, 4 readers
MIN_DIAMETER_MM, MAX_DIAMETER_MM = 3.0, 30.0


def sample_diameter(kind: NoduleType, rng: np.random.Generator) -> float:
    """Mostly small (median ~7 mm, like LIDC), with a tail of large ones up to 30 mm."""
    if kind is NoduleType.CALCIFIED:
        d = rng.lognormal(np.log(5.5), 0.4)
    elif rng.random() < 0.2:
        d = rng.uniform(10, MAX_DIAMETER_MM)
    else:
        median = {NoduleType.PART_SOLID: 11.0, NoduleType.GROUND_GLASS: 9.0}.get(kind, 7.0)
        d = rng.lognormal(np.log(median), 0.45)
    return round(float(np.clip(d, MIN_DIAMETER_MM, MAX_DIAMETER_MM)), 2)


def malignancy(
    diameter_mm: float, kind: NoduleType, margin: NoduleMargin, rng: np.random.Generator
) -> tuple[float, tuple[int, ...], bool]:
    """Latent score, reader ratings (1-5) and the malignant call, by the rule in the docstring."""
    score = (
        2.1 * np.log(diameter_mm / 14.0)
        + MARGIN_TERM[margin]
        + TYPE_TERM[kind]
        + rng.normal(0.0, 1.0)
    )
    n_readers = 1 + int(rng.choice(4, p=READER_COUNT_WEIGHTS))
    ratings = tuple(
        int(np.clip(np.rint(3 + 1.1 * (score + rng.normal(0.0, 0.5))), 1, 5))
        for _ in range(n_readers)
    )
    high = sum(r >= 4 for r in ratings)
    return float(score), ratings, high >= min(2, n_readers)


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _shape(margin: NoduleMargin, radius: float, center: np.ndarray, rng: np.random.Generator):
    """Lobes (direction, amplitude) and spicules (start, end, radius) for a margin type."""
    if margin is NoduleMargin.ROUND:
        n_lobes, amp = 2, (0.02, 0.06)
    elif margin is NoduleMargin.LOBULATED:
        n_lobes, amp = int(rng.integers(3, 7)), (0.25, 0.5)
    else:
        n_lobes, amp = int(rng.integers(2, 5)), (0.1, 0.2)
    dirs = tuple(tuple(float(c) for c in _random_unit(rng)) for _ in range(n_lobes))
    amps = tuple(float(rng.uniform(*amp)) for _ in range(n_lobes))
    spicules = []
    if margin is NoduleMargin.SPICULATED:
        for _ in range(int(rng.integers(5, 13))):
            u = _random_unit(rng)
            start = center + u * radius * 0.8
            end = center + u * (radius * rng.uniform(1.4, 2.3) + 2.0)
            spicules.append(
                (tuple(start.tolist()), tuple(end.tolist()), float(rng.uniform(0.5, 1.0)))
            )
    return dirs, amps, tuple(spicules)


def _clear_of(
    center: np.ndarray,
    radius: float,
    placed: list[NoduleSpec],
    z_range: tuple[float, float],
    gap: float = 6.0,
) -> bool:
    """Apart from the nodules placed so far and wholly within the scanned slices."""
    if not z_range[0] + radius + 2.0 <= center[2] <= z_range[1] - radius - 2.0:
        return False
    return all(
        np.linalg.norm(center - np.asarray(p.center_xyz)) > radius + p.radius_mm + gap
        for p in placed
    )


def _place(
    anatomy: ChestAnatomy,
    location: NoduleLocation,
    radius: float,
    placed: list[NoduleSpec],
    rng: np.random.Generator,
    z_range: tuple[float, float],
) -> np.ndarray | None:
    depth = anatomy.depth
    assert depth is not None
    step = depth.step
    grid_pts = None
    for _ in range(60):
        if location is NoduleLocation.JUXTA_VASCULAR:
            v = anatomy.vessels
            r_mean = (v.r0 + v.r1) / 2
            choices = np.flatnonzero((r_mean > 1.0) & (r_mean < 3.5) & ~v.is_leaf)
            if len(choices) == 0:
                return None
            i = int(rng.choice(choices))
            on_axis = v.p0[i] + rng.uniform(0.2, 0.8) * (v.p1[i] - v.p0[i])
            axis = v.p1[i] - v.p0[i]
            perp = np.cross(axis, _random_unit(rng))
            perp /= np.linalg.norm(perp)
            center = on_axis + perp * (r_mean[i] + 0.75 * radius)
            inside = anatomy.inside_lung(center[None], margin_mm=0.6 * radius + 1.0)[0]
            if inside and _clear_of(center, radius, placed, z_range):
                return center
            continue
        if grid_pts is None:
            if location is NoduleLocation.ISOLATED:
                flat = np.flatnonzero(depth.depth_xyz > radius + 6.0)
            else:
                flat = np.flatnonzero((depth.depth_xyz > 0) & (depth.depth_xyz <= step * 1.5))
            if len(flat) == 0:
                return None
            grid_pts = flat
        ix = np.array(np.unravel_index(int(rng.choice(grid_pts)), depth.depth_xyz.shape))
        point = depth.origin + ix * step + rng.uniform(-step / 2, step / 2, 3)
        if location is NoduleLocation.JUXTA_PLEURAL:
            center = _touch_pleura(anatomy, point, radius)
            if center is None:
                continue
        else:
            center = point
            # clear of the larger vessels; thin ones may run into a big nodule, as in real lungs
            v = anatomy.vessels
            big = np.maximum(v.r0, v.r1) > 1.2
            dist = v.distance_to(center[None])[0]
            if np.any(dist[big] < radius + 1.5):
                continue
        if _clear_of(center, radius, placed, z_range):
            return center
    return None


def _touch_pleura(anatomy: ChestAnatomy, near: np.ndarray, radius: float) -> np.ndarray | None:
    """Centre a nodule so that its edge touches the lung surface nearest to ``near``."""
    step = 2.5
    grad = np.array(
        [
            anatomy.lung_depth((near + e)[None])[0] - anatomy.lung_depth((near - e)[None])[0]
            for e in np.eye(3) * step
        ]
    )
    if np.linalg.norm(grad) < 1e-6:
        return None
    inward = grad / np.linalg.norm(grad)
    ts = np.arange(-6.0, 12.0, 0.25)
    ray = near[None] + ts[:, None] * inward[None]
    inside = anatomy.lung_field(ray[:, 0], ray[:, 1], ray[:, 2])
    if not inside.any():
        return None
    surface = ray[int(np.argmax(inside))]
    center = surface + inward * 0.75 * radius
    if not anatomy.lung_field(center[0:1], center[1:2], center[2:3])[0]:
        return None
    return center


def draw_nodule_kind(
    rng: np.random.Generator, location_weights: tuple[float, ...] = LOCATION_WEIGHTS
) -> tuple[NoduleType, float, NoduleMargin, NoduleLocation]:
    """Type, diameter (mm), margin and location of one nodule, by the phantoms' frequencies."""
    kinds = list(TYPE_WEIGHTS)
    kind = kinds[int(rng.choice(len(kinds), p=list(TYPE_WEIGHTS.values())))]
    diameter = sample_diameter(kind, rng)
    margin = list(NoduleMargin)[int(rng.choice(3, p=MARGIN_WEIGHTS[kind]))]
    locations = list(NoduleLocation)[: len(location_weights)]
    location = locations[int(rng.choice(len(locations), p=location_weights))]
    return kind, diameter, margin, location


def make_nodule_spec(
    index: int,
    center: np.ndarray,
    diameter: float,
    kind: NoduleType,
    margin: NoduleMargin,
    location: NoduleLocation,
    rng: np.random.Generator,
) -> NoduleSpec:
    """A nodule of these properties at ``center`` (LPS mm): its shape, densities and malignancy."""
    lobe_dirs, lobe_amps, spicules = _shape(margin, diameter / 2, center, rng)
    score, ratings, malignant = malignancy(diameter, kind, margin, rng)
    if kind is NoduleType.CALCIFIED:
        solid_hu, dense_hu, core = (
            rng.uniform(80, 180),
            rng.uniform(350, 900),
            rng.uniform(0.35, 1.0),
        )
    else:
        solid_hu, dense_hu, core = (
            rng.uniform(10, 60),
            rng.uniform(-700, -450),
            rng.uniform(0.3, 0.6),
        )
    return NoduleSpec(
        index=index,
        center_xyz=tuple(round(float(c), 3) for c in center),
        diameter_mm=diameter,
        kind=kind,
        margin=margin,
        location=location,
        solid_hu=float(solid_hu),
        ggo_hu=float(dense_hu),
        core_fraction=float(core),
        lobe_dirs=lobe_dirs,
        lobe_amps=lobe_amps,
        spicules=spicules,
        malignancy_score=score,
        reader_ratings=ratings,
        is_malignant=malignant,
    )


def sample_nodules(
    anatomy: ChestAnatomy, rng: np.random.Generator, z_range: tuple[float, float]
) -> list[NoduleSpec]:
    """2-7 nodules per case (mean about 4), each placed where its location type says."""
    count = 2 + min(int(rng.poisson(2.0)), 5)
    placed: list[NoduleSpec] = []
    for _ in range(count):
        kind, diameter, margin, location = draw_nodule_kind(rng)
        center = _place(anatomy, location, diameter / 2, placed, rng, z_range)
        for _ in range(4):  # crowded lungs: try isolated, then a smaller nodule
            if center is not None:
                break
            if location is NoduleLocation.ISOLATED:
                diameter = max(MIN_DIAMETER_MM, round(diameter * 0.8, 2))
            location = NoduleLocation.ISOLATED
            center = _place(anatomy, location, diameter / 2, placed, rng, z_range)
        if center is None:
            continue
        placed.append(
            make_nodule_spec(len(placed) + 1, center, diameter, kind, margin, location, rng)
        )
    return placed
