"""The DICOM identity of an input series, read with pydicom, so outputs can reference it.

SimpleITK reads the voxels (:mod:`lungcad.ctio`); what a DICOM Segmentation or Structured Report
must copy or reference is read here from the same files' headers: the patient and study modules,
the series and its Frame of Reference, and per slice the SOP Class and Instance UIDs with the
slice's position. Each slice is tied to the CT's index axis by projecting its Image Position
(Patient) into the CT's grid, so a SEG frame and the slice it was cut from always agree, whatever
the files are called or in which order GDCM listed them.

None of this goes into results.json unless DICOM outputs are asked for: it holds the patient's
name, ID and birth date.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from lungcad.ct import CT
from lungcad.ctio import dicom_series_ids
from lungcad.errors import LungCADError
from lungcad.geometry import world_to_voxel

__all__ = [
    "DicomIdentity",
    "DicomIdentityError",
    "PatientStudy",
    "SliceIdentity",
    "derived_uid",
    "read_dicom_identity",
]

log = logging.getLogger(__name__)

#: A slice may sit this far (in voxels along the slice axis) from a CT index and still be it.
INDEX_TOLERANCE = 0.05
#: Root for UIDs derived by hashing (the UUID-derived arc ISO/IEC 9834-8 allows: 2.25.<int>).
_DERIVED_ROOT = "2.25."

#: PatientStudy field -> DICOM keyword: the Patient and General Study module attributes copied
#: into the SEG and SR (Type 2 there but Study Instance UID: an empty value is kept empty).
PATIENT_STUDY_KEYWORDS = {
    "patient_name": "PatientName",
    "patient_id": "PatientID",
    "issuer_of_patient_id": "IssuerOfPatientID",
    "patient_birth_date": "PatientBirthDate",
    "patient_sex": "PatientSex",
    "patient_age": "PatientAge",
    "study_instance_uid": "StudyInstanceUID",
    "study_date": "StudyDate",
    "study_time": "StudyTime",
    "study_id": "StudyID",
    "accession_number": "AccessionNumber",
    "referring_physician_name": "ReferringPhysicianName",
    "study_description": "StudyDescription",
}


class DicomIdentityError(LungCADError, ValueError):
    """The series' headers cannot be read or do not match the CT read from them."""


@dataclass(frozen=True)
class PatientStudy:
    """The patient and study modules as the source's first slice holds them ('' when absent)."""

    patient_name: str
    patient_id: str
    issuer_of_patient_id: str
    patient_birth_date: str
    patient_sex: str
    patient_age: str
    study_instance_uid: str
    study_date: str
    study_time: str
    study_id: str
    accession_number: str
    referring_physician_name: str
    study_description: str

    def as_elements(self) -> dict[str, str]:
        """keyword -> value, in DICOM keywords (what a pydicom Dataset takes)."""
        return {keyword: getattr(self, name) for name, keyword in PATIENT_STUDY_KEYWORDS.items()}


@dataclass(frozen=True)
class SliceIdentity:
    """One source image: its UIDs, where it sits, and which CT index it became."""

    sop_class_uid: str
    sop_instance_uid: str
    instance_number: int | None
    position_lps: tuple[float, float, float]  # Image Position (Patient), as stored
    index: int  # along the CT's index axis
    path: Path


