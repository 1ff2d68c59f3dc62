"""report.pdf: one page per case for the referring clinician (matplotlib, no other dependency).

Top to bottom: who and what was read (patient and series identity for a DICOM input, the input
path otherwise), the exam summary and any warnings, a table of findings, one key image per
finding (the axial slice through its centre in lung window with its outline, as in overlay.png),
the model versions with their SHA-256s, and the decision-support statement with what the models
were trained on. A case with more findings than fit lists the first ones and says how many more.
"""

from __future__ import annotations

import io
import logging
import textwrap
from pathlib import Path

import SimpleITK as sitk
from matplotlib.backends.backend_pdf import FigureCanvasPdf
from matplotlib.figure import Figure

from lungcad.atomic import write_bytes_atomic
from lungcad.ct import CT
from lungcad.dicom_out.algorithm import DECISION_SUPPORT, Algorithm
from lungcad.dicom_out.identity import DicomIdentity
from lungcad.reports.common import ResultLike, check_writable
from lungcad.reports.overlay import draw_finding
from lungcad.reports.results_json import result_warnings
from lungcad.show import canonical_image

__all__ = ["MAX_KEY_IMAGES", "MAX_TABLE_ROWS", "identity_lines", "report_figure", "write_pdf"]

log = logging.getLogger(__name__)

A4_INCHES = (8.27, 11.69)
MAX_TABLE_ROWS = 8
MAX_KEY_IMAGES = 6
MAX_WARNINGS = 4
#: Characters of a line at 1 pt (a line of n pt holds CHARS_AT_1PT / n): the page's text width
#: over the average glyph width of matplotlib's default font, with some room.
CHARS_AT_1PT = 1000
COLUMN_WIDTHS = (0.04, 0.08, 0.26, 0.12, 0.12, 0.1, 0.12, 0.14)
#: Key image width as a share of the page width; three to a row.
IMAGE_WIDTH = 0.27
TABLE_COLUMNS = (
    "#", "kind", "centre x, y, z (mm, LPS)", "diameter (mm)", "volume (mm3)", "p(nodule)",
    "p(malignant)", "band",
)  # fmt: skip


def identity_lines(
    identity: DicomIdentity | None, source: Path | str | None, series_uid: str | None
) -> list[str]:
    """The identity block: patient, study and series as read, or the input for non-DICOM."""
    if identity is None:
        return [
            f"Input: {source if source is not None else '(in memory)'}",
            "Not a DICOM series: no patient or study identity was read.",
            f"Series UID: {series_uid or '(none)'}",
        ]
    ps = identity.patient_study
    return [
        f"Patient: {ps.patient_name or '(no name)'}    ID: {ps.patient_id or '(none)'}    "
        f"born: {ps.patient_birth_date or '-'}    sex: {ps.patient_sex or '-'}",
        f"Study: {ps.study_date or '(no date)'} {ps.study_time}    accession: "
        f"{ps.accession_number or '-'}    {ps.study_description}".rstrip(),
        f"Series: {identity.series_number if identity.series_number is not None else '-'} "
        f"{identity.series_description}    {len(identity.slices)} slices    UID "
        f"{identity.series_instance_uid or '(none)'}",
    ]


def _table_rows(result: ResultLike) -> list[list[str]]:
    threshold = result.thresholds.malignancy
    return [
        [
            str(f.number),
            f.kind,
            ", ".join(f"{v:.1f}" for v in f.center_lps),
            f"{f.diameter_mm:.1f}",
            f"{f.volume_mm3:.0f}",
            f"{f.p_nodule:.2f}",
            f"{f.p_malignant:.2f}",
            f.band(threshold).value,
        ]
        for f in result.findings[:MAX_TABLE_ROWS]
    ]


def _model_lines(result: ResultLike, algorithm: Algorithm) -> list[str]:
    lines = [f"{algorithm.name} {algorithm.version}"]
    for task in sorted(set(result.model_versions) | set(algorithm.model_sha256)):
        sha = algorithm.model_sha256.get(task)
        version = result.model_versions.get(task, "")
        lines.append(f"{task}: {version}" + (f"  sha256 {sha}" if sha else ""))
    return lines


