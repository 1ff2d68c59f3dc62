"""Lung-RADS in the cascade: every finding carries its measurements and category, the exam its
category, and both follow the thresholds when a result is refiltered (no network)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from pipeline_support import BALLS, fake_models, graded_models, tiny_ct

from lungcad.characteristics import (
    Characteristics,
    MarginSource,
    NoduleMargin,
    NoduleType,
    TypeSource,
)
from lungcad.ct import Geometry
from lungcad.lungrads import LungRadsCategory, assess_nodule, categorize
from lungcad.pipeline import DetectionResult, DetectionResultError, Thresholds, detect
from lungcad.pipeline.store import CandidateStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: A 20-degree gantry tilt (rotation about the patient's x axis).
TILT = (1, 0, 0, 0, 0.9396926, -0.3420201, 0, 0.3420201, 0.9396926)


def _ball_of(finding) -> float:
    """The radius of the tiny scene's ball this finding lies on."""
    distances = [np.linalg.norm(np.subtract(finding.center_lps, b.center_lps)) for b in BALLS]
    return BALLS[int(np.argmin(distances))].radius_mm


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), TILT], ids=["axial", "tilt"])
def test_each_finding_carries_its_measurements_and_category(direction):
    result = detect(tiny_ct(direction=direction), fake_models(), Thresholds(0.5, 0.5, 0.5))

    assert len(result.findings) == 3
    for f in result.findings:
        m = f.measurements
        diameter = 2 * _ball_of(f)
        # the stand-in UNet segments each ball to within a 1-mm pixel of its edge
        assert abs(m.mean_diameter_mm - diameter) <= 1.0
        assert abs(m.axes.s_mm - f.center_lps[2]) <= 1.5
        assert m.axes.short_axis_mm <= m.axes.long_axis_mm <= m.recist_longest_mm
        assert m.solid is not None  # the balls are +100 HU: solid throughout
        assert m.solid_mean_diameter_mm == m.mean_diameter_mm
        assert m.volume_mm3 == round(f.mask.voxel_count * result.geometry.voxel_volume_mm3)
        assert f.lung_rads.category is categorize(NoduleType.SOLID, m.mean_diameter_mm)
        assert f.lung_rads.type_source is TypeSource.ASSUMED_SOLID
        assert f"Lung-RADS {f.lung_rads.category.value} (solid (assumed solid)" in f.describe()
    exam = result.summary.lung_rads
    top = max(f.lung_rads.category.rank for f in result.findings)
    assert exam.category.rank == top
    assert exam.finding_numbers == tuple(
        f.number for f in result.findings if f.lung_rads.category.rank == top
    )
    assert exam.assumed_type_count == 3


def test_exam_category_follows_the_thresholds_and_equals_a_fresh_detection():
    ct = tiny_ct()
    models = graded_models()
    result = detect(ct, models, Thresholds(0.5, 0.1, 0.5))
    assert len(result.findings) == 2

    only_largest = result.refilter(Thresholds(0.5, 0.5, 0.5))
    assert [_ball_of(f) for f in only_largest.findings] == [4.5]
    assert only_largest.summary.lung_rads.category is LungRadsCategory.C4A
    assert only_largest.summary.lung_rads.finding_numbers == (1,)

    top = max(f.p_nodule for f in result.findings)
    none = result.refilter(Thresholds(0.5, min(1.0, top + 1e-9), 0.5))
    assert none.findings == ()
    assert none.summary.lung_rads.category is LungRadsCategory.C1
    assert none.summary.lung_rads.management.startswith("Continue annual screening")

    for thresholds in (Thresholds(0.5, 0.5, 0.5), Thresholds(0.8, 0.1, 0.5)):
        fresh = detect(ct, models, thresholds)
        moved = result.refilter(thresholds)
        assert moved.summary == fresh.summary
        assert [f.measurements for f in moved.findings] == [f.measurements for f in fresh.findings]
        assert [f.lung_rads for f in moved.findings] == [f.lung_rads for f in fresh.findings]


def test_a_higher_segmentation_threshold_measures_the_smaller_segment():
    result = detect(tiny_ct(), fake_models(), Thresholds(0.5, 0.5, 0.5))
    tight = result.refilter(Thresholds(0.95, 0.5, 0.5))
    before = {_ball_of(f): f.measurements.volume_mm3 for f in result.findings}
    after = {_ball_of(f): f.measurements.volume_mm3 for f in tight.findings}
    assert after and all(after[r] < before[r] for r in after)
    for f in tight.findings:
        assert f.lung_rads == assess_nodule(f.measurements)


def test_saved_results_load_with_the_same_measurements(tmp_path):
    result = detect(tiny_ct(), fake_models(), Thresholds(0.5, 0.5, 0.5))
    loaded = DetectionResult.load(result.save(tmp_path / "detection.npz"))
    assert [f.measurements for f in loaded.findings] == [f.measurements for f in result.findings]
    assert loaded.summary.lung_rads == result.summary.lung_rads


