"""candidates.csv: every candidate, in the LUNA16 submission layout first, then the details.

Columns: ``seriesuid,coordX,coordY,coordZ,probability`` (LPS mm; probability = p_nodule), then
diameter_mm, volume_mm3, mean_hu, max_probability, p_nodule, p_malignant (empty where the
malignancy classifier did not run: below the result's nodule floor, and outside the lung), finding
(the finding number it became, or empty), index, row, col (continuous voxel position in the CT's
own grid), status: "finding", "below nodule threshold", or "outside lung" (its centre lies outside
the lung mask, so it was never classified: p_nodule is 0; files written before the nodule floor
give 0 for its p_malignant too). Then, for findings only (empty otherwise; added after the older
columns): mean_diameter_mm, long_axis_mm, short_axis_mm, solid_mean_diameter_mm (the part at or
above -300 HU; 0 where there is none), segment_volume_mm3 (on the CT's own grid),
recist_longest_mm, nodule_type, type_source ("given" or "assumed solid") and lung_rads (the
Lung-RADS v2022 baseline category, decision support).
Concatenating the files of a cohort (one header) gives a LUNA16 FROC submission.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from lungcad.atomic import write_text_atomic
from lungcad.reports.common import ResultLike, check_writable
from lungcad.reports.lungrads_fields import LUNG_RADS_COLUMNS, lung_rads_cells

__all__ = ["CANDIDATE_COLUMNS", "candidates_csv_text", "write_candidates_csv"]

LUNA16_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "probability")
CANDIDATE_COLUMNS = (
    *LUNA16_COLUMNS,
    "diameter_mm", "volume_mm3", "mean_hu", "max_probability", "p_nodule", "p_malignant",
    "finding", "index", "row", "col", "status", *LUNG_RADS_COLUMNS,
)  # fmt: skip


def candidates_csv_text(result: ResultLike, seriesuid: str) -> str:
    """The csv text; ``seriesuid`` fills the first column (the case id when the CT has no UID)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CANDIDATE_COLUMNS)
    by_number = {f.number: f for f in result.findings}
    for c in result.candidates:
        x, y, z = c.center_lps
        i, r, k = c.center_irc
        finding = "" if c.finding is None else int(c.finding)
        p_malignant = "" if c.p_malignant is None else f"{c.p_malignant:.6f}"
        row = (
            seriesuid, f"{x:.3f}", f"{y:.3f}", f"{z:.3f}", f"{c.p_nodule:.6f}",
            f"{c.diameter_mm:.3f}", f"{c.volume_mm3:.3f}", f"{c.mean_hu:.1f}",
            f"{c.max_probability:.6f}", f"{c.p_nodule:.6f}", p_malignant,
            finding, f"{i:.3f}", f"{r:.3f}", f"{k:.3f}", c.status,
            *lung_rads_cells(by_number.get(c.finding)),
        )  # fmt: skip
        writer.writerow(row)
    return buffer.getvalue()


def write_candidates_csv(
    result: ResultLike, path: Path | str, *, seriesuid: str, overwrite: bool = False
) -> Path:
    """Write candidates.csv atomically; refuses an existing file unless ``overwrite``."""
    path = check_writable(Path(path), overwrite)
    return write_text_atomic(path, candidates_csv_text(result, seriesuid))
