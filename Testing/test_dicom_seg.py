"""DICOM SEG (lungcad.dicom_out.seg): read back with highdicom and pydicom, checked by dciodvfy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_out_support import STUDY_UID, phantom_result, real_series, write_phantom_series
from reports_support import bright_result, finding_from_mask

from lungcad.ctio import read_ct
from lungcad.dicom_out.algorithm import Algorithm
from lungcad.dicom_out.identity import read_dicom_identity
from lungcad.dicom_out.seg import write_seg
from lungcad.reports import OutputExistsError

ALGORITHM = Algorithm({"segmentation": "a" * 64, "nodule": "b" * 64, "malignancy": "c" * 64})


def dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's error lines for ``path`` (skips the test where dicom3tools is absent)."""
    binary = shutil.which("dciodvfy")
    if binary is None:
        pytest.skip("dciodvfy not installed (Debian package dicom3tools)")
    run = subprocess.run([binary, str(path)], capture_output=True, text=True, check=False)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("seg")
    ct = write_phantom_series(folder / "series")
    identity = read_dicom_identity(ct)
    result = phantom_result(ct)
    info = write_seg(result, identity, ALGORITHM, folder / "nodules.seg.dcm")
    return ct, identity, result, info


def test_one_segment_per_finding_with_its_label_and_nodule_terminology(written) -> None:
    _, _, result, info = written
    seg = hd.seg.segread(info.path)
    assert len(result.findings) == 2
    assert seg.number_of_segments == 2
    assert info.segment_numbers == {1: 1, 2: 2}
    for f, desc in zip(result.findings, seg.SegmentSequence, strict=True):
        assert desc.SegmentLabel == f.label()
        assert desc.SegmentedPropertyTypeCodeSequence[0].CodeValue == "27925004"
        assert desc.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
        assert desc.AnatomicRegionSequence[0].CodeValue == "39607008"
        assert desc.SegmentAlgorithmType == "AUTOMATIC"
        assert desc.TrackingID == f"Nodule {f.number}"
        assert desc.TrackingUID == info.tracking_uids[f.number]
        algorithm = desc.SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmName == "LungNoduleCAD"
        assert "malignancy_sha256=" + "c" * 64 in algorithm.AlgorithmParameters


def test_seg_is_a_new_series_in_the_source_study_with_its_patient(written) -> None:
    _, identity, _, info = written
    ds = pydicom.dcmread(info.path)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == STUDY_UID
    assert ds.SeriesInstanceUID == info.series_instance_uid != identity.series_instance_uid
    assert ds.FrameOfReferenceUID == identity.frame_of_reference_uid
    assert (ds.PatientName, ds.PatientID, ds.PatientSex) == ("Doe^Jane", "LC-0042", "F")
    assert ds.AccessionNumber == "ACC123"


def test_seg_references_every_source_slice_and_each_frame_its_own(written) -> None:
    _, identity, _, info = written
    ds = pydicom.dcmread(info.path)
    (series,) = ds.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == identity.series_instance_uid
    referenced = [item.ReferencedSOPInstanceUID for item in series.ReferencedInstanceSequence]
    assert sorted(referenced) == sorted(s.sop_instance_uid for s in identity.slices)
    by_uid = {s.sop_instance_uid: s for s in identity.slices}
    for frame in ds.PerFrameFunctionalGroupsSequence:
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        (source,) = frame.DerivationImageSequence[0].SourceImageSequence
        assert list(by_uid[source.ReferencedSOPInstanceUID].position_lps) == position


def test_seg_voxels_are_the_finding_masks(written) -> None:
    ct, identity, result, info = written
    seg = hd.seg.segread(info.path)
    by_uid = {s.sop_instance_uid: s.index for s in identity.slices}
    for f in result.findings:
        expected = f.mask.paste(ct.shape)
        got = np.zeros(ct.shape, dtype=bool)
        for n, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
            if frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber != f.number:
                continue
            (source,) = frame.DerivationImageSequence[0].SourceImageSequence
            got[by_uid[source.ReferencedSOPInstanceUID]] = seg.pixel_array[n].astype(bool)
        np.testing.assert_array_equal(got, expected)
        assert got.sum() == f.mask.voxel_count


