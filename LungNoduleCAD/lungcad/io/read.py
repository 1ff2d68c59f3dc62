"""Read dispatch: a CT file (after its header pre-check) or a DICOM series folder, as a CT."""

from __future__ import annotations

import logging
from pathlib import Path

import SimpleITK as sitk

from lungcad.ct import CT
from lungcad.errors import CTFileNotFoundError, CTFormatError
from lungcad.io.dicom_series import clean_uid, dicom_metadata, looks_like_uid, read_dicom_folder
from lungcad.io.header import check_ct_file, short_itk_reason
from lungcad.io.sitk_bridge import SERIES_UID_KEY, ct_from_sitk

log = logging.getLogger(__name__)


def read_ct(path: str | Path, series_uid: str | None = None) -> CT:
    """Read a CT file (.mhd/.mha, .nii/.nii.gz, .nrrd/.nhdr, ...) or a DICOM series folder.

    ``series_uid`` picks one series in a DICOM folder that holds several (it is also checked
    against the one series when there is only one). For files, the series UID is the header's
    ``SeriesInstanceUID`` field (written by :func:`write_ct`) or, for ``.mhd``, the file stem
    when it looks like a DICOM UID (LUNA16 convention); DICOM files give tag 0020|000E.
    """
    path = Path(path)
    if path.is_dir():
        return read_dicom_folder(path, series_uid)
    if not path.exists():
        if path.is_symlink():
            raise CTFileNotFoundError(
                path, "a symbolic link that leads nowhere (its target is missing, or it loops)"
            )
        raise CTFileNotFoundError(path, "no such file or folder")
    if not path.is_file():
        raise CTFormatError(path, "not a regular file or folder (a device, pipe or socket)")
    reader = check_ct_file(path)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        log.debug("SimpleITK could not read %s: %s", path, exc)
        raise CTFormatError(path, short_itk_reason(exc)) from exc

    is_dicom = image.HasMetaDataKey("0020|000e") or path.suffix.lower() == ".dcm"
    uid = _file_series_uid(path, image)
    metadata = {"format": _format_name(path, image)}
    if is_dicom:
        metadata.update(dicom_metadata(image.GetMetaData, image.HasMetaDataKey))
    if series_uid is not None and uid is not None and series_uid != uid:
        log.warning("%s: series UID %s differs from the requested %s", path, uid, series_uid)
    ct = ct_from_sitk(image, source=path, series_uid=uid, metadata=metadata)
    log.info("read %s: %s", path, ct.describe())
    return ct


def _format_name(path: Path, image: sitk.Image) -> str:
    if image.HasMetaDataKey("ITK_InputFilterName"):
        return image.GetMetaData("ITK_InputFilterName")
    name = path.name.lower()
    for ext, fmt in (
        (".nii.gz", "NIfTI"),
        (".nii", "NIfTI"),
        (".dcm", "DICOM"),
        (".nrrd", "NRRD"),
        (".nhdr", "NRRD"),
    ):
        if name.endswith(ext):
            return fmt
    return path.suffix.lstrip(".").upper() or "unknown"


def _file_series_uid(path: Path, image: sitk.Image) -> str | None:
    for key in ("0020|000e", SERIES_UID_KEY):
        if image.HasMetaDataKey(key):
            uid = clean_uid(image.GetMetaData(key))
            if uid and looks_like_uid(uid):
                return uid
    if path.suffix.lower() == ".mhd" and looks_like_uid(path.stem):
        return path.stem
    return None