@dataclass(frozen=True)
class DicomIdentity:
    """What DICOM outputs must copy from or reference in the input series.

    ``slices`` are in CT index order (``slices[k].index == k``). ``missing`` lists the required
    attributes the source lacks (empty UIDs of an anonymised export, say): DICOM objects that
    reference the series cannot be written then. ``frame_of_reference_derived`` is True when the
    source has no Frame of Reference UID and :attr:`frame_of_reference_uid` was derived from the
    series UID (the same every run), so that the SEG and SR still share one.
    """

    patient_study: PatientStudy
    series_instance_uid: str
    series_number: int | None
    series_description: str
    modality: str
    manufacturer: str
    frame_of_reference_uid: str
    frame_of_reference_derived: bool
    rows: int
    columns: int
    pixel_spacing: tuple[float, float]  # row spacing, column spacing (mm)
    orientation: tuple[float, ...]  # Image Orientation (Patient): row then column cosines
    slice_thickness: float | None  # as stored; None when the source does not say
    slice_spacing: float  # between the CT's slices (mm)
    specific_character_set: str
    slices: tuple[SliceIdentity, ...]
    missing: tuple[str, ...] = ()

    @property
    def study_instance_uid(self) -> str:
        return self.patient_study.study_instance_uid

    @property
    def complete(self) -> bool:
        """Whether SEG and SR can reference this series (every required UID present)."""
        return not self.missing

    def source_datasets(self) -> list[Dataset]:
        """One header-only dataset per slice (CT index order), what highdicom copies from."""
        return [self._slice_dataset(s) for s in self.slices]

    def _slice_dataset(self, s: SliceIdentity) -> Dataset:
        ds = Dataset()
        for keyword, value in self.patient_study.as_elements().items():
            setattr(ds, keyword, value)
        ds.SpecificCharacterSet = self.specific_character_set or "ISO_IR 100"
        ds.SOPClassUID = s.sop_class_uid
        ds.SOPInstanceUID = s.sop_instance_uid
        ds.SeriesInstanceUID = self.series_instance_uid
        ds.SeriesNumber = self.series_number
        ds.Modality = self.modality or "CT"
        ds.Manufacturer = self.manufacturer
        ds.FrameOfReferenceUID = self.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.InstanceNumber = s.instance_number
        ds.ImagePositionPatient = list(s.position_lps)
        ds.ImageOrientationPatient = list(self.orientation)
        ds.PixelSpacing = list(self.pixel_spacing)
        # Pixel Measures need a thickness: the slice spacing stands in where the source is silent
        ds.SliceThickness = (
            self.slice_thickness if self.slice_thickness is not None else self.slice_spacing
        )
        ds.Rows = self.rows
        ds.Columns = self.columns
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        return ds

    def describe(self) -> str:
        """One line for the report: who, which study and series (no UIDs but the series')."""
        ps = self.patient_study
        bits = [
            f"patient {ps.patient_name or '(no name)'} ID {ps.patient_id or '(none)'}",
            f"study {ps.study_date or '(no date)'} {ps.study_description}".rstrip(),
            f"series {self.series_number if self.series_number is not None else '-'} "
            f"{self.series_description}".rstrip(),
        ]
        return "; ".join(bits)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    return str(value).strip().strip("\x00").strip()


