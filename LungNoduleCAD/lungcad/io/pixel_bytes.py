"""How many bytes a CT file's pixels take while they are read into int16 HU: the memory budget's
input, for files (:mod:`lungcad.io.header`) and DICOM series (:mod:`lungcad.io.dicom_checks`)."""

from __future__ import annotations

import re

import SimpleITK as sitk

# bytes per component of the pixel types a CT file may hold (others count as 8, the most)
_COMPONENT_BYTES = {
    sitk.sitkUInt8: 1,
    sitk.sitkInt8: 1,
    sitk.sitkUInt16: 2,
    sitk.sitkInt16: 2,
    sitk.sitkUInt32: 4,
    sitk.sitkInt32: 4,
    sitk.sitkFloat32: 4,
}

# the read holds the file's pixels, a rounded / clipped float copy of the same size, and int16
_READ_COPIES = 3
_INT16_BYTES = 2


def component_bytes(pixel_id: int, components: int = 1) -> int:
    """Bytes of one component of ``pixel_id`` (a vector id counts per component)."""
    if pixel_id in _COMPONENT_BYTES:
        return _COMPONENT_BYTES[pixel_id]
    name = sitk.GetPixelIDValueAsString(pixel_id)
    m = re.search(r"(\d+)-bit", name)
    return int(m.group(1)) // 8 if m else 8


def read_bytes_per_voxel(pixel_id: int, components: int = 1) -> int:
    """Peak bytes per voxel while a file with this pixel type is read into int16 HU."""
    return _READ_COPIES * component_bytes(pixel_id) * max(components, 1) + _INT16_BYTES