def _part_solid_store() -> CandidateStore:
    """One candidate: a 12-mm ball of -550 HU with a 5-mm core of +40 HU, on a grid that is
    both the canonical and the original one (so its mask is exactly the ball)."""
    geometry = Geometry.from_arrays((0.0, 0.0, 0.0), (0.75, 0.75, 1.25), np.eye(3), (16, 24, 24))
    irc = np.stack(np.indices(geometry.shape_irc), axis=-1).reshape(-1, 3)
    centre = np.array([7.5, 11.5, 11.5])
    mm = (irc - centre) * np.asarray(geometry.spacing_irc)
    radius = np.linalg.norm(mm, axis=1)
    inside = np.flatnonzero(radius <= 6.0)
    hu = np.where(radius[inside] <= 2.5, 40, -550).astype(np.int16)
    return CandidateStore(
        canonical=geometry,
        original=geometry,
        floor=0.2,
        p_nodule=np.array([0.9]),
        p_malignant=np.array([0.5]),
        crop_center_irc=np.array([[8, 12, 12]]),
        region_offsets=np.array([0, len(inside)]),
        region_index=inside,
        region_prob=np.full(len(inside), 0.9, dtype=np.float16),
        region_hu=hu,
        in_lung=np.array([True]),
    )


def test_the_solid_component_is_the_part_of_the_segment_at_or_above_minus_300_hu():
    findings, _ = _part_solid_store().build(Thresholds(0.5, 0.5, 0.5))

    (f,) = findings
    m = f.measurements
    assert abs(m.mean_diameter_mm - 12.0) <= 0.75 + 0.05
    assert abs(m.solid_mean_diameter_mm - 5.0) <= 0.75 + 0.05
    # no classifier yet: read as solid (12 mm: 4A), as part-solid it would be 3 (solid part < 6)
    assert f.lung_rads.category is LungRadsCategory.C4A
    assert assess_nodule(m, NoduleType.PART_SOLID).category is LungRadsCategory.C3


def test_given_type_and_margin_change_the_category_and_follow_the_candidate(tmp_path):
    result = detect(tiny_ct(), fake_models(), Thresholds(0.5, 0.5, 0.5))
    largest = max(result.findings, key=lambda f: f.measurements.mean_diameter_mm)
    assert largest.lung_rads.category is LungRadsCategory.C4A  # 9-mm ball read as solid

    given = result.with_characteristics(
        {largest.number: Characteristics(NoduleType.GROUND_GLASS, NoduleMargin.ROUND)}
    )

    f = given.findings[largest.number - 1]
    assert f.lung_rads.category is LungRadsCategory.C2  # ground-glass < 30 mm
    assert f.lung_rads.type_source is TypeSource.GIVEN
    assert f.lung_rads.margin_source is MarginSource.GIVEN
    assert given.summary.lung_rads.category is LungRadsCategory.C3
    assert given.summary.lung_rads.assumed_type_count == 2
    # it stays with the candidate when the thresholds move, and through a save and load
    for moved in (
        given.refilter(Thresholds(0.7, 0.5, 0.9)),
        DetectionResult.load(given.save(tmp_path / "detection.npz")),
    ):
        (same,) = [g for g in moved.findings if _ball_of(g) == 4.5]
        assert same.lung_rads.nodule_type is NoduleType.GROUND_GLASS
        assert same.lung_rads.margin is NoduleMargin.ROUND
    # spiculated: 4X; unknown again: assumed solid
    spiculated = given.with_characteristics(
        {largest.number: Characteristics(margin=NoduleMargin.SPICULATED)}
    )
    assert spiculated.findings[largest.number - 1].lung_rads.category is LungRadsCategory.C4X
    cleared = given.with_characteristics({largest.number: Characteristics()})
    assert cleared.characteristics == {}
    assert cleared.summary == result.summary


def test_characteristics_for_a_finding_that_is_not_there_are_refused():
    result = detect(tiny_ct(), fake_models(), Thresholds(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match=r"no finding 0, 4 in this result \(it has 3 findings\)"):
        result.with_characteristics({0: Characteristics(), 4: Characteristics()})


@pytest.mark.parametrize(
    ("characteristics", "problem"),
    [
        ({"7": {"type": "solid", "margin": None}}, "characteristics name candidate 7 of 3"),
        ({"0": {"type": "cystic", "margin": None}}, "'cystic' is not a valid NoduleType"),
        ([], "characteristics must be an object, got list"),
    ],
)
def test_a_file_with_bad_characteristics_is_refused_by_name(tmp_path, characteristics, problem):
    result = detect(tiny_ct(), fake_models(), Thresholds(0.5, 0.5, 0.5))
    path = result.save(tmp_path / "detection.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays.pop("meta_json")))
    assert meta["characteristics"] == {}
    meta["characteristics"] = characteristics
    np.savez(path, meta_json=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(DetectionResultError, match=re.escape(problem)):
        DetectionResult.load(path)
