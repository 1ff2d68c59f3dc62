"""Find and read one DICOM series in a folder, with its honesty checks (:mod:`.dicom_checks`).

GDCM lists the series whatever the files are called and with or without the preamble; a folder
with several series needs the caller to pick one, and the error lists them so that it can.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import SimpleITK as sitk

from lungcad.ct import CT
from lungcad.errors import CTFormatError, DicomSeriesError, NotCTError
from lungcad.io.dicom_checks import check_modality, check_series_header, check_slice_positions
from lungcad.io.header import short_itk_reason
from lungcad.io.sitk_bridge import ct_from_sitk

log = logging.getLogger(__name__)

#: The reader for files GDCM has listed as DICOM: ITK's guess by content needs the preamble's
#: 'DICM' marker, which raw DICOM files lack.
DICOM_IO = "GDCMImageIO"

_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)+")

# DICOM tags kept in CT.metadata (no patient identifiers).
_DICOM_METADATA_TAGS = {
    "0008|0060": "modality",
    "0008|103e": "series_description",
    "0020|000d": "study_uid",
    "0008|0070": "manufacturer",
    "0018|1210": "convolution_kernel",
    "0018|0050": "slice_thickness",
}


def looks_like_uid(text: str) -> bool:
    return bool(_UID_RE.fullmatch(text))


def clean_uid(text: str) -> str | None:
    """A UID tag's value without padding (spaces, NULs); None when nothing is left."""
    text = text.strip().strip("\x00").strip()
    return text or None


@contextmanager
def itk_warnings_off() -> Iterator[None]:
    """Silence ITK's stderr warnings (e.g. 'No Series were found') while we list a folder."""
    was_on = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(was_on)


def dicom_metadata(get: Callable[[str], str], has: Callable[[str], bool]) -> dict[str, str]:
    """The non-identifying tags kept in ``CT.metadata``, read through ``get``/``has``."""
    out = {"format": "DICOM"}
    for tag, name in _DICOM_METADATA_TAGS.items():
        if has(tag):
            value = get(tag).strip().strip("\x00").strip()
            if value:
                out[name] = value
    return out


def _describe_series(folder: Path, uid: str, files: tuple[str, ...]) -> str:
    label = uid if uid else "(empty series UID)"
    text = f"{label}: {len(files)} file{'s' if len(files) != 1 else ''}"
    reader = sitk.ImageFileReader()
    reader.SetImageIO(DICOM_IO)
    reader.SetFileName(files[0])
    try:
        reader.ReadImageInformation()
        bits = [
            reader.GetMetaData(tag).strip()
            for tag in ("0008|0060", "0008|103e")
            if reader.HasMetaDataKey(tag) and reader.GetMetaData(tag).strip()
        ]
        if bits:
            text += f" ({', '.join(bits)})"
    except RuntimeError:
        pass
    return text


def dicom_series_ids(folder: Path) -> tuple[str, ...]:
    """The series UIDs GDCM finds among the files directly in ``folder``, whatever they are
    called and with or without the preamble (ITK's warning that there are none silenced)."""
    with itk_warnings_off():
        return tuple(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def _pick_series(folder: Path, series_uid: str | None) -> tuple[str, tuple[str, ...]]:
    """(uid, files) of the one series to read, or a DicomSeriesError that lists what is there."""
    with itk_warnings_off():
        ids = tuple(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
        files_by_id = {
            uid: tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
            for uid in ids
        }
    files_by_id = {uid: f for uid, f in files_by_id.items() if f}
    if not files_by_id:
        entries = sorted(os.listdir(folder))
        subdirs = [e for e in entries if (folder / e).is_dir()]
        if not entries:
            what = "the folder is empty"
        else:
            what = f"it holds {len(entries)} entries, none a DICOM image"
            if subdirs:
                shown = ", ".join(subdirs[:5]) + (", ..." if len(subdirs) > 5 else "")
                what += f"; sub-folders are not searched ({shown}): pass the one with the slices"
        raise DicomSeriesError(folder, f"no DICOM series in folder ({what})")

    listing = "; ".join(_describe_series(folder, u, f) for u, f in files_by_id.items())
    if series_uid is None:
        if len(files_by_id) > 1:
            raise DicomSeriesError(
                folder,
                f"{len(files_by_id)} DICOM series in folder: {listing}. Pick one with the "
                "series_uid argument of read_ct",
            )
        uid = next(iter(files_by_id))
    elif series_uid in files_by_id:
        uid = series_uid
    else:
        raise DicomSeriesError(
            folder, f"series {series_uid} is not in this folder; it holds: {listing}"
        )
    return uid, files_by_id[uid]


def read_dicom_folder(folder: Path, series_uid: str | None) -> CT:
    """Read the one series (or ``series_uid``) among the files directly in ``folder``."""
    uid, files = _pick_series(folder, series_uid)
    check_series_header(folder, files)

    reader = sitk.ImageSeriesReader()
    reader.SetImageIO(DICOM_IO)  # GDCM listed them: DICOM, with or without preamble
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    reader.LoadPrivateTagsOn()
    try:
        with itk_warnings_off():  # its uneven-slice warning: check_slice_positions says more
            image = reader.Execute()
    except RuntimeError as exc:
        log.debug("SimpleITK could not read the series in %s: %s", folder, exc)
        raise CTFormatError(
            folder, f"DICOM series {uid or '(empty UID)'}: " + short_itk_reason(exc)
        ) from exc

    def get(tag: str) -> str:
        return reader.GetMetaData(0, tag)

    def has(tag: str) -> bool:
        return reader.HasMetaDataKey(0, tag)

    read_uid = clean_uid(get("0020|000e")) if has("0020|000e") else None
    metadata = dicom_metadata(get, has)
    metadata["files"] = str(len(files))
    check_modality(folder, get, has)
    if image.GetDimension() == 3 and image.GetSize()[2] == 1:
        raise NotCTError(
            folder,
            f"DICOM series {uid or '(empty UID)'} has a single slice: a CT is a 3D volume of "
            "several slices",
        )

    def slice_tag(i: int, tag: str) -> str | None:
        return reader.GetMetaData(i, tag) if reader.HasMetaDataKey(i, tag) else None

    check_slice_positions(folder, files, slice_tag)
    ct = ct_from_sitk(image, source=folder, series_uid=read_uid or uid or None, metadata=metadata)
    log.info("read DICOM series from %s (%d files): %s", folder, len(files), ct.describe())
    return ct
