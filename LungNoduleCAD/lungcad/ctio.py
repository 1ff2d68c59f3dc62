"""Read and write chest CT volumes (MetaIO, NIfTI, NRRD, DICOM series) as :class:`lungcad.ct.CT`.

Everything goes through SimpleITK, so origin, spacing and the full direction matrix are kept and
the array is in (index, row, col) order. Bad input is refused early with a typed error from
:mod:`lungcad.errors` that names the file and the problem, because a CAD result computed on a
volume that is not really a CT in Hounsfield units (missing rescale, MR, a single slice, a colour
screenshot) would look plausible and be wrong.

Validity rules (applied by :func:`ct_from_sitk`, so by every reader):

* one grey value per voxel (no RGB / vector / complex images) -> :class:`NotCTError`;
* voxel spacing within 0.2-10 mm (:mod:`lungcad.budget`) -> NotCTError;
* 3D with at least two slices: a 2D image or a 3D one whose slice count is 1 -> NotCTError
  (a 2-slice volume is accepted);
* no NaN or infinite values -> NotCTError;
* air present: at least ``MIN_AIR_FRACTION`` (0.5 %) of voxels at or below ``AIR_HU`` (-500 HU),
  otherwise NotCTError (typical cause: unsigned data without the rescale intercept, or MR);
* at most ``MAX_BRIGHT_FRACTION`` (1 %) of voxels above ``MAX_PLAUSIBLE_HU`` (+4000 HU),
  otherwise NotCTError;
* values below ``PADDING_HU`` (-1024) are outside-field padding (-2000, -2048, -3024, -32768 ...)
  and are clamped to -1024; the rest is rounded (float input) and clipped to the int16 range.

Files are judged from their header before any voxel is allocated (:mod:`lungcad.ctheader`:
size and memory budget, spacing, direction; :mod:`lungcad.ctpayload`: data beside the header
and as long as declared), and DICOM series from their first file's header and then their
slice positions (:mod:`lungcad.dicomcheck`: CT modality only, evenly spaced slices).
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungcad.budget import check_spacing
from lungcad.ct import CT, Geometry
from lungcad.ctheader import check_ct_file, check_shape, short_itk_reason
from lungcad.dicomcheck import check_modality, check_series_header, check_slice_positions
from lungcad.errors import (
    CTFileNotFoundError,
    CTFormatError,
    CTWriteError,
    DicomSeriesError,
    NotCTError,
)

log = logging.getLogger(__name__)

__all__ = [
    "AIR_HU",
    "MAX_BRIGHT_FRACTION",
    "MAX_PLAUSIBLE_HU",
    "MIN_AIR_FRACTION",
    "PADDING_HU",
    "ct_from_sitk",
    "ct_to_sitk",
    "dicom_series_ids",
    "read_ct",
    "write_ct",
]

AIR_HU = -500
MIN_AIR_FRACTION = 0.005
MAX_PLAUSIBLE_HU = 4000
MAX_BRIGHT_FRACTION = 0.01
PADDING_HU = -1024

IN_MEMORY = "<in-memory image>"
#: The reader for files GDCM has listed as DICOM: ITK's guess by content needs the preamble's
#: 'DICM' marker, which raw DICOM files lack.
DICOM_IO = "GDCMImageIO"
SERIES_UID_KEY = "SeriesInstanceUID"  # written into NRRD / MetaIO headers by write_ct

_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)+")
_WRITE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mhd", ".mha")
_COMPRESSED_EXTENSIONS = (".nii.gz", ".nrrd")

# DICOM tags kept in CT.metadata (no patient identifiers).
_DICOM_METADATA_TAGS = {
    "0008|0060": "modality",
    "0008|103e": "series_description",
    "0020|000d": "study_uid",
    "0008|0070": "manufacturer",
    "0018|1210": "convolution_kernel",
    "0018|0050": "slice_thickness",
}

# --------------------------------------------------------------------------------------------
# sitk <-> CT


def ct_to_sitk(ct: CT) -> sitk.Image:
    """The CT as an int16 SimpleITK image with the same origin, spacing and direction."""
    image = sitk.GetImageFromArray(ct.hu)
    g = ct.geometry
    image.SetOrigin(g.origin_xyz)
    image.SetSpacing(g.spacing_xyz)
    image.SetDirection(g.direction)
    if ct.series_uid:
        image.SetMetaData(SERIES_UID_KEY, ct.series_uid)
    return image


def ct_from_sitk(
    image: sitk.Image,
    source: str | Path | None = None,
    series_uid: str | None = None,
    *,
    metadata: dict[str, str] | None = None,
) -> CT:
    """Check that ``image`` can be a CT in Hounsfield units and convert it to :class:`CT`.

    The checks are listed in the module docstring; errors name ``source`` (or
    ``<in-memory image>``). ``source`` is stored as a :class:`~pathlib.Path` when given.
    """
    where: str | Path = source if source is not None else IN_MEMORY
    check_shape(
        where,
        image.GetDimension(),
        image.GetSize(),
        image.GetNumberOfComponentsPerPixel(),
        image.GetPixelID(),
    )
    check_spacing(where, image.GetSpacing())
    arr = sitk.GetArrayViewFromImage(image)
    _check_hu_values(arr, where)
    hu = _to_int16_hu(arr, where)
    try:
        geometry = Geometry.from_arrays(
            image.GetOrigin(), image.GetSpacing(), image.GetDirection(), hu.shape
        )
    except ValueError as exc:
        raise CTFormatError(where, f"unusable geometry: {exc}") from exc
    return CT(
        hu=hu,
        geometry=geometry,
        series_uid=series_uid or None,
        source=Path(source) if source is not None else None,
        metadata=dict(metadata or {}),
    )


def _check_hu_values(arr: np.ndarray, where: str | Path) -> None:
    n = arr.size
    if np.issubdtype(arr.dtype, np.floating):
        bad = n - int(np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise NotCTError(where, f"{bad} voxels are NaN or infinite; a CT holds finite HU")
    n_air = int(np.count_nonzero(arr <= AIR_HU))
    if n_air < MIN_AIR_FRACTION * n:
        lo, hi = arr.min(), arr.max()
        hint = (
            f" The data are unsigned ({arr.dtype}): the rescale intercept (usually -1024) was "
            "probably not applied."
            if np.issubdtype(arr.dtype, np.unsignedinteger)
            else " If the values are raw scanner numbers, apply the rescale slope/intercept; "
            "if this is MR or another modality, it is not a CT."
        )
        raise NotCTError(
            where,
            f"no air: only {n_air / n:.2%} of voxels are at or below {AIR_HU} HU (minimum "
            f"value {lo:g}, maximum {hi:g}), but a CT has air near -1000 HU around and inside "
            f"the body (at least {MIN_AIR_FRACTION:.1%} of voxels expected).{hint}",
        )
    n_bright = int(np.count_nonzero(arr > MAX_PLAUSIBLE_HU))
    if n_bright > MAX_BRIGHT_FRACTION * n:
        raise NotCTError(
            where,
            f"{n_bright / n:.2%} of voxels are above +{MAX_PLAUSIBLE_HU} HU (maximum "
            f"{arr.max():g}); in a CT only metal goes that high, in at most "
            f"{MAX_BRIGHT_FRACTION:.0%} of voxels. Check the rescale slope/intercept or the "
            "modality.",
        )


def _to_int16_hu(arr: np.ndarray, where: str | Path) -> np.ndarray:
    n_pad = int(np.count_nonzero(arr < PADDING_HU))
    if n_pad:
        log.debug("%s: clamping %d padding voxels below %d HU", where, n_pad, PADDING_HU)
    if arr.dtype == np.int16:
        return np.maximum(arr, PADDING_HU).astype(np.int16, copy=False)
    work = arr
    if np.issubdtype(arr.dtype, np.floating):
        work = np.rint(arr)
    elif np.issubdtype(arr.dtype, np.unsignedinteger) or arr.dtype.itemsize < 2:
        work = arr.astype(np.int32)  # so that clip's bounds fit the dtype
    n_high = int(np.count_nonzero(work > np.iinfo(np.int16).max))
    if n_high:
        log.warning("%s: clipping %d voxels above %d HU", where, n_high, np.iinfo(np.int16).max)
    return np.clip(work, PADDING_HU, np.iinfo(np.int16).max).astype(np.int16)


# --------------------------------------------------------------------------------------------
# reading


def read_ct(path: str | Path, series_uid: str | None = None) -> CT:
    """Read a CT file (.mhd/.mha, .nii/.nii.gz, .nrrd/.nhdr, ...) or a DICOM series folder.

    ``series_uid`` picks one series in a DICOM folder that holds several (it is also checked
    against the one series when there is only one). For files, the series UID is the header's
    ``SeriesInstanceUID`` field (written by :func:`write_ct`) or, for ``.mhd``, the file stem
    when it looks like a DICOM UID (LUNA16 convention); DICOM files give tag 0020|000E.
    """
    path = Path(path)
    if path.is_dir():
        return _read_dicom_folder(path, series_uid)
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
        metadata.update(_dicom_metadata(image.GetMetaData, image.HasMetaDataKey))
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


def _looks_like_uid(text: str) -> bool:
    return bool(_UID_RE.fullmatch(text))


def _clean_uid(text: str) -> str | None:
    text = text.strip().strip("\x00").strip()
    return text or None


def _file_series_uid(path: Path, image: sitk.Image) -> str | None:
    for key in ("0020|000e", SERIES_UID_KEY):
        if image.HasMetaDataKey(key):
            uid = _clean_uid(image.GetMetaData(key))
            if uid and _looks_like_uid(uid):
                return uid
    if path.suffix.lower() == ".mhd" and _looks_like_uid(path.stem):
        return path.stem
    return None


@contextmanager
def _itk_warnings_off() -> Iterator[None]:
    """Silence ITK's stderr warnings (e.g. 'No Series were found') while we list a folder."""
    was_on = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(was_on)


