"""CT writing and reading back (lungcad.io): values, geometry, series UID, no overwriting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from io_support import (
    LUNA_UID,
    OBLIQUE_LEFT_HANDED,
    PERMUTED_FLIPPED,
    assert_same_geometry,
    make_ct,
)

from lungcad.errors import (
    CTWriteError,
)
from lungcad.io import ct_from_sitk, ct_to_sitk, geometry_of, on_grid, read_ct, write_ct

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
    header = (tmp_path / f"{LUNA_UID}.mhd").read_text(encoding="utf-8")
    assert "CompressedData = False" in header
    assert header.rstrip().endswith(f"ElementDataFile = {LUNA_UID}.raw")
    raw = tmp_path / f"{LUNA_UID}.raw"
    assert raw.stat().st_size == ct.hu.size * 2
    # LUNA16 readers memory-map the .raw in (index, row, col) order
    np.testing.assert_array_equal(np.fromfile(raw, dtype="<i2").reshape(ct.shape), ct.hu)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{LUNA_UID}.mhd", f"{LUNA_UID}.raw"]


@pytest.mark.parametrize(
    ("name", "written"),
    [("scan.nii.gz", ["scan.nii.gz"]), ("scan.mhd", ["scan.mhd", "scan.raw"])],
)
def test_write_leaves_no_temporary_files_and_creates_the_folder(
    tmp_path: Path, name: str, written: list[str]
) -> None:
    target = tmp_path / "new" / "folder" / name
    write_ct(make_ct(), target)
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(written)


def test_on_grid_sets_geometry_and_a_sub_box_origin() -> None:
    ct = make_ct(OBLIQUE_LEFT_HANDED)
    g = ct.geometry
    whole = on_grid(sitk.GetImageFromArray(ct.hu), g)
    assert whole.GetOrigin() == g.origin_xyz
    assert whole.GetSpacing() == g.spacing_xyz
    np.testing.assert_allclose(whole.GetDirection(), g.direction, atol=1e-15)
    box = on_grid(sitk.Image([2, 2, 2], sitk.sitkUInt8), g, origin_xyz=np.array([1.5, -2, 3]))
    assert box.GetOrigin() == (1.5, -2.0, 3.0)
    assert box.GetSpacing() == g.spacing_xyz


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


def test_geometry_of_an_image_and_of_a_header_is_the_grid_it_was_given(tmp_path: Path) -> None:
    ct = make_ct(PERMUTED_FLIPPED)
    assert_same_geometry(geometry_of(ct_to_sitk(ct)), ct.geometry, atol=1e-12)
    path = write_ct(ct, tmp_path / "scan.nrrd")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    assert_same_geometry(geometry_of(reader), ct.geometry)
