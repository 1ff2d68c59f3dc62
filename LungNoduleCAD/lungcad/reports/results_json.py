"""results.json: one case's findings and where they came from, in a versioned schema.

Layout (schema ``lungcad.results/1``)::

    schema, lungcad_version, case_id
    input: path, series_uid, shape_irc, size_xyz, spacing_xyz, origin_xyz, direction (LPS, ITK);
           series_uid is null when the CT's UID is not a DICOM UID (digits and dots, at most 64
           characters): ``series_uid_rejected`` then holds it escaped and capped, and a warning
           says so (added within schema 1)
    thresholds: segmentation, nodule, malignancy
    models: {task: version}, timings_s: {step: seconds}
    summary: finding_count, suspicious_count, highest_malignancy, text, lung_rads (the exam's
             Lung-RADS v2022 baseline category from the findings above the thresholds:
             category, descriptor, management, finding_numbers, assumed_type_count, version,
             decision_support, text; null when a finding has none; added within schema 1)
    candidate_count
    warnings: [one line each] where the scan lies outside what the models know (training
              range, lungs not wholly in the field); added within schema 1 (a new optional key
              that older readers ignore): a file without it predates the checks
    findings: [number, label, kind ("nodule", or "mass" above 30 mm; added within schema 1),
               center_lps, center_irc, diameter_mm, volume_mm3, mean_hu, p_nodule,
               p_malignant, band, voxel_count, lung_rads_measurements, lung_rads]
              diameter_mm stays the equivalent-sphere diameter of volume_mm3 (canonical grid).
              lung_rads_measurements (added within schema 1; null for findings made outside the
              pipeline): long_axis_mm, short_axis_mm, mean_diameter_mm (Lung-RADS, 0.1 mm) on
              the axial cut at S = axial_s_mm, long_axis_lps / short_axis_lps (end points),
              solid_component (the same for the part at or above solid_hu_threshold HU, or
              null), volume_mm3 (on the CT's own grid, 1 mm3), recist_longest_mm.
              lung_rads (added within schema 1): category ("1", "2", "3", "4A", "4B", "4X"),
              type, type_source ("given" or "assumed solid"), margin, margin_source,
              mean_diameter_mm, solid_mean_diameter_mm (part-solid only), reason
    outputs: {kind: file name} of the other files written beside it
    fingerprint: input (files, bytes, mtime_ns, sha256), thresholds, models (task -> SHA-256),
                 options: what resume compares (:mod:`lungcad.fingerprint`); rerun_reason: why
                 this run redid a case found done before, else null (both added within schema 1:
                 a file without a fingerprint is rerun on resume)
    dicom: only with ``lungcad detect --dicom-out`` (added within schema 1): the UIDs the DICOM
           outputs reference and carry, and a note when SEG and SR were not written

The case writer writes this file last, so its presence with a valid schema means the case is done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lungcad import __version__
from lungcad.atomic import write_text_atomic
from lungcad.errors import LungCADError
from lungcad.reports.common import ResultLike, check_writable, round_floats
from lungcad.reports.lungrads_fields import exam_json, lung_rads_json, measurements_json
from lungcad.safe_names import checked_series_uid, printable

__all__ = [
    "RESULTS_SCHEMA",
    "ResultsFileError",
    "read_results",
    "result_warnings",
    "results_dict",
    "write_results_json",
]

RESULTS_SCHEMA = "lungcad.results/1"
_REQUIRED = (
    "schema", "input", "thresholds", "models", "timings_s", "summary", "candidate_count",
    "findings",
)  # fmt: skip


class ResultsFileError(LungCADError, ValueError):
    """A results.json is missing, unreadable, of another schema, or incomplete."""


def result_warnings(result: ResultLike) -> list[str]:
    """The result's caveats plus one for a series UID that is not a DICOM UID."""
    # stand-ins for a result (tests, truth results) may carry no warnings
    warnings = [str(w) for w in getattr(result, "warnings", ())]
    _, uid_warning = checked_series_uid(result.series_uid)
    return [*warnings, uid_warning] if uid_warning else warnings


