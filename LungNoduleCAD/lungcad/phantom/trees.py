"""Tube structures of the chest: branching vessel and airway trees, ribs and aorta.

Vessel trees grow from each hilum by Murray's law (r^3 = r1^3 + r2^3), asymmetric splits and an
outward bias, staying inside the analytic lungs; leaves end in thin tapering twigs so that the
periphery has the small vessels (and vessel ends) that make most false positives in real CT.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from lungcad.phantom.shape import ChestShape, LungDepthMap
from lungcad.phantom.spec import TubeSet

# (up, lateral, posterior) of the lobar roots: upper, anterior, lateral, posterior, basal
LOBAR_DIRECTIONS = (
    (0.85, 0.5, 0.1),
    (0.2, 0.6, -0.9),
    (0.05, 1.0, -0.1),
    (0.0, 0.5, 0.9),
    (-0.8, 0.5, 0.3),
)


Vec = tuple[float, float, float]


def _unit(v) -> Vec:
    x, y, z = float(v[0]), float(v[1]), float(v[2])
    n = max(math.sqrt(x * x + y * y + z * z), 1e-9)
    return (x / n, y / n, z / n)


def _cross(a, b) -> Vec:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _add(a, b, scale: float = 1.0) -> Vec:
    return (a[0] + scale * b[0], a[1] + scale * b[1], a[2] + scale * b[2])


def _rotate_away(d, angle: float, azimuth: float) -> Vec:
    """Tilt unit vector d by ``angle`` radians toward the azimuth in its normal plane.

    Plain-float 3-vectors: growth makes tens of thousands of these, where numpy's per-call
    overhead would dominate.
    """
    helper = (1.0, 0.0, 0.0) if abs(d[0]) < 0.9 else (0.0, 1.0, 0.0)
    e1 = _unit(_cross(d, helper))
    e2 = _cross(d, e1)
    ca, sa = math.cos(azimuth), math.sin(azimuth)
    side = (ca * e1[0] + sa * e2[0], ca * e1[1] + sa * e2[1], ca * e1[2] + sa * e2[2])
    c, s = math.cos(angle), math.sin(angle)
    return _unit((c * d[0] + s * side[0], c * d[1] + s * side[1], c * d[2] + s * side[2]))


def _grow_tree(
    shape: ChestShape,
    rng: np.random.Generator,
    roots: list[tuple[np.ndarray, np.ndarray, float]],
    r_min: float,
    length_per_radius: tuple[float, float],
    twigs: bool,
) -> list[tuple]:
    """Grow segments depth-first from roots (point, direction, radius); returns tube rows."""
    depth_at = shape.depth.depth_at
    rows: list[tuple] = []
    stack = [(tuple(map(float, p)), _unit(d), r, 0, tuple(map(float, p))) for p, d, r in roots]
    two_pi = 2 * math.pi
    while stack:
        p, d, r, gen, origin = stack.pop()
        q = None
        for attempt in range(4):
            trial = (
                d
                if attempt == 0
                else _rotate_away(d, rng.uniform(0.3, 0.8), rng.uniform(0, two_pi))
            )
            length = min(max(rng.uniform(*length_per_radius) * r, 2.5), 32.0)
            for frac in (1.0, 0.6):
                cand = _add(p, trial, length * frac)
                if gen == 0 or depth_at(*cand) > r + 1.0:
                    q, d = cand, trial
                    break
            if q is not None:
                break
        if q is None:
            continue
        r_end = r * 0.96
        rows.append((p, q, r, r_end))
        if r < r_min:
            if twigs:
                _add_twig(shape, rng, rows, q, d, r_end)
            continue
        if twigs and r < 2.2 and rng.random() < 0.7:
            # side branches off small vessels fill the lung between the main branches
            side = _rotate_away(d, rng.uniform(0.9, 1.4), rng.uniform(0, two_pi))
            mid = _add(p, q)
            _add_twig(
                shape,
                rng,
                rows,
                (mid[0] / 2, mid[1] / 2, mid[2] / 2),
                side,
                min(0.8, r * 0.5),
                runs=1,
            )
        alpha = rng.uniform(0.45, 1.0)
        f1 = (1.0 + alpha**3) ** (-1.0 / 3.0)
        outward = _unit(_add(q, origin, -1.0))
        azimuth = rng.uniform(0, two_pi)
        for f, angle, az in (
            (f1, rng.uniform(0.2, 0.5), azimuth),
            (alpha * f1, rng.uniform(0.6, 1.1), azimuth + math.pi),
        ):
            child = _unit(_add(_rotate_away(d, angle, az), outward, 0.35))
            stack.append((q, child, r_end * f, gen + 1, origin))
    return _mark_leaves(rows)


def _mark_leaves(rows: list[tuple]) -> list[tuple]:
    """A segment is a leaf (a vessel end) when no other segment starts where it ends."""
    starts = {tuple(round(c, 4) for c in r[0]) for r in rows}
    return [(*r[:4], tuple(round(c, 4) for c in r[1]) not in starts) for r in rows]


def _add_twig(
    shape: ChestShape,
    rng: np.random.Generator,
    rows: list[tuple],
    p: Vec,
    d: Vec,
    r: float,
    runs: int | None = None,
) -> None:
    """Thin unbranched runs toward the pleura, tapering to ~0.3 mm: the peripheral vessels."""
    depth_at = shape.depth.depth_at
    two_pi = 2 * math.pi
    for branch in range(runs if runs is not None else int(rng.integers(2, 4))):
        q0, rr = p, r * (0.8 if branch else 1.0)
        dd = _rotate_away(d, rng.uniform(0.2, 0.7), rng.uniform(0, two_pi))
        for _ in range(3):
            q1 = _add(q0, dd, rng.uniform(7, 14))
            if depth_at(*q1) <= 2.0:
                break
            r_next = max(rr * 0.7, 0.3)
            rows.append((q0, q1, rr, r_next))
            q0, rr = q1, r_next
            dd = _rotate_away(dd, rng.uniform(0.05, 0.35), rng.uniform(0, two_pi))


def _hilum(shape: ChestShape, side: int, dy: float, z: float) -> np.ndarray:
    lung = shape.lungs[0 if side < 0 else 1]
    return np.array([side * (lung.medial_x + 6.0), lung.cy + dy, z])


def grow_vessel_trees(shape: ChestShape, rng: np.random.Generator) -> TubeSet:
    """Arterial and venous trees for each lung: five lobar roots each, from the hilum outward."""
    tubes = TubeSet.empty()
    tree_id = 0
    for side in (-1, 1):
        for dy, z, r_root in ((-8.0, -12.0, 4.8), (14.0, -38.0, 4.5)):
            hilum = _hilum(shape, side, dy + rng.uniform(-4, 4), z + rng.uniform(-6, 6))
            roots = []
            for up, lateral, back in LOBAR_DIRECTIONS:
                d = np.array(
                    [side * lateral, back + rng.uniform(-0.3, 0.3), up + rng.uniform(-0.15, 0.15)]
                )
                roots.append((hilum.copy(), d, r_root * rng.uniform(0.9, 1.1)))
            rows = _grow_tree(
                shape, rng, roots, r_min=1.05, length_per_radius=(5.0, 8.0), twigs=True
            )
            tubes = tubes.concat(TubeSet.from_rows(rows, tree=tree_id))
            tree_id += 1
    return tubes


def grow_airways(shape: ChestShape, rng: np.random.Generator) -> TubeSet:
    """Trachea, main bronchi and a few generations of bronchi; radii are lumen radii."""
    y_trachea = shape.spine_y - shape.spine_radius - rng.uniform(18, 26)
    r_trachea = rng.uniform(7.5, 9.5)
    top = np.array([0.0, y_trachea - 12.0, max(lung.z_apex for lung in shape.lungs) + 60.0])
    carina = np.array([0.0, y_trachea, 0.0])
    rows: list[tuple] = [(top, carina, r_trachea, r_trachea * 0.95, False)]
    roots = []
    for side, drop, r_main in ((-1, 22.0, r_trachea * 0.75), (1, 30.0, r_trachea * 0.66)):
        hilum = _hilum(shape, side, 2.0, -drop)
        rows.append((carina, hilum, r_main, r_main * 0.95, False))
        for up, lateral in ((0.8, 0.6), (-0.2, 1.0), (-0.9, 0.45)):
            d = np.array([side * lateral, rng.uniform(-0.2, 0.4), up])
            roots.append((hilum.copy(), d, r_main * rng.uniform(0.55, 0.7)))
    rows += _grow_tree(shape, rng, roots, r_min=1.4, length_per_radius=(4.0, 6.5), twigs=False)
    return TubeSet.from_rows(rows, tree=100)


def make_ribs(shape: ChestShape, rng: np.random.Generator) -> TubeSet:
    """Eleven rib pairs along the chest wall, dropping toward the front; polylines of capsules."""
    rows: list[tuple] = []
    a = shape.cavity_ax + shape.wall_mm * 0.5
    b = shape.cavity_ay + shape.wall_mm * 0.5
    z_first = max(lung.z_apex for lung in shape.lungs) + rng.uniform(0, 12)
    spacing = rng.uniform(22, 27)
    for side in (-1, 1):
        for k in range(11):
            z_post = z_first - k * spacing
            drop = rng.uniform(40, 65)
            radius = rng.uniform(3.2, 4.3) * (0.8 if k < 2 else 1.0)
            thetas = np.linspace(0.1 * np.pi, (0.55 if k < 1 else 0.78) * np.pi, 14)
            scale = 0.75 + 0.25 * min(k / 3.0, 1.0)
            pts = np.stack(
                [
                    side * a * scale * np.sin(thetas),
                    b * np.cos(thetas),
                    z_post - drop * (1 - np.cos(thetas)) / 2,
                ],
                axis=1,
            )
            for p, q in itertools.pairwise(pts):
                rows.append((p, q, radius, radius, False))
    return TubeSet.from_rows(rows, tree=200)


def make_aorta(shape: ChestShape, rng: np.random.Generator) -> TubeSet:
    """Ascending aorta, arch and descending aorta beside the spine."""
    r = rng.uniform(12, 15)
    _, hy, hz = shape.heart_center
    desc_x = shape.spine_radius * 0.9 + 8
    desc_y = shape.spine_y - shape.spine_radius - 4
    pts = [
        np.array([-4.0, hy + 10, hz + 30]),
        np.array([-8.0, hy + 8, 18.0]),
        np.array([0.0, (hy + desc_y) / 2, 32.0]),
        np.array([desc_x, desc_y, 20.0]),
        np.array([desc_x - 2, desc_y, -90.0]),
        np.array([desc_x - 6, desc_y - 6, -260.0]),
    ]
    rows = [
        (p, q, r if i < 2 else r * 0.85, r if i < 1 else r * 0.85, False)
        for i, (p, q) in enumerate(itertools.pairwise(pts))
    ]
    return TubeSet.from_rows(rows, tree=300)


# version 2: sprouts per small vessel segment, their starting radius and the floor every vessel
# keeps (tuned on lungcad.realism's vessel cross-sections by depth; docs/phantoms.md)
SPROUTS_PER_SEGMENT = 3.0
SPROUT_RADIUS_MM = (0.7, 1.1)
MIN_VESSEL_RADIUS_MM = 0.55
SPROUT_MIN_DEPTH_MM = 8.0  # sprouts start this deep, so their length lies in the outer 20 mm
STEP_MM = (5.0, 9.0)
SIDE_TWIG_CHANCE = 0.6
SUBPLEURAL_TWIGS = 2


def add_peripheral_vessels(
    shape: ChestShape, vessels: TubeSet, rng: np.random.Generator
) -> TubeSet:
    """Version 2: ``vessels`` with more and thicker vessels toward the pleura.

    Real scans show 2-4 times the version-1 phantoms' vessel cross-sections per cm² within 20 mm
    of the pleura, so small branches sprout extra unbranched vessels that run down the depth
    gradient to about 1.5 mm from the pleura, and no vessel is thinner than
    MIN_VESSEL_RADIUS_MM (version 1 tapers twigs to 0.3 mm, below what a CT resolves).
    """
    depth = shape.depth
    grads = np.gradient(depth.depth_xyz, depth.step)
    v = vessels
    r_mean = (v.r0 + v.r1) / 2
    depth_mid = shape.lung_depth((v.p0 + v.p1) / 2)
    sources = np.flatnonzero((r_mean > 0.6) & (r_mean < 2.5) & (depth_mid > SPROUT_MIN_DEPTH_MM))
    picks = rng.choice(sources, int(len(sources) * SPROUTS_PER_SEGMENT)) if len(sources) else []
    p0, p1, r0, r1, tree = [], [], [], [], []
    two_pi = 2 * math.pi

    def run(q0: Vec, d: Vec, rr: float, steps: int, owner: int, side_twigs: bool) -> None:
        """One unbranched vessel down the depth gradient, optionally with short side twigs."""
        for _ in range(steps):
            g = _depth_gradient(depth, grads, q0)
            d = _unit(_add(_add(d, g, -1.5), _rotate_away(d, 1.0, rng.uniform(0, two_pi)), 0.3))
            q1 = _add(q0, d, rng.uniform(*STEP_MM))
            if depth.depth_at(*q1) <= 1.5:
                if side_twigs:
                    subpleural(q0, g, rr, owner)
                return
            r_next = max(rr * 0.85, MIN_VESSEL_RADIUS_MM)
            p0.append(q0)
            p1.append(q1)
            r0.append(rr)
            r1.append(r_next)
            tree.append(owner)
            if side_twigs and rng.random() < SIDE_TWIG_CHANCE:
                side = _rotate_away(d, rng.uniform(0.8, 1.4), rng.uniform(0, two_pi))
                run(q1, side, max(r_next * 0.8, MIN_VESSEL_RADIUS_MM), 2, owner, False)
            q0, rr = q1, r_next

    def subpleural(q0: Vec, g: Vec, rr: float, owner: int) -> None:
        """Short runs along the pleura where a sprout meets it: the outermost 10 mm."""
        for _ in range(SUBPLEURAL_TWIGS):
            d = _rotate_away(g, rng.uniform(1.3, 1.8), rng.uniform(0, two_pi))  # ~tangential
            q1 = _add(q0, d, rng.uniform(4.0, 8.0))
            if depth.depth_at(*q1) > 1.5:
                r_next = MIN_VESSEL_RADIUS_MM
                p0.append(q0)
                p1.append(q1)
                r0.append(max(rr * 0.8, r_next))
                r1.append(r_next)
                tree.append(owner)

    for i in picks:
        start = v.p0[i] + rng.uniform(0.1, 0.9) * (v.p1[i] - v.p0[i])
        q0 = (float(start[0]), float(start[1]), float(start[2]))
        rr = min(float(r_mean[i]) * 0.8, float(rng.uniform(*SPROUT_RADIUS_MM)))
        d = _rotate_away(_unit(v.p1[i] - v.p0[i]), rng.uniform(0.6, 1.3), rng.uniform(0, two_pi))
        run(q0, d, rr, 6, int(v.tree[i]), True)
    rows = _mark_leaves([(a, b, c, e) for a, b, c, e in zip(p0, p1, r0, r1, strict=True)])
    sprouts = TubeSet(
        p0=np.array(p0, dtype=np.float64).reshape(-1, 3),
        p1=np.array(p1, dtype=np.float64).reshape(-1, 3),
        r0=np.array(r0, dtype=np.float64),
        r1=np.array(r1, dtype=np.float64),
        tree=np.array(tree, dtype=np.int32),
        is_leaf=np.array([row[4] for row in rows], dtype=bool),
    )
    out = v.concat(sprouts)
    out.r0 = np.maximum(out.r0, MIN_VESSEL_RADIUS_MM)
    out.r1 = np.maximum(out.r1, MIN_VESSEL_RADIUS_MM)
    return out


def _depth_gradient(depth: LungDepthMap, grads: list[np.ndarray], q: Vec) -> Vec:
    """Unit gradient of the lung depth map at a point (toward the lung's inside)."""
    i = round((q[0] - depth._ox) / depth.step)
    j = round((q[1] - depth._oy) / depth.step)
    k = round((q[2] - depth._oz) / depth.step)
    nx, ny, nz = depth.depth_xyz.shape
    if not (0 <= i < nx and 0 <= j < ny and 0 <= k < nz):
        return (0.0, 0.0, 0.0)
    g = (float(grads[0][i, j, k]), float(grads[1][i, j, k]), float(grads[2][i, j, k]))
    return _unit(g) if any(g) else g
