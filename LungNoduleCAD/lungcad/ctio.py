"""Kept so that ``from lungcad.ctio import read_ct`` goes on working; the code is in lungcad.io.

The Slicer client, the training tree and many engine modules import this name; new code imports
:mod:`lungcad.io`.
"""

from lungcad.io import (
    AIR_HU,
    DICOM_IO,
    IN_MEMORY,
    MAX_BRIGHT_FRACTION,
    MAX_PLAUSIBLE_HU,
    MIN_AIR_FRACTION,
    PADDING_HU,
    SERIES_UID_KEY,
    ct_from_sitk,
    ct_to_sitk,
    dicom_series_ids,
    read_ct,
    write_ct,
    write_label_map,
)

__all__ = [
    "AIR_HU",
    "DICOM_IO",
    "IN_MEMORY",
    "MAX_BRIGHT_FRACTION",
    "MAX_PLAUSIBLE_HU",
    "MIN_AIR_FRACTION",
    "PADDING_HU",
    "SERIES_UID_KEY",
    "ct_from_sitk",
    "ct_to_sitk",
    "dicom_series_ids",
    "read_ct",
    "write_ct",
    "write_label_map",
]