def _int_or_none(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def derived_uid(*parts: str) -> str:
    """A UID that is the same for the same ``parts`` (2.25. + 128 bits of their SHA-256)."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()[:16]
    return _DERIVED_ROOT + str(int.from_bytes(digest, "big"))


def _series_files(folder: Path, series_uid: str | None) -> list[str]:
    ids = dicom_series_ids(folder)
    uid = series_uid if series_uid in ids else (ids[0] if len(ids) == 1 else None)
    if uid is None:
        raise DicomIdentityError(
            f"{folder}: cannot tell which of its {len(ids)} DICOM series was read"
        )
    was_on = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(was_on)


def _read_header(path: str) -> Dataset:
    try:
        # force: files written without the preamble are DICOM too (ctio reads them)
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except (InvalidDicomError, OSError, ValueError) as exc:
        raise DicomIdentityError(f"{path}: header not readable by pydicom: {exc}") from exc


def _floats(ds: Dataset, keyword: str, n: int) -> tuple[float, ...] | None:
    value = ds.get(keyword)
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return values if len(values) == n else None


def read_dicom_identity(
    ct: CT, folder: Path | str | None = None, *, files: Sequence[Path | str] | None = None
) -> DicomIdentity:
    """The identity of the DICOM series ``ct`` was read from: the series in ``folder`` (default
    ``ct.source``) or, where the caller knows them (Slicer's DICOM database), its ``files``.

    Raises DicomIdentityError when the headers cannot be read or a slice does not land on one
    of the CT's indices (the files changed since the CT was read).
    """
    if files is not None:
        files = [str(f) for f in files]
        folder = Path(files[0]).parent if files else Path()
        if not files:
            raise DicomIdentityError("no DICOM files given")
    else:
        folder = Path(folder if folder is not None else ct.source or "")
        if not folder.is_dir():
            raise DicomIdentityError(f"{folder}: not a DICOM series folder")
        files = _series_files(folder, ct.series_uid)
    headers = [_read_header(f) for f in files]
    first = headers[0]
    n_index = ct.geometry.shape_irc[0]
    slices: list[SliceIdentity] = []
    missing: list[str] = []
    for path, ds in zip(files, headers, strict=True):
        position = _floats(ds, "ImagePositionPatient", 3)
        if position is None:
            raise DicomIdentityError(f"{path}: no usable Image Position (Patient)")
        k_float = float(world_to_voxel(position, ct.geometry)[0])
        k = round(k_float)
        if abs(k_float - k) > INDEX_TOLERANCE or not 0 <= k < n_index:
            raise DicomIdentityError(
                f"{path}: its position {position} is not a slice of the CT read from "
                f"{folder} (index {k_float:.2f} of {n_index})"
            )
        slices.append(
            SliceIdentity(
                sop_class_uid=_text(ds, "SOPClassUID"),
                sop_instance_uid=_text(ds, "SOPInstanceUID"),
                instance_number=_int_or_none(ds, "InstanceNumber"),
                position_lps=position,
                index=k,
                path=Path(path),
            )
        )
    slices.sort(key=lambda s: s.index)
    if [s.index for s in slices] != list(range(n_index)):
        raise DicomIdentityError(
            f"{folder}: {len(slices)} slices do not map one to one onto the CT's {n_index}"
        )
    n_no_sop = sum(not s.sop_instance_uid for s in slices)
    if n_no_sop:
        missing.append(f"SOP Instance UID ({n_no_sop} of {len(slices)} slices)")
    n_no_class = sum(not s.sop_class_uid for s in slices)
    if n_no_class:
        missing.append(f"SOP Class UID ({n_no_class} of {len(slices)} slices)")
    patient_study = PatientStudy(
        **{name: _text(first, keyword) for name, keyword in PATIENT_STUDY_KEYWORDS.items()}
    )
    series_uid = _text(first, "SeriesInstanceUID")
    missing = [
        what
        for what, value in (
            ("Study Instance UID", patient_study.study_instance_uid),
            ("Series Instance UID", series_uid),
        )
        if not value
    ] + missing
    frame_uid = _text(first, "FrameOfReferenceUID")
    derived = not frame_uid and bool(series_uid)
    if derived:
        frame_uid = derived_uid("lungcad frame of reference", series_uid)
        log.warning(
            "%s: the series has no Frame of Reference UID; the DICOM outputs use %s, derived "
            "from its series UID",
            folder,
            frame_uid,
        )
    orientation = _floats(first, "ImageOrientationPatient", 6)
    spacing = _floats(first, "PixelSpacing", 2)
    if orientation is None or spacing is None:
        raise DicomIdentityError(f"{files[0]}: no usable orientation or pixel spacing")
    if (int(first.Rows), int(first.Columns)) != tuple(ct.geometry.shape_irc[1:]):
        raise DicomIdentityError(
            f"{files[0]}: {first.Rows}x{first.Columns} pixels, but the CT's slices are "
            f"{ct.geometry.shape_irc[1]}x{ct.geometry.shape_irc[2]}"
        )
    thickness = first.get("SliceThickness")
    identity = DicomIdentity(
        patient_study=patient_study,
        series_instance_uid=series_uid,
        series_number=_int_or_none(first, "SeriesNumber"),
        series_description=_text(first, "SeriesDescription"),
        modality=_text(first, "Modality"),
        manufacturer=_text(first, "Manufacturer"),
        frame_of_reference_uid=frame_uid,
        frame_of_reference_derived=derived,
        rows=int(first.Rows),
        columns=int(first.Columns),
        pixel_spacing=(float(spacing[0]), float(spacing[1])),
        orientation=tuple(float(v) for v in orientation),
        slice_thickness=None if thickness in (None, "") else float(thickness),
        slice_spacing=float(ct.geometry.spacing_irc[0]),
        specific_character_set=_text(first, "SpecificCharacterSet"),
        slices=tuple(slices),
        missing=tuple(missing),
    )
    log.info("DICOM identity of %s: %d slices, %s", folder, len(slices), identity.describe())
    return identity