def results_dict(
    result: ResultLike,
    *,
    source: Path | str | None = None,
    case_id: str | None = None,
    outputs: dict[str, str] | None = None,
    fingerprint: dict[str, Any] | None = None,
    rerun_reason: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document for ``result`` (plain types only); ``extra`` adds top-level keys."""
    g = result.geometry
    t = result.thresholds
    s = result.summary
    nz, ny, nx = g.shape_irc
    uid, uid_warning = checked_series_uid(result.series_uid)
    rejected = {"series_uid_rejected": printable(result.series_uid)} if uid_warning else {}
    doc = {
        "schema": RESULTS_SCHEMA,
        "lungcad_version": __version__,
        "case_id": case_id,
        "input": {
            "path": str(source) if source is not None else None,
            "series_uid": uid,
            **rejected,
            "shape_irc": [int(v) for v in g.shape_irc],
            "size_xyz": [int(nx), int(ny), int(nz)],
            "spacing_xyz": round_floats(g.spacing_xyz, 6),
            "origin_xyz": round_floats(g.origin_xyz, 6),
            "direction": round_floats(g.direction, 9),
        },
        "thresholds": {
            "segmentation": float(t.segmentation),
            "nodule": float(t.nodule),
            "malignancy": float(t.malignancy),
        },
        "models": dict(result.model_versions),
        "timings_s": {k: round(float(v), 3) for k, v in result.timings_s.items()},
        "summary": {
            "finding_count": int(s.finding_count),
            "suspicious_count": int(s.suspicious_count),
            "highest_malignancy": (
                None if s.highest_malignancy is None else round(float(s.highest_malignancy), 4)
            ),
            "text": s.text,
            # stand-ins for a result (tests, truth results) may carry a summary without it
            "lung_rads": exam_json(getattr(s, "lung_rads", None)),
        },
        "candidate_count": len(result.candidates),
        "warnings": result_warnings(result),
        "findings": [
            {
                "number": int(f.number),
                "label": f.label(),
                "kind": f.kind,
                "center_lps": round_floats(f.center_lps),
                "center_irc": round_floats(f.center_irc),
                "diameter_mm": round(float(f.diameter_mm), 3),
                "volume_mm3": round(float(f.volume_mm3), 3),
                "mean_hu": round(float(f.mean_hu), 1),
                "p_nodule": round(float(f.p_nodule), 4),
                "p_malignant": round(float(f.p_malignant), 4),
                "band": f.band(t.malignancy).value,
                "voxel_count": f.mask.voxel_count,
                "lung_rads_measurements": measurements_json(f.measurements),
                "lung_rads": lung_rads_json(f.lung_rads),
            }
            for f in result.findings
        ],
        "outputs": dict(outputs or {}),
        "fingerprint": fingerprint,
        "rerun_reason": rerun_reason,
    }
    clash = sorted(set(extra or {}) & set(doc))
    if clash:
        raise ValueError(f"extra results.json keys {clash} would replace the standard ones")
    return {**doc, **(extra or {})}


def write_results_json(
    result: ResultLike,
    path: Path | str,
    *,
    source: Path | str | None = None,
    case_id: str | None = None,
    outputs: dict[str, str] | None = None,
    overwrite: bool = False,
    fingerprint: dict[str, Any] | None = None,
    rerun_reason: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write results.json atomically; refuses an existing file unless ``overwrite``."""
    path = check_writable(Path(path), overwrite)
    doc = results_dict(
        result,
        source=source,
        case_id=case_id,
        outputs=outputs,
        fingerprint=fingerprint,
        rerun_reason=rerun_reason,
        extra=extra,
    )
    return write_text_atomic(path, json.dumps(doc, indent=2) + "\n")


def read_results(path: Path | str) -> dict[str, Any]:
    """Load a results.json and check it is ours and whole; ResultsFileError says what is wrong."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ResultsFileError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsFileError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("schema") != RESULTS_SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ResultsFileError(f"{path}: schema {found!r}, expected {RESULTS_SCHEMA!r}")
    missing = [key for key in _REQUIRED if key not in doc]
    if missing:
        raise ResultsFileError(f"{path}: incomplete, missing {', '.join(missing)}")
    if len(doc["findings"]) != doc["summary"].get("finding_count"):
        raise ResultsFileError(f"{path}: finding count does not match the findings listed")
    return doc
