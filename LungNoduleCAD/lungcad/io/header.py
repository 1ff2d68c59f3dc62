"""Read a CT file's header and refuse it before a single voxel is allocated.

SimpleITK's ``ImageFileReader.ReadImageInformation()`` gives the size, pixel type, spacing and
direction without reading pixels. Everything that can be judged from those is judged here, so
that a 62-byte file declaring 2048x2048x512 voxels costs nothing (see :mod:`lungcad.budget`),
and then :mod:`lungcad.io.payload` checks that the declared data are really there.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungcad.budget import check_spacing, check_voxels
from lungcad.errors import CTFormatError, NotCTError
from lungcad.io import payload
from lungcad.io.dicom_checks import check_modality
from lungcad.io.pixel_bytes import component_bytes, read_bytes_per_voxel

log = logging.getLogger(__name__)

_COMPLEX_PIXEL_IDS = {sitk.sitkComplexFloat32, sitk.sitkComplexFloat64}


def short_itk_reason(exc: RuntimeError) -> str:
    """One line from an ITK exception, without its source-file trace."""
    text = str(exc)
    if "Unable to determine ImageIO reader" in text or "Could not create IO object" in text:
        return "not an image file that SimpleITK can read (unknown or damaged format)"
    for line in text.splitlines():
        m = re.search(r"(?:sitk::ERROR|ITK ERROR|Description):\s*(.+)", line)
        if m:
            reason = re.sub(r"\w+\(0x[0-9a-f]+\):\s*", "", m.group(1)).strip()
            return f"cannot be read as an image: {reason[:200]}"
    return "cannot be read as an image (unsupported or damaged file)"


def check_shape(
    where: str | Path,
    dimension: int,
    size: Sequence[int],
    components: int,
    pixel_id: int,
) -> None:
    """One grey value per voxel, 3D, at least two slices: or NotCTError saying what it is."""
    if components != 1 or pixel_id in _COMPLEX_PIXEL_IDS:
        raise NotCTError(
            where,
            f"pixels have {components} components ({sitk.GetPixelIDValueAsString(pixel_id)}): "
            "a colour, vector or complex image, but a CT has one grey value (HU) per voxel",
        )
    size = tuple(int(n) for n in size)
    if dimension == 2:
        raise NotCTError(
            where, f"2D image ({size[0]}x{size[1]} pixels): a CT is a 3D volume of slices"
        )
    if dimension != 3:
        raise NotCTError(where, f"{dimension}D image of size {size}: a CT is a 3D volume")
    if size[2] < 2:
        raise NotCTError(
            where,
            f"a single slice ({size[0]}x{size[1]}x{size[2]} voxels): a CT is a 3D volume of "
            "several slices",
        )


def check_direction(where: str | Path, direction: Sequence[float]) -> None:
    """A finite, orthonormal 3x3 direction (the axes of a CT are perpendicular)."""
    matrix = np.asarray(direction, dtype=np.float64)
    if matrix.size != 9 or not np.isfinite(matrix).all():
        raise CTFormatError(where, f"unusable geometry: direction {tuple(direction)} is not finite")
    matrix = matrix.reshape(3, 3)
    if not np.allclose(matrix.T @ matrix, np.eye(3), atol=1e-3):
        raise CTFormatError(
            where,
            "unusable geometry: the direction matrix is not orthonormal (axes not perpendicular "
            f"or not unit length: {tuple(round(float(v), 4) for v in matrix.ravel())})",
        )


def check_origin(where: str | Path, origin: Sequence[float]) -> None:
    if not all(math.isfinite(float(v)) for v in origin):
        raise CTFormatError(where, f"unusable geometry: origin {tuple(origin)} is not finite")


def check_ct_file(path: Path) -> sitk.ImageFileReader:
    """Judge ``path`` from its header and payload length; returns the reader, ready to Execute.

    Raises the typed errors of :mod:`lungcad.errors`; nothing large is allocated before the
    voxel and memory budgets have passed.
    """
    if path.suffix.lower() in (".mhd", ".mha"):
        payload.check_metaio(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        log.debug("SimpleITK could not read the header of %s: %s", path, exc)
        raise CTFormatError(path, short_itk_reason(exc)) from exc
    dimension, size = reader.GetDimension(), reader.GetSize()
    components, pixel_id = reader.GetNumberOfComponents(), reader.GetPixelID()
    is_dicom = reader.HasMetaDataKey("0020|000e") or path.suffix.lower() == ".dcm"
    if is_dicom and dimension == 3 and size[2] == 1:
        raise NotCTError(
            path,
            "a single DICOM slice: a CT is a series of slices; pass the folder that holds "
            "the series to read_ct",
        )
    if is_dicom:
        check_modality(path, reader.GetMetaData, reader.HasMetaDataKey)
    check_shape(path, dimension, size, components, pixel_id)
    check_voxels(path, size, read_bytes_per_voxel(pixel_id, components))
    check_spacing(path, reader.GetSpacing())
    check_direction(path, reader.GetDirection())
    check_origin(path, reader.GetOrigin())
    voxels = math.prod(int(n) for n in size)
    needed = voxels * components * component_bytes(pixel_id)
    io_name = reader.GetImageIOFromFileName(str(path))
    if io_name == "NiftiImageIO":
        payload.check_nifti(path, needed)
    elif io_name == "NrrdImageIO":
        payload.check_nrrd(path, needed, voxels * components)
    return reader
