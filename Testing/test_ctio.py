"""CT reading and writing (lungcad.ctio): round trips, typed errors for bad input, DICOM series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lungcad.ct import CT, Geometry
from lungcad.ctio import ct_from_sitk, ct_to_sitk, read_ct, write_ct
from lungcad.errors import (
    CTFileNotFoundError,
    CTFormatError,
    CTWriteError,
    DicomSeriesError,
    NotCTError,
)

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
LUNA_UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.105756658031515062000744821260"


def rotation(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    k = np.asarray(axis, dtype=float)
    k /= np.linalg.norm(k)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    t = np.deg2rad(degrees)
    return np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * kx @ kx


PERMUTED_FLIPPED = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
OBLIQUE_LEFT_HANDED = rotation((1.0, 2.0, 3.0), 30.0) @ np.diag([1.0, 1.0, -1.0])


def make_hu(shape: tuple[int, int, int] = (6, 10, 12), seed: int = 0) -> np.ndarray:
    """Air around a soft-tissue block with some bone, plus noise, as int16 HU."""
    rng = np.random.default_rng(seed)
    hu = np.full(shape, -1000, dtype=np.int16)
    hu[:, 2:-2, 2:-2] = 40
    hu[:, 4:6, 4:6] = 900
    hu += rng.integers(-20, 20, size=shape, dtype=np.int16)
    return hu


def make_ct(
    direction: np.ndarray = OBLIQUE_LEFT_HANDED,
    shape: tuple[int, int, int] = (6, 10, 12),
    series_uid: str | None = None,
) -> CT:
    geometry = Geometry.from_arrays((-101.25, 17.5, -303.0), (0.75, 0.8, 2.5), direction, shape)
    return CT(hu=make_hu(shape), geometry=geometry, series_uid=series_uid)


def image_from(arr: np.ndarray, is_vector: bool = False) -> sitk.Image:
    return sitk.GetImageFromArray(arr, isVector=is_vector)


def assert_same_geometry(a: Geometry, b: Geometry, atol: float = 1e-4) -> None:
    assert a.shape_irc == b.shape_irc
    np.testing.assert_allclose(a.origin_xyz, b.origin_xyz, atol=atol)
    np.testing.assert_allclose(a.spacing_xyz, b.spacing_xyz, atol=atol)
    np.testing.assert_allclose(a.direction, b.direction, atol=atol)


# ------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("ext", [".nrrd", ".nii", ".nii.gz", ".mhd", ".mha"])
@pytest.mark.parametrize(
    "direction",
    [np.eye(3), PERMUTED_FLIPPED, OBLIQUE_LEFT_HANDED],
    ids=["identity", "permuted_flipped", "oblique_left_handed"],
)
def test_round_trip_keeps_values_and_geometry(tmp_path: Path, ext: str, direction) -> None:
    ct = make_ct(direction)
    written = write_ct(ct, tmp_path / f"scan{ext}")
    assert written == tmp_path / f"scan{ext}"
    back = read_ct(written)
    assert back.hu.dtype == np.int16
    np.testing.assert_array_equal(back.hu, ct.hu)
    assert_same_geometry(back.geometry, ct.geometry)
    assert back.source == written
    assert back.series_uid is None


@pytest.mark.parametrize("ext", [".nrrd", ".mha", ".mhd"])
def test_series_uid_is_kept_in_nrrd_and_metaio_headers(tmp_path: Path, ext: str) -> None:
    ct = make_ct(series_uid="1.2.840.113619.2.55.3.1234")
    back = read_ct(write_ct(ct, tmp_path / f"scan{ext}"))
    assert back.series_uid == "1.2.840.113619.2.55.3.1234"


def test_series_uid_comes_from_a_luna16_style_mhd_stem(tmp_path: Path) -> None:
    path = write_ct(make_ct(), tmp_path / f"{LUNA_UID}.mhd")
    assert read_ct(path).series_uid == LUNA_UID


def test_mhd_stem_that_is_not_a_uid_gives_no_series_uid(tmp_path: Path) -> None:
    assert read_ct(write_ct(make_ct(), tmp_path / "patient_07.mhd")).series_uid is None


def test_mhd_is_written_uncompressed_with_its_raw_named_in_the_header(tmp_path: Path) -> None:
    ct = make_ct()
    write_ct(ct, tmp_path / f"{LUNA_UID}.mhd")
    header = (tmp_path / f"{LUNA_UID}.mhd").read_text()
    assert "CompressedData = False" in header
    assert header.rstrip().endswith(f"ElementDataFile = {LUNA_UID}.raw")
    raw = tmp_path / f"{LUNA_UID}.raw"
    assert raw.stat().st_size == ct.hu.size * 2
    # LUNA16 readers memory-map the .raw in (index, row, col) order
    np.testing.assert_array_equal(np.fromfile(raw, dtype="<i2").reshape(ct.shape), ct.hu)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{LUNA_UID}.mhd", f"{LUNA_UID}.raw"]


def test_write_leaves_no_temporary_files_and_creates_the_folder(tmp_path: Path) -> None:
    target = tmp_path / "new" / "folder" / "scan.nii.gz"
    write_ct(make_ct(), target)
    assert [p.name for p in target.parent.iterdir()] == ["scan.nii.gz"]


def test_sitk_helpers_round_trip_geometry_and_values() -> None:
    ct = make_ct(PERMUTED_FLIPPED, series_uid="1.2.3.4")
    image = ct_to_sitk(ct)
    assert image.GetSize() == (12, 10, 6)
    assert image.GetPixelID() == sitk.sitkInt16
    np.testing.assert_allclose(image.GetDirection(), PERMUTED_FLIPPED.ravel())
    back = ct_from_sitk(image, source="memory.nrrd", series_uid="1.2.3.4")
    np.testing.assert_array_equal(back.hu, ct.hu)
    assert_same_geometry(back.geometry, ct.geometry, atol=1e-12)
    assert back.series_uid == "1.2.3.4"
    assert back.source == Path("memory.nrrd")


# ------------------------------------------------------------------------------------------
# writing refuses to overwrite


def test_write_refuses_an_existing_file_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "scan.nrrd"
    target.write_bytes(b"the user's file")
    with pytest.raises(CTWriteError, match=r"scan\.nrrd.*already exists"):
        write_ct(make_ct(), target)
    assert target.read_bytes() == b"the user's file"
    assert [p.name for p in tmp_path.iterdir()] == ["scan.nrrd"]


def test_write_refuses_an_existing_raw_beside_a_new_mhd(tmp_path: Path) -> None:
    raw = tmp_path / "scan.raw"
    raw.write_bytes(b"someone's data")
    with pytest.raises(CTWriteError, match=r"scan\.raw.*already exists"):
        write_ct(make_ct(), tmp_path / "scan.mhd")
    assert raw.read_bytes() == b"someone's data"
    assert not (tmp_path / "scan.mhd").exists()


def test_write_with_overwrite_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "scan.mhd"
    write_ct(make_ct(), target)
    second = make_ct()
    second.hu[0, 0, 0] = 1234
    write_ct(second, target, overwrite=True)
    assert read_ct(target).hu[0, 0, 0] == 1234


@pytest.mark.parametrize("name", ["scan.png", "scan.txt", "scan", ".nrrd"])
def test_write_refuses_an_unknown_extension(tmp_path: Path, name: str) -> None:
    with pytest.raises(CTWriteError, match="unknown extension"):
        write_ct(make_ct(), tmp_path / name)


# ------------------------------------------------------------------------------------------
# bad files


def test_missing_file_is_a_file_not_found_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nothere.nii.gz"
    with pytest.raises(CTFileNotFoundError, match=r"nothere\.nii\.gz") as info:
        read_ct(missing)
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.path == missing


def test_mhd_whose_raw_is_missing_names_the_raw(tmp_path: Path) -> None:
    write_ct(make_ct(), tmp_path / "scan.mhd")
    (tmp_path / "scan.raw").unlink()
    with pytest.raises(CTFileNotFoundError, match=r"scan\.raw.*does not exist.*scan\.mhd") as info:
        read_ct(tmp_path / "scan.mhd")
    assert info.value.path == tmp_path / "scan.raw"


def test_mhd_whose_raw_is_truncated_says_how_many_bytes_it_has_and_needs(tmp_path: Path) -> None:
    ct = make_ct()
    write_ct(ct, tmp_path / "scan.mhd")
    raw = tmp_path / "scan.raw"
    raw.write_bytes(raw.read_bytes()[:1000])
    needed = ct.hu.size * 2
    with pytest.raises(CTFormatError, match=rf"truncated.*has 1000 bytes.*needs {needed}"):
        read_ct(tmp_path / "scan.mhd")


def test_mhd_that_is_not_a_metaio_header_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.mhd"
    path.write_text("this is not a header\n")
    with pytest.raises(CTFormatError, match=r"notes\.mhd.*ElementDataFile"):
        read_ct(path)


def test_text_file_named_nrrd_is_a_format_error_without_an_itk_trace(tmp_path: Path) -> None:
    path = tmp_path / "report.nrrd"
    path.write_text("Patient has a nodule in the right upper lobe.\n")
    with pytest.raises(CTFormatError, match=r"report\.nrrd.*not an image") as info:
        read_ct(path)
    message = str(info.value)
    assert "ITK ERROR" not in message and "sitk::ERROR" not in message
    assert ".cxx" not in message and "\n" not in message


def test_2d_png_is_not_a_ct(tmp_path: Path) -> None:
    path = tmp_path / "slice.png"
    sitk.WriteImage(image_from(np.zeros((16, 20), np.uint8)), str(path))
    with pytest.raises(NotCTError, match=r"slice\.png.*2D image \(20x16"):
        read_ct(path)


def test_rgb_image_is_not_a_ct(tmp_path: Path) -> None:
    path = tmp_path / "screenshot.png"
    sitk.WriteImage(image_from(np.zeros((16, 20, 3), np.uint8), is_vector=True), str(path))
    with pytest.raises(NotCTError, match=r"screenshot\.png.*3 components.*colour"):
        read_ct(path)


def test_3d_vector_volume_is_not_a_ct(tmp_path: Path) -> None:
    path = tmp_path / "field.nrrd"
    arr = np.stack([make_hu()] * 3, axis=-1)
    sitk.WriteImage(image_from(arr, is_vector=True), str(path))
    with pytest.raises(NotCTError, match="3 components"):
        read_ct(path)


def test_single_slice_volume_is_not_a_ct(tmp_path: Path) -> None:
    path = tmp_path / "one.nrrd"
    sitk.WriteImage(image_from(make_hu((1, 10, 12))), str(path))
    with pytest.raises(NotCTError, match=r"one\.nrrd.*single slice"):
        read_ct(path)


def test_two_slice_volume_is_a_legitimate_ct(tmp_path: Path) -> None:
    path = tmp_path / "two.nrrd"
    sitk.WriteImage(image_from(make_hu((2, 10, 12))), str(path))
    assert read_ct(path).shape == (2, 10, 12)


def test_mr_like_unsigned_volume_without_air_is_not_a_ct(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    mr = rng.integers(0, 4001, (6, 10, 12)).astype(np.uint16)
    mr[0, 0, 0] = 0
    path = tmp_path / "t1.nii.gz"
    sitk.WriteImage(image_from(mr), str(path))
    with pytest.raises(NotCTError) as info:
        read_ct(path)
    message = str(info.value)
    assert "t1.nii.gz" in message
    assert "no air" in message and "minimum value 0" in message and "-1000 HU" in message
    assert "rescale intercept" in message and "uint16" in message


def test_volume_with_many_voxels_above_4000_hu_is_not_a_ct(tmp_path: Path) -> None:
    hu = make_hu((10, 10, 10))
    hu.reshape(-1)[::20] = 10000  # 5 % of the voxels
    path = tmp_path / "weird.nrrd"
    sitk.WriteImage(image_from(hu), str(path))
    with pytest.raises(NotCTError, match=r"weird\.nrrd: 5\.00% of voxels are above \+4000 HU"):
        read_ct(path)


def test_a_little_metal_above_4000_hu_is_accepted(tmp_path: Path) -> None:
    hu = make_hu((10, 10, 10))
    hu.reshape(-1)[:5] = 20000  # 0.5 % of the voxels
    ct = ct_from_sitk(image_from(hu))
    assert ct.hu.max() == 20000


def test_padding_below_minus_1024_is_clamped_and_other_values_kept() -> None:
    hu = make_hu()
    hu[0, 0, :4] = (-2048, -3024, -32768, -1025)
    ct = ct_from_sitk(image_from(hu))
    np.testing.assert_array_equal(ct.hu[0, 0, :4], -1024)
    np.testing.assert_array_equal(ct.hu[1:], hu[1:])


def test_float_volume_is_rounded_to_int16(tmp_path: Path) -> None:
    hu = make_hu().astype(np.float32)
    hu[0, 0, 0] = 12.6
    hu[0, 0, 1] = -999.4
    path = tmp_path / "float.nrrd"
    sitk.WriteImage(image_from(hu), str(path))
    ct = read_ct(path)
    assert ct.hu.dtype == np.int16
    assert ct.hu[0, 0, 0] == 13 and ct.hu[0, 0, 1] == -999


def test_nan_voxels_are_refused() -> None:
    hu = make_hu().astype(np.float32)
    hu[2, 3, 4] = np.nan
    with pytest.raises(NotCTError, match="NaN"):
        ct_from_sitk(image_from(hu))


def test_in_memory_image_errors_say_so() -> None:
    with pytest.raises(NotCTError, match="<in-memory image>: 2D image"):
        ct_from_sitk(image_from(np.zeros((8, 8), np.int16)))


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
