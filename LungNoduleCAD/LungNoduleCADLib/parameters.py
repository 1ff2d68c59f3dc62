# Parameter names are camelCase, as Slicer's parameter nodes and .ui files use them:
# ruff: noqa: N815
"""The module's typed parameters, one field per widget the panel binds to the parameter node.

Inside Slicer the module file turns :class:`LungNoduleCADParameters` into a parameter node
wrapper (``slicer.parameterNodeWrapper``) by subclassing it; ``slicer-core`` has no wrapper, so the
class stays a plain annotated class there and tests read its fields and defaults directly. The
``Annotated`` markers are Slicer's own when available, stand-ins with the same fields otherwise.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import slicer

from lungcad.devices import DEVICES, Device

try:  # inside Slicer
    from slicer.parameterNodeWrapper import Choice, WithinRange
except ImportError:  # slicer-core: same fields, no GUI binding

    @dataclass(frozen=True)
    class WithinRange:  # type: ignore[no-redef]
        minimum: float
        maximum: float

    @dataclass(frozen=True)
    class Choice:  # type: ignore[no-redef]
        choices: tuple


#: lungcad.pipeline.MIN_SEGMENTATION_THRESHOLD and MIN_NODULE_THRESHOLD (the lowest thresholds a
#: result can be refiltered to: below them the map was not kept, or candidates have no malignancy
#: score), repeated here because importing the pipeline imports PyTorch, which the module may
#: still have to install; so are the defaults, lungcad.pipeline.Thresholds() (a test keeps them
#: equal).
MIN_SEGMENTATION_THRESHOLD = 0.2
MIN_NODULE_THRESHOLD = 0.1


class LungNoduleCADParameters:
    """What one run needs and where its results go (each field is a parameter-node entry).

    ``modelFolder`` empty means the weights bundled with the extension. The output node fields
    are filled in by the logic; the panel only shows them.
    """

    inputVolume: slicer.vtkMRMLScalarVolumeNode
    device: Annotated[str, Choice(DEVICES)] = Device.AUTO.value
    segmentationThreshold: Annotated[float, WithinRange(MIN_SEGMENTATION_THRESHOLD, 1.0)] = 0.5
    noduleThreshold: Annotated[float, WithinRange(MIN_NODULE_THRESHOLD, 1.0)] = 0.5
    malignancyThreshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    modelFolder: str = ""
    outputSegmentation: slicer.vtkMRMLSegmentationNode
    outputBenignPoints: slicer.vtkMRMLMarkupsFiducialNode
    outputIndeterminatePoints: slicer.vtkMRMLMarkupsFiducialNode
    outputSuspiciousPoints: slicer.vtkMRMLMarkupsFiducialNode
    outputTable: slicer.vtkMRMLTableNode


def parameter_names() -> tuple[str, ...]:
    """Every field name, in declaration order (the names the .ui binds with SlicerParameterName)."""
    return tuple(typing.get_type_hints(LungNoduleCADParameters, include_extras=True))


def field_range(name: str) -> tuple[float, float] | None:
    """The (minimum, maximum) a float field is annotated with, or None."""
    hint = typing.get_type_hints(LungNoduleCADParameters, include_extras=True)[name]
    for marker in getattr(hint, "__metadata__", ()):
        if hasattr(marker, "minimum") and hasattr(marker, "maximum"):
            return float(marker.minimum), float(marker.maximum)
    return None


def thresholds_of(parameters: object):
    """The engine's Thresholds from a parameter node (or anything with the three fields)."""
    from lungcad.pipeline import Thresholds

    return Thresholds(
        segmentation=float(parameters.segmentationThreshold),
        nodule=float(parameters.noduleThreshold),
        malignancy=float(parameters.malignancyThreshold),
    )


#: The sub-folder of the user's scene (or documents) folder that Export starts in.
EXPORT_FOLDER_NAME = "LungNoduleCAD"


def default_export_folder(scene_path: str | None, home: Path | None = None) -> Path:
    """Where Export starts: ``LungNoduleCAD`` in Slicer's default scene folder (its "Default
    scene location" setting), else in the user's Documents (else home) folder, never the
    process's working folder (on Windows, Slicer's install folder)."""
    if scene_path:
        return Path(scene_path) / EXPORT_FOLDER_NAME
    home = Path.home() if home is None else home
    documents = home / "Documents"
    return (documents if documents.is_dir() else home) / EXPORT_FOLDER_NAME
