"""A randomised chest: the shape (body, lungs, heart, spine), tissue HU and the tube structures.

Everything is analytic so that the same chest can be rendered on any grid (``full`` or ``small``)
and so that nodule placement can ask "is this point in the lung?" without a voxel array.
The shape (:mod:`lungcad.phantom.shape`) is drawn first; the trees (:mod:`lungcad.phantom.trees`)
grow inside it; :class:`ChestAnatomy` is the shape with its tissue HU and tubes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from lungcad.phantom.shape import ChestShape, LungDepthMap, LungShape
from lungcad.phantom.spec import TubeSet
from lungcad.phantom.trees import grow_airways, grow_vessel_trees, make_aorta, make_ribs


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


@dataclass(frozen=True, kw_only=True)
class ChestAnatomy(ChestShape):
    """The chest's shape, the HU of its tissues, and its tubes (vessels, airways, ribs, aorta)."""

    vessel_hu: float
    lung_hu: float
    lung_gradient_hu: float  # extra HU at the most posterior (dependent) lung
    fat_hu: float
    muscle_hu: float
    vessels: TubeSet
    airways: TubeSet
    ribs: TubeSet
    aorta: TubeSet
    # version 2 only (empty in version 1): fissures and dependent atelectasis bands
    fissures: tuple[Fissure, ...] = ()
    atelectasis: TubeSet = field(default_factory=TubeSet.empty)

    @classmethod
    def of(cls, shape: ChestShape, **parts) -> ChestAnatomy:
        """``shape`` with ``parts``: its tissue HU and tubes (fields of this class)."""
        drawn = {f.name: getattr(shape, f.name) for f in dataclasses.fields(ChestShape)}
        return cls(**drawn, **parts)


def sample_anatomy(rng: np.random.Generator) -> ChestAnatomy:
    """Draw one chest: sizes, lungs, heart, tissue HU, then the tubes that grow inside it."""
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
    shape = ChestShape(
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
    )
    tissue_hu = {
        "vessel_hu": rng.uniform(30, 50),
        "lung_hu": rng.uniform(-875, -840),
        "lung_gradient_hu": rng.uniform(20, 70),
        "fat_hu": rng.uniform(-110, -85),
        "muscle_hu": rng.uniform(40, 55),
    }
    shape = dataclasses.replace(shape, depth=LungDepthMap.build(shape))
    return ChestAnatomy.of(
        shape,
        **tissue_hu,
        airways=grow_airways(shape, rng),
        vessels=grow_vessel_trees(shape, rng),
        ribs=make_ribs(shape, rng),
        aorta=make_aorta(shape, rng),
    )


def _unit3(v: np.ndarray) -> tuple[float, float, float]:
    v = np.asarray(v, dtype=np.float64)
    return tuple(float(c) for c in v / np.linalg.norm(v))


def sample_fissures(shape: ChestShape, rng: np.random.Generator) -> tuple[Fissure, ...]:
    """Version 2: a major (oblique) fissure in each lung, from high at the back to the front of
    the diaphragm, and the right lung's minor (horizontal) fissure in front of the major one."""
    out = []
    for lung in shape.lungs:
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


def sample_atelectasis(shape: ChestShape, rng: np.random.Generator) -> TubeSet:
    """Version 2: 0-3 plate-like atelectasis bands per lung, in the dependent (posterior) bases,
    a few mm inside the pleura and running along it: linear grey that is not a nodule."""
    depth = shape.depth
    assert depth is not None
    grads = np.gradient(depth.depth_xyz, depth.step)
    idx = np.argwhere((depth.depth_xyz > 3.0) & (depth.depth_xyz < 9.0))
    pts = depth.origin + idx * depth.step
    rows = []
    for lung in shape.lungs:
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
            if shape.lung_depth(np.stack([a, b])).min() > 1.0:
                rows.append((a, b, radius, radius * rng.uniform(0.5, 1.0), True))
    return TubeSet.from_rows(rows, tree=500)
