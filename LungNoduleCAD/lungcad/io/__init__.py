"""Read and write chest CT volumes (MetaIO, NIfTI, NRRD, DICOM series) as :class:`lungcad.ct.CT`.

Everything goes through SimpleITK, so origin, spacing and the full direction matrix are kept and
the array is in (index, row, col) order. Bad input is refused early with a typed error from
:mod:`lungcad.errors` that names the file and the problem, because a CAD result computed on a
volume that is not really a CT in Hounsfield units (missing rescale, MR, a single slice, a colour
screenshot) would look plausible and be wrong.

Validity rules (applied by :func:`ct_from_sitk`, so by every reader; :mod:`.hu_rules` holds the
voxel-value ones):

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

Files are judged from their header before any voxel is allocated (:mod:`.header`: size and
memory budget, spacing, direction; :mod:`.payload`, the MetaIO/NIfTI/NRRD pre-check: data beside
the header and as long as declared), and DICOM series from their first file's header and then
their slice positions (:mod:`.dicom_checks`: CT modality only, evenly spaced slices).

Modules: :mod:`.sitk_bridge` (CT/Geometry <-> SimpleITK, the one ``on_grid``), :mod:`.read`
(dispatch), :mod:`.dicom_series`, :mod:`.write` (atomic, via :mod:`lungcad.atomic`).
"""

from lungcad.io.dicom_series import DICOM_IO, dicom_series_ids
from lungcad.io.hu_rules import (
    AIR_HU,
    MAX_BRIGHT_FRACTION,
    MAX_PLAUSIBLE_HU,
    MIN_AIR_FRACTION,
    PADDING_HU,
)
from lungcad.io.read import read_ct
from lungcad.io.sitk_bridge import (
    IN_MEMORY,
    SERIES_UID_KEY,
    ct_from_sitk,
    ct_to_sitk,
    geometry_of,
    on_grid,
)
from lungcad.io.write import write_ct, write_label_map

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
    "geometry_of",
    "on_grid",
    "read_ct",
    "write_ct",
    "write_label_map",
]
