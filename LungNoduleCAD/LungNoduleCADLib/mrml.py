"""The MRML scene and the module logics the LungNoduleCAD logic writes through.

Inside Slicer they come from ``slicer.mrmlScene`` and ``slicer.modules``; with the PyPI
``slicer-core`` package (no application, no Qt) :meth:`SlicerServices.standalone` builds a scene
with the same logics registered, so tests and batch scripts exercise real MRML code.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import slicer
import vtk


def in_slicer_application() -> bool:
    """True inside a running Slicer (GUI or --no-main-window), False with plain slicer-core."""
    return getattr(slicer, "app", None) is not None and hasattr(slicer, "mrmlScene")


@dataclass
class SlicerServices:
    """A scene plus the logics that create, load and save volumes, segmentations and markups."""

    scene: Any
    app_logic: Any
    volumes: Any
    segmentations: Any
    markups: Any
    tables: Any

    @classmethod
    def from_application(cls) -> SlicerServices:
        """The running Slicer's scene and module logics."""
        return cls(
            scene=slicer.mrmlScene,
            app_logic=slicer.app.applicationLogic(),
            volumes=slicer.modules.volumes.logic(),
            segmentations=slicer.modules.segmentations.logic(),
            markups=slicer.modules.markups.logic(),
            tables=slicer.modules.tables.logic(),
        )

    @classmethod
    def standalone(cls) -> SlicerServices:
        """A fresh scene with the Colors, SubjectHierarchy, Volumes, Segmentations, Markups and
        Tables logics registered, as Slicer's application does at start-up."""
        scene = slicer.vtkMRMLScene()
        app = slicer.vtkSlicerApplicationLogic()
        app.SetMRMLScene(scene)

        def register(logic: Any, name: str) -> Any:
            logic.SetMRMLApplicationLogic(app)
            logic.SetMRMLScene(scene)
            app.SetModuleLogic(name, logic)
            return logic

        app.SetColorLogic(register(slicer.vtkSlicerColorLogic(), "Colors"))
        register(slicer.vtkSlicerSubjectHierarchyModuleLogic(), "SubjectHierarchy")
        volumes = register(slicer.vtkSlicerVolumesLogic(), "Volumes")
        segmentations = register(slicer.vtkSlicerSegmentationsModuleLogic(), "Segmentations")
        markups = register(slicer.vtkSlicerMarkupsLogic(), "Markups")
        tables = register(slicer.vtkSlicerTablesLogic(), "Tables")
        return cls(scene, app, volumes, segmentations, markups, tables)

    @classmethod
    def current(cls) -> SlicerServices:
        """The application's services inside Slicer, else a standalone scene."""
        return cls.from_application() if in_slicer_application() else cls.standalone()

    def close(self) -> None:
        """Drop every node of a standalone scene (Slicer's own scene is cleared, not closed)."""
        self.scene.Clear(0)


@contextlib.contextmanager
def slicer_globals(services: SlicerServices) -> Iterator[SlicerServices]:
    """Point ``slicer.mrmlScene`` and ``slicer.modules`` at ``services`` for slicer.util helpers.

    Inside Slicer the real globals are already right and are left alone; with slicer-core the
    previous values (usually none) are restored on exit.
    """
    if in_slicer_application():
        yield services
        return
    missing = object()
    saved = {name: getattr(slicer, name, missing) for name in ("mrmlScene", "modules")}
    slicer.mrmlScene = services.scene
    slicer.modules = types.SimpleNamespace(
        volumes=types.SimpleNamespace(logic=lambda: services.volumes),
        segmentations=types.SimpleNamespace(logic=lambda: services.segmentations),
        markups=types.SimpleNamespace(logic=lambda: services.markups),
        tables=types.SimpleNamespace(logic=lambda: services.tables),
    )
    try:
        yield services
    finally:
        for name, value in saved.items():
            if value is missing:
                delattr(slicer, name)
            else:
                setattr(slicer, name, value)


def _subject_hierarchy(scene: Any) -> Any | None:
    """The scene's subject hierarchy node (None without the SubjectHierarchy logic)."""
    return slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)


def dicom_series_uid(volume_node: Any) -> str | None:
    """The Series Instance UID Slicer's DICOM loader gave the volume's subject hierarchy item.

    DICOMScalarVolumePlugin stores it as the item's UID named
    ``vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName()`` ("DICOM"); the volume node itself
    only carries the SOP instance UIDs (attribute "DICOM.instanceUIDs"). None for non-DICOM data.
    """
    scene = volume_node.GetScene()
    sh = _subject_hierarchy(scene) if scene is not None else None
    if sh is None:
        return None
    item = sh.GetItemByDataNode(volume_node)
    if not item:
        return None
    uid = sh.GetItemUID(item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName())
    return uid or None


def place_beside_volume(scene: Any, volume_node: Any, node: Any) -> None:
    """Put ``node``'s subject hierarchy item under the volume's parent (its DICOM study), so a
    patient's findings sit with the patient in the Data module; nothing for a top-level volume."""
    sh = _subject_hierarchy(scene)
    if sh is None:
        return
    volume_item = sh.GetItemByDataNode(volume_node)
    parent = sh.GetItemParent(volume_item) if volume_item else 0
    if not parent or parent == sh.GetSceneItemID():
        return
    node_item = sh.GetItemByDataNode(node)
    if not node_item:  # Slicer's Qt plugin logic makes items for new nodes; slicer-core does not
        sh.CreateItem(parent, node)
    elif sh.GetItemParent(node_item) != parent:
        sh.SetItemParent(node_item, parent)


def to_world(node: Any, position: tuple[float, float, float]) -> tuple[float, float, float]:
    """``position`` in ``node``'s own RAS frame, through its parent transforms into world RAS
    (what the views and ``JumpSlicesToLocation`` use); unchanged for an untransformed node."""
    parent = node.GetParentTransformNode()
    if parent is None:
        return tuple(float(v) for v in position)
    transform = vtk.vtkGeneralTransform()
    parent.GetTransformToWorld(transform)
    return tuple(float(v) for v in transform.TransformPoint([float(v) for v in position]))
