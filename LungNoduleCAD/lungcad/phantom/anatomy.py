"""A randomised chest: body, lungs, mediastinum, spine, ribs, airways and vessel trees in LPS mm.

Everything is analytic so that the same chest can be rendered on any grid (``full`` or ``small``)
and so that nodule placement can ask "is this point in the lung?" without a voxel array.
Frame: LPS millimetres with x = 0 on the midline, y = 0 at the body's centre, z = 0 at the carina.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from lungcad.phantom.spec import TubeSet
from lungcad.phantom.trees import grow_airways, grow_vessel_trees, make_aorta, make_ribs


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


@dataclass(frozen=True)
class Fissure:
    """An interlobar fissure: a thin sheet of pleura through one lung (LPS mm).

    The sheet is the plane through ``point`` with unit ``normal``; with ``bound_normal`` set it
    is a half plane, kept where ``bound_normal . (p - bound_point) < 0`` (the right lung's minor
    fissure stops at the major one).
    """

    side: int
    point: tuple[float, float, float]
    normal: tuple[float, float, float]
    bound_point: tuple[float, float, float] | None = None
    bound_normal: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class ChestAnatomy:
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
    vessel_hu: float
    lung_hu: float
    lung_gradient_hu: float  # extra HU at the most posterior (dependent) lung
    fat_hu: float
    muscle_hu: float
    vessels: TubeSet
    airways: TubeSet
    ribs: TubeSet
    aorta: TubeSet
    depth: LungDepthMap | None = None
    # version 2 only (empty in version 1): fissures and dependent atelectasis bands
    fissures: tuple[Fissure, ...] = ()
    atelectasis: TubeSet = field(default_factory=TubeSet.empty)

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
            raise RuntimeError("anatomy has no depth map yet")
        return self.depth.lookup(np.atleast_2d(points))


@dataclass(frozen=True)
class LungDepthMap:
    """Euclidean distance to the lung edge on a coarse grid covering the thorax."""

    origin: np.ndarray  # LPS of voxel (0,0,0) in (x, y, z)
    step: float
    depth_xyz: np.ndarray  # indexed [ix, iy, iz]

    @classmethod
    def build(cls, anatomy: ChestAnatomy, step: float = 2.5) -> LungDepthMap:
        z_top = max(lung.z_apex for lung in anatomy.lungs) + 10
        z_bottom = min(lung.z_dome - lung.recess_mm for lung in anatomy.lungs) - 10
        xs = np.arange(-anatomy.body_ax, anatomy.body_ax + step, step, dtype=np.float32)
        ys = np.arange(-anatomy.body_ay, anatomy.body_ay + step, step, dtype=np.float32)
        zs = np.arange(z_bottom, z_top + step, step, dtype=np.float32)
        inside = anatomy.lung_field(xs[:, None, None], ys[None, :, None], zs[None, None, :])
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
    anatomy: ChestAnatomy, lung: LungShape, x: np.ndarray, y: np.ndarray, z: np.ndarray | float
) -> np.ndarray:
    s = lung.scale_at(np.asarray(z, dtype=np.float32))
    s = np.maximum(s, 1e-3)
    u = np.abs((x - lung.cx * (0.9 + 0.1 * s)) / (lung.ax * s))
    v = np.abs((y - lung.cy) / (lung.ay * s))
    rho = u**lung.exponent + v**lung.exponent
    inside = rho < 1.0
    # the chest wall (muscle and ribs) lies between the lung and the subcutaneous fat
    inside &= (x / anatomy.cavity_ax) ** 2 + (y / anatomy.cavity_ay) ** 2 < 1.0
    # domed diaphragm: the centre of the dome is highest, the recess at the rim lowest
    inside &= z > lung.z_dome - lung.recess_mm * np.minimum(rho, 1.0)
    # mediastinum and spine
    inside &= lung.side * x > lung.medial_x
    reach = anatomy.spine_radius + 14.0
    inside &= x**2 + (y - anatomy.spine_y) ** 2 > reach**2
    inside &= ~((np.abs(x) < reach) & (y > anatomy.spine_y))
    if lung.heart_carve:
        hx, hy, hz = anatomy.heart_center
        ax, ay, az = anatomy.heart_axes
        heart = ((x - hx) / (ax + 6)) ** 2 + ((y - hy) / (ay + 6)) ** 2 + ((z - hz) / (az + 6)) ** 2
        inside &= heart > 1.0
    return inside


def sample_anatomy(rng: np.random.Generator) -> ChestAnatomy:
    """Draw one chest: sizes, lungs, heart, then the tube structures that depend on them."""
    body_ax = rng.uniform(140, 178)
    body_ay = rng.uniform(0.62, 0.74) * body_ax
    fat_mm = rng.uniform(5, 24)
    wall_mm = rng.uniform(13, 20)
    cav_ax = body_ax - fat_mm - wall_mm
    cav_ay = body_ay - fat_mm - wall_mm
    z_apex = rng.uniform(95, 125)
    dome_r = rng.uniform(-150, -125)
    dome_l = dome_r - rng.uniform(8, 22)
    medial = rng.uniform(14, 24)
    spine_radius = rng.uniform(16, 21)
    spine_y = cav_ay + spine_radius * 0.2
    lungs = []
    for side, dome in ((-1, dome_r), (1, dome_l)):
        lungs.append(
            LungShape(
                side=side,
                cx=side * cav_ax * rng.uniform(0.47, 0.53),
                cy=cav_ay * rng.uniform(0.02, 0.1),
                ax=cav_ax * rng.uniform(0.47, 0.52),
                ay=cav_ay * rng.uniform(0.9, 0.97),
                z_apex=z_apex + rng.uniform(-6, 6),
                z_dome=dome,
                recess_mm=rng.uniform(35, 55),
                exponent=rng.uniform(2.1, 2.6),
                medial_x=medial,
                heart_carve=True,
            )
        )
    heart_center = (
        rng.uniform(12, 30),
        -cav_ay * rng.uniform(0.2, 0.35),
        dome_r + rng.uniform(45, 60),
    )
    heart_axes = (rng.uniform(55, 68), rng.uniform(42, 52), rng.uniform(48, 58))
    partial = ChestAnatomy(
        body_ax=body_ax,
        body_ay=body_ay,
        fat_mm=fat_mm,
        wall_mm=wall_mm,
        table_y=body_ay + rng.uniform(3, 12),
        lungs=(lungs[0], lungs[1]),
        heart_center=heart_center,
        heart_axes=heart_axes,
        spine_y=spine_y,
        spine_radius=spine_radius,
        vessel_hu=rng.uniform(30, 50),
        lung_hu=rng.uniform(-875, -840),
        lung_gradient_hu=rng.uniform(20, 70),
        fat_hu=rng.uniform(-110, -85),
        muscle_hu=rng.uniform(40, 55),
        vessels=TubeSet.empty(),
        airways=TubeSet.empty(),
        ribs=TubeSet.empty(),
        aorta=TubeSet.empty(),
    )
    partial = dataclasses.replace(partial, depth=LungDepthMap.build(partial))
    return dataclasses.replace(
        partial,
        airways=grow_airways(partial, rng),
        vessels=grow_vessel_trees(partial, rng),
        ribs=make_ribs(partial, rng),
        aorta=make_aorta(partial, rng),
    )


def _unit3(v: np.ndarray) -> tuple[float, float, float]:
    v = np.asarray(v, dtype=np.float64)
    return tuple(float(c) for c in v / np.linalg.norm(v))


def sample_fissures(anatomy: ChestAnatomy, rng: np.random.Generator) -> tuple[Fissure, ...]:
    """Version 2: a major (oblique) fissure in each lung, from high at the back to the front of
    the diaphragm, and the right lung's minor (horizontal) fissure in front of the major one."""
    out = []
    for lung in anatomy.lungs:
        back = np.array([lung.cx, lung.cy + 0.8 * lung.ay, lung.z_apex - rng.uniform(45, 70)])
        front = np.array([lung.cx, lung.cy - 0.7 * lung.ay, lung.z_dome + rng.uniform(0, 15)])
        along = front - back
        # tilted about the head-foot axis so that axial slices cut it obliquely, as in real CT
        tilt = -lung.side * rng.uniform(0.2, 0.45) * np.hypot(along[1], along[2])
        normal = np.array([tilt, -along[2], along[1]])
        major = Fissure(lung.side, tuple(float(c) for c in back), _unit3(normal))
        out.append(major)
        if lung.side < 0:
            point = (float(lung.cx), float(lung.cy), float(rng.uniform(-30, -5)))
            tilt = (rng.uniform(-0.1, 0.1), rng.uniform(-0.15, 0.15), 1.0)
            # the minor fissure lies in front of the major one: keep it where the major's signed
            # distance has the sign of a point at the front of the lung at its height
            ahead = np.array([lung.cx, lung.cy - 0.9 * lung.ay, point[2]])
            sign = np.sign(np.dot(np.asarray(major.normal), ahead - back))
            bound = tuple(float(-sign * c) for c in major.normal)
            out.append(Fissure(lung.side, point, _unit3(tilt), major.point, bound))
    return tuple(out)