def test_dciodvfy_finds_no_errors_in_the_seg(written) -> None:
    assert dciodvfy_errors(written[3].path) == []


def test_an_existing_seg_is_not_replaced(written) -> None:
    _, identity, result, info = written
    with pytest.raises(OutputExistsError, match="already exists"):
        write_seg(result, identity, ALGORITHM, info.path)


def test_no_findings_or_an_incomplete_identity_is_refused(tmp_path: Path) -> None:
    ct = write_phantom_series(tmp_path / "series")
    identity = read_dicom_identity(ct)
    empty = bright_result(ct)
    empty = type(empty)(**{**empty.__dict__, "findings": ()})
    with pytest.raises(ValueError, match="at least one finding"):
        write_seg(empty, identity, ALGORITHM, tmp_path / "a.dcm")
    anonymous = read_dicom_identity(read_ct(real_series("dicom_totalseg")))
    with pytest.raises(ValueError, match="lacks Study Instance UID, Series Instance UID"):
        write_seg(phantom_result(ct), anonymous, ALGORITHM, tmp_path / "b.dcm")


def test_real_lungmask_series_gets_a_seg_on_its_slices(tmp_path: Path) -> None:
    ct = read_ct(real_series("dicom_lungmask"))
    identity = read_dicom_identity(ct)
    mask = np.zeros(ct.shape, dtype=bool)
    mask[1, 200:206, 300:305] = True
    result = bright_result(ct)
    result = type(result)(
        **{**result.__dict__, "findings": (finding_from_mask(1, mask, ct, 0.9, 0.4),)}
    )
    info = write_seg(result, identity, ALGORITHM, tmp_path / "real.seg.dcm")
    ds = pydicom.dcmread(info.path)
    assert ds.StudyInstanceUID == identity.study_instance_uid
    (frame,) = ds.PerFrameFunctionalGroupsSequence
    (source,) = frame.DerivationImageSequence[0].SourceImageSequence
    assert source.ReferencedSOPInstanceUID == identity.slices[1].sop_instance_uid
    assert int(ds.pixel_array.sum()) == 30
    assert dciodvfy_errors(info.path) == []


def test_overlapping_findings_keep_each_its_whole_mask(tmp_path: Path) -> None:
    ct = write_phantom_series(tmp_path / "series")
    identity = read_dicom_identity(ct)
    a = np.zeros(ct.shape, dtype=bool)
    a[2:5, 8:14, 8:14] = True
    b = np.zeros(ct.shape, dtype=bool)
    b[4:7, 12:18, 12:18] = True  # shares slice 4, rows and cols 12-13 with a
    result = bright_result(ct)
    findings = (finding_from_mask(1, a, ct, 0.9, 0.8), finding_from_mask(2, b, ct, 0.9, 0.3))
    result = type(result)(**{**result.__dict__, "findings": findings})
    info = write_seg(result, identity, ALGORITHM, tmp_path / "overlap.seg.dcm")
    seg = hd.seg.segread(info.path)
    by_uid = {s.sop_instance_uid: s.index for s in identity.slices}
    got = {1: np.zeros(ct.shape, dtype=bool), 2: np.zeros(ct.shape, dtype=bool)}
    for n, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        (source,) = frame.DerivationImageSequence[0].SourceImageSequence
        got[number][by_uid[source.ReferencedSOPInstanceUID]] = seg.pixel_array[n].astype(bool)
    np.testing.assert_array_equal(got[1], a)
    np.testing.assert_array_equal(got[2], b)
    assert dciodvfy_errors(info.path) == []
