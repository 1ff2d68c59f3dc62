"""The DICOM outputs of one case, written beside its other files when they are asked for.

For a DICOM series input whose identity is complete (see :mod:`lungcad.dicom_out.identity`):
nodules.seg.dcm (when there are findings; a SEG needs at least one segment), nodules.sr.dcm and
report.pdf. For any other input report.pdf alone, with a one-line note that says why there is no
SEG or SR (not a DICOM series, or the UIDs it lacks). results.json then records, under
``dicom``, the UIDs the outputs reference and carry (no patient data) and the note.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from lungcad.ct import CT
from lungcad.dicom_out.algorithm import Algorithm
from lungcad.dicom_out.identity import DicomIdentity, DicomIdentityError, read_dicom_identity
from lungcad.dicom_out.pdf import write_pdf
from lungcad.dicom_out.seg import write_seg
from lungcad.dicom_out.sr import write_sr
from lungcad.reports.case import ExtraWriter
from lungcad.reports.common import ResultLike

__all__ = [
    "DICOM_OUTPUT_FILES",
    "DICOM_OUT_OPTION",
    "DicomOutputs",
    "algorithm_for",
    "case_writer",
    "write_dicom_outputs",
]

log = logging.getLogger(__name__)

#: kind -> file name, as results.json's ``outputs`` lists them.
DICOM_OUTPUT_FILES = {
    "dicom_seg": "nodules.seg.dcm",
    "dicom_sr": "nodules.sr.dcm",
    "report_pdf": "report.pdf",
}
NOT_DICOM_NOTE = "not a DICOM series: report.pdf only, no DICOM SEG or SR"


@dataclass(frozen=True)
class DicomOutputs:
    """What was written: ``files`` kind -> file name; ``note`` says why SEG/SR are missing;
    ``record`` is results.json's ``dicom`` section."""

    files: dict[str, str]
    note: str | None = None
    record: dict[str, Any] = field(default_factory=dict)


def _identity(
    ct: CT, source: Path | None, dicom_files: Sequence[Path | str] | None
) -> tuple[DicomIdentity | None, str | None]:
    if dicom_files is None and (source is None or not Path(source).is_dir()):
        return None, NOT_DICOM_NOTE
    try:
        identity = read_dicom_identity(ct, source, files=dicom_files)
    except DicomIdentityError as exc:
        return None, f"DICOM headers not usable ({exc}): report.pdf only, no DICOM SEG or SR"
    if not identity.complete:
        lacks = ", ".join(identity.missing)
        return identity, f"the series lacks {lacks}: report.pdf only, no DICOM SEG or SR"
    return identity, None


def write_dicom_outputs(
    result: ResultLike,
    ct: CT,
    folder: Path | str,
    algorithm: Algorithm,
    *,
    case_id: str,
    source: Path | str | None = None,
    canonical: sitk.Image | None = None,
    overwrite: bool = False,
    dicom_files: Sequence[Path | str] | None = None,
) -> DicomOutputs:
    """Write the case's SEG, SR and PDF (or the PDF alone) into ``folder``.

    The source series is the DICOM folder ``source`` (default ``ct.source``) or, when given,
    ``dicom_files`` (e.g. what Slicer's DICOM database holds for the volume's instance UIDs).
    """
    folder = Path(folder)
    source = Path(source) if source is not None else ct.source
    identity, note = _identity(ct, source, dicom_files)
    files: dict[str, str] = {}
    record: dict[str, Any] = {}
    if note is None and identity is not None:
        seg = None
        if result.findings:
            seg = write_seg(
                result, identity, algorithm, folder / DICOM_OUTPUT_FILES["dicom_seg"],
                overwrite=overwrite,
            )  # fmt: skip
            files["dicom_seg"] = seg.path.name
            record["seg"] = {
                "series_instance_uid": seg.series_instance_uid,
                "sop_instance_uid": seg.sop_instance_uid,
                "segment_numbers": {str(k): v for k, v in seg.segment_numbers.items()},
            }
        sr_path = folder / DICOM_OUTPUT_FILES["dicom_sr"]
        write_sr(result, identity, algorithm, seg, sr_path, overwrite=overwrite)
        files["dicom_sr"] = sr_path.name
        record.update(
            study_instance_uid=identity.study_instance_uid,
            series_instance_uid=identity.series_instance_uid,
            frame_of_reference_uid=identity.frame_of_reference_uid,
            frame_of_reference_derived=identity.frame_of_reference_derived,
        )
    pdf = write_pdf(
        result, ct, algorithm, identity, folder / DICOM_OUTPUT_FILES["report_pdf"],
        case_id=case_id, source=source, canonical=canonical, overwrite=overwrite,
    )  # fmt: skip
    files["report_pdf"] = pdf.name
    if overwrite:  # a SEG or SR of an earlier run must not pass for this one's
        for kind, name in DICOM_OUTPUT_FILES.items():
            if kind not in files:
                (folder / name).unlink(missing_ok=True)
    record["note"] = note
    if note:
        log.info("%s: %s", case_id, note)
    return DicomOutputs(files=files, note=note, record=record)


#: The run option (fingerprint) that says a case's results include the DICOM outputs.
DICOM_OUT_OPTION = "dicom_out"


def algorithm_for(model_sha256: dict[str, str], models: object | None = None) -> Algorithm:
    """The Algorithm of a run: the weights' SHA-256s, and what the loaded models' cards (where
    ``models`` has ``cards``) say they were trained on."""
    cards = getattr(models, "cards", None) or {}
    trained_on = {task: card.trained_on for task, card in cards.items()}
    return Algorithm(dict(model_sha256), trained_on=trained_on)


def case_writer(algorithm: Algorithm, notes: dict[str, str]) -> ExtraWriter:
    """The cohort runner's extra writer: each case's DICOM outputs; a case's note (why SEG and
    SR are missing) goes into ``notes`` under its case id (its folder's name)."""

    def write(result: ResultLike, ct: CT, folder: Path) -> tuple[dict[str, str], dict[str, Any]]:
        out = write_dicom_outputs(
            result, ct, folder, algorithm, case_id=folder.name, source=ct.source, overwrite=True
        )
        if out.note:
            notes[folder.name] = out.note
        return out.files, {"dicom": out.record}

    return write
