"""DetectionResult: exact .npz round trip, refilter == fresh detect, refilter without networks."""

from __future__ import annotations

import dataclasses
import io
import json
import re

import numpy as np
import pytest
from pipeline_support import NODULE_HU, Ball, Rod, fake_models, graded_models, tiny_ct

from lungcad.ct import Geometry
from lungcad.geometry import voxel_to_world, world_to_voxel
from lungcad.pipeline import (
    MIN_NODULE_THRESHOLD,
    DetectionOptions,
    DetectionResult,
    DetectionResultError,
    Thresholds,
    detect,
    grouping,
)
from lungcad.pipeline.refilter import Region, at_least, equivalent_diameter_mm
from lungcad.pipeline.result import RESULT_FORMAT_VERSION
from lungcad.pipeline.store import CandidateStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ct():
    return tiny_ct()


@pytest.fixture(scope="module")
def result(ct):
    return detect(ct, fake_models(), Thresholds(0.5, 0.5, 0.5))


def assert_same_findings(a: DetectionResult, b: DetectionResult) -> None:
    assert a.thresholds == b.thresholds
    assert a.summary == b.summary
    assert a.candidates == b.candidates
    assert len(a.findings) == len(b.findings)
    for fa, fb in zip(a.findings, b.findings, strict=True):
        for f in dataclasses.fields(fa):
            if f.name != "mask":
                assert getattr(fa, f.name) == getattr(fb, f.name), f.name
        assert fa.mask.start_irc == fb.mask.start_irc
        np.testing.assert_array_equal(fa.mask.array, fb.mask.array)


def test_result_has_findings_numbered_by_malignancy(result, ct):
    assert result.geometry == ct.geometry
    assert result.series_uid == ct.series_uid
    assert len(result.findings) == 3  # the three balls of the tiny scene
    assert [f.number for f in result.findings] == [1, 2, 3]
    p = [f.p_malignant for f in result.findings]
    assert p == sorted(p, reverse=True)
    kept = [c for c in result.candidates if c.finding is not None]
    assert sorted(c.finding for c in kept) == [1, 2, 3]
    assert set(result.timings_s) >= {"segmentation", "classification", "total"}
    assert set(result.model_versions) == {"segmentation", "nodule", "malignancy"}
    assert result.min_segmentation_threshold == 0.2


def test_save_load_round_trip_is_exact(result, tmp_path):
    path = result.save(tmp_path / "detection.npz")
    loaded = DetectionResult.load(path)
    assert loaded.geometry == result.geometry
    assert loaded.series_uid == result.series_uid
    assert loaded.timings_s == result.timings_s
    assert loaded.model_versions == result.model_versions
    assert loaded.min_segmentation_threshold == result.min_segmentation_threshold
    assert loaded.store.canonical == result.store.canonical
    for name, array in result.store.arrays().items():
        assert loaded.store.arrays()[name].dtype == array.dtype, name
        np.testing.assert_array_equal(loaded.store.arrays()[name], array, err_msg=name)
    assert_same_findings(loaded, result)
    # a loaded result refilters like the original
    other = Thresholds(0.7, 0.3, 0.9)
    assert_same_findings(loaded.refilter(other), result.refilter(other))


def test_saved_file_needs_no_pickle(result, tmp_path):
    path = result.save(tmp_path / "detection.npz")
    with np.load(path, allow_pickle=False) as npz:
        for name in npz.files:
            assert npz[name].dtype != object, name


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "nothing.npz"
    with pytest.raises(DetectionResultError, match=re.escape("nothing.npz: file not found")):
        DetectionResult.load(missing)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(DetectionResultError, match=re.escape("junk.npz: not a readable .npz")):
        DetectionResult.load(junk)
    other = tmp_path / "other.npz"
    np.savez(other, values=np.arange(3))
    with pytest.raises(
        DetectionResultError, match=re.escape("other.npz: not a lungcad detection result")
    ):
        DetectionResult.load(other)


