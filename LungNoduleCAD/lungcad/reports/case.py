"""All per-case outputs in one folder, written so that a finished case is recognisable.

OUT/<case_id>/ gets candidates.csv, nodules.seg.nrrd, findings.mrk.json, overlay.png,
detection.npz and, last, results.json: a folder whose results.json loads (see
:func:`lungcad.reports.results_json.read_results`) holds a complete case, which is what the
cohort runner's resume checks. Overwriting first removes the old results.json, so an interrupted
rewrite is never mistaken for a finished one. A series UID that is not a DICOM UID is kept out of
the files (see :func:`lungcad.safe_names.checked_series_uid`): the case id stands in for it.

A caller with more files of its own (Slicer writes its scene nodes with its storage nodes; ``lungcad
detect --dicom-out`` writes DICOM SEG, SR and a PDF) passes an :data:`ExtraWriter`: it runs after
the engine's files and before results.json, so its files are part of a finished case too;
results.json lists them under ``outputs`` and takes the new top-level keys it returns.
:func:`chain_writers` runs several.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from lungcad.ct import CT
from lungcad.reports.candidates_csv import write_candidates_csv
from lungcad.reports.common import OutputExistsError, ResultLike
from lungcad.reports.markups import write_markups_json
from lungcad.reports.overlay import write_overlay_png
from lungcad.reports.results_json import result_warnings, write_results_json
from lungcad.reports.segmentation import write_segmentation
from lungcad.safe_names import checked_series_uid

__all__ = [
    "OUTPUT_FILES",
    "CaseOutputs",
    "ExtraOutputs",
    "ExtraWriter",
    "chain_writers",
    "write_case_outputs",
]

log = logging.getLogger(__name__)

#: kind -> file name, in the order they are written (results.json last).
OUTPUT_FILES = {
    "candidates": "candidates.csv",
    "segmentation": "nodules.seg.nrrd",
    "markups": "findings.mrk.json",
    "overlay": "overlay.png",
    "detection": "detection.npz",
    "results": "results.json",
}

#: What an extra writer wrote: {kind: file (a path in the folder, or its name there)} and new
#: top-level keys for results.json (never replacing a standard one).
ExtraOutputs = tuple[Mapping[str, Path | str], Mapping[str, Any]]
#: Writes more files for a case into its folder: (result, ct, folder) -> ExtraOutputs.
ExtraWriter = Callable[[ResultLike, CT, Path], ExtraOutputs]


def chain_writers(*writers: ExtraWriter | None) -> ExtraWriter | None:
    """One writer running each of ``writers`` (None ones skipped) in turn; None if none is left."""
    active = [w for w in writers if w is not None]
    if len(active) <= 1:
        return active[0] if active else None

    def write(result: ResultLike, ct: CT, folder: Path) -> ExtraOutputs:
        files: dict[str, Path | str] = {}
        keys: dict[str, Any] = {}
        for writer in active:
            more_files, more_keys = writer(result, ct, folder)
            files.update(more_files)
            keys.update(more_keys)
        return files, keys

    return write


@dataclass(frozen=True)
class CaseOutputs:
    """Where one case's files are."""

    folder: Path
    results: Path
    candidates: Path
    segmentation: Path
    markups: Path
    overlay: Path
    detection: Path
    warnings: tuple[str, ...] = ()  # as written into results.json
    extra: Mapping[str, Path] = field(default_factory=dict)  # what an ExtraWriter wrote


def write_case_outputs(
    result: ResultLike,
    ct: CT,
    folder: Path | str,
    *,
    case_id: str | None = None,
    source: Path | str | None = None,
    overwrite: bool = False,
    canonical: sitk.Image | None = None,
    fingerprint: dict[str, Any] | None = None,
    rerun_reason: str | None = None,
    extra_writer: ExtraWriter | None = None,
) -> CaseOutputs:
    """Write every per-case file for ``result`` (computed on ``ct``) into ``folder``.

    Refuses (OutputExistsError, before writing anything) when any of the files exists and
    ``overwrite`` is False. ``case_id`` names the case in the files (the csv's seriesuid column
    when the CT has no valid series UID); ``source`` is the input path recorded in results.json,
    ``fingerprint`` and ``rerun_reason`` what resume needs (:mod:`lungcad.fingerprint`);
    ``extra_writer`` writes the caller's own files before results.json (see the module doc).
    """
    folder = Path(folder)
    paths = {kind: folder / name for kind, name in OUTPUT_FILES.items()}
    existing = [p.name for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{folder}: already holds {', '.join(existing)}; pass overwrite=True to replace them"
        )
    folder.mkdir(parents=True, exist_ok=True)
    paths["results"].unlink(missing_ok=True)
    uid, _ = checked_series_uid(result.series_uid)
    name = case_id or uid or "case"
    seriesuid = uid or name
    write_candidates_csv(result, paths["candidates"], seriesuid=seriesuid, overwrite=True)
    write_segmentation(result, paths["segmentation"], overwrite=True)
    write_markups_json(result, paths["markups"], overwrite=True)
    write_overlay_png(result, ct, paths["overlay"], title=name, overwrite=True, canonical=canonical)
    result.save(paths["detection"])  # DetectionResult.save writes atomically
    outputs = {k: v.name for k, v in paths.items() if k != "results"}
    extra_files, extra_keys = (
        extra_writer(result, ct, folder) if extra_writer is not None else ({}, {})
    )
    extra = {kind: folder / path for kind, path in extra_files.items()}  # absolute stays absolute
    outputs.update({kind: path.relative_to(folder).as_posix() for kind, path in extra.items()})
    write_results_json(
        result,
        paths["results"],
        source=source,
        case_id=case_id,
        outputs=outputs,
        overwrite=True,
        fingerprint=fingerprint,
        rerun_reason=rerun_reason,
        extra=extra_keys,
    )
    log.info("wrote %s outputs to %s", name, folder)
    return CaseOutputs(
        folder=folder,
        results=paths["results"],
        candidates=paths["candidates"],
        segmentation=paths["segmentation"],
        markups=paths["markups"],
        overlay=paths["overlay"],
        detection=paths["detection"],
        warnings=tuple(result_warnings(result)),
        extra=extra,
    )
