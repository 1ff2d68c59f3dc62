"""Write the module's findings with Slicer's own storage nodes, so Slicer reads them back as-is.

Files per case: ``nodules.seg.nrrd`` (one segment per finding), ``findings-<band>.mrk.json`` (one
point list per malignancy band; Slicer has no per-point colour), ``findings.csv`` (the table).
Storage nodes are created outside the scene: saving never adds nodes to it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import slicer

from lungcad.pipeline import DetectionResult, MalignancyBand
from LungNoduleCADLib.scene import OutputNodes, segmentation_for_file

log = logging.getLogger(__name__)

SEGMENTATION_FILE = "nodules.seg.nrrd"
TABLE_FILE = "findings.csv"


def points_file(band: MalignancyBand) -> str:
    return f"findings-{band.value}.mrk.json"


@dataclass(frozen=True)
class SavedFindings:
    """Where one case's findings were written."""

    segmentation: Path
    points: dict[MalignancyBand, Path]
    table: Path

    def all(self) -> list[Path]:
        return [self.segmentation, *self.points.values(), self.table]


class FindingsWriteError(OSError):
    """A storage node refused to write; the message names the file."""


def _write(storage: Any, node: Any, path: Path) -> Path:
    storage.SetFileName(str(path))
    if not storage.WriteData(node):
        raise FindingsWriteError(f"{path}: Slicer could not write {node.GetClassName()}")
    return path


def save_findings(
    result: DetectionResult, outputs: OutputNodes, folder: Path, case_id: str | None = None
) -> SavedFindings:
    """Write the findings shown by ``outputs`` (computed as ``result``) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    name = case_id or outputs.segmentation.GetName()
    segmentation = segmentation_for_file(result.findings, result.geometry, name=name)
    seg_storage = slicer.vtkMRMLSegmentationStorageNode()
    seg_storage.CropToMinimumExtentOn()  # otherwise every file spans the whole CT
    seg_path = _write(seg_storage, segmentation, folder / SEGMENTATION_FILE)
    points = {
        band: _write(slicer.vtkMRMLMarkupsJsonStorageNode(), node, folder / points_file(band))
        for band, node in outputs.points.items()
    }
    table = _write(slicer.vtkMRMLTableStorageNode(), outputs.table, folder / TABLE_FILE)
    log.info("wrote %d findings to %s", len(result.findings), folder)
    return SavedFindings(seg_path, points, table)
