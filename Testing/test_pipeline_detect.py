"""detect(): lung box vs whole volume, progress and cancel, weights folders, the bundled weights."""

from __future__ import annotations

import dataclasses
import itertools
import re
import shutil
import threading

import numpy as np
import pytest
import torch
from pipeline_support import fake_models, graded_models, tiny_ct
from test_pipeline_result import assert_same_findings

from lungcad.lungs import find_lungs
from lungcad.models import WeightsChecksumError, WeightsError, WeightsNotFoundError
from lungcad.pipeline import (
    BUNDLED_MODELS,
    MIN_NODULE_THRESHOLD,
    STAGES,
    CascadeModels,
    DetectionCancelled,
    DetectionOptions,
    DetectionResult,
    DetectionStats,
    Precision,
    Thresholds,
    detect,
    native_bf16,
    resolve_device,
    resolve_precision,
)
from lungcad.pipeline.canonical import resample_to_canonical
from lungcad.pipeline.classify import MIRROR_FLOOR, NODULE_MIRRORS
from lungcad.pipeline.region import LUNG_MARGIN_MM, Box, lung_plan, mask_box
from lungcad.pipeline.segment import segment_box

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bundled() -> CascadeModels:
    return CascadeModels.load(device="cpu")


def test_lung_box_run_equals_whole_volume_run():
    ct = tiny_ct()
    models = fake_models()
    stats_box, stats_whole = DetectionStats(), DetectionStats()
    thresholds = Thresholds(0.5, 0.0, 0.5)
    boxed = detect(ct, models, thresholds, DetectionOptions(lung_margin_mm=3.0), stats=stats_box)
    whole = detect(ct, models, thresholds, DetectionOptions(lung_region=False), stats=stats_whole)
    assert stats_whole.unet_box_shape == stats_whole.canonical_shape
    assert np.prod(stats_box.unet_box_shape) < 0.6 * np.prod(stats_whole.canonical_shape)
    assert stats_box.slices_run < stats_whole.slices_run
    assert len(boxed.findings) == 3
    assert_same_findings(boxed, whole)


@pytest.mark.parametrize("mirror", [True, False])
def test_the_nodule_floor_changes_no_finding_at_or_above_it(mirror):
    """Malignancy runs only from the nodule floor up and mirrors from the mirror floor (counted),
    and every finding at
    thresholds at or above the floor equals a run that scored everything (floor 0). Exact with
    a classifier whose mirrored views agree; with views that disagree, a candidate whose one
    view is below the floor misses a mirrors' mean that could have reached a higher score."""
    ct = tiny_ct()
    floored_models, full_models = graded_models(), graded_models()
    floored = detect(
        ct, floored_models, Thresholds(0.5, 0.5, 0.5), DetectionOptions(mirror_nodule=mirror)
    )
    full = detect(
        ct,
        full_models,
        Thresholds(0.5, 0.5, 0.5),
        DetectionOptions(mirror_nodule=mirror, min_nodule_threshold=0.0),
    )
    floor = MIN_NODULE_THRESHOLD
    assert (floored.min_nodule_threshold, full.min_nodule_threshold) == (floor, 0.0)
    p = sorted(c.p_nodule for c in full.candidates)
    assert len(p) == 3 and p[0] < floor < p[1] < 0.5 < p[2]  # one of each kind
    assert all(c.in_lung for c in full.candidates)
    views = len(NODULE_MIRRORS) if mirror else 1
    assert (full_models.nodule.crops, full_models.malignancy.crops) == (3 * views, 3)
    # the candidate below the floor gets no malignancy classifier, and one view unless it reaches
    # the mirror floor
    low_views = views if p[0] >= MIRROR_FLOOR else 1
    assert (floored_models.nodule.crops, floored_models.malignancy.crops) == (
        low_views + 2 * views,
        2,
    )
    for c in floored.candidates:
        assert (c.p_malignant is None) == (c.p_nodule < floor)
    for seg, nodule, malignancy in itertools.product((0.2, 0.5, 0.8), (floor, 0.2, 0.5, 0.9),
                                                     (0.0, 0.5, 1.0)):  # fmt: skip
        thresholds = Thresholds(seg, nodule, malignancy)
        a, b = floored.refilter(thresholds), full.refilter(thresholds)
        unscored = [
            dataclasses.replace(c, p_malignant=None) if c.p_nodule < floor else c
            for c in b.candidates
        ]
        assert a.candidates == tuple(unscored)
        b = dataclasses.replace(b, candidates=a.candidates)
        assert_same_findings(a, b)


