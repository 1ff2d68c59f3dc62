"""The chest's shape: body, chest wall, lungs, heart and spine, analytic in LPS mm.

Everything that grows inside the chest (vessel and airway trees, ribs, aorta, nodules) asks this
shape where the lungs are, so it lives apart from :class:`~lungcad.phantom.anatomy.ChestAnatomy`
(shape + tissue HU + tubes) and :mod:`lungcad.phantom.trees` can depend on it alone.
Frame: LPS millimetres with x = 0 on the midline, y = 0 at the body's centre, z = 0 at the carina.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class LungShape:
    """One lung: a superellipse cross-section tapering to the apex, on a domed diaphragm."""

    side: int  # -1 right lung (patient right = -x in LPS), +1 left lung
    cx: float
    cy: float
    ax: float
    ay: float
    z_apex: float
    z_dome: float  # top of the diaphragm dome under this lung
    recess_mm: float  # how far the costophrenic recess reaches below the dome
    exponent: float
    medial_x: float  # |x| below which the mediastinum begins
    heart_carve: bool

    def scale_at(self, z: np.ndarray) -> np.ndarray:
        """Cross-section scale: rounded apex, a little wider toward the base."""
        top = np.clip((self.z_apex - z) / 55.0, 0.0, 1.0) ** 0.55
        widen = 0.88 + 0.12 * np.clip((self.z_apex - z) / (self.z_apex - self.z_dome), 0.0, 1.0)
        return top * widen


@dataclass(frozen=True, kw_only=True)
class ChestShape:
    """Sizes and positions of the chest's parts, and the lungs' depth map once it is built."""

    body_ax: float
    body_ay: float
    fat_mm: float
    wall_mm: float
    table_y: float
    lungs: tuple[LungShape, LungShape]
    heart_center: tuple[float, float, float]
    heart_axes: tuple[float, float, float]
    spine_y: float  # centre of the vertebral bodies
    spine_radius: float
    depth: LungDepthMap | None = None

    @property
    def cavity_ax(self) -> float:
        return self.body_ax - self.fat_mm - self.wall_mm

    @property
    def cavity_ay(self) -> float:
        return self.body_ay - self.fat_mm - self.wall_mm

    def lung_field(self, x: np.ndarray, y: np.ndarray, z: np.ndarray | float) -> np.ndarray:
        """Lung membership (bool, broadcast of x, y, z) from the analytic shapes alone."""
        inside = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), dtype=bool)
        for lung in self.lungs:
            inside |= lung_membership(self, lung, x, y, z)
        return inside

    def inside_lung(self, points: np.ndarray, margin_mm: float = 0.0) -> np.ndarray:
        """Whether points (N, 3) are in a lung, at least ``margin_mm`` from its edge."""
        return self.lung_depth(points) > margin_mm

    def lung_depth(self, points: np.ndarray) -> np.ndarray:
        """Distance (mm) from points (N, 3) to the nearest lung edge; 0 outside the lungs.

        Looked up in a 2.5 mm distance map, so tree growth and nodule placement can ask
        thousands of times without evaluating the shapes again.
        """
        if self.depth is None:
            raise RuntimeError("the chest shape has no depth map yet")
        return self.depth.lookup(np.atleast_2d(points))


@dataclass(frozen=True)
class LungDepthMap:
    """Euclidean distance to the lung edge on a coarse grid covering the thorax."""

    origin: np.ndarray  # LPS of voxel (0,0,0) in (x, y, z)
    step: float
    depth_xyz: np.ndarray  # indexed [ix, iy, iz]

    @classmethod
    def build(cls, shape: ChestShape, step: float = 2.5) -> LungDepthMap:
        z_top = max(lung.z_apex for lung in shape.lungs) + 10
        z_bottom = min(lung.z_dome - lung.recess_mm for lung in shape.lungs) - 10
        xs = np.arange(-shape.body_ax, shape.body_ax + step, step, dtype=np.float32)
        ys = np.arange(-shape.body_ay, shape.body_ay + step, step, dtype=np.float32)
        zs = np.arange(z_bottom, z_top + step, step, dtype=np.float32)
        inside = shape.lung_field(xs[:, None, None], ys[None, :, None], zs[None, None, :])
        # distance to the nearest outside voxel centre, less half a voxel: the edge lies between
        depth = ndimage.distance_transform_edt(inside, sampling=step).astype(np.float32)
        depth = np.where(inside, np.maximum(depth - step / 2, 0.01), 0.0).astype(np.float32)
        return cls(np.array([xs[0], ys[0], zs[0]]), step, depth)

    def depth_at(self, x: float, y: float, z: float) -> float:
        """One point, in plain floats: the fast path for tree growth."""
        i = round((x - self._ox) / self.step)
        j = round((y - self._oy) / self.step)
        k = round((z - self._oz) / self.step)
        nx, ny, nz = self.depth_xyz.shape
        if 0 <= i < nx and 0 <= j < ny and 0 <= k < nz:
            return float(self.depth_xyz[i, j, k])
        return 0.0

    @property
    def _ox(self) -> float:
        return float(self.origin[0])

    @property
    def _oy(self) -> float:
        return float(self.origin[1])

    @property
    def _oz(self) -> float:
        return float(self.origin[2])

    def lookup(self, points: np.ndarray) -> np.ndarray:
        idx = np.rint((points - self.origin) / self.step).astype(np.int64)
        shape = np.array(self.depth_xyz.shape)
        valid = np.all((idx >= 0) & (idx < shape), axis=1)
        out = np.zeros(len(points), dtype=np.float32)
        i = idx[valid]
        out[valid] = self.depth_xyz[i[:, 0], i[:, 1], i[:, 2]]
        return out


def lung_membership(
    shape: ChestShape, lung: LungShape, x: np.ndarray, y: np.ndarray, z: np.ndarray | float
) -> np.ndarray:
    s = lung.scale_at(np.asarray(z, dtype=np.float32))
    s = np.maximum(s, 1e-3)
    u = np.abs((x - lung.cx * (0.9 + 0.1 * s)) / (lung.ax * s))
    v = np.abs((y - lung.cy) / (lung.ay * s))
    rho = u**lung.exponent + v**lung.exponent
    inside = rho < 1.0
    # the chest wall (muscle and ribs) lies between the lung and the subcutaneous fat
    inside &= (x / shape.cavity_ax) ** 2 + (y / shape.cavity_ay) ** 2 < 1.0
    # domed diaphragm: the centre of the dome is highest, the recess at the rim lowest
    inside &= z > lung.z_dome - lung.recess_mm * np.minimum(rho, 1.0)
    # mediastinum and spine
    inside &= lung.side * x > lung.medial_x
    reach = shape.spine_radius + 14.0
    inside &= x**2 + (y - shape.spine_y) ** 2 > reach**2
    inside &= ~((np.abs(x) < reach) & (y > shape.spine_y))
    if lung.heart_carve:
        hx, hy, hz = shape.heart_center
        ax, ay, az = shape.heart_axes
        heart = ((x - hx) / (ax + 6)) ** 2 + ((y - hy) / (ay + 6)) ** 2 + ((z - hz) / (az + 6)) ** 2
        inside &= heart > 1.0
    return inside