def sample_atelectasis(anatomy: ChestAnatomy, rng: np.random.Generator) -> TubeSet:
    """Version 2: 0-3 plate-like atelectasis bands per lung, in the dependent (posterior) bases,
    a few mm inside the pleura and running along it: linear grey that is not a nodule."""
    depth = anatomy.depth
    assert depth is not None
    grads = np.gradient(depth.depth_xyz, depth.step)
    idx = np.argwhere((depth.depth_xyz > 3.0) & (depth.depth_xyz < 9.0))
    pts = depth.origin + idx * depth.step
    rows = []
    for lung in anatomy.lungs:
        mine = (
            (np.sign(pts[:, 0]) == lung.side)
            & (pts[:, 1] > lung.cy + 0.3 * lung.ay)
            & (pts[:, 2] < lung.z_dome + 50.0)
        )
        choices = np.flatnonzero(mine)
        if len(choices) == 0:
            continue
        for _ in range(int(rng.integers(0, 4))):
            j = int(rng.choice(choices))
            g = np.array([grads[a][tuple(idx[j])] for a in range(3)])
            along = np.array([-g[1], g[0], rng.uniform(-0.2, 0.2) * np.hypot(g[0], g[1])])
            if np.linalg.norm(along) < 1e-6:
                continue
            along /= np.linalg.norm(along)
            half = rng.uniform(8.0, 20.0)
            radius = rng.uniform(0.8, 1.8)
            centre = pts[j] + rng.uniform(-depth.step / 2, depth.step / 2, 3)
            a, b = centre - along * half, centre + along * half
            if anatomy.lung_depth(np.stack([a, b])).min() > 1.0:
                rows.append((a, b, radius, radius * rng.uniform(0.5, 1.0), True))
    return TubeSet.from_rows(rows, tree=500)
