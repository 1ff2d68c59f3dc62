"""Scalar volume node <-> the engine's CT, the one place that crosses between RAS and LPS.

A volume node stores its voxels in (k, j, i) order (slicer.util.arrayFromVolume) and places them
with the 4x4 IJK-to-RAS matrix; the engine's CT stores (index, row, col) = (k, j, i) with an LPS
origin, spacing and ITK direction. The two differ only by the sign of the first two world axes.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import vtk
from vtk.util import numpy_support

from lungcad.ct import CT, Geometry

log = logging.getLogger(__name__)

#: LPS <-> RAS: negate x and y (its own inverse).
_FLIP = np.diag([-1.0, -1.0, 1.0])
_INT16 = np.iinfo(np.int16)
#: Where the series UID travels on a volume node (Slicer's DICOM loader keeps instance UIDs only).
SERIES_UID_ATTRIBUTE = "LungNoduleCAD.SeriesUID"


class VolumeConversionError(ValueError):
    """The volume node cannot be handed to the engine (no image, not 3D, sheared, warped)."""


def _matrix_to_numpy(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _numpy_to_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def ijk_to_ras_matrix(geometry: Geometry) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix of a grid (i = col, j = row, k = index)."""
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = geometry.direction_matrix * np.asarray(geometry.spacing_xyz)
    ijk_to_lps[:3, 3] = geometry.origin_xyz
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    return lps_to_ras @ ijk_to_lps


def geometry_from_ijk_to_ras(ijk_to_ras: np.ndarray, shape_irc: tuple[int, int, int]) -> Geometry:
    """The engine geometry of a grid placed by a 4x4 IJK-to-RAS matrix.

    Raises :class:`VolumeConversionError` for a sheared or degenerate matrix: the engine (like
    ITK) needs an orthonormal direction.
    """
    lps = _FLIP @ np.asarray(ijk_to_ras, dtype=np.float64)[:3, :]
    axes = lps[:, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if np.any(spacing <= 0):
        raise VolumeConversionError(f"the volume has a zero voxel size: {spacing}")
    direction = axes / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise VolumeConversionError(
            "the volume's voxel axes are not perpendicular (sheared IJK-to-RAS); "
            "resample it (Resample Scalar/Vector/DWI Volume) before running LungNoduleCAD"
        )
    return Geometry.from_arrays(lps[:, 3], spacing, direction, shape_irc)


def geometry_of_volume_node(volume_node: Any) -> Geometry:
    """The engine geometry of a volume node's grid, without copying its voxels."""
    image = volume_node.GetImageData() if volume_node is not None else None
    if image is None:
        raise VolumeConversionError("the input volume has no image data")
    dims = image.GetDimensions()
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return geometry_from_ijk_to_ras(_matrix_to_numpy(matrix), (dims[2], dims[1], dims[0]))


def same_grid(a: Geometry, b: Geometry, tolerance_mm: float = 1e-3) -> bool:
    """Whether two geometries describe the same voxels (up to float noise)."""
    return (
        tuple(a.shape_irc) == tuple(b.shape_irc)
        and np.allclose(a.origin_xyz, b.origin_xyz, atol=tolerance_mm)
        and np.allclose(a.spacing_xyz, b.spacing_xyz, atol=tolerance_mm)
        and np.allclose(a.direction, b.direction, atol=1e-5)
    )


def ct_from_volume_node(volume_node: Any) -> CT:
    """The engine's CT for a scalar volume node, in the node's own (untransformed) frame.

    Voxels are rounded to int16 Hounsfield units (values outside int16 are clipped, with a
    warning); the node's parent transform, if any, is not applied: outputs are placed under the
    same transform, so positions agree in the views.
    """
    image = volume_node.GetImageData() if volume_node is not None else None
    if image is None:
        raise VolumeConversionError("the input volume has no image data")
    if image.GetNumberOfScalarComponents() != 1:
        raise VolumeConversionError(
            f"the input volume has {image.GetNumberOfScalarComponents()} components per voxel; "
            "a CT has one"
        )
    dims = image.GetDimensions()  # (i, j, k)
    shape_irc = (dims[2], dims[1], dims[0])
    if min(shape_irc) < 2:
        raise VolumeConversionError(f"the input volume is not 3D: {dims[0]}x{dims[1]}x{dims[2]}")
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    voxels = scalars.reshape(shape_irc)
    if voxels.dtype != np.int16:
        low, high = float(voxels.min()), float(voxels.max())
        if low < _INT16.min or high > _INT16.max:
            log.warning("clipping voxel values %.0f..%.0f to the int16 range", low, high)
        voxels = np.clip(np.rint(voxels), _INT16.min, _INT16.max).astype(np.int16)
    else:
        voxels = voxels.copy()
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    geometry = geometry_from_ijk_to_ras(_matrix_to_numpy(matrix), shape_irc)
    # our own attribute (set when we made the node), else the DICOM loader's subject hierarchy UID
    from LungNoduleCADLib.mrml import dicom_series_uid  # imports slicer: only when called

    series_uid = volume_node.GetAttribute(SERIES_UID_ATTRIBUTE) or dicom_series_uid(volume_node)
    return CT(hu=voxels, geometry=geometry, series_uid=series_uid)


def update_volume_node_from_ct(volume_node: Any, ct: CT) -> Any:
    """Put a CT's voxels and geometry into an existing scalar volume node (short voxels)."""
    k, j, i = ct.hu.shape
    image = vtk.vtkImageData()
    image.SetDimensions(i, j, k)
    flat = np.ascontiguousarray(ct.hu).ravel()
    array = numpy_support.numpy_to_vtk(flat, deep=True, array_type=vtk.VTK_SHORT)
    image.GetPointData().SetScalars(array)
    volume_node.SetIJKToRASMatrix(_numpy_to_matrix(ijk_to_ras_matrix(ct.geometry)))
    volume_node.SetAndObserveImageData(image)
    if ct.series_uid:
        volume_node.SetAttribute(SERIES_UID_ATTRIBUTE, ct.series_uid)
    return volume_node


def add_volume_node_from_ct(scene: Any, ct: CT, name: str = "CT") -> Any:
    """A new scalar volume node in ``scene`` holding ``ct``, with a display node (lung window)."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    update_volume_node_from_ct(node, ct)
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is not None:
        display.AutoWindowLevelOff()
        display.SetWindowLevel(1500, -600)
        color = scene.GetNodeByID("vtkMRMLColorTableNodeGrey")
        if color is not None:
            display.SetAndObserveColorNodeID(color.GetID())
    return node


def voxel_to_ras(volume_node: Any, ijk: tuple[float, float, float]) -> np.ndarray:
    """RAS position of a continuous voxel (i, j, k) of a volume node (its own frame)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return (_matrix_to_numpy(matrix) @ np.array([*ijk, 1.0]))[:3]