def report_figure(
    result: ResultLike,
    ct: CT,
    algorithm: Algorithm,
    identity: DicomIdentity | None,
    *,
    case_id: str,
    source: Path | str | None = None,
    canonical: sitk.Image | None = None,
) -> Figure:
    """The page as a matplotlib Figure (A4 portrait)."""
    fig = Figure(figsize=A4_INCHES)
    t = result.thresholds
    y = 0.975

    def text(line: str, size: float = 8.5, **kw) -> None:
        nonlocal y
        for part in textwrap.wrap(line, width=int(CHARS_AT_1PT / size)) or [""]:
            fig.text(0.05, y, part, fontsize=size, va="top", **kw)
            y -= 0.0115 * size / 8.5 + 0.004

    text(f"LungNoduleCAD lung nodule report — {case_id}", 13, fontweight="bold")
    for line in identity_lines(identity, source, result.series_uid):
        text(line)
    y -= 0.006
    text("Exam summary", 10, fontweight="bold")
    text(result.summary.text)
    text(
        f"Thresholds: segmentation {t.segmentation:g}, nodule {t.nodule:g}, "
        f"malignancy {t.malignancy:g}"
    )
    for warning in result_warnings(result)[:MAX_WARNINGS]:
        text(f"Warning: {warning}", 7.5, color="darkred")
    y -= 0.006
    rows = _table_rows(result)
    if rows:
        height = 0.018 * (len(rows) + 1)
        ax = fig.add_axes((0.05, y - height, 0.9, height))
        ax.set_axis_off()
        table = ax.table(
            cellText=rows, colLabels=TABLE_COLUMNS, colWidths=COLUMN_WIDTHS, loc="upper center"
        )
        table.auto_set_font_size(False)
        table.set_fontsize(7.5)
        y -= height + 0.008
        more = len(result.findings) - len(rows)
        if more > 0:
            text(f"(and {more} more findings: see results.json)", 7.5)
    shown = result.findings[:MAX_KEY_IMAGES]
    if shown:
        image_canonical = canonical if canonical is not None else canonical_image(ct)
        height = IMAGE_WIDTH * A4_INCHES[0] / A4_INCHES[1]  # square on the page
        text("Key images (axial, lung window; outline in the malignancy band's colour)", 9)
        for n, f in enumerate(shown):
            col, row = n % 3, n // 3
            bottom = y - 0.04 - row * (height + 0.075) - height
            ax = fig.add_axes((0.07 + col * 0.31, bottom, IMAGE_WIDTH, height))
            draw_finding(ax, ct, image_canonical, f, t.malignancy)
        y = bottom - 0.04
    y = min(y, 0.15)
    text("Models", 9, fontweight="bold")
    for line in _model_lines(result, algorithm):
        text(line, 6)
    text(DECISION_SUPPORT + " " + algorithm.training_statement(), 7)
    return fig


def write_pdf(
    result: ResultLike,
    ct: CT,
    algorithm: Algorithm,
    identity: DicomIdentity | None,
    path: Path | str,
    *,
    case_id: str,
    source: Path | str | None = None,
    canonical: sitk.Image | None = None,
    overwrite: bool = False,
) -> Path:
    """Write report.pdf (one page) atomically; refuses an existing file unless ``overwrite``."""
    path = check_writable(Path(path), overwrite)
    fig = report_figure(
        result, ct, algorithm, identity, case_id=case_id, source=source, canonical=canonical
    )
    FigureCanvasPdf(fig)
    buffer = io.BytesIO()
    try:
        fig.savefig(
            buffer,
            format="pdf",
            metadata={"Title": f"LungNoduleCAD report {case_id}", "Creator": algorithm.name},
        )
    finally:
        fig.clear()
    log.info("wrote %s", path)
    return write_bytes_atomic(path, buffer.getvalue())