def test_refilter_equals_fresh_detect(ct, result):
    models = fake_models()
    for thresholds in (Thresholds(0.8, 0.9, 0.2), Thresholds(0.2, MIN_NODULE_THRESHOLD, 0.5)):
        fresh = detect(ct, models, thresholds)
        assert_same_findings(result.refilter(thresholds), fresh)
        assert_same_findings(fresh.refilter(result.thresholds), result)


def test_refilter_moves_findings(result):
    # a higher segmentation threshold shrinks every region; a nodule threshold above all
    # p_nodule leaves no finding but the same candidates
    tight = result.refilter(Thresholds(0.9, 0.5, 0.5))
    assert len(tight.findings) <= len(result.findings)
    for f in tight.findings:
        same = min(
            result.findings, key=lambda g: np.linalg.norm(np.subtract(g.center_lps, f.center_lps))
        )
        assert f.volume_mm3 < same.volume_mm3
        assert f.mask.voxel_count < same.mask.voxel_count
        assert (f.p_nodule, f.p_malignant) == (same.p_nodule, same.p_malignant)
    top = max(c.p_nodule for c in result.candidates)
    none = result.refilter(Thresholds(0.5, min(1.0, top + 1e-9), 0.5))
    assert none.findings == ()
    assert none.summary.finding_count == 0
    assert [c.p_nodule for c in none.candidates] == [c.p_nodule for c in result.candidates]
    assert all(c.finding is None for c in none.candidates)


def test_refilter_reuses_regions_while_the_segmentation_threshold_stays(result):
    """Moving only the nodule or malignancy slider reuses the masks; the findings equal a
    rebuild from a fresh copy of the store (no cache)."""
    first = result.refilter(Thresholds(0.5, MIN_NODULE_THRESHOLD, 0.5))
    second = result.refilter(Thresholds(0.5, 0.3, 0.9))
    masks = {f.center_lps: f.mask for f in first.findings}
    assert second.findings and all(masks[f.center_lps] is f.mask for f in second.findings)
    assert not second.findings[0].mask.array.flags.writeable
    uncached = DetectionResult.from_store(
        dataclasses.replace(result.store),
        Thresholds(0.5, 0.3, 0.9),
        series_uid=result.series_uid,
        timings_s={},
        model_versions={},
    )
    assert_same_findings(second, uncached)
    moved = result.refilter(Thresholds(0.6, 0.3, 0.9))
    assert moved.findings
    for f in moved.findings:  # a region that shrank has a new mask; an unchanged one, the same
        old = masks.get(f.center_lps)
        assert (old is f.mask) == (old is not None and old.voxel_count == f.mask.voxel_count)
    back = result.refilter(Thresholds(0.5, 0.3, 0.9))  # dragged back: no mask is rebuilt
    assert all(masks[f.center_lps] is f.mask for f in back.findings)


def _random_store(seed: int) -> CandidateStore:
    """Blobs with random float16 probabilities on a small grid, some touching its faces."""
    rng = np.random.default_rng(seed)
    shape = (9, 11, 10)
    geometry = Geometry.from_arrays(
        (10.0, -20.0, 5.0), (0.8, 0.7, 1.5), [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], shape
    )
    index, prob, offsets = [], [], [0]
    for _ in range(rng.integers(5, 25)):
        centre = rng.integers(0, shape)
        half = rng.integers(1, 4, size=3)
        box = np.argwhere(np.ones(2 * half + 1, dtype=bool)) - half + centre
        box = box[np.all((box >= 0) & (box < shape), axis=1)]
        box = box[rng.random(len(box)) < rng.uniform(0.5, 1.0)]
        if not len(box):
            continue
        flat = np.sort(np.ravel_multi_index(box.T, shape))
        index.append(flat)
        prob.append(rng.choice(np.linspace(0.2, 1.0, 9), len(flat)).astype(np.float16))
        offsets.append(offsets[-1] + len(flat))
    n = len(index)
    return CandidateStore(
        canonical=geometry, original=geometry, floor=0.2,
        p_nodule=rng.random(n), p_malignant=rng.random(n),
        crop_center_irc=np.zeros((n, 3), np.int64), region_offsets=np.array(offsets),
        region_index=np.concatenate(index), region_prob=np.concatenate(prob),
        region_hu=rng.integers(-900, 300, offsets[-1]),
    )  # fmt: skip