def test_lung_plan_covers_the_lungs_with_the_margin():
    ct = tiny_ct((0, 1, 0, 0, 0, 1, -1, 0, 0), spacing_xyz=(0.9, 1.1, 1.3), size_mm=96.0)
    canonical = resample_to_canonical(ct)
    margin_mm = 5.0
    plan = lung_plan(ct, canonical.geometry, margin_mm, align_rc=4)
    assert np.all(plan.rows[:, 0] % 4 == 0) and np.all(plan.cols[:, 0] % 4 == 0)
    assert plan.pixels < 0.85 * plan.box.size  # the slices near the lung's ends run smaller
    lungs = find_lungs(canonical)
    whole = mask_box(lungs)
    spacing = canonical.geometry.spacing_irc
    assert plan.box.start[0] <= whole.start[0] - margin_mm / spacing[0] + 1
    assert plan.box.stop[0] >= whole.stop[0] + margin_mm / spacing[0] - 1
    for z in range(whole.start[0], whole.stop[0]):
        rows = np.flatnonzero(lungs[z].any(axis=1))
        cols = np.flatnonzero(lungs[z].any(axis=0))
        if len(rows) == 0:
            continue
        k = z - plan.box.start[0]
        assert plan.rows[k, 0] <= rows[0] - margin_mm / spacing[1] + 1
        assert plan.rows[k, 1] >= rows[-1] + 1 + margin_mm / spacing[1] - 1
        assert plan.cols[k, 0] <= cols[0] - margin_mm / spacing[2] + 1
        assert plan.cols[k, 1] >= cols[-1] + 1 + margin_mm / spacing[2] - 1


def test_unet_on_the_lung_plan_matches_the_whole_slice_run(bundled):
    """With the default margin the lungs lie outside the band a box edge can influence."""
    ct = tiny_ct(size_mm=112.0)
    canonical = resample_to_canonical(ct)
    plan = lung_plan(ct, canonical.geometry, LUNG_MARGIN_MM, align_rc=4)
    box = plan.box
    assert box.shape[1] < canonical.shape[1] and box.shape[2] < canonical.shape[2]
    net, cpu = bundled.segmentation, torch.device("cpu")
    boxed = segment_box(canonical.hu, plan, net, cpu)
    # whole slices over the same slice range
    rows = Box((box.start[0], 0, 0), (box.stop[0], *canonical.shape[1:]))
    whole = segment_box(canonical.hu, rows, net, cpu)[:, box.slices[1], box.slices[2]]
    lungs = find_lungs(canonical)[box.slices]
    assert lungs.sum() > 1000
    difference = np.abs(boxed.astype(np.float32) - whole.astype(np.float32))[lungs]
    assert difference.max() <= 2e-3  # float16 storage and conv arithmetic, nothing more


def test_progress_reports_every_stage_in_order():
    seen: list[tuple[str, float]] = []
    detect(tiny_ct(), fake_models(), progress=lambda stage, f: seen.append((stage, f)))
    stages = [s for s, _ in seen]
    assert sorted(set(stages), key=stages.index) == list(STAGES)
    for stage in STAGES:
        fractions = [f for s, f in seen if s == stage]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0
        assert all(0.0 <= f <= 1.0 for f in fractions)


@pytest.mark.parametrize("stage", ["before", "segmentation", "classification"])
def test_cancel_stops_detection(stage):
    cancel = threading.Event()
    seen: list[str] = []

    def progress(name: str, fraction: float) -> None:
        seen.append(name)
        if name == stage:
            cancel.set()

    if stage == "before":
        cancel.set()
    with pytest.raises(DetectionCancelled, match="cancelled"):
        detect(tiny_ct(), fake_models(), progress=progress, cancel=cancel)
    if stage != "before":
        assert seen[-1] == stage  # stopped right after the batch that set it


def test_missing_weights_folder_is_named(tmp_path):
    folder = tmp_path / "no-such-folder"
    with pytest.raises(WeightsNotFoundError, match=re.escape(f"{folder}: weights folder")):
        CascadeModels.load(folder)


