"""Long and short axis of an outline in one plane, as a reader's calipers take them.

The long axis is the longest distance between two outline points; the short axis is the longest
chord perpendicular to it (Lung-RADS and RECIST draw it across the nodule at right angles to the
long axis). Both are taken on the outline's convex hull, so a lobulated or spiculated outline is
measured the way calipers span it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError

Point2 = tuple[float, float]


@dataclass(frozen=True)
class Caliper:
    """Axis lengths (mm) and their end points in the plane (x, y, mm)."""

    long_mm: float
    short_mm: float
    long_ends: tuple[Point2, Point2]
    short_ends: tuple[Point2, Point2]


def _hull(points: np.ndarray) -> np.ndarray:
    """The convex hull's vertices in counter-clockwise order (the points if they are collinear)."""
    unique = np.unique(points, axis=0)
    if len(unique) < 3:
        return unique
    try:
        return unique[ConvexHull(unique).vertices]
    except QhullError:  # all on one line: the line's two ends span it
        direction = unique[-1] - unique[0]
        along = unique @ direction
        return unique[[int(np.argmin(along)), int(np.argmax(along))]]


def caliper(points_xy: np.ndarray) -> Caliper:
    """Long axis and perpendicular short axis of the outline ``points_xy`` (m, 2), m >= 1."""
    points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    if not len(points):
        raise ValueError("caliper needs at least one outline point")
    hull = _hull(points)
    if len(hull) == 1:
        p = (float(hull[0, 0]), float(hull[0, 1]))
        return Caliper(0.0, 0.0, (p, p), (p, p))
    gaps = hull[:, None, :] - hull[None, :, :]
    distance = np.hypot(gaps[..., 0], gaps[..., 1])
    i, j = np.unravel_index(int(np.argmax(distance)), distance.shape)
    a, b = hull[i], hull[j]
    long_mm = float(distance[i, j])
    u = (b - a) / long_mm
    v = np.array([-u[1], u[0]])
    short_mm, short_ends = _longest_perpendicular_chord(hull, u, v)
    return Caliper(long_mm, short_mm, (_pair(a), _pair(b)), short_ends)


def _longest_perpendicular_chord(
    hull: np.ndarray, u: np.ndarray, v: np.ndarray
) -> tuple[float, tuple[Point2, Point2]]:
    """The longest chord along ``v`` of the convex polygon ``hull`` (ordered vertices).

    A convex polygon's chord length is a concave, piecewise linear function of the position
    along ``u`` that bends only at vertices, so its longest chord passes through a vertex.
    """
    if len(hull) < 3:  # a segment: no width
        p = _pair(hull[0])
        return 0.0, (p, p)
    t = hull @ u  # vertex positions along the long axis
    s = hull @ v
    t0, t1 = t, np.roll(t, -1)  # each edge from vertex k to k + 1
    s0, s1 = s, np.roll(s, -1)
    at = t[:, None]  # one candidate line per vertex (rows) against every edge (columns)
    lo, hi = np.minimum(t0, t1), np.maximum(t0, t1)
    crosses = (at >= lo - 1e-12) & (at <= hi + 1e-12)
    span = np.where(np.abs(t1 - t0) > 1e-12, t1 - t0, 1.0)
    frac = np.clip((at - t0) / span, 0.0, 1.0)
    s_at = s0 + frac * (s1 - s0)
    # an edge that lies along the line itself covers s0..s1: both ends count
    flat = np.abs(t1 - t0) <= 1e-12
    s_low = np.where(flat, np.minimum(s0, s1), s_at)
    s_high = np.where(flat, np.maximum(s0, s1), s_at)
    top = np.where(crosses, s_high, -np.inf).max(axis=1)
    bottom = np.where(crosses, s_low, np.inf).min(axis=1)
    length = top - bottom
    k = int(np.argmax(length))
    ends = (t[k] * u + bottom[k] * v, t[k] * u + top[k] * v)
    return float(length[k]), (_pair(ends[0]), _pair(ends[1]))


def _pair(p: np.ndarray) -> Point2:
    return (float(p[0]), float(p[1]))
