"""The DICOM identity of an input series (lungcad.dicom_out.identity): read with pydicom, every
slice tied to the CT index it became, missing UIDs named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_out_support import (
    FRAME_UID,
    SERIES_UID,
    STUDY_UID,
    real_series,
    write_phantom_series,
)

from lungcad.ctio import read_ct
from lungcad.dicom_out.identity import DicomIdentityError, derived_uid, read_dicom_identity
from lungcad.geometry import voxel_to_world


def test_identity_holds_patient_study_series_and_each_slice_in_ct_order(tmp_path: Path) -> None:
    ct = write_phantom_series(tmp_path)
    identity = read_dicom_identity(ct)
    ps = identity.patient_study
    assert (ps.patient_name, ps.patient_id, ps.patient_birth_date, ps.patient_sex) == (
        "Doe^Jane", "LC-0042", "19600101", "F",
    )  # fmt: skip
    assert (ps.study_instance_uid, ps.study_date, ps.accession_number, ps.study_id) == (
        STUDY_UID, "20261201", "ACC123", "S1",
    )  # fmt: skip
    assert identity.series_instance_uid == SERIES_UID
    assert identity.series_number == 3
    assert identity.frame_of_reference_uid == FRAME_UID
    assert not identity.frame_of_reference_derived
    assert identity.complete and identity.missing == ()
    assert (identity.rows, identity.columns) == (32, 32)
    assert [s.index for s in identity.slices] == list(range(10))
    for s in identity.slices:
        # each slice's stored position is the CT's voxel (k, 0, 0), and its UID is that file's
        np.testing.assert_allclose(
            s.position_lps, voxel_to_world((s.index, 0, 0), ct.geometry), atol=1e-4
        )
        assert s.sop_instance_uid == pydicom.dcmread(s.path).SOPInstanceUID
        assert s.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"


def test_source_datasets_carry_what_highdicom_copies(tmp_path: Path) -> None:
    identity = read_dicom_identity(write_phantom_series(tmp_path))
    first = identity.source_datasets()[0]
    assert first.PatientName == "Doe^Jane" and first.StudyInstanceUID == STUDY_UID
    assert first.SOPInstanceUID == identity.slices[0].sop_instance_uid
    assert first.FrameOfReferenceUID == FRAME_UID
    assert [float(v) for v in first.ImagePositionPatient] == list(identity.slices[0].position_lps)


def test_missing_frame_of_reference_is_derived_from_the_series_uid(tmp_path: Path) -> None:
    ct = write_phantom_series(tmp_path, tags={})
    identity = read_dicom_identity(ct)
    assert identity.frame_of_reference_derived
    assert identity.frame_of_reference_uid == derived_uid("lungcad frame of reference", SERIES_UID)
    assert identity.complete  # the patient module may be empty: Type 2 in SEG and SR


def test_a_slice_that_moved_since_the_read_is_refused(tmp_path: Path) -> None:
    ct = write_phantom_series(tmp_path)
    moved = pydicom.dcmread(tmp_path / "000.dcm")
    moved.ImagePositionPatient = [v + 0.6 for v in moved.ImagePositionPatient]
    moved.save_as(tmp_path / "000.dcm")
    with pytest.raises(DicomIdentityError, match=r"000\.dcm: its position .* not a slice"):
        read_dicom_identity(ct)


def test_the_series_files_may_be_given_instead_of_the_folder(tmp_path: Path) -> None:
    ct = write_phantom_series(tmp_path / "series")
    (tmp_path / "series" / "notes.txt").write_text("not DICOM")
    files = sorted((tmp_path / "series").glob("*.dcm"), reverse=True)
    identity = read_dicom_identity(ct, files=files)
    assert [s.index for s in identity.slices] == list(range(10))
    assert identity == read_dicom_identity(ct)
    with pytest.raises(DicomIdentityError, match="no DICOM files given"):
        read_dicom_identity(ct, files=[])


def test_a_file_input_has_no_dicom_identity(tmp_path: Path) -> None:
    ct = write_phantom_series(tmp_path / "series")
    with pytest.raises(DicomIdentityError, match="not a DICOM series folder"):
        read_dicom_identity(ct, tmp_path / "scan.nrrd")


def test_real_lungmask_series_has_uids_but_no_frame_of_reference() -> None:
    folder = real_series("dicom_lungmask")
    identity = read_dicom_identity(read_ct(folder))
    assert identity.series_instance_uid == (
        "1.2.826.0.1.3680043.8.498.22032370629701851459946006816247576553"
    )
    assert identity.study_instance_uid == (
        "1.2.826.0.1.3680043.8.498.99442832844785701617685555618610994967"
    )
    assert [s.path.name for s in identity.slices] == ["0.dcm", "1.dcm"]
    assert identity.slices[0].sop_instance_uid == (
        "1.2.826.0.1.3680043.8.498.10058819012273582725458822806783264137"
    )
    assert identity.frame_of_reference_derived and identity.complete


def test_real_anonymised_series_names_its_missing_uids() -> None:
    identity = read_dicom_identity(read_ct(real_series("dicom_totalseg")))
    assert identity.missing == (
        "Study Instance UID",
        "Series Instance UID",
        "SOP Instance UID (20 of 20 slices)",
        "SOP Class UID (20 of 20 slices)",
    )
    assert not identity.complete
    assert identity.frame_of_reference_uid == (
        "1.3.12.2.1107.5.1.4.60064.30000022120807274275100000041"
    )
    assert identity.patient_study.study_date == "20221208"
    # slices sorted by position: instance numbers run 286 .. 267 up the CT's index axis
    assert [s.instance_number for s in identity.slices][:2] == [286, 285]
