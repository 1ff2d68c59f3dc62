"""Lung-RADS in the per-case files: results.json's findings and summary, candidates.csv's columns;
stand-ins without measurements write nulls; ``lungcad evaluate`` reads files with and without."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from pipeline_support import fake_models, graded_models, tiny_ct
from reports_support import bright_result
from reports_support import tiny_ct as tiny_bright_ct

from lungcad.evaluation.inputs import read_case_folder
from lungcad.lungrads import DECISION_SUPPORT
from lungcad.pipeline import Thresholds, detect
from lungcad.reports import read_results, write_candidates_csv, write_results_json
from lungcad.reports.candidates_csv import CANDIDATE_COLUMNS
from lungcad.reports.lungrads_fields import LUNG_RADS_COLUMNS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def result():
    return detect(tiny_ct(), fake_models(), Thresholds(0.5, 0.5, 0.5))


@pytest.fixture(scope="module")
def graded():
    """One finding and two candidates below the nodule threshold."""
    return detect(tiny_ct(), graded_models(), Thresholds(0.5, 0.5, 0.5))


def _rows(path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_results_json_carries_each_findings_measurements_and_category(result, tmp_path):
    doc = read_results(write_results_json(result, tmp_path / "results.json"))

    assert len(doc["findings"]) == 3
    for row, f in zip(doc["findings"], result.findings, strict=True):
        m, a = f.measurements, f.lung_rads
        written = row["lung_rads_measurements"]
        assert written["long_axis_mm"] == m.axes.long_axis_mm
        assert written["short_axis_mm"] == m.axes.short_axis_mm
        assert written["mean_diameter_mm"] == m.mean_diameter_mm
        assert written["axial_s_mm"] == round(m.axes.s_mm, 3)
        assert written["long_axis_lps"] == [[round(v, 3) for v in p] for p in m.axes.long_axis_lps]
        assert written["solid_component"]["mean_diameter_mm"] == m.solid_mean_diameter_mm
        assert written["solid_hu_threshold"] == -300.0
        assert written["volume_mm3"] == m.volume_mm3
        assert written["recist_longest_mm"] == m.recist_longest_mm
        assert row["diameter_mm"] == round(f.diameter_mm, 3)  # keeps its meaning
        assert row["lung_rads"] == {
            "category": a.category.value,
            "type": "solid",
            "type_source": "assumed solid",
            "margin": None,
            "margin_source": "assumed not spiculated",
            "mean_diameter_mm": m.mean_diameter_mm,
            "solid_mean_diameter_mm": None,
            "reason": f"solid (assumed solid), mean diameter {m.mean_diameter_mm:.1f} mm",
        }
    exam = doc["summary"]["lung_rads"]
    assert exam["category"] == result.summary.lung_rads.category.value
    assert exam["management"] == result.summary.lung_rads.management
    assert exam["finding_numbers"] == list(result.summary.lung_rads.finding_numbers)
    assert exam["assumed_type_count"] == 3
    assert exam["decision_support"] == DECISION_SUPPORT
    assert exam["version"] == "Lung-RADS v2022 (baseline screening)"


def test_results_json_summary_follows_a_refilter(result, tmp_path):
    top = max(f.p_nodule for f in result.findings)
    none = result.refilter(Thresholds(0.5, min(1.0, top + 1e-9), 0.5))
    doc = read_results(write_results_json(none, tmp_path / "results.json"))
    assert doc["findings"] == []
    assert doc["summary"]["lung_rads"]["category"] == "1"
    assert doc["summary"]["lung_rads"]["finding_numbers"] == []


def test_candidates_csv_adds_lung_rads_columns_after_the_old_ones(graded, tmp_path):
    result = graded
    rows = _rows(write_candidates_csv(result, tmp_path / "candidates.csv", seriesuid="1.2.3"))

    assert CANDIDATE_COLUMNS[-len(LUNG_RADS_COLUMNS) :] == LUNG_RADS_COLUMNS
    assert CANDIDATE_COLUMNS[: -len(LUNG_RADS_COLUMNS)][-1] == "status"
    by_number = {f.number: f for f in result.findings}
    assert len(rows) == len(result.candidates) > len(result.findings) == 1
    for row in rows:
        if row["finding"] == "":
            assert all(row[c] == "" for c in LUNG_RADS_COLUMNS)
            continue
        f = by_number[int(row["finding"])]
        m = f.measurements
        assert float(row["mean_diameter_mm"]) == m.mean_diameter_mm
        assert float(row["long_axis_mm"]) == m.axes.long_axis_mm
        assert float(row["short_axis_mm"]) == m.axes.short_axis_mm
        assert float(row["solid_mean_diameter_mm"]) == m.solid_mean_diameter_mm
        assert float(row["segment_volume_mm3"]) == m.volume_mm3
        assert float(row["recist_longest_mm"]) == m.recist_longest_mm
        assert (row["nodule_type"], row["type_source"]) == ("solid", "assumed solid")
        assert row["lung_rads"] == f.lung_rads.category.value


def test_findings_without_measurements_write_nulls_and_empty_cells(tmp_path):
    stand_in = bright_result(tiny_bright_ct("1.2.3"))
    assert stand_in.findings and stand_in.findings[0].measurements is None

    doc = read_results(write_results_json(stand_in, tmp_path / "results.json"))
    rows = _rows(write_candidates_csv(stand_in, tmp_path / "candidates.csv", seriesuid="1.2.3"))

    assert all(f["lung_rads_measurements"] is None for f in doc["findings"])
    assert all(f["lung_rads"] is None for f in doc["findings"])
    assert doc["summary"]["lung_rads"] is None
    assert all(row[c] == "" for row in rows for c in LUNG_RADS_COLUMNS)


def test_evaluate_reads_case_folders_with_and_without_the_lung_rads_fields(result, tmp_path):
    new = tmp_path / "new"
    new.mkdir()
    write_results_json(result, new / "results.json")
    write_candidates_csv(result, new / "candidates.csv", seriesuid=result.series_uid)
    # the same case as files written before Lung-RADS: no such columns, keys or objects
    old = tmp_path / "old"
    old.mkdir()
    doc = json.loads((new / "results.json").read_text(encoding="utf-8"))
    del doc["summary"]["lung_rads"]
    for f in doc["findings"]:
        del f["lung_rads_measurements"], f["lung_rads"]
    (old / "results.json").write_text(json.dumps(doc))
    rows = _rows(new / "candidates.csv")
    keep = CANDIDATE_COLUMNS[: -len(LUNG_RADS_COLUMNS)]
    with (old / "candidates.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keep, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    a, b = read_case_folder(new), read_case_folder(old)

    assert a.series_uid == b.series_uid == result.series_uid
    assert a.thresholds == b.thresholds == result.thresholds
    assert len(a) == len(b) == len(result.candidates)
    for name in ("xyz", "probability", "p_nodule", "p_malignant", "finding", "diameter_mm"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
