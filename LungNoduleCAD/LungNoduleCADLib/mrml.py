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
