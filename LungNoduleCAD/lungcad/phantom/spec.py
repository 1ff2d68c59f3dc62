"""What a synthetic chest case is made of: scan grid, tubes, nodules; plain data, no rendering."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

# the nodule vocabulary lives with the engine; phantoms re-export it for their callers
from lungcad.characteristics import NoduleMargin, NoduleType


class PhantomSize(enum.Enum):
    """``full``: a clinical 512x512 grid; ``small``: the same anatomy on a coarse grid for tests."""

    FULL = "full"
    SMALL = "small"


class RealismVersion(enum.IntEnum):
    """Which look a phantom set has; recorded in its ``phantom.json`` as ``realism_version``.

    Sets must stay reproducible (the bundled weights were trained on version-1 phantoms), so a new
    look is a new version, never a change to an old one.

    * ``V1``: today's phantoms, byte for byte: 0.6-2.5 mm slices sampled at their centres, no
      contrast. A manifest without ``realism_version`` is version 1.
    * ``V2``: closer to real CT (issue 13): slices of 0.6-5 mm averaged over their nominal
      thickness (rectangular slice-sensitivity profile), about 30 % contrast-enhanced cases
      (blood pool +150..+400 HU), denser and thicker peripheral vessels, fissures and
      dependent atelectasis bands; other series UIDs (docs/phantoms.md).
    """

    V1 = 1
    V2 = 2


class NoduleLocation(enum.Enum):
    ISOLATED = "isolated"
    JUXTA_PLEURAL = "juxta-pleural"
    JUXTA_VASCULAR = "juxta-vascular"


class Tissue(enum.IntEnum):
    """Labels of the in-memory tissue map the renderer returns (ground truth for realism checks)."""

    OUTSIDE = 0
    FAT = 1
    SOFT_TISSUE = 2  # muscle, mediastinum, heart, abdomen
    BONE = 3
    LUNG = 4  # parenchyma
    VESSEL = 5  # pulmonary vessels inside the lung
    AIRWAY = 6  # airway lumen and wall
    NODULE = 7
    TABLE = 8


class DrawMode(enum.Enum):
    """How the renderer draws a tube set over what is there."""

    RAISE = "raise"  # brighten toward the tube's HU only where darker (vessels in lung)
    SET = "set"  # replace


@dataclass(frozen=True)
class ScanGrid:
    """A voxel grid in patient LPS space with an axis-aligned direction (flips allowed).

    The renderer works on the canonical grid (index axes increasing toward L, P, S) and
    flips the finished array to match ``axis_signs``; origin and direction describe the stored
    array.
    """

    shape_irc: tuple[int, int, int]
    spacing_xyz: tuple[float, float, float]
    canonical_origin_xyz: tuple[float, float, float]  # LPS of canonical voxel (0, 0, 0)
    axis_signs_xyz: tuple[int, int, int] = (1, 1, 1)
    #: nominal slice thickness (mm) over which each slice averages the scene (rectangular
    #: profile); None: each slice samples the scene at its centre (version 1)
    profile_mm: float | None = None

    @property
    def slice_thickness_mm(self) -> float:
        """The slice thickness a header would state: the profile's width, else the spacing."""
        return self.spacing_xyz[2] if self.profile_mm is None else self.profile_mm

    @property
    def direction(self) -> tuple[float, ...]:
        sx, sy, sz = self.axis_signs_xyz
        return (float(sx), 0.0, 0.0, 0.0, float(sy), 0.0, 0.0, 0.0, float(sz))

    @property
    def origin_xyz(self) -> tuple[float, float, float]:
        """LPS of the stored array's voxel (0, 0, 0): the far end of each flipped axis."""
        nz, ny, nx = self.shape_irc
        counts = (nx, ny, nz)
        return tuple(
            o + (n - 1) * s if sign < 0 else o
            for o, n, s, sign in zip(
                self.canonical_origin_xyz,
                counts,
                self.spacing_xyz,
                self.axis_signs_xyz,
                strict=True,
            )
        )

    @property
    def z_range_mm(self) -> tuple[float, float]:
        """Head-foot extent covered by the slices (voxel edges), LPS z in mm."""
        z0, dz, n = self.canonical_origin_xyz[2], self.spacing_xyz[2], self.shape_irc[0]
        return (z0 - dz / 2, z0 + (n - 0.5) * dz)

    def axis_mm(self, axis: str) -> np.ndarray:
        """LPS coordinate of each canonical voxel centre along 'x', 'y' or 'z' (float32)."""
        i = "xyz".index(axis)
        n = self.shape_irc[2 - i]
        return (self.canonical_origin_xyz[i] + np.arange(n) * self.spacing_xyz[i]).astype(
            np.float32
        )