def _survives_erosion(irc: np.ndarray) -> bool:
    """Whether one erosion (6-connected cross, voxels outside = False) leaves any voxel.

    The cross erosion written out as shifted ANDs (checked against scipy below)."""
    lo = irc.min(axis=0)
    box = np.zeros(tuple(irc.max(axis=0) - lo + 3), dtype=bool)  # one voxel of border
    local = irc - lo + 1
    box[local[:, 0], local[:, 1], local[:, 2]] = True
    core = box[1:-1, 1:-1, 1:-1].copy()
    core &= box[:-2, 1:-1, 1:-1]
    core &= box[2:, 1:-1, 1:-1]
    core &= box[1:-1, :-2, 1:-1]
    core &= box[1:-1, 2:, 1:-1]
    core &= box[1:-1, 1:-1, :-2]
    core &= box[1:-1, 1:-1, 2:]
    return bool(core.any())


def _one_region(store: CandidateStore, k: int, threshold: float) -> Region | None:
    """The per-region oracle: candidate ``k``'s region at ``threshold`` computed alone, or None
    when one erosion empties it (what ``Refilter.regions`` computes for all at once)."""
    low, high = store.refilter.prob_range
    if high[k] < np.float32(threshold):
        return None
    a, b = store.region_offsets[k], store.region_offsets[k + 1]
    keep = at_least(store.region_prob[a:b], threshold)
    irc = np.stack(np.unravel_index(store.region_index[a:b][keep], store.canonical.shape_irc), 1)
    # the whole floor region survives one erosion (grouping made it so); a cut one may not
    if low[k] < np.float32(threshold) and not _survives_erosion(irc):
        return None
    center_lps = voxel_to_world(irc.mean(axis=0), store.canonical)
    center_irc = world_to_voxel(center_lps, store.original)
    volume = float(len(irc) * store.canonical.voxel_volume_mm3)
    return Region(
        candidate=k,
        center_lps=tuple(float(v) for v in center_lps),
        center_irc=tuple(float(v) for v in center_irc),
        diameter_mm=equivalent_diameter_mm(volume),
        volume_mm3=volume,
        mean_hu=float(store.region_hu[a:b][keep].mean(dtype=np.float64)),
        max_probability=float(high[k]),
        canonical_irc=irc,
        canonical_hu=store.region_hu[a:b][keep],
    )