def _dicom_metadata(get: Callable[[str], str], has: Callable[[str], bool]) -> dict[str, str]:
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
    with _itk_warnings_off():
        return tuple(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def _read_dicom_folder(folder: Path, series_uid: str | None) -> CT:
    with _itk_warnings_off():
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
    files = files_by_id[uid]
    check_series_header(folder, files)

    reader = sitk.ImageSeriesReader()
    reader.SetImageIO(DICOM_IO)  # GDCM listed them: DICOM, with or without preamble
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    reader.LoadPrivateTagsOn()
    try:
        with _itk_warnings_off():  # its uneven-slice warning: check_slice_positions says more
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

    read_uid = _clean_uid(get("0020|000e")) if has("0020|000e") else None
    metadata = _dicom_metadata(get, has)
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


# --------------------------------------------------------------------------------------------
# writing


def _split_extension(path: Path) -> tuple[str, str]:
    """(name without extension, extension) for the formats write_ct knows; ext '' if unknown."""
    lower = path.name.lower()
    for ext in _WRITE_EXTENSIONS:
        if lower.endswith(ext) and len(lower) > len(ext):
            return path.name[: -len(ext)], path.name[-len(ext) :]
    return path.name, ""


def write_ct(ct: CT, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``ct`` with its geometry to .nrrd, .nii, .nii.gz, .mhd (+ .raw) or .mha.

    The format follows the extension; .nrrd and .nii.gz are compressed, .mhd/.raw and .mha are
    not, so that LUNA16-style readers can memory-map the data. An existing target (for .mhd also
    its .raw) is never replaced unless ``overwrite`` is True. The parent folder is created.

    Robustness: the image is written under a hidden temporary name in the target folder and
    renamed into place, so a crash never leaves a half-written file under the final name. For
    .mhd the .mhd/.raw pair is written to a temporary stem; the .raw is renamed first, the
    header's ElementDataFile line is pointed at the final .raw name, then the header is renamed.
    Returns the path written (the .mhd for MetaIO pairs).
    """
    path = _write_image(ct_to_sitk(ct), path, overwrite)
    log.info("wrote %s (%s)", path, ct.describe())
    return path


def write_label_map(
    labels: np.ndarray, geometry: Geometry, path: str | Path, overwrite: bool = False
) -> Path:
    """Write an integer label map (e.g. ground-truth nodules) on a CT's grid, like write_ct."""
    if labels.shape != tuple(geometry.shape_irc):
        raise CTWriteError(f"{path}: label map shape {labels.shape} != grid {geometry.shape_irc}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise CTWriteError(f"{path}: a label map holds integers, got {labels.dtype}")
    image = sitk.GetImageFromArray(labels)
    image.SetOrigin(geometry.origin_xyz)
    image.SetSpacing(geometry.spacing_xyz)
    image.SetDirection(geometry.direction)
    path = _write_image(image, path, overwrite)
    log.info("wrote label map %s", path)
    return path


def _write_image(image: sitk.Image, path: str | Path, overwrite: bool) -> Path:
    """Write atomically (temporary name, then rename) without replacing what exists."""
    path = Path(path)
    stem, ext = _split_extension(path)
    if not ext:
        raise CTWriteError(f"{path}: unknown extension; write .nrrd, .nii, .nii.gz, .mhd or .mha")
    ext_l = ext.lower()
    targets = [path]
    if ext_l == ".mhd":
        targets.append(path.with_name(stem + ".raw"))
    _refuse_existing(targets, overwrite)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CTWriteError(f"{path}: cannot create the folder {path.parent}: {exc}") from exc

    tmp_stem = f".{stem}.tmp-{uuid.uuid4().hex[:12]}"
    tmp_path = path.with_name(tmp_stem + ext)
    tmp_raw = path.with_name(tmp_stem + ".raw")
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(tmp_path))
    writer.SetUseCompression(ext_l in _COMPRESSED_EXTENSIONS)
    try:
        try:
            writer.Execute(image)
        except RuntimeError as exc:
            log.debug("SimpleITK could not write %s: %s", tmp_path, exc)
            raise CTWriteError(f"{path}: SimpleITK could not write it ({exc!s:.200})") from exc
        _refuse_existing(targets, overwrite)  # someone may have created it meanwhile
        if ext_l == ".mhd":
            header = tmp_path.read_bytes()
            new_header, n = re.subn(
                rb"(?m)^ElementDataFile\s*=.*$",
                b"ElementDataFile = " + targets[1].name.encode(),
                header,
            )
            if n != 1:
                raise CTWriteError(f"{path}: unexpected MetaIO header written by SimpleITK")
            tmp_path.write_bytes(new_header)
            os.replace(tmp_raw, targets[1])
        os.replace(tmp_path, path)
    except OSError as exc:
        if isinstance(exc, CTWriteError):
            raise
        raise CTWriteError(f"{path}: could not write it: {exc}") from exc
    finally:
        for leftover in (tmp_path, tmp_raw):
            leftover.unlink(missing_ok=True)
    return path


def _refuse_existing(targets: list[Path], overwrite: bool) -> None:
    if overwrite:
        return
    for target in targets:
        if target.exists():
            raise CTWriteError(f"{target}: already exists; pass overwrite=True to replace it")