@dataclass
class TubeSet:
    """Tapered capsules (p0 -> p1, radius r0 -> r1) in LPS mm: vessels, airways, ribs, spicules."""

    p0: np.ndarray  # (N, 3)
    p1: np.ndarray  # (N, 3)
    r0: np.ndarray  # (N,)
    r1: np.ndarray  # (N,)
    tree: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    is_leaf: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @classmethod
    def empty(cls) -> TubeSet:
        z3 = np.zeros((0, 3))
        z = np.zeros(0)
        return cls(z3, z3, z, z, np.zeros(0, np.int32), np.zeros(0, bool))

    @classmethod
    def from_rows(cls, rows: list[tuple], tree: int = 0) -> TubeSet:
        """rows: (p0, p1, r0, r1, is_leaf)."""
        if not rows:
            return cls.empty()
        return cls(
            p0=np.array([r[0] for r in rows], dtype=np.float64),
            p1=np.array([r[1] for r in rows], dtype=np.float64),
            r0=np.array([r[2] for r in rows], dtype=np.float64),
            r1=np.array([r[3] for r in rows], dtype=np.float64),
            tree=np.full(len(rows), tree, dtype=np.int32),
            is_leaf=np.array([r[4] for r in rows], dtype=bool),
        )

    def __len__(self) -> int:
        return len(self.r0)

    def concat(self, other: TubeSet) -> TubeSet:
        return TubeSet(
            np.concatenate([self.p0, other.p0]),
            np.concatenate([self.p1, other.p1]),
            np.concatenate([self.r0, other.r0]),
            np.concatenate([self.r1, other.r1]),
            np.concatenate([self.tree, other.tree]),
            np.concatenate([self.is_leaf, other.is_leaf]),
        )

    def distance_to(self, points: np.ndarray) -> np.ndarray:
        """Distance (mm) from each point (M, 3) to each tube's surface: (M, N); negative inside."""
        a = self.p0[None]
        ab = (self.p1 - self.p0)[None]
        ap = points[:, None, :] - a
        denom = np.maximum((ab * ab).sum(-1), 1e-9)
        t = np.clip((ap * ab).sum(-1) / denom, 0.0, 1.0)
        closest = a + t[..., None] * ab
        d = np.linalg.norm(points[:, None, :] - closest, axis=-1)
        return d - (self.r0[None] + t * (self.r1 - self.r0)[None])


@dataclass(frozen=True)
class NoduleSpec:
    """One synthetic nodule; ``index`` is its 1-based label in the ground-truth map."""

    index: int
    center_xyz: tuple[float, float, float]
    diameter_mm: float
    kind: NoduleType
    margin: NoduleMargin
    location: NoduleLocation
    solid_hu: float
    ggo_hu: float
    core_fraction: float  # solid core radius / radius (part-solid); calcified core for calcified
    lobe_dirs: tuple[tuple[float, float, float], ...]
    lobe_amps: tuple[float, ...]
    spicules: tuple[tuple[tuple[float, float, float], tuple[float, float, float], float], ...]
    malignancy_score: float
    reader_ratings: tuple[int, ...]
    is_malignant: bool

    @property
    def radius_mm(self) -> float:
        return self.diameter_mm / 2.0
