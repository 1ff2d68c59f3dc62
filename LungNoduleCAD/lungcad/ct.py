"""The engine's one CT type: Hounsfield units in (index, row, col) order plus patient geometry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Geometry:
    """Where a voxel grid sits in patient LPS space, in ITK's conventions.

    ``origin_xyz`` is the LPS position (mm) of voxel (0, 0, 0); ``spacing_xyz`` the voxel size (mm)
    along the col, row and index axes; ``direction`` the 3x3 matrix whose columns are the LPS unit
    vectors of the col, row and index axes (ITK's direction). ``shape_irc`` is the array shape in
    (index, row, col) order.
    """

    origin_xyz: tuple[float, float, float]
    spacing_xyz: tuple[float, float, float]
    direction: tuple[float, ...]  # row-major 3x3, ITK order
    shape_irc: tuple[int, int, int]

    def __post_init__(self) -> None:
        if len(self.origin_xyz) != 3 or len(self.spacing_xyz) != 3 or len(self.direction) != 9:
            raise ValueError("Geometry needs a 3-vector origin and spacing and a 3x3 direction")
        if len(self.shape_irc) != 3:
            raise ValueError("Geometry needs a 3D shape in (index, row, col) order")
        values = (*self.origin_xyz, *self.spacing_xyz, *self.direction)
        if not all(np.isfinite(values)):
            raise ValueError(
                f"origin, spacing and direction must be finite, got origin {self.origin_xyz}, "
                f"spacing {self.spacing_xyz}, direction {self.direction}"
            )
        if min(self.spacing_xyz) <= 0:
            raise ValueError(f"voxel spacing must be positive, got {self.spacing_xyz}")
        det = float(np.linalg.det(self.direction_matrix))
        if not np.isclose(abs(det), 1.0, atol=1e-3):
            raise ValueError(
                f"direction matrix must be orthonormal (|det| = 1), got det = {det:.4f}"
            )

    @classmethod
    def from_arrays(
        cls,
        origin_xyz: np.ndarray | tuple[float, ...],
        spacing_xyz: np.ndarray | tuple[float, ...],
        direction: np.ndarray | tuple[float, ...],
        shape_irc: tuple[int, ...],
    ) -> Geometry:
        return cls(
            origin_xyz=tuple(float(v) for v in np.ravel(origin_xyz)),
            spacing_xyz=tuple(float(v) for v in np.ravel(spacing_xyz)),
            direction=tuple(float(v) for v in np.ravel(direction)),
            shape_irc=tuple(int(v) for v in shape_irc),
        )

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @property
    def spacing_irc(self) -> tuple[float, float, float]:
        """Voxel size (mm) along the array's (index, row, col) axes."""
        return (self.spacing_xyz[2], self.spacing_xyz[1], self.spacing_xyz[0])

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing_xyz))


def geometry_to_json(geometry: Geometry) -> dict[str, list]:
    """A grid as JSON lists (the detection cache's and the training cache's metadata)."""
    return {
        "origin_xyz": list(geometry.origin_xyz),
        "spacing_xyz": list(geometry.spacing_xyz),
        "direction": list(geometry.direction),
        "shape_irc": list(geometry.shape_irc),
    }


def geometry_from_json(data: dict) -> Geometry:
    """The grid :func:`geometry_to_json` wrote."""
    return Geometry.from_arrays(
        data["origin_xyz"], data["spacing_xyz"], data["direction"], tuple(data["shape_irc"])
    )


@dataclass
class CT:
    """A chest CT in Hounsfield units.

    ``hu`` is int16 in (index, row, col) = (z, y, x) order, as SimpleITK's GetArrayFromImage gives.
    """

    hu: np.ndarray
    geometry: Geometry
    series_uid: str | None = None
    source: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"CT needs a 3D array, got shape {self.hu.shape}")
        if self.hu.dtype != np.int16:
            raise ValueError(f"CT holds int16 Hounsfield units, got {self.hu.dtype}")
        if tuple(self.hu.shape) != tuple(self.geometry.shape_irc):
            raise ValueError(
                f"array shape {self.hu.shape} does not match geometry {self.geometry.shape_irc}"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.hu.shape)

    def describe(self) -> str:
        g = self.geometry
        sx, sy, sz = g.spacing_xyz
        return (
            f"{self.series_uid or '(no series UID)'}: {g.shape_irc[2]}x{g.shape_irc[1]}x"
            f"{g.shape_irc[0]} voxels, spacing {sx:.3f}x{sy:.3f}x{sz:.3f} mm, "
            f"HU {int(self.hu.min())}..{int(self.hu.max())}"
        )