def test_missing_weights_file_is_named(tmp_path):
    for name in ("segmentation", "nodule"):
        shutil.copy(BUNDLED_MODELS / f"{name}.safetensors", tmp_path)
        shutil.copy(BUNDLED_MODELS / f"{name}.json", tmp_path)
    with pytest.raises(WeightsError, match=re.escape(str(tmp_path / "malignancy.json"))):
        CascadeModels.load(tmp_path, device="cpu")


def test_damaged_weights_file_is_named(tmp_path):
    for name in ("segmentation", "nodule", "malignancy"):
        shutil.copy(BUNDLED_MODELS / f"{name}.safetensors", tmp_path)
        shutil.copy(BUNDLED_MODELS / f"{name}.json", tmp_path)
    damaged = tmp_path / "nodule.safetensors"
    blob = bytearray(damaged.read_bytes())
    blob[-1] ^= 0xFF
    damaged.write_bytes(bytes(blob))
    with pytest.raises(WeightsChecksumError, match=re.escape(str(damaged))):
        CascadeModels.load(tmp_path, device="cpu")


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_precision_auto_takes_bf16_only_where_the_device_has_bf16_units(monkeypatch):
    cpu = torch.device("cpu")
    for explicit in (Precision.FLOAT32, Precision.BF16):
        assert resolve_precision(explicit.value, cpu) is explicit
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert native_bf16(cpu) and resolve_precision("auto", cpu) is Precision.BF16
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not native_bf16(cpu) and resolve_precision("auto", cpu) is Precision.FLOAT32
    with pytest.raises(ValueError, match="'fp8'"):
        resolve_precision("fp8", cpu)


def test_detect_runs_the_networks_in_the_models_precision(monkeypatch):
    """bf16 models run under bf16 autocast unless the call says otherwise; versions say which."""
    seen: list[torch.dtype] = []
    models = fake_models()
    forward = type(models.segmentation).forward

    def spy(self, x):
        seen.append(
            torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        )
        return forward(self, x)

    monkeypatch.setattr(type(models.segmentation), "forward", spy)
    bf16_models = fake_models(Precision.BF16)
    assert bf16_models.bf16 and all(v.endswith("(bf16)") for v in bf16_models.versions().values())
    assert all(v.endswith("(float32)") for v in models.versions().values())
    detect(tiny_ct(), bf16_models)
    assert seen and set(seen) == {torch.bfloat16}
    seen.clear()
    detect(tiny_ct(), bf16_models, options=DetectionOptions(bf16=False))
    assert set(seen) == {torch.float32}


def test_bundled_weights_load_in_the_precision_asked(bundled):
    assert bundled.precision is resolve_precision("auto", torch.device("cpu"))
    assert CascadeModels.load(device="cpu", precision="float32").precision is Precision.FLOAT32


def test_bundled_weights_end_to_end(bundled, tmp_path):
    """Runs the real networks; asserts plumbing only (quality: the model cards)."""
    assert set(bundled.cards) == {"segmentation", "nodule", "malignancy"}
    assert all(not m.training for m in (bundled.segmentation, bundled.nodule, bundled.malignancy))
    assert all(
        v.startswith(("SegmentationUNet", "CandidateClassifier"))
        for v in bundled.versions().values()
    )
    ct = tiny_ct(size_mm=56.0)
    thresholds = Thresholds(0.5, 0.5, 0.5)
    result = detect(ct, bundled, thresholds)
    expected = bundled.versions()
    expected["nodule"] += ", mean of 4 in-plane mirrors where one view gives p_nodule >= 0.02"
    expected["malignancy"] += ", where p_nodule >= 0.1"
    assert result.model_versions == expected
    unmirrored = detect(
        ct, bundled, thresholds, DetectionOptions(mirror_nodule=False, min_nodule_threshold=0.0)
    )
    assert unmirrored.model_versions == bundled.versions()
    for c in result.candidates:
        assert 0.0 <= c.p_nodule <= 1.0
        if c.p_nodule >= MIN_NODULE_THRESHOLD:
            assert 0.0 <= c.p_malignant <= 1.0
        else:
            assert c.p_malignant is None
    other = Thresholds(0.6, 0.3, 0.7)
    assert_same_findings(result.refilter(other), detect(ct, bundled, other))
    loaded = DetectionResult.load(result.save(tmp_path / "d.npz"))
    assert_same_findings(loaded, result)
