"""``lungcad detect --dicom-out``: SEG, SR and PDF beside the per-case files for DICOM series,
the PDF and a one-line note otherwise; resume knows the option. A fast stand-in detector."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from bad_inputs_support import good_crop_ct
from dicom_out_support import PATIENT_TAGS, SERIES_UID, real_series, write_phantom_series
from reports_support import TruthResult, bright_result, empty_result, finding_from_mask, tiny_ct
from test_detect_cli import FakeDetector
from test_dicom_seg import dciodvfy_errors
from test_dicom_sr import DIAMETER, PROBABILITY_OF_CANCER, VOLUME, report_of, value
from test_io_dicom_series import write_dicom_series

import lungcad.cohort
from lungcad.cli import main
from lungcad.ctio import write_ct
from lungcad.dicom_out.case import NOT_DICOM_NOTE
from lungcad.dicom_out.identity import read_dicom_identity
from lungcad.pipeline import DetectionResult
from lungcad.pipeline.findings import PatientSummary, Thresholds
from lungcad.reports import read_results
from lungcad.reports.results_json import results_dict

DICOM_FILES = ("nodules.seg.dcm", "nodules.sr.dcm", "report.pdf")


@pytest.fixture
def fake(monkeypatch):
    FakeDetector.runs = []
    monkeypatch.setattr(lungcad.cohort, "CascadeDetector", FakeDetector)
    return FakeDetector


class OneFindingDetector(FakeDetector):
    """One 6x6-voxel finding on the middle slice: a real CT's bright bone would make hundreds."""

    def __call__(self, ct):
        mask = np.zeros(ct.shape, dtype=bool)
        mask[ct.shape[0] // 2, 250:256, 300:306] = True
        findings = (finding_from_mask(1, mask, ct, 0.9, 0.6),)
        t = self.thresholds or Thresholds()
        return TruthResult(
            ct.geometry, ct.series_uid, t, findings, (), PatientSummary.of(findings, t)
        )


@pytest.fixture
def one_finding(monkeypatch):
    monkeypatch.setattr(lungcad.cohort, "CascadeDetector", OneFindingDetector)


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    series = tmp_path / "in" / "series"
    write_phantom_series(series)
    scan = tmp_path / "in" / "scan.nrrd"
    write_ct(tiny_ct(None), scan)
    return series, scan


def detect(*args: object) -> int:
    return main(["detect", *(str(a) for a in args), "--quiet"])


def test_dicom_series_gets_seg_sr_and_pdf_with_the_values_of_results_json(
    fake, inputs, tmp_path: Path, capsys
) -> None:
    series, scan = inputs
    out = tmp_path / "out"
    assert detect(series, scan, "--out", out, "--dicom-out") == 0
    printed = capsys.readouterr().out
    case = out / SERIES_UID
    doc = json.loads((case / "results.json").read_text(encoding="utf-8"))
    for name in DICOM_FILES:
        assert (case / name).is_file()
    assert doc["outputs"]["dicom_seg"] == "nodules.seg.dcm"
    assert doc["outputs"]["dicom_sr"] == "nodules.sr.dcm"
    assert doc["outputs"]["report_pdf"] == "report.pdf"
    identity = read_dicom_identity(lungcad.ctio.read_ct(series))
    seg = hd.seg.segread(case / "nodules.seg.dcm")
    assert doc["dicom"]["seg"]["sop_instance_uid"] == seg.SOPInstanceUID
    assert doc["dicom"]["study_instance_uid"] == seg.StudyInstanceUID == identity.study_instance_uid
    assert doc["dicom"]["note"] is None
    assert [s.SegmentLabel for s in seg.SegmentSequence] == [f["label"] for f in doc["findings"]]
    referenced = {
        item.ReferencedSOPInstanceUID
        for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert referenced == {s.sop_instance_uid for s in identity.slices}
    groups = report_of(case / "nodules.sr.dcm").get_volumetric_roi_measurement_groups()
    assert len(groups) == len(doc["findings"]) == 2
    for group, finding in zip(groups, doc["findings"], strict=True):
        assert value(group, DIAMETER) == finding["diameter_mm"]
        assert value(group, VOLUME) == finding["volume_mm3"]
        assert value(group, PROBABILITY_OF_CANCER) == finding["p_malignant"]
    # the file input: the PDF, and one line that says why there is no SEG or SR
    scan_case = out / "scan"
    assert (scan_case / "report.pdf").is_file()
    assert not (scan_case / "nodules.seg.dcm").exists()
    assert not (scan_case / "nodules.sr.dcm").exists()
    scan_doc = json.loads((scan_case / "results.json").read_text(encoding="utf-8"))
    assert scan_doc["dicom"] == {"note": NOT_DICOM_NOTE}
    assert printed.count(f"    DICOM outputs: {NOT_DICOM_NOTE}\n") == 1
    assert "DICOM outputs" not in printed.split(f"  {SERIES_UID}:")[1].split("\n  ")[0]


def test_without_the_option_nothing_dicom_is_written_or_recorded(
    fake, inputs, tmp_path: Path
) -> None:
    series, _ = inputs
    out = tmp_path / "out"
    assert detect(series, "--out", out) == 0
    case = out / SERIES_UID
    assert not any((case / name).exists() for name in DICOM_FILES)
    doc = json.loads((case / "results.json").read_text(encoding="utf-8"))
    assert "dicom" not in doc and "dicom_seg" not in doc["outputs"]
    assert "PatientName" not in (case / "results.json").read_text(encoding="utf-8")


def test_asking_for_dicom_outputs_later_reruns_a_done_case(
    fake, inputs, tmp_path: Path, capsys
) -> None:
    series, _ = inputs
    out = tmp_path / "out"
    assert detect(series, "--out", out) == 0
    assert detect(series, "--out", out, "--dicom-out") == 0
    printed = capsys.readouterr().out
    assert f"rerun {SERIES_UID}: options changed (option dicom_out none -> True)" in printed
    assert (out / SERIES_UID / "nodules.sr.dcm").is_file()
    assert detect(series, "--out", out, "--dicom-out") == 0  # done with the option: skipped
    assert "1 skipped" in capsys.readouterr().out


def test_real_lungmask_series_gets_seg_and_sr(one_finding, tmp_path: Path) -> None:
    folder = real_series("dicom_lungmask")
    out = tmp_path / "out"
    assert detect(folder, "--out", out, "--dicom-out") == 0
    (case,) = [p for p in out.iterdir() if p.is_dir()]
    doc = json.loads((case / "results.json").read_text(encoding="utf-8"))
    seg = pydicom.dcmread(case / "nodules.seg.dcm")
    assert len(seg.SegmentSequence) == len(doc["findings"]) == 1
    (frame,) = seg.PerFrameFunctionalGroupsSequence
    (source,) = frame.DerivationImageSequence[0].SourceImageSequence
    assert source.ReferencedSOPInstanceUID == pydicom.dcmread(folder / "1.dcm").SOPInstanceUID
    assert doc["dicom"]["frame_of_reference_derived"] is True
    sr = pydicom.dcmread(case / "nodules.sr.dcm")
    assert sr.StudyInstanceUID == seg.StudyInstanceUID == doc["dicom"]["study_instance_uid"]


def test_real_anonymised_series_gets_the_pdf_and_says_which_uids_it_lacks(
    one_finding, tmp_path: Path, capsys
) -> None:
    folder = real_series("dicom_totalseg")
    out = tmp_path / "out"
    assert detect(folder, "--out", out, "--dicom-out") == 0
    (case,) = [p for p in out.iterdir() if p.is_dir()]
    assert (case / "report.pdf").is_file() and not (case / "nodules.sr.dcm").exists()
    note = (
        "the series lacks Study Instance UID, Series Instance UID, SOP Instance UID (20 of 20 "
        "slices), SOP Class UID (20 of 20 slices): report.pdf only, no DICOM SEG or SR"
    )
    assert f"    DICOM outputs: {note}\n" in capsys.readouterr().out
    assert json.loads((case / "results.json").read_text(encoding="utf-8"))["dicom"] == {
        "note": note
    }


def test_an_extra_results_key_never_replaces_a_standard_one() -> None:
    ct = tiny_ct(None)
    with pytest.raises(ValueError, match=r"extra results.json keys \['findings'\]"):
        results_dict(bright_result(ct), extra={"findings": [], "dicom": {}})
    assert results_dict(bright_result(ct), extra={"dicom": {"note": "x"}})["dicom"] == {"note": "x"}


def test_end_to_end_with_the_bundled_weights_on_a_dicom_series(tmp_path: Path, capsys) -> None:
    """The cascade itself (not a stand-in) on a phantom crop written as a DICOM series: the SEG
    holds what detection.npz holds, and the SR the numbers of results.json."""
    crop = lungcad.ctio.read_ct(good_crop_ct(tmp_path / "crop.nrrd"))
    g = crop.geometry
    series = tmp_path / "series"
    write_dicom_series(
        series, crop.hu, SERIES_UID, spacing_xyz=g.spacing_xyz, origin_xyz=g.origin_xyz,
        direction=g.direction_matrix, extra_tags=PATIENT_TAGS,
    )  # fmt: skip
    out = tmp_path / "out"
    args = ["--device", "cpu", "--precision", "float32", "--dicom-out"]
    assert detect(series, "--out", out, *args) == 0
    assert "DICOM outputs" not in capsys.readouterr().out
    case = out / SERIES_UID
    doc = read_results(case / "results.json")
    saved = DetectionResult.load(case / "detection.npz")
    assert len(doc["findings"]) == len(saved.findings) > 0  # the crop holds a 28 mm nodule
    seg = hd.seg.segread(case / "nodules.seg.dcm")
    ct = lungcad.ctio.read_ct(series)  # the grid detection ran on (z may run the other way)
    by_uid = {s.sop_instance_uid: s.index for s in read_dicom_identity(ct).slices}
    for f in saved.findings:
        voxels = 0
        for n, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
            if frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber == f.number:
                (source,) = frame.DerivationImageSequence[0].SourceImageSequence
                k = by_uid[source.ReferencedSOPInstanceUID]
                expected = f.mask.paste(ct.shape)[k]
                assert (seg.pixel_array[n].astype(bool) == expected).all()
                voxels += int(expected.sum())
        assert voxels == f.mask.voxel_count
    groups = report_of(case / "nodules.sr.dcm").get_volumetric_roi_measurement_groups()
    for group, finding in zip(groups, doc["findings"], strict=True):
        assert value(group, DIAMETER) == finding["diameter_mm"]
        assert value(group, VOLUME) == finding["volume_mm3"]
        assert value(group, PROBABILITY_OF_CANCER) == finding["p_malignant"]
    assert dciodvfy_errors(case / "nodules.seg.dcm") == []
    assert dciodvfy_errors(case / "nodules.sr.dcm") == []


def test_a_rerun_without_findings_leaves_no_seg_of_the_run_before(
    fake, inputs, tmp_path: Path, monkeypatch
) -> None:
    series, _ = inputs
    out = tmp_path / "out"
    assert detect(series, "--out", out, "--dicom-out") == 0
    assert (out / SERIES_UID / "nodules.seg.dcm").is_file()
    monkeypatch.setattr(FakeDetector, "__call__", lambda self, ct: empty_result(ct))
    assert detect(series, "--out", out, "--dicom-out", "--overwrite") == 0
    case = out / SERIES_UID
    assert not (case / "nodules.seg.dcm").exists()
    assert (case / "nodules.sr.dcm").is_file()
    assert (
        "dicom_seg"
        not in json.loads((case / "results.json").read_text(encoding="utf-8"))["outputs"]
    )
