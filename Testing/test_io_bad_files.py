"""Files that are not a CT (lungcad.io): typed errors that name the file and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from io_support import (
    image_from,
    make_ct,
    make_hu,
)

from lungcad.errors import (
    CTFileNotFoundError,
    CTFormatError,
    NotCTError,
)
from lungcad.io import ct_from_sitk, read_ct, write_ct

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
