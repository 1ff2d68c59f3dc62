"""report.pdf (lungcad.dicom_out.pdf): one A4 page with identity, summary, findings table, key
images, model versions and the decision-support statement."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from dicom_out_support import phantom_result, write_phantom_series
from matplotlib.table import Table
from test_dicom_seg import ALGORITHM

from lungcad.dicom_out.algorithm import DECISION_SUPPORT, Algorithm
from lungcad.dicom_out.identity import read_dicom_identity
from lungcad.dicom_out.pdf import MAX_KEY_IMAGES, MAX_TABLE_ROWS, report_figure, write_pdf
from lungcad.pipeline.findings import PatientSummary
from lungcad.reports import OutputExistsError


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("pdf")
    ct = write_phantom_series(folder / "series")
    return folder, ct, read_dicom_identity(ct), phantom_result(ct)


def page_texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.texts)


def table_of(fig) -> list[list[str]]:
    (table,) = [child for ax in fig.axes for child in ax.get_children() if isinstance(child, Table)]
    cells = table.get_celld()
    n_rows = 1 + max(r for r, _ in cells)
    n_cols = 1 + max(c for _, c in cells)
    return [[cells[r, c].get_text().get_text() for c in range(n_cols)] for r in range(n_rows)]


def key_images(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_pdf_is_one_page_named_for_the_case(case) -> None:
    folder, ct, identity, result = case
    path = write_pdf(result, ct, ALGORITHM, identity, folder / "report.pdf", case_id="case-7")
    data = path.read_bytes()
    assert data.startswith(b"%PDF-")
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", data)) == 1
    assert b"LungNoduleCAD report case-7" in data  # the document title
    with pytest.raises(OutputExistsError, match="already exists"):
        write_pdf(result, ct, ALGORITHM, identity, path, case_id="case-7")


def test_page_shows_identity_summary_models_and_statement(case) -> None:
    _, ct, identity, result = case
    algorithm = Algorithm(
        {"nodule": "f" * 64}, trained_on={"nodule": "synthetic chest phantoms (x)"}
    )
    text = page_texts(report_figure(result, ct, algorithm, identity, case_id="c"))
    assert "Patient: Doe^Jane    ID: LC-0042    born: 19600101    sex: F" in text
    assert "accession: ACC123" in text and "CT chest low dose" in text
    assert "10 slices" in text and identity.series_instance_uid in text
    assert result.summary.text in text
    assert "sha256 " + "f" * 64 in text
    statement = DECISION_SUPPORT + " The models were trained on synthetic chest phantoms."
    assert statement in " ".join(text.split())  # wrapped over lines on the page


def test_table_lists_each_finding_and_each_has_a_key_image(case) -> None:
    _, ct, identity, result = case
    fig = report_figure(result, ct, ALGORITHM, identity, case_id="c")
    rows = table_of(fig)
    assert len(rows) == 1 + len(result.findings)
    for row, f in zip(rows[1:], result.findings, strict=True):
        assert row[0] == str(f.number)
        assert row[3] == f"{f.diameter_mm:.1f}" and row[6] == f"{f.p_malignant:.2f}"
    assert [t.split()[0] for t in key_images(fig)] == ["N1", "N2"]


def test_many_findings_are_cut_to_what_fits_and_say_so(case) -> None:
    _, ct, identity, result = case
    many = dataclasses.replace(result, findings=result.findings * 6)
    fig = report_figure(many, ct, ALGORITHM, identity, case_id="c")
    assert len(table_of(fig)) == 1 + MAX_TABLE_ROWS
    assert len(key_images(fig)) == MAX_KEY_IMAGES
    assert f"(and {12 - MAX_TABLE_ROWS} more findings: see results.json)" in page_texts(fig)


def test_non_dicom_input_and_no_findings(case, tmp_path: Path) -> None:
    _, ct, _, result = case
    none = dataclasses.replace(
        result, findings=(), summary=PatientSummary.of((), result.thresholds)
    )
    fig = report_figure(none, ct, ALGORITHM, None, case_id="scan", source="/data/scan.nrrd")
    text = page_texts(fig)
    assert "Input: /data/scan.nrrd" in text
    assert "Not a DICOM series: no patient or study identity was read." in text
    assert "No nodule found above the current thresholds." in text
    assert key_images(fig) == [] and not any(ax.tables for ax in fig.axes)
    path = write_pdf(none, ct, ALGORITHM, None, tmp_path / "r.pdf", case_id="scan")
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", path.read_bytes())) == 1
