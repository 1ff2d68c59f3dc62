"""DICOM SR TID 1500 (lungcad.dicom_out.sr): read back with highdicom, values equal to
results.json, references to the SEG segments and source slices, checked by dciodvfy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_out_support import STUDY_UID, phantom_result, write_phantom_series
from highdicom.sr.utils import find_content_items
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from test_dicom_seg import ALGORITHM, dciodvfy_errors

from lungcad.dicom_out.identity import read_dicom_identity
from lungcad.dicom_out.seg import write_seg
from lungcad.dicom_out.sr import (
    CENTER,
    CERTAINTY_OF_FINDING,
    DIAMETER,
    FINDING_COUNT,
    LONG_AXIS,
    LUNG_RADS,
    MEAN,
    PROBABILITY_OF_CANCER,
    SUSPICIOUS_COUNT,
    VOLUME,
    SRFinding,
    write_sr,
)
from lungcad.reports.results_json import results_dict

GEOMETRIC_PURPOSE = Code("130400", "DCM", "Geometric purpose of region")


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("sr")
    ct = write_phantom_series(folder / "series")
    identity = read_dicom_identity(ct)
    result = phantom_result(ct)
    seg = write_seg(result, identity, ALGORITHM, folder / "nodules.seg.dcm")
    path = write_sr(result, identity, ALGORITHM, seg, folder / "nodules.sr.dcm")
    return identity, result, seg, path


def report_of(path: Path) -> hd.sr.MeasurementReport:
    sr = hd.sr.srread(path)
    return hd.sr.MeasurementReport.from_sequence([sr])


def value(group, name) -> float:
    (measurement,) = [m for m in group.get_measurements(name=name) if m.derivation is None]
    return measurement.value


def test_each_finding_has_the_values_of_results_json(written) -> None:
    _, result, _, path = written
    doc = results_dict(result)
    report = report_of(path)
    groups = report.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(doc["findings"]) == 2
    for group, finding in zip(groups, doc["findings"], strict=True):
        assert group.tracking_identifier == f"Nodule {finding['number']}"
        assert value(group, DIAMETER) == finding["diameter_mm"]
        assert value(group, VOLUME) == finding["volume_mm3"]
        assert value(group, MEAN) == finding["mean_hu"]
        assert value(group, CERTAINTY_OF_FINDING) == finding["p_nodule"]
        assert value(group, PROBABILITY_OF_CANCER) == finding["p_malignant"]
        for m in group.get_measurements():
            (name,) = find_content_items(m[0], name=codes.DCM.AlgorithmName)
            assert name.value == "LungNoduleCAD"
        # the optional Lung-RADS items are absent while findings do not carry them
        assert group.get_measurements(name=LONG_AXIS) == []
        assert group.get_qualitative_evaluations() == []


def test_each_finding_references_its_segment_and_the_slice_through_its_centre(written) -> None:
    identity, result, seg, path = written
    groups = report_of(path).get_volumetric_roi_measurement_groups()
    for group, f in zip(groups, result.findings, strict=True):
        ref = group.referenced_segment
        assert ref.referenced_sop_instance_uid == seg.sop_instance_uid
        assert ref.referenced_segment_numbers == [seg.segment_numbers[f.number]]
        assert group.tracking_uid == seg.tracking_uids[f.number]
        (source,) = ref.source_images_for_segmentation
        k = int(np.rint(f.center_irc[0]))
        assert source.referenced_sop_instance_uid == identity.slices[k].sop_instance_uid


def test_each_centre_is_a_3d_point_in_the_source_frame_of_reference(written) -> None:
    identity, result, _, path = written
    doc = results_dict(result)
    groups = report_of(path).get_planar_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == ["Nodule 1 centre", "Nodule 2 centre"]
    for group, finding in zip(groups, doc["findings"], strict=True):
        # SCOORD3D stores 32-bit floats: the centre to float32 precision
        np.testing.assert_array_equal(
            group.roi.value[0], np.asarray(finding["center_lps"], dtype=np.float32)
        )
        assert group.roi.frame_of_reference_uid == identity.frame_of_reference_uid
        (purpose,) = find_content_items(group[0], name=GEOMETRIC_PURPOSE)
        assert purpose.value == CENTER


def test_exam_summary_holds_counts_and_highest_malignancy(written) -> None:
    _, result, _, path = written
    doc = results_dict(result)
    (summary,) = report_of(path).get_image_measurement_groups()
    assert summary.tracking_identifier == "Exam summary"
    assert value(summary, FINDING_COUNT) == doc["summary"]["finding_count"] == 2
    assert value(summary, SUSPICIOUS_COUNT) == doc["summary"]["suspicious_count"]
    (highest,) = summary.get_measurements(name=PROBABILITY_OF_CANCER)
    assert highest.value == doc["summary"]["highest_malignancy"]


def test_sr_is_in_the_source_study_and_lists_its_evidence(written) -> None:
    identity, _, seg, path = written
    ds = pydicom.dcmread(path)
    assert ds.Modality == "SR" and ds.StudyInstanceUID == STUDY_UID
    assert ds.PatientName == "Doe^Jane" and ds.CompletionFlag == "COMPLETE"
    evidence = {
        item.ReferencedSOPInstanceUID
        for study in ds.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert evidence == {s.sop_instance_uid for s in identity.slices} | {seg.sop_instance_uid}


def test_dciodvfy_finds_no_errors_in_the_sr(written) -> None:
    assert dciodvfy_errors(written[3]) == []


def test_lung_rads_fields_are_reported_where_a_finding_carries_them(
    written, tmp_path: Path
) -> None:
    identity, result, seg, _ = written

    from lungcad.characteristics import MarginSource, NoduleType, TypeSource
    from lungcad.lungrads import AxialAxes, LungRadsCategory, LungRadsMeasurements, NoduleAssessment

    ends = ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0))
    axes = AxialAxes(7.5, 5.0, 6.3, 0.0, ends, ends)
    measured = LungRadsMeasurements(axes=axes, solid=None, volume_mm3=150.0, recist_longest_mm=7.5)
    assessed = NoduleAssessment(
        LungRadsCategory.C4A, NoduleType.SOLID, TypeSource.ASSUMED_SOLID, None,
        MarginSource.ASSUMED_NOT_SPICULATED, 6.3, None,
    )  # fmt: skip

    findings = tuple(
        dataclasses.replace(f, measurements=measured, lung_rads=assessed) for f in result.findings
    )
    assert SRFinding.of(findings[0]).lung_rads == "4A"
    richer = dataclasses.replace(result, findings=findings)
    path = write_sr(richer, identity, ALGORITHM, seg, tmp_path / "sr.dcm")
    group = report_of(path).get_volumetric_roi_measurement_groups()[0]
    assert value(group, LONG_AXIS) == 7.5
    (mean,) = [m for m in group.get_measurements(name=DIAMETER) if m.derivation is not None]
    assert mean.derivation == MEAN
    assert mean.value == 6.3
    (category,) = group.get_qualitative_evaluations(name=LUNG_RADS)
    assert category.value.value == "4A"
    assert dciodvfy_errors(path) == []


def test_without_findings_the_sr_holds_the_summary_alone(tmp_path: Path) -> None:
    ct = write_phantom_series(tmp_path / "series")
    identity = read_dicom_identity(ct)
    result = phantom_result(ct)
    none = dataclasses.replace(result, findings=(), summary=type(result.summary).of((), None))
    path = write_sr(none, identity, ALGORITHM, None, tmp_path / "sr.dcm")
    report = report_of(path)
    assert report.get_volumetric_roi_measurement_groups() == []
    (summary,) = report.get_image_measurement_groups()
    assert value(summary, FINDING_COUNT) == 0
    assert summary.get_measurements(name=PROBABILITY_OF_CANCER) == []
    assert dciodvfy_errors(path) == []
    with pytest.raises(ValueError, match="findings need their SEG"):
        write_sr(result, identity, ALGORITHM, None, tmp_path / "other.dcm")