def test_all_regions_at_once_equal_one_region_at_a_time():
    """The prefix-sum / erosion-level computation gives exactly the per-candidate regions."""
    seen_cut_dead = seen_cut_alive = 0
    for seed in range(40):
        store = _random_store(seed)
        for t in (0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
            fast = store.refilter.regions(t)
            for k, region in enumerate(fast):
                slow = _one_region(store, k, t)
                assert (region is None) == (slow is None), (seed, t, k)
                if slow is None:
                    seen_cut_dead += bool(store.region_prob[store.region_offsets[k] :].size)
                    continue
                seen_cut_alive += 1
                for name in ("center_lps", "center_irc", "diameter_mm", "volume_mm3",
                             "mean_hu", "max_probability"):  # fmt: skip
                    assert getattr(region, name) == getattr(slow, name), (seed, t, k, name)
                assert sorted(map(tuple, region.canonical_irc)) == sorted(
                    map(tuple, slow.canonical_irc)
                )
    assert seen_cut_dead and seen_cut_alive


def test_refilter_below_floor_raises(result):
    with pytest.raises(ValueError, match=re.escape("below this result's floor 0.2")):
        result.refilter(Thresholds(0.1, 0.5, 0.5))


def test_refilter_below_the_nodule_floor_raises(result):
    assert result.min_nodule_threshold == MIN_NODULE_THRESHOLD == 0.1
    expected = (
        "nodule threshold 0.05 is below this result's nodule floor 0.1 (candidates below it "
        "have no malignancy score); run detection again with min_nodule_threshold <= 0.05"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        result.refilter(Thresholds(0.5, 0.05, 0.5))
    assert result.refilter(Thresholds(0.5, 0.1, 0.5)).findings  # at the floor: fine


def test_a_lower_requested_nodule_threshold_lowers_the_floor(ct):
    low = detect(ct, graded_models(), Thresholds(0.5, 0.02, 0.5))
    assert low.min_nodule_threshold == 0.02
    assert all(c.p_malignant is not None for c in low.candidates)  # all three reach 0.02


@pytest.fixture(scope="module")
def graded(ct):
    """A result with a candidate below the nodule floor (no malignancy score)."""
    return detect(ct, graded_models(), Thresholds(0.5, 0.5, 0.5))


def test_save_load_keeps_the_nodule_floor(graded, tmp_path):
    assert any(np.isnan(graded.store.p_malignant))
    loaded = DetectionResult.load(graded.save(tmp_path / "detection.npz"))
    assert loaded.min_nodule_threshold == graded.min_nodule_threshold == MIN_NODULE_THRESHOLD
    np.testing.assert_array_equal(loaded.store.p_malignant, graded.store.p_malignant)
    assert_same_findings(loaded, graded)
    other = Thresholds(0.4, MIN_NODULE_THRESHOLD, 0.3)
    assert_same_findings(loaded.refilter(other), graded.refilter(other))
    with pytest.raises(ValueError, match=re.escape("below this result's nodule floor 0.1")):
        loaded.refilter(Thresholds(0.5, 0.0, 0.5))


def _old_layout(result: DetectionResult, path) -> None:
    """``result`` saved as lungcad wrote it before the nodule floor: format version 1, no
    min_nodule_threshold, 0 (not NaN) for candidates never scored."""
    buffer = io.BytesIO()
    with np.load(result.save(path)) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays.pop("meta_json")))
    del meta["min_nodule_threshold"]
    meta["format_version"] = 1
    arrays["p_malignant"] = np.nan_to_num(arrays["p_malignant"], nan=0.0)
    np.savez_compressed(buffer, meta_json=np.array(json.dumps(meta)), **arrays)
    path.write_bytes(buffer.getvalue())


def test_a_result_saved_before_the_nodule_floor_loads_with_floor_zero(ct, tmp_path):
    everything = detect(
        ct, graded_models(), Thresholds(0.5, 0.5, 0.5), DetectionOptions(min_nodule_threshold=0.0)
    )
    _old_layout(everything, tmp_path / "old.npz")
    loaded = DetectionResult.load(tmp_path / "old.npz")
    assert loaded.min_nodule_threshold == 0.0
    assert_same_findings(loaded, everything)
    for t in (Thresholds(0.5, 0.0, 0.5), Thresholds(0.3, 0.05, 0.9)):  # below 0.1: as before
        assert_same_findings(loaded.refilter(t), everything.refilter(t))
    assert all(c.p_malignant is not None for c in loaded.candidates)


