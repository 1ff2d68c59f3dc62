"""The canonical-CT disk cache: layout, labels, reuse without the source, staleness, races."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

import lungcad_training.cache.series as cache_module
from lungcad.geometry import voxel_to_world, world_to_voxel_index
from lungcad.luna16 import find_series, read_annotations
from lungcad.preprocess import spacing_policy
from lungcad_training.cache import SeriesCache, policy_hash, prefill_cache

# a coarse grid keeps the tests fast; the code path is the one the default policy takes
SPACING = (2.0, 2.0, 2.5)


@pytest.fixture(scope="module")
def filled(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> SeriesCache:
    cache_dir = tmp_path_factory.mktemp("cache")
    return prefill_cache(small_dataset, cache_dir, spacing_xyz=SPACING, progress=False)


def _copy_dataset(src: Path, dst: Path, with_labels: bool = True) -> Path:
    ignore = None if with_labels else shutil.ignore_patterns("*_nodules.nrrd")
    shutil.copytree(src, dst, ignore=ignore)
    return dst


def test_layout_dtypes_and_meta(filled: SeriesCache, small_dataset: Path) -> None:
    uids = set(find_series(small_dataset))
    assert filled.root.name == policy_hash(spacing_policy(SPACING))
    assert filled.cached_series() == uids
    assert not [p for p in filled.root.iterdir() if p.name.startswith(".")]  # no temp leftovers
    for uid in uids:
        folder = filled.entry_dir(uid)
        assert sorted(p.name for p in folder.iterdir()) == ["ct.npy", "labels.npy", "meta.json"]
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        assert meta["policy"]["spacing_xyz"] == list(SPACING)
        assert meta["source"]["path"].endswith(f"{uid}.mhd")
        assert meta["labels"]["source"] == "nrrd"
        series = filled.get(uid)
        assert isinstance(series.hu, np.memmap) and series.hu.dtype == np.int16
        assert isinstance(series.labels, np.memmap) and series.labels.dtype == np.uint8
        assert series.hu.shape == series.labels.shape == series.geometry.shape_irc
        assert series.geometry.spacing_xyz == SPACING


def test_labels_sit_on_their_annotations(filled: SeriesCache, small_dataset: Path) -> None:
    annotations = read_annotations(small_dataset / "annotations.csv")
    for uid in filled.cached_series():
        series = filled.get(uid)
        mine = [a for a in annotations if a.series_uid == uid]
        by_label = {n.label: n for n in series.nodules}
        assert sorted(by_label) == list(range(1, len(mine) + 1))
        for k, ann in enumerate(mine, start=1):
            centre = voxel_to_world(by_label[k].center_irc, series.geometry)
            assert np.linalg.norm(centre - ann.center_xyz) <= max(ann.diameter_mm / 2, 2.5)
            assert by_label[k].voxels == int(np.count_nonzero(series.labels == k))
        assert series.nodule_slices == sorted(set(np.nonzero(series.labels)[0].tolist()))


def test_reused_without_the_source(
    filled: SeriesCache, small_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _copy_dataset(small_dataset, tmp_path / "data")
    cache_dir = tmp_path / "cache"
    first = prefill_cache(data, cache_dir, spacing_xyz=SPACING, progress=False)
    uid = sorted(first.cached_series())[0]
    ct_file = first.entry_dir(uid) / "ct.npy"
    stamp = ct_file.stat().st_mtime_ns
    for mhd in data.glob("subset*/*.mhd"):
        mhd.rename(tmp_path / mhd.name)
        mhd.with_suffix(".raw").rename(tmp_path / mhd.with_suffix(".raw").name)

    def no_reading(*args, **kwargs):
        raise AssertionError("the cache re-read a CT")

    monkeypatch.setattr(cache_module, "read_ct", no_reading)
    second = SeriesCache(cache_dir, data, SPACING)
    assert second.series_paths() == {}
    assert second.cached_series() == first.cached_series()
    series = second.get(uid)
    np.testing.assert_array_equal(series.hu, filled.get(uid).hu)
    assert ct_file.stat().st_mtime_ns == stamp


def test_labels_from_annotations_without_masks(small_dataset: Path, tmp_path: Path) -> None:
    data = _copy_dataset(small_dataset, tmp_path / "data", with_labels=False)
    annotations = read_annotations(data / "annotations.csv")
    uid = annotations[0].series_uid
    cache = SeriesCache(tmp_path / "cache", data, SPACING)

    series = cache.get(uid)

    mine = [a for a in annotations if a.series_uid == uid]
    assert series.meta["labels"]["source"] == "annotations"
    assert len(series.meta["labels"]["annotations"]) == len(mine)
    assert [n.label for n in series.nodules] == list(range(1, len(mine) + 1))
    for k, ann in enumerate(mine, start=1):
        assert series.labels[tuple(world_to_voxel_index(ann.center_xyz, series.geometry))] == k

    # editing annotations.csv makes the entry stale and it is rebuilt with one nodule fewer
    text = (data / "annotations.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    first_row = next(i for i, line in enumerate(text) if line.startswith(uid))
    (data / "annotations.csv").write_text("".join(text[:first_row] + text[first_row + 1 :]))
    fresh = SeriesCache(tmp_path / "cache", data, SPACING)
    assert fresh.stale_reason(uid) == "annotations changed"
    assert len(fresh.get(uid).meta["labels"]["annotations"]) == len(mine) - 1


def test_racing_builders_leave_one_whole_entry(small_dataset: Path, tmp_path: Path) -> None:
    uid = sorted(find_series(small_dataset))[0]
    cache = prefill_cache(
        small_dataset,
        tmp_path / "cache",
        series_uids=[uid, uid, uid],
        spacing_xyz=SPACING,
        workers=2,
        progress=False,
    )
    assert cache.cached_series() == {uid}
    assert [p.name for p in cache.root.iterdir()] == [uid]
    assert cache.get(uid).hu.shape == cache.get(uid).geometry.shape_irc
    # a builder that loses the race keeps the winner's entry
    before = (cache.entry_dir(uid) / "meta.json").read_text(encoding="utf-8")
    cache.build(uid)
    assert (cache.entry_dir(uid) / "meta.json").read_text(encoding="utf-8") == before


def test_pickling_drops_open_mappings(filled: SeriesCache) -> None:
    uid = sorted(filled.cached_series())[0]
    filled.get(uid)
    clone = pickle.loads(pickle.dumps(filled))
    assert len(pickle.dumps(filled)) < 10_000
    np.testing.assert_array_equal(clone.get(uid).labels, filled.get(uid).labels)


def test_missing_series_is_a_clear_error(tmp_path: Path) -> None:
    cache = SeriesCache(tmp_path / "cache", None, SPACING)
    with pytest.raises(FileNotFoundError, match="neither cached"):
        cache.get("1.2.3")
