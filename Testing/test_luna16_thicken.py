"""``lungcad thicken``: a thick-slice copy of a LUNA16-layout set, truth and label maps kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lungcad.cli import main
from lungcad.ctio import read_ct
from lungcad.luna16 import find_series
from lungcad.luna16.thicken import ThickenError, thicken_dataset


@pytest.fixture(scope="module")
def thick_set(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("thick") / "luna-5mm"
    thicken_dataset(small_dataset, out, 5.0, progress=False)
    return out


def test_every_series_is_averaged_over_the_slabs(small_dataset: Path, thick_set: Path) -> None:
    thin, thick = find_series(small_dataset), find_series(thick_set)
    assert sorted(thick) == sorted(thin)
    for uid, path in thin.items():
        source, made = read_ct(path), read_ct(thick[uid])
        dz = source.geometry.spacing_irc[0]
        assert made.geometry.spacing_irc[0] == pytest.approx(5.0)
        assert made.shape[0] == int(source.shape[0] * dz // 5.0)
        assert made.shape[1:] == source.shape[1:]
        # the first slab is the overlap-weighted mean of the thin slices it covers
        per_slab = 5.0 / dz
        whole = int(per_slab)
        weights = np.r_[np.ones(whole), per_slab - whole][: int(np.ceil(per_slab))]
        expected = np.tensordot(weights / weights.sum(), source.hu[: len(weights)], axes=(0, 0))
        assert np.abs(made.hu[0].astype(float) - expected).max() <= 0.5 + 1e-6


def test_truth_files_are_copied_and_the_manifest_says_derived(
    small_dataset: Path, thick_set: Path
) -> None:
    for name in ("annotations.csv", "candidates.csv", "annotations_with_malignancy.csv"):
        assert (thick_set / name).read_text(encoding="utf-8") == (small_dataset / name).read_text(
            encoding="utf-8"
        )
    manifest = json.loads((thick_set / "phantom.json").read_text(encoding="utf-8"))
    assert manifest["derived"] == f"every series of {small_dataset} averaged over 5 mm slabs"


def test_label_maps_land_on_the_thick_grid(small_dataset: Path, thick_set: Path) -> None:
    for uid, path in find_series(thick_set).items():
        labels = sitk.ReadImage(str(path.with_name(uid + "_nodules.nrrd")))
        image = sitk.ReadImage(str(path))
        assert labels.GetSize() == image.GetSize()
        assert labels.GetSpacing() == pytest.approx(image.GetSpacing())
        thin = sitk.ReadImage(str(find_series(small_dataset)[uid].with_name(uid + "_nodules.nrrd")))
        assert set(np.unique(sitk.GetArrayViewFromImage(labels))) <= set(
            np.unique(sitk.GetArrayViewFromImage(thin))
        )
        assert sitk.GetArrayViewFromImage(labels).any()


def test_an_existing_target_is_refused_and_left_alone(small_dataset: Path, thick_set: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in thick_set.rglob("*")}
    with pytest.raises(ThickenError, match=r"already holds series.*--overwrite"):
        thicken_dataset(small_dataset, thick_set, 5.0, progress=False)
    assert {p: p.stat().st_mtime_ns for p in thick_set.rglob("*")} == before


def test_slabs_no_thicker_than_the_slices_are_refused(small_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ThickenError, match=r"not thinner than 0\.5 mm slabs"):
        thicken_dataset(small_dataset, tmp_path / "out", 0.5, progress=False)


def test_a_target_inside_the_source_is_refused(small_dataset: Path) -> None:
    with pytest.raises(ThickenError, match="inside the source set"):
        thicken_dataset(small_dataset, small_dataset / "thick", 5.0, progress=False)


def test_cli_names_a_folder_without_series(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["thicken", str(tmp_path), str(tmp_path.parent / "out"), "--quiet"]) == 2
    assert "holds no subset*/<seriesuid>.mhd files" in capsys.readouterr().err


def test_cli_writes_the_set_and_says_so(
    small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "thick"
    assert main(["thicken", str(small_dataset), str(out), "--slab-mm", "4", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote 4 series averaged over 4 mm slabs to {out} (slices ")
    assert all(read_ct(p).geometry.spacing_irc[0] == pytest.approx(4.0)
               for p in find_series(out).values())  # fmt: skip