def test_a_newer_result_format_is_refused_by_name(graded, tmp_path):
    path = graded.save(tmp_path / "new.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays.pop("meta_json")))
    assert meta["format_version"] == RESULT_FORMAT_VERSION == 2
    meta["format_version"] = 3
    np.savez(path, meta_json=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(DetectionResultError, match="format version 3 is newer"):
        DetectionResult.load(path)


def test_unscored_candidates_above_the_floor_are_refused(graded, tmp_path):
    """A file whose floor does not match its scores (NaN above the floor) is not trusted."""
    path = tmp_path / "bad.npz"
    _old_layout(graded, path)  # drops the floor: 0, yet one candidate has no score
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    p_malignant = arrays["p_malignant"].copy()
    p_malignant[np.argmin(arrays["p_nodule"])] = np.nan
    arrays["p_malignant"] = p_malignant
    np.savez(path, **arrays)
    with pytest.raises(DetectionResultError, match="has no malignancy score"):
        DetectionResult.load(path)


def test_refilter_never_runs_a_network(ct):
    models = fake_models()
    result = detect(ct, models, Thresholds(0.5, 0.5, 0.5))

    def explode(*args, **kwargs):
        raise AssertionError("refilter ran a network")

    for net in (models.segmentation, models.nodule, models.malignancy):
        net.forward = explode
    again = result.refilter(Thresholds(0.6, 0.1, 0.3))
    assert len(again.candidates) > 0
    with pytest.raises(AssertionError, match="refilter ran a network"):
        detect(ct, models, Thresholds(0.5, 0.5, 0.5))


def test_empty_result_round_trips(tmp_path):
    ct = tiny_ct()
    ct.hu[...] = -1000  # nothing for the stand-in UNet to see
    result = detect(ct, fake_models())
    assert result.findings == () and result.candidates == ()
    assert result.summary.finding_count == 0
    loaded = DetectionResult.load(result.save(tmp_path / "empty.npz"))
    assert loaded.findings == () and loaded.store.count == 0
    assert loaded.refilter(Thresholds(0.9, 0.9, 0.9)).findings == ()


def test_regions_larger_than_a_nodule_are_grouped_again_higher(monkeypatch):
    """Two balls joined by a rod the stand-in UNet gives p = 0.25: one region at the floor."""
    balls = (Ball((-8.0, 0.0, 0.0), 4.0), Ball((8.0, 0.0, 0.0), 4.0))
    rod = Rod((-8.0, 0.0, 0.0), (8.0, 0.0, 0.0), 4.0, NODULE_HU - 150.0 * np.sqrt(np.log(4.0)))
    ct = tiny_ct(balls=balls, rods=(rod,), noise_hu=2.0)
    low = Thresholds(0.2, 0.0, 0.5)
    joined = detect(ct, fake_models(), low)
    assert len(joined.candidates) == 1
    volume = joined.candidates[0].volume_mm3
    monkeypatch.setattr(grouping, "MAX_REGION_ML", 0.7 * volume / 1000.0)
    split = detect(ct, fake_models(), low)
    assert len(split.candidates) == 2  # grouped again at 0.3, where the rod is gone
    for c in split.candidates:
        assert c.volume_mm3 < 0.7 * volume
        assert min(abs(c.center_lps[0] - b.center_lps[0]) for b in balls) < 1.0
    # the split candidates are what every threshold sees, so refilter still equals detect
    for t in (Thresholds(0.25, 0.0, 0.5), Thresholds(0.6, 0.0, 0.5)):
        assert_same_findings(split.refilter(t), detect(ct, fake_models(), t))
    monkeypatch.setattr(grouping, "MAX_REGION_ML", 1e-6)
    assert detect(ct, fake_models(), low).candidates == ()  # too large at every level: dropped


def test_float16_comparison_matches_float32():
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    every = every[np.isfinite(every)]
    for t in (0.0, 0.2, 0.25, 0.3, 1 / 3, 0.5, 0.7, 0.9, 0.99999, 1.0, 1e-5):
        np.testing.assert_array_equal(at_least(every, t), every.astype(np.float32) >= t)


def test_erosion_check_matches_scipy():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    cross = ndimage.generate_binary_structure(3, 1)
    seen = set()
    for _ in range(300):
        shape = tuple(rng.integers(1, 6, size=3))
        volume = rng.random(shape) < rng.uniform(0.3, 1.0)
        if not volume.any():
            continue
        padded = np.pad(volume, 1)
        expected = bool(ndimage.binary_erosion(padded, structure=cross).any())
        seen.add(expected)
        assert _survives_erosion(np.argwhere(volume)) == expected
    assert seen == {True, False}
