"""The module's scene nodes written with Slicer's own storage nodes, beside the engine's files.

The engine writes every per-case file (:func:`lungcad.reports.write_case_outputs`). What only the
scene knows, the nodes as shown and as the user left them, Slicer writes itself into the case's
``slicer/`` folder: ``nodules.seg.nrrd`` (the segmentation node), ``findings-<band>.mrk.json``
(one point list per malignancy band; Slicer has no per-point colour) and ``findings.csv`` (the
findings table, with ``findings.schema.csv``: its column types and units). Storage nodes are
created outside the scene: writing never adds nodes to it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import slicer

from lungcad.pipeline import MalignancyBand
from LungNoduleCADLib.output_nodes import OutputNodes

log = logging.getLogger(__name__)

SLICER_FOLDER = "slicer"
SEGMENTATION_FILE = "nodules.seg.nrrd"
TABLE_FILE = "findings.csv"
#: results.json ``outputs`` kinds of the files written here.
SEGMENTATION_KIND = "slicer_segmentation"
TABLE_KIND = "slicer_table"
TABLE_SCHEMA_KIND = "slicer_table_schema"


def points_file(band: MalignancyBand) -> str:
    return f"findings-{band.value}.mrk.json"


def points_kind(band: MalignancyBand) -> str:
    return f"slicer_points_{band.value}"


class SceneWriteError(OSError):
    """A storage node refused to write; the message names the file."""


def _write(storage: Any, node: Any, path: Path) -> Path:
    storage.SetFileName(str(path))
    if not storage.WriteData(node):
        raise SceneWriteError(f"{path}: Slicer could not write {node.GetClassName()}")
    return path


def _compact_copy(node: Any) -> Any:
    """A scene-less copy of a segmentation node whose segments share as few labelmap layers as
    their voxels allow: the scene keeps one layer per segment (cheap threshold updates), and
    Slicer writes every layer over the union of all extents."""
    copy = slicer.vtkMRMLSegmentationNode()
    copy.SetName(node.GetName())
    copy.GetSegmentation().DeepCopy(node.GetSegmentation())
    copy.GetSegmentation().CollapseBinaryLabelmaps(False)
    return copy


def write_scene_files(outputs: OutputNodes, case_folder: Path) -> dict[str, Path]:
    """Write the output nodes into ``case_folder/slicer``; returns {kind: path} (results.json's
    ``outputs`` kinds)."""
    folder = Path(case_folder) / SLICER_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    seg_storage = slicer.vtkMRMLSegmentationStorageNode()
    seg_storage.CropToMinimumExtentOn()  # otherwise every file spans the whole CT
    written = {
        SEGMENTATION_KIND: _write(
            seg_storage, _compact_copy(outputs.segmentation), folder / SEGMENTATION_FILE
        )
    }
    for band, node in outputs.points.items():
        storage = slicer.vtkMRMLMarkupsJsonStorageNode()
        written[points_kind(band)] = _write(storage, node, folder / points_file(band))
    storage = slicer.vtkMRMLTableStorageNode()
    written[TABLE_KIND] = _write(storage, outputs.table, folder / TABLE_FILE)
    schema = storage.GetSchemaFileName()
    if schema and Path(schema).is_file():
        written[TABLE_SCHEMA_KIND] = Path(schema)
    log.info("wrote the scene's findings to %s", folder)
    return written
