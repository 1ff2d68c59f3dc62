"""Segmentation, nodule and malignancy datasets over a cached phantom set."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lungcad.crops import context_indices, padded_crop
from lungcad.geometry import world_to_voxel_index
from lungcad.luna16 import candidate_list, find_series, split_by_series
from lungcad.preprocess import normalise_hu
from lungcad_training.cache import prefill_cache
from lungcad_training.datasets import (
    MalignancyDataset,
    NoduleClassificationDataset,
    SegmentationDataset,
)

SPACING = (2.0, 2.0, 2.5)
VAL_STRIDE = 2


def _near(volume: np.ndarray, voxel: np.ndarray) -> np.ndarray:
    """The 3x3x3 neighbourhood of a voxel (a centre may sit on a label's edge after resampling)."""
    return np.asarray(volume[tuple(slice(max(v - 1, 0), v + 2) for v in voxel)])


def _make(cls, data: Path, cache: Path, **kwargs):
    kwargs.setdefault("val_stride", VAL_STRIDE)
    return cls(data, cache, spacing_xyz=SPACING, **kwargs)


@pytest.fixture(scope="module")
def seg_train(small_dataset: Path, cache_dir: Path) -> SegmentationDataset:
    return _make(SegmentationDataset, small_dataset, cache_dir, progress=False)


@pytest.fixture(scope="module")
def seg_val(small_dataset: Path, cache_dir: Path) -> SegmentationDataset:
    return _make(
        SegmentationDataset,
        small_dataset,
        cache_dir,
        is_validation=True,
        negative_slices=3,
        progress=False,
    )


# ------------------------------------------------------------------ segmentation


def test_segmentation_training_crops(seg_train: SegmentationDataset) -> None:
    assert len(seg_train) > 0
    for index in range(len(seg_train)):
        stack, mask, uid, slice_index = seg_train[index]
        assert stack.shape == (7, 64, 64) and stack.dtype == torch.float32
        assert mask.shape == (1, 64, 64) and mask.dtype == torch.float32
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert mask.sum() > 0, "every training crop holds its nodule"
        assert stack.min() >= -1000 and stack.max() <= 1000
        assert uid in seg_train.series_uids and isinstance(slice_index, int)


def test_segmentation_training_centre_slice_is_the_cached_slice(
    seg_train: SegmentationDataset,
) -> None:
    stack, mask, uid, slice_index = seg_train[0]
    series = seg_train.cache.get(uid)
    # find where the crop sits by matching the mask against the cached label slice
    labels = np.asarray(series.labels[slice_index]) > 0
    hu = normalise_hu(series.hu[slice_index])
    found = [
        (r, c)
        for r in range(-32, labels.shape[0] - 32)
        for c in range(-32, labels.shape[1] - 32)
        if np.array_equal(padded_crop(labels, (r, c), (64, 64), False), mask[0].numpy() > 0)
        and np.array_equal(padded_crop(hu, (r, c), (64, 64), -1000), stack[3].numpy())
    ]
    assert found


def test_segmentation_random_position_is_reproducible(seg_train: SegmentationDataset) -> None:
    first = [seg_train[i][0] for i in range(len(seg_train))]
    assert all(torch.equal(a, seg_train[i][0]) for i, a in enumerate(first))
    seg_train.set_epoch(1)
    try:
        moved = [not torch.equal(a, seg_train[i][0]) for i, a in enumerate(first)]
    finally:
        seg_train.set_epoch(0)
    assert sum(moved) > len(moved) // 2


def test_segmentation_background_crops_sit_on_non_nodule_candidates(
    small_dataset: Path, cache_dir: Path, seg_train: SegmentationDataset
) -> None:
    ds = _make(SegmentationDataset, small_dataset, cache_dir, background_ratio=1.0, progress=False)
    assert ds.samples == seg_train.samples
    assert ds.background_count == len(ds.samples) and len(ds) == 2 * len(ds.samples)
    non_nodules = {
        (
            c.series_uid,
            tuple(world_to_voxel_index(c.center_xyz, ds.cache.get(c.series_uid).geometry)),
        )
        for c in ds.split_candidates()
        if not c.is_nodule
    }
    assert {
        (b.series_uid, (b.index, round(b.center_rc[0]), round(b.center_rc[1])))
        for b in ds.background
    } <= non_nodules
    picked = [ds._sample(i) for i in range(len(ds))]
    from_background = [s for s in picked if s not in ds.samples]
    assert len(from_background) == ds.background_count
    from_nodules = [s for s in picked if s in ds.samples]
    assert sorted(map(repr, from_nodules)) == sorted(map(repr, ds.samples))
    empty = sum(float(ds[i][1].sum()) == 0 for i in range(len(ds)))
    assert empty >= len(from_background) // 2  # most vessel crops hold no nodule at all


def test_segmentation_region_crops_lie_where_detection_runs_the_unet(
    small_dataset: Path, cache_dir: Path, seg_train: SegmentationDataset
) -> None:
    ds = _make(SegmentationDataset, small_dataset, cache_dir, region_ratio=2.0, progress=False)
    assert ds.samples == seg_train.samples
    assert set(ds.regions) == set(ds.series_uids)
    assert ds.region_count == 2 * len(ds.samples) and len(ds) == 3 * len(ds.samples)
    picked = [ds._sample(i) for i in range(len(ds))]
    from_regions = [s for s in picked if s not in ds.samples]
    assert len(from_regions) == ds.region_count
    assert len({s.series_uid for s in from_regions}) > 1
    for sample in from_regions:
        plan = ds.regions[sample.series_uid]
        k = sample.index - plan.box.start[0]
        assert plan.areas[k] > 0, "only slices the detector runs"
        assert plan.rows[k, 0] <= sample.center_rc[0] < plan.rows[k, 1]
        assert plan.cols[k, 0] <= sample.center_rc[1] < plan.cols[k, 1]
    # same epoch, same crops; the next epoch draws new places
    assert [ds._sample(i) for i in range(len(ds))] == picked
    ds.set_epoch(1)
    assert [ds._sample(i) for i in range(len(ds))] != picked
    # validation never draws them
    val = _make(
        SegmentationDataset, small_dataset, cache_dir, is_validation=True, region_ratio=2.0,
        progress=False,
    )  # fmt: skip
    assert val.region_count == 0 and not val.regions
    with pytest.raises(ValueError, match="region_ratio"):
        _make(SegmentationDataset, small_dataset, cache_dir, region_ratio=-1.0, progress=False)


def test_segmentation_dense_crops_sit_on_dense_tissue_at_the_lungs(
    small_dataset: Path, cache_dir: Path, seg_train: SegmentationDataset
) -> None:
    ds = _make(SegmentationDataset, small_dataset, cache_dir, dense_ratio=1.0, progress=False)
    assert ds.dense_count == len(ds.samples) and len(ds) == 2 * len(ds.samples)
    assert set(ds.dense) == set(ds.series_uids)
    picked = [ds._sample(i) for i in range(len(ds))]
    from_dense = [s for s in picked if s not in ds.samples]
    assert len(from_dense) == ds.dense_count
    dense_hu = []
    for sample in from_dense:
        series = ds.cache.get(sample.series_uid)
        r, c = (int(v) for v in sample.center_rc)
        # the jitter stays inside the coarse voxel the point came from
        near = np.asarray(series.hu[sample.index, max(r - 3, 0) : r + 1, max(c - 3, 0) : c + 1])
        dense_hu.append(near.max())
    assert min(dense_hu) >= -500  # every centre's coarse voxel holds dense tissue
    with pytest.raises(ValueError, match="dense_ratio"):
        _make(SegmentationDataset, small_dataset, cache_dir, dense_ratio=-0.5, progress=False)


def test_segmentation_validation_in_region_crops_to_the_unet_box(
    small_dataset: Path, cache_dir: Path, seg_val: SegmentationDataset
) -> None:
    ds = _make(
        SegmentationDataset, small_dataset, cache_dir, is_validation=True, negative_slices=3,
        in_region=True, progress=False,
    )  # fmt: skip
    assert ds.samples and set(s.series_uid for s in ds.samples) <= set(ds.regions)
    for index, sample in enumerate(ds.samples):
        assert sample.index in ds.region_slices(sample.series_uid)
        (r0, c0), (h, w) = ds.window(sample.series_uid)
        assert r0 % 4 == 0 and c0 % 4 == 0
        stack, mask, _, _ = ds[index]
        series = ds.cache.get(sample.series_uid)
        assert stack.shape[1:] == (h, w)
        np.testing.assert_array_equal(
            mask[0].numpy() > 0,
            np.asarray(series.labels[sample.index, r0 : r0 + h, c0 : c0 + w]) > 0,
        )
    # every nodule slice inside the region is still validated
    for uid in ds.regions:
        runs = set(ds.region_slices(uid))
        nodule_slices = set(ds.cache.get(uid).nodule_slices) & runs
        assert nodule_slices <= {s.index for s in ds.samples if s.series_uid == uid}
    assert seg_val.window(seg_val.samples[0].series_uid) is None  # whole slices by default


def test_segmentation_validation_whole_slices(
    seg_train: SegmentationDataset, seg_val: SegmentationDataset
) -> None:
    assert not set(seg_train.series_uids) & set(seg_val.series_uids)
    for uid in seg_val.series_uids:
        series = seg_val.cache.get(uid)
        chosen = [s.index for s in seg_val.samples if s.series_uid == uid]
        nodule_slices = series.nodule_slices
        assert set(nodule_slices) <= set(chosen)
        assert len(chosen) == len(nodule_slices) + 3
    stack, mask, uid, slice_index = seg_val[0]
    series = seg_val.cache.get(uid)
    h, w = series.geometry.shape_irc[1:]
    assert stack.shape == (7, h, w) and mask.shape == (1, h, w)
    expected = normalise_hu(series.hu[context_indices(slice_index, 3, series.hu.shape[0])])
    np.testing.assert_array_equal(stack.numpy(), expected)
    np.testing.assert_array_equal(mask[0].numpy(), series.labels[slice_index] > 0)


# ------------------------------------------------------------------ nodule classification


@pytest.fixture(scope="module")
def nodule_train(small_dataset: Path, cache_dir: Path) -> NoduleClassificationDataset:
    return _make(NoduleClassificationDataset, small_dataset, cache_dir, ratio=1, epoch_length=40)


@pytest.fixture(scope="module")
def nodule_val(small_dataset: Path, cache_dir: Path) -> NoduleClassificationDataset:
    return _make(NoduleClassificationDataset, small_dataset, cache_dir, is_validation=True)


def test_nodule_sample_shapes(nodule_train: NoduleClassificationDataset) -> None:
    crop, label, uid, center = nodule_train[0]
    assert crop.shape == (1, 32, 48, 48) and crop.dtype == torch.float32
    assert label.dtype == torch.int64 and label.ndim == 0
    assert isinstance(uid, str)
    assert center.shape == (3,) and center.dtype == torch.float32
    assert crop.min() >= -1000 and crop.max() <= 1000


@pytest.mark.parametrize("ratio", [1, 3])
def test_positives_are_balanced_by_ratio(small_dataset: Path, cache_dir: Path, ratio: int) -> None:
    ds = _make(NoduleClassificationDataset, small_dataset, cache_dir, ratio=ratio, epoch_length=24)
    labels = [ds.item(i).label for i in range(len(ds))]
    assert len(labels) == 24
    assert labels == [1 if i % (ratio + 1) == 0 else 0 for i in range(24)]
    assert len(ds.negatives) > 10 * len(ds.positives) > 0  # the raw list is far from balanced


def test_validation_is_not_balanced(nodule_val: NoduleClassificationDataset) -> None:
    split = split_by_series(candidate_list(nodule_val.data_dir), VAL_STRIDE, True)
    assert len(nodule_val) == len(split)
    assert [nodule_val.item(i).label for i in range(len(nodule_val))] == [
        int(c.is_nodule) for c in split
    ]


def test_series_never_in_both_halves(
    nodule_train: NoduleClassificationDataset,
    nodule_val: NoduleClassificationDataset,
    seg_train: SegmentationDataset,
    seg_val: SegmentationDataset,
    small_dataset: Path,
) -> None:
    train = {item.series_uid for item in nodule_train.items}
    val = {item.series_uid for item in nodule_val.items}
    assert train and val and not train & val
    assert train | val == set(find_series(small_dataset))
    assert set(seg_train.series_uids) == train and set(seg_val.series_uids) == val


def test_positive_crop_is_centred_on_the_nodule(nodule_val: NoduleClassificationDataset) -> None:
    positives = [i for i in range(len(nodule_val)) if nodule_val.item(i).label == 1]
    assert positives
    for index in positives:
        crop, label, uid, center = nodule_val[index]
        assert label == 1
        series = nodule_val.cache.get(uid)
        voxel = world_to_voxel_index(center.double().numpy(), series.geometry)
        assert _near(series.labels, voxel).any()
        assert crop[0, 16, 24, 24] == normalise_hu(series.hu[tuple(voxel)])
        assert crop[0, 15:18, 23:26, 23:26].max() > -700  # nodule-bright, not lung


def test_edge_crops_are_padded_with_air(nodule_val: NoduleClassificationDataset) -> None:
    item = nodule_val.item(0)
    series = nodule_val.cache.get(item.series_uid)
    corner = tuple(float(v) for v in series.geometry.origin_xyz)
    crop = nodule_val.crop(type(item)(item.series_uid, corner, 0))
    assert crop.shape == (1, 32, 48, 48)
    assert torch.all(crop[0, :16, :24, :24] == -1000)


def test_epochs_reshuffle_deterministically(
    small_dataset: Path, cache_dir: Path, nodule_train: NoduleClassificationDataset
) -> None:
    twin = _make(NoduleClassificationDataset, small_dataset, cache_dir, ratio=1, epoch_length=40)
    order = [nodule_train.item(i) for i in range(40)]
    assert order == [twin.item(i) for i in range(40)]
    twin.set_epoch(1)
    assert order != [twin.item(i) for i in range(40)]


def test_dataloader_workers(nodule_train: NoduleClassificationDataset) -> None:
    loader = DataLoader(nodule_train, batch_size=8, num_workers=2)
    crops, labels, uids, centers = next(iter(loader))
    assert crops.shape == (8, 1, 32, 48, 48) and labels.tolist() == [1, 0] * 4
    assert len(uids) == 8 and centers.shape == (8, 3)


def test_datasets_work_after_the_ct_files_move(small_dataset: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    cache = tmp_path / "cache"
    prefill_cache(data, cache, spacing_xyz=SPACING, progress=False)
    before = _make(NoduleClassificationDataset, data, cache, is_validation=True)
    reference = [before[i][0] for i in (0, len(before) - 1)]
    for mhd in data.glob("subset*/*.mhd"):
        mhd.unlink()
        mhd.with_suffix(".raw").unlink()
    assert find_series(data) == {}

    after = _make(NoduleClassificationDataset, data, cache, is_validation=True)
    seg = _make(SegmentationDataset, data, cache, progress=False)

    assert after.items == before.items
    for i, expected in zip((0, len(after) - 1), reference, strict=True):
        assert torch.equal(after[i][0], expected)
    assert len(seg) > 0 and seg[0][1].sum() > 0


# ------------------------------------------------------------------ malignancy


def test_malignancy_items_are_the_annotated_nodules(small_dataset: Path, cache_dir: Path) -> None:
    train = _make(MalignancyDataset, small_dataset, cache_dir, epoch_length=12)
    val = _make(MalignancyDataset, small_dataset, cache_dir, is_validation=True)
    rows = [
        line.split(",")
        for line in (small_dataset / "annotations_with_malignancy.csv")
        .read_text(encoding="utf-8")
        .splitlines()[1:]
    ]
    truth = {(r[0], tuple(float(v) for v in r[1:4])): int(r[5] == "True") for r in rows}
    items = train.items + val.items
    assert len(items) == len(truth)
    assert {(i.series_uid, i.center_xyz): i.label for i in items} == truth
    assert not {i.series_uid for i in train.items} & {i.series_uid for i in val.items}
    assert train.positives and train.negatives
    assert [train.item(i).label for i in range(12)] == [1, 0] * 6
    assert [val.item(i).label for i in range(len(val))] == [i.label for i in val.items]

    crop, label, uid, center = val[0]
    assert crop.shape == (1, 32, 48, 48) and label.dtype == torch.int64
    series = val.cache.get(uid)
    assert _near(
        series.labels, world_to_voxel_index(center.double().numpy(), series.geometry)
    ).any()
