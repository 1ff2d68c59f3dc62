"""Class-0 candidates: the look-alikes a nodule detector trips over, as LUNA16's candidates.csv has.

Vessel bifurcations, vessel crossings, vessel ends, rib spots next to the lung, airway-wall
spots and (realism version 2) atelectasis bands, none within reach of a real nodule. Every nodule
is listed once as class 1.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from lungcad.phantom.anatomy import ChestAnatomy
from lungcad.phantom.spec import NoduleSpec


class LookAlike(enum.Enum):
    NODULE = "nodule"
    BIFURCATION = "vessel-bifurcation"
    CROSSING = "vessel-crossing"
    VESSEL_END = "vessel-end"
    RIB = "rib"
    AIRWAY_WALL = "airway-wall"
    ATELECTASIS = "atelectasis-band"  # realism version 2 only


@dataclass(frozen=True)
class CandidatePoint:
    center_xyz: tuple[float, float, float]
    is_nodule: bool
    kind: LookAlike


# how many of each look-alike a case lists (at most; fewer when the anatomy has fewer)
QUOTA = {
    LookAlike.BIFURCATION: 90,
    LookAlike.CROSSING: 60,
    LookAlike.VESSEL_END: 80,
    LookAlike.RIB: 40,
    LookAlike.AIRWAY_WALL: 30,
    LookAlike.ATELECTASIS: 20,
}


def _bifurcations(anatomy: ChestAnatomy) -> np.ndarray:
    v = anatomy.vessels
    ends = np.round(v.p1, 4)
    starts = {tuple(p) for p in np.round(v.p0, 4)}
    r = (v.r0 + v.r1) / 2
    return np.array(
        [e for e, rr in zip(ends, r, strict=True) if tuple(e) in starts and rr > 0.8]
    ).reshape(-1, 3)


def _crossings(anatomy: ChestAnatomy) -> np.ndarray:
    """Midpoints between segments of different trees that pass within a millimetre of each other."""
    v = anatomy.vessels
    samples, owner = [], []
    for t in (0.25, 0.5, 0.75):
        samples.append(v.p0 + t * (v.p1 - v.p0))
        owner.append(np.arange(len(v)))
    pts = np.concatenate(samples)
    seg = np.concatenate(owner)
    radius = ((v.r0 + v.r1) / 2)[seg]
    tree = cKDTree(pts)
    pairs = tree.query_pairs(r=6.0, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((0, 3))
    a, b = pairs[:, 0], pairs[:, 1]
    different = v.tree[seg[a]] != v.tree[seg[b]]
    close = np.linalg.norm(pts[a] - pts[b], axis=1) < radius[a] + radius[b] + 1.0
    keep = different & close & (radius[a] > 0.6) & (radius[b] > 0.6)
    return (pts[a[keep]] + pts[b[keep]]) / 2


def _vessel_ends(anatomy: ChestAnatomy) -> np.ndarray:
    v = anatomy.vessels
    return v.p1[v.is_leaf]


def _rib_spots(anatomy: ChestAnatomy, rng: np.random.Generator) -> np.ndarray:
    """Points on the inner surface of ribs that face a lung."""
    ribs = anatomy.ribs
    pts = ribs.p0 + rng.uniform(0, 1, (len(ribs), 1)) * (ribs.p1 - ribs.p0)
    inward = -pts * np.array([1.0, 1.0, 0.0])
    inward /= np.maximum(np.linalg.norm(inward, axis=1, keepdims=True), 1e-6)
    spots = pts + inward * (ribs.r0[:, None] + 1.0)
    near_lung = anatomy.lung_depth(spots + inward * 6.0) > 0
    return spots[near_lung]


def _airway_wall_spots(anatomy: ChestAnatomy, rng: np.random.Generator) -> np.ndarray:
    a = anatomy.airways
    t = rng.uniform(0.2, 0.8, (len(a), 1))
    axis_pts = a.p0 + t * (a.p1 - a.p0)
    d = a.p1 - a.p0
    side = np.cross(d, rng.normal(size=d.shape))
    side /= np.maximum(np.linalg.norm(side, axis=1, keepdims=True), 1e-6)
    spots = axis_pts + side * (a.r0[:, None] + 1.0)
    return spots[anatomy.lung_depth(spots) > 0]


def lookalike_candidates(
    anatomy: ChestAnatomy, nodules: list[NoduleSpec], rng: np.random.Generator
) -> list[CandidatePoint]:
    """Every nodule as class 1, then up to QUOTA look-alikes of each kind as class 0."""
    out = [CandidatePoint(n.center_xyz, True, LookAlike.NODULE) for n in nodules]
    centres = np.array([n.center_xyz for n in nodules]).reshape(-1, 3)
    reach = np.array([n.radius_mm + 3.0 for n in nodules])
    sources = {
        LookAlike.BIFURCATION: _bifurcations(anatomy),
        LookAlike.CROSSING: _crossings(anatomy),
        LookAlike.VESSEL_END: _vessel_ends(anatomy),
        LookAlike.RIB: _rib_spots(anatomy, rng),
        LookAlike.AIRWAY_WALL: _airway_wall_spots(anatomy, rng),
        # empty in version 1, so its candidates (and random draws) stay as they were
        LookAlike.ATELECTASIS: (anatomy.atelectasis.p0 + anatomy.atelectasis.p1) / 2,
    }
    for kind, pts in sources.items():
        if len(pts) == 0:
            continue
        if len(centres):
            dist = np.linalg.norm(pts[:, None, :] - centres[None], axis=-1)
            pts = pts[np.all(dist > reach[None], axis=1)]
        take = rng.permutation(len(pts))[: QUOTA[kind]]
        out += [
            CandidatePoint(tuple(round(float(c), 3) for c in pts[i]), False, kind)
            for i in np.sort(take)
        ]
    return out
