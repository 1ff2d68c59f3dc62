"""DICOM series folders (lungcad.io): picking a series, geometry, and real files in place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from io_support import (
    REAL_DATA,
    make_ct,
    make_hu,
)

from lungcad.ct import CT
from lungcad.errors import (
    DicomSeriesError,
    NotCTError,
)
from lungcad.io import read_ct, write_ct

# ------------------------------------------------------------------------------------------
# DICOM series written with SimpleITK


def write_dicom_series(
    folder: Path,
    hu: np.ndarray,
    series_uid: str,
    *,
    spacing_xyz: tuple[float, float, float] = (0.7, 0.7, 2.5),
    origin_xyz: tuple[float, float, float] = (-10.0, -20.0, -30.0),
    direction: np.ndarray | None = None,
    prefix: str = "",
    extra_tags: dict[str, str] | None = None,
) -> None:
    """One file per slice, CT tags set, HU stored with rescale intercept -1024; ``extra_tags``
    (tag -> value, e.g. the patient's name) are added to every slice."""
    folder.mkdir(parents=True, exist_ok=True)
    direction = np.eye(3) if direction is None else direction
    volume = sitk.GetImageFromArray(hu)
    volume.SetSpacing(spacing_xyz)
    volume.SetOrigin(origin_xyz)
    volume.SetDirection(tuple(direction.ravel()))
    orientation = "\\".join(f"{v:g}" for v in (*direction[:, 0], *direction[:, 1]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(hu.shape[0]):
        position = volume.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{series_uid}.{k + 1}",
            "0008|103e": f"test series {prefix}",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.77",
            "0020|000e": series_uid,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": orientation,
            "0028|1052": "-1024",
            "0028|1053": "1",
            **(extra_tags or {}),
        }
        image = volume[:, :, k]
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{prefix}{k:03d}.dcm"))
        writer.Execute(image)


UID_A = "1.2.826.0.1.3680043.2.1125.1.1001"
UID_B = "1.2.826.0.1.3680043.2.1125.1.2002"


@pytest.fixture(scope="module")
def two_series_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("two_series")
    write_dicom_series(folder, make_hu((3, 8, 9), seed=1), UID_A, prefix="a")
    write_dicom_series(
        folder, make_hu((4, 8, 9), seed=2), UID_B, spacing_xyz=(0.5, 0.6, 1.25), prefix="b"
    )
    return folder


def test_dicom_series_is_read_with_rescale_geometry_and_uid(tmp_path: Path) -> None:
    hu = make_hu((3, 8, 9), seed=4)
    write_dicom_series(tmp_path, hu, UID_A)
    ct = read_ct(tmp_path)
    np.testing.assert_array_equal(ct.hu, hu)
    assert ct.series_uid == UID_A
    assert ct.source == tmp_path
    assert ct.metadata["modality"] == "CT"
    np.testing.assert_allclose(ct.geometry.spacing_xyz, (0.7, 0.7, 2.5))
    np.testing.assert_allclose(ct.geometry.origin_xyz, (-10.0, -20.0, -30.0))
    # the files hold HU + 1024; the reader applied the rescale intercept
    stored = np.frombuffer((tmp_path / "000.dcm").read_bytes()[-hu[0].nbytes :], "<i2")
    np.testing.assert_array_equal(stored.reshape(hu[0].shape), hu[0] + 1024)


def test_dicom_series_with_flipped_orientation_keeps_the_direction(tmp_path: Path) -> None:
    direction = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
    hu = make_hu((3, 8, 9), seed=5)
    write_dicom_series(tmp_path, hu, UID_A, direction=direction)
    ct = read_ct(tmp_path)
    np.testing.assert_allclose(ct.geometry.direction_matrix, direction, atol=1e-6)
    np.testing.assert_allclose(ct.geometry.origin_xyz, (-10.0, -20.0, -30.0), atol=1e-5)
    np.testing.assert_array_equal(ct.hu, hu)


def test_two_slice_dicom_series_is_a_ct(tmp_path: Path) -> None:
    write_dicom_series(tmp_path, make_hu((2, 8, 9)), UID_A)
    assert read_ct(tmp_path).shape == (2, 8, 9)


def test_one_slice_dicom_series_is_not_a_ct(tmp_path: Path) -> None:
    write_dicom_series(tmp_path, make_hu((1, 8, 9)), UID_A)
    with pytest.raises(NotCTError, match="single slice"):
        read_ct(tmp_path)


def test_single_dicom_file_asks_for_the_folder(tmp_path: Path) -> None:
    write_dicom_series(tmp_path, make_hu((2, 8, 9)), UID_A)
    with pytest.raises(NotCTError, match=r"000\.dcm.*single DICOM slice.*folder"):
        read_ct(tmp_path / "000.dcm")


def test_empty_folder_has_no_dicom_series(tmp_path: Path) -> None:
    with pytest.raises(DicomSeriesError, match=r"no DICOM series in folder \(the folder is empty"):
        read_ct(tmp_path)


def test_folder_of_non_dicom_files_has_no_dicom_series(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("not dicom")
    write_ct(make_ct(), tmp_path / "scan.nrrd")
    (tmp_path / "sub").mkdir()
    with pytest.raises(DicomSeriesError, match=r"no DICOM series in folder.*none a DICOM.*sub"):
        read_ct(tmp_path)


def test_folder_with_two_series_lists_them_and_says_how_to_pick(two_series_folder: Path) -> None:
    with pytest.raises(DicomSeriesError) as info:
        read_ct(two_series_folder)
    message = str(info.value)
    assert str(two_series_folder) in message
    assert f"{UID_A}: 3 files" in message and f"{UID_B}: 4 files" in message
    assert "series_uid" in message


@pytest.mark.parametrize(("uid", "n_slices", "seed"), [(UID_A, 3, 1), (UID_B, 4, 2)])
def test_series_uid_picks_one_of_two_series(
    two_series_folder: Path, uid: str, n_slices: int, seed: int
) -> None:
    ct = read_ct(two_series_folder, series_uid=uid)
    assert ct.series_uid == uid
    np.testing.assert_array_equal(ct.hu, make_hu((n_slices, 8, 9), seed=seed))


def test_absent_series_uid_lists_the_series_present(two_series_folder: Path) -> None:
    with pytest.raises(DicomSeriesError, match=rf"1\.2\.3\.999 is not in.*{UID_A}.*{UID_B}"):
        read_ct(two_series_folder, series_uid="1.2.3.999")


# ------------------------------------------------------------------------------------------
# real files (read in place from ../shared/data/real, never copied)


def real(name: str) -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real CT samples not found at {REAL_DATA} (../shared beside the checkout)")
    return REAL_DATA / name


def air_fraction(ct: CT) -> float:
    """Share of voxels at or below -500 HU (air and lung)."""
    return float(np.mean(ct.hu <= -500))


def test_real_dicom_series_totalseg() -> None:
    ct = read_ct(real("dicom_totalseg"))
    assert ct.shape == (20, 512, 512)
    np.testing.assert_allclose(ct.geometry.spacing_xyz, (0.9765625, 0.9765625, 2.0))
    np.testing.assert_allclose(ct.geometry.direction_matrix, np.eye(3))
    assert ct.hu.min() == -1024 and 1000 < ct.hu.max() < 3000
    assert air_fraction(ct) > 0.2
    # the sample is anonymised: its series UID tag (0020|000E) is empty
    assert ct.series_uid is None
    assert ct.metadata["modality"] == "CT"
    assert ct.metadata["files"] == "20"


def test_real_dicom_lungmask_is_one_series_of_two_slices() -> None:
    folder = real("dicom_lungmask")
    uid = "1.2.826.0.1.3680043.8.498.22032370629701851459946006816247576553"
    ct = read_ct(folder)
    assert ct.shape == (2, 512, 512)
    assert ct.series_uid == uid
    np.testing.assert_allclose(ct.geometry.spacing_xyz, (0.625, 0.625, 1.0))
    # outside the scan field the files hold -2048; it is clamped to -1024
    assert ct.hu.min() == -1024 and ct.hu.max() < 3000
    assert air_fraction(ct) > 0.3
    assert read_ct(folder, series_uid=uid).shape == (2, 512, 512)
    with pytest.raises(DicomSeriesError, match=uid):
        read_ct(folder, series_uid="1.2.3")


def test_real_single_dicom_slice_asks_for_the_folder() -> None:
    with pytest.raises(NotCTError, match="pass the folder"):
        read_ct(real("dicom_lungmask") / "0.dcm")


def test_real_nifti_chest_cta() -> None:
    ct = read_ct(real("chest_cta_totalseg.nii.gz"))
    assert ct.shape == (164, 126, 120)
    np.testing.assert_allclose(ct.geometry.spacing_xyz, (1.5, 1.5, 1.5))
    assert ct.hu.min() == -1024  # the file goes down to -1078: clamped padding rule
    assert ct.hu.max() == 3343
    assert air_fraction(ct) > 0.2  # both lungs at the sides of the crop
    assert ct.series_uid is None
