"""findings.mrk.json: the findings as Slicer point lists, one list per malignancy band.

Slicer has no per-point colour, so the points are grouped by :class:`MalignancyBand` and each list
carries its band colour (``color`` and ``selectedColor``: Slicer draws new points as selected).
Positions are LPS mm with ``"coordinateSystem": "LPS"``; Slicer converts them to its RAS scene
on load. Each point's label is ``N<number>``, its description the finding's numbers. Only bands
that hold findings get a list; with no findings the file holds one empty list, so it still loads.
The format follows Slicer's markups schema v1.0.3 (what vtkMRMLMarkupsJsonStorageNode reads).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lungcad.atomic import write_text_atomic
from lungcad.pipeline.findings import BAND_COLORS_RGB, Finding, MalignancyBand
from lungcad.reports.common import ResultLike, check_writable, round_floats

__all__ = ["MARKUPS_SCHEMA", "band_list_name", "markups_dict", "write_markups_json"]

MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
    "Resources/Schema/markups-schema-v1.0.3.json#"
)
#: Most worrying first, so the first list Slicer loads is the one to look at.
BAND_ORDER = (MalignancyBand.SUSPICIOUS, MalignancyBand.INDETERMINATE, MalignancyBand.BENIGN)
_IDENTITY = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
_NO_FINDINGS_COLOR = (0.6, 0.6, 0.6)


def band_list_name(band: MalignancyBand) -> str:
    return f"{band.value.capitalize()} nodules"


def point_description(f: Finding) -> str:
    return f"{f.label()}: {f.describe()}"


def _control_point(f: Finding) -> dict[str, Any]:
    return {
        "id": str(f.number),
        "label": f"N{f.number}",
        "description": point_description(f),
        "associatedNodeID": "",
        "position": round_floats(f.center_lps),
        "orientation": _IDENTITY,
        "selected": True,
        "locked": True,
        "visibility": True,
        "positionStatus": "defined",
    }


def _point_list(name: str, color: tuple[float, float, float], points: list[dict]) -> dict:
    rgb = [round(float(c), 4) for c in color]
    return {
        "type": "Fiducial",
        "name": name,
        "coordinateSystem": "LPS",
        "coordinateUnits": "mm",
        "locked": True,
        "fixedNumberOfControlPoints": False,
        "labelFormat": "N%d",
        "controlPoints": points,
        "measurements": [],
        "display": {
            "visibility": True,
            "opacity": 1.0,
            "color": rgb,
            "selectedColor": rgb,
            "propertiesLabelVisibility": False,
            "pointLabelsVisibility": True,
            "textScale": 3.0,
            "glyphType": "Sphere3D",
            "glyphScale": 3.0,
            "glyphSize": 5.0,
            "useGlyphScale": True,
        },
    }


def markups_dict(result: ResultLike) -> dict[str, Any]:
    """The markups JSON document for the result's findings."""
    threshold = result.thresholds.malignancy
    lists = []
    for band in BAND_ORDER:
        members = [f for f in result.findings if f.band(threshold) is band]
        if members:
            points = [_control_point(f) for f in members]
            lists.append(_point_list(band_list_name(band), BAND_COLORS_RGB[band], points))
    if not lists:
        lists.append(_point_list("Nodules (none found)", _NO_FINDINGS_COLOR, []))
    return {"@schema": MARKUPS_SCHEMA, "markups": lists}


def write_markups_json(result: ResultLike, path: Path | str, *, overwrite: bool = False) -> Path:
    """Write findings.mrk.json atomically; refuses an existing file unless ``overwrite``."""
    path = check_writable(Path(path), overwrite)
    return write_text_atomic(path, json.dumps(markups_dict(result), indent=2) + "\n")
