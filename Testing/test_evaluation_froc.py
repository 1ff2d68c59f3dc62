"""LUNA16 FROC protocol on hand-made scans whose sensitivities are worked out by hand below."""

from __future__ import annotations

import numpy as np
import pytest

from lungcad.evaluation import (
    FP_RATES,
    Status,
    evaluate_froc,
    froc_curve,
    match_scan,
    sensitivity_by_size,
)
from lungcad.evaluation.froc import bootstrap_ci
from lungcad.evaluation.matching import cap_marks

NONE = np.zeros((0, 3))


def _scan(uid, cands, nodules, ignored=(), max_marks=100):
    """cands: [(x, y, z, p)], nodules/ignored: [(x, y, z, diameter)]."""
    c = np.array(cands, dtype=float).reshape(-1, 4)
    n = np.array(nodules, dtype=float).reshape(-1, 4)
    i = np.array(ignored, dtype=float).reshape(-1, 4)
    return match_scan(uid, c[:, :3], c[:, 3], n[:, :3], n[:, 3], i[:, :3], i[:, 3], max_marks)


def _scans(min_small: bool = False, with_excluded: bool = True):
    """Four scans, four nodules (N1..N4), one excluded finding.

    A: N1 (0,0,0) 10 mm, N2 (50,0,0) 6 mm, excluded E1 (100,0,0) 8 mm.
       a1 p.9 on N1; a2 p.6 also on N1 (duplicate); a3 p.95 on E1 (ignored); a4 p.8 on nothing;
       a5 p.5 exactly 3 mm from N2 (= its radius: not a hit, LUNA16 needs dist < r); a6 p.2 on N2.
    B: N3 (0,0,0) 20 mm; b1 p.5 8.66 mm away (hit); b2 p.5 on nothing (ties with b1).
    C: N4 (0,0,0) 8 mm; no candidates at all (N4 missed).
    D: no nodule; d1 p.3.
    """
    a_nodules = [(0, 0, 0, 10)] + ([] if min_small else [(50, 0, 0, 6)])
    a_ignored = ([(100, 0, 0, 8)] if with_excluded else []) + ([(50, 0, 0, 6)] if min_small else [])
    a = _scan(
        "A",
        [(1, 0, 0, 0.9), (0, 2, 0, 0.6), (100, 1, 0, 0.95), (200, 0, 0, 0.8), (53, 0, 0, 0.5),
         (51, 0, 0, 0.2)],
        a_nodules,
        a_ignored,
    )  # fmt: skip
    b = _scan("B", [(5, 5, 5, 0.5), (30, 0, 0, 0.5)], [(0, 0, 0, 20)])
    c = _scan("C", [], [(0, 0, 0, 8)])
    d = _scan("D", [(0, 0, 0, 0.3)], [])
    return [a, b, c, d]


def test_protocol_edge_cases_give_the_hand_computed_sensitivities() -> None:
    scans = _scans()
    a = scans[0]
    T, F, IGN = Status.TRUE_POSITIVE, Status.FALSE_POSITIVE, Status.IGNORED
    assert a.status.tolist() == [T, T, IGN, F, F, T]
    assert a.nodule_prob.tolist() == [0.9, 0.2]  # best hit per nodule
    assert a.nodule_candidate.tolist() == [0, 5]
    res = evaluate_froc(scans)
    # curve (FP/scan, sens): (0,0) .9->(0,1/4) .8->(1/4,1/4) .5->(3/4,2/4) .3->(1,2/4) .2->(1,3/4)
    assert res.curve.fps_per_scan.tolist() == [0, 0, 0.25, 0.75, 1.0, 1.0]
    assert res.curve.sensitivity.tolist() == [0, 0.25, 0.25, 0.5, 0.5, 0.75]
    assert res.curve.thresholds[1:].tolist() == [0.9, 0.8, 0.5, 0.3, 0.2]
    # 1/2 FP/scan lies halfway along the tie segment (1/4,1/4)-(3/4,1/2); at 1 the curve
    # steps up, and np.interp (LUNA16 and MONAI alike) takes the top of the step.
    expected = [0.25, 0.25, 0.375, 0.75, 0.75, 0.75, 0.75]
    assert res.sensitivities.tolist() == expected
    assert res.cpm == pytest.approx(3.875 / 7, abs=1e-15)
    assert (res.n_scans, res.n_nodules, res.n_detected) == (4, 4, 3)
    assert (res.n_candidates, res.n_false_positives, res.n_ignored) == (9, 4, 1)
    assert res.n_duplicates == 1  # a2 on N1


def test_min_diameter_moves_small_nodules_to_the_ignored_set() -> None:
    # N2 (6 mm) ignored: a6 is no longer a hit nor a false positive; a5 is still a FP.
    res = evaluate_froc(_scans(min_small=True))
    assert res.n_nodules == 3 and res.n_ignored == 2 and res.n_false_positives == 4
    # (0,0) .9->(0,1/3) .8->(1/4,1/3) .5->(3/4,2/3) .3->(1,2/3)
    third = 1 / 3
    expected = [third, third, 0.5, 2 * third, 2 * third, 2 * third, 2 * third]
    np.testing.assert_allclose(res.sensitivities, expected, rtol=0, atol=1e-15)
    assert res.cpm == pytest.approx(23 / 42, abs=1e-15)


def test_without_the_excluded_file_the_hit_on_it_is_a_false_positive() -> None:
    res = evaluate_froc(_scans(with_excluded=False))
    # (0,0) .95->(1/4,0) .9->(1/4,1/4) .8->(1/2,1/4) .5->(1,1/2) .3->(5/4,1/2) .2->(5/4,3/4)
    assert res.sensitivities.tolist() == [0.0, 0.25, 0.25, 0.5, 0.75, 0.75, 0.75]
    assert res.cpm == pytest.approx(3.25 / 7, abs=1e-15)


def test_one_candidate_in_two_overlapping_nodules_hits_both() -> None:
    scan = _scan("X", [(2, 0, 0, 0.7), (40, 0, 0, 0.1)], [(0, 0, 0, 10), (4, 0, 0, 10)])
    assert scan.nodule_prob.tolist() == [0.7, 0.7]
    assert scan.status.tolist() == [Status.TRUE_POSITIVE, Status.FALSE_POSITIVE]
    res = evaluate_froc([scan])
    assert res.sensitivities.tolist() == [1.0] * 7


def test_scans_without_candidates_or_nodules() -> None:
    empty = _scan("E", [], [(0, 0, 0, 6), (30, 0, 0, 6)])
    res = evaluate_froc([empty])
    assert res.sensitivities.tolist() == [0.0] * 7 and res.cpm == 0.0
    no_truth = evaluate_froc([_scan("F", [(0, 0, 0, 0.4)], [])])
    assert np.isnan(no_truth.cpm) and np.all(np.isnan(no_truth.sensitivities))
    with pytest.raises(ValueError, match="at least one scan"):
        evaluate_froc([])


def test_no_false_positives_gives_the_final_sensitivity_at_every_rate() -> None:
    # LUNA16's "this system has no false positives" border case: FP/scan stays 0.
    nodules = [(0, 0, 0, 6), (50, 0, 0, 6), (90, 0, 0, 6)]
    scan = _scan("G", [(0, 0, 0, 0.8), (50, 0, 0, 0.3)], nodules)
    res = evaluate_froc([scan])
    assert res.sensitivities.tolist() == [2 / 3] * 7


def test_cap_keeps_marks_strictly_above_the_next_probability() -> None:
    p = np.array([0.9, 0.5, 0.5, 0.1])
    assert cap_marks(p, 2).tolist() == [True, False, False, False]  # tie at the cut drops both
    assert cap_marks(p, 3).tolist() == [True, True, True, False]
    assert cap_marks(p, None).all() and cap_marks(p, 4).all()
    scan = _scan("H", [(0, 0, 0, 0.2), (30, 0, 0, 0.9), (60, 0, 0, 0.8)], [(0, 0, 0, 6)], (), 2)
    assert scan.status.tolist() == [Status.OVER_CAP, Status.FALSE_POSITIVE, Status.FALSE_POSITIVE]
    assert np.isnan(scan.nodule_prob[0])  # the capped candidate does not hit


def test_froc_curve_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="only 1 nodules"):
        froc_curve(np.array([0.5, 0.6]), np.array([]), 1, 1)


def test_threshold_and_sensitivity_by_size_at_four_fp_per_scan() -> None:
    scans = _scans()
    res = evaluate_froc(scans)
    # FP/scan stays <= 4 down to the lowest probability, 0.2.
    assert res.curve.threshold_at(4.0) == 0.2
    assert res.curve.threshold_at(0.5) == 0.8
    rows = {r.label: (r.nodules, r.detected) for r in sensitivity_by_size(scans, 0.8)}
    # at p >= 0.8 only N1 (10 mm) is found; N2 6 mm, N3 20 mm, N4 8 mm are not
    assert rows["5-10 mm"] == (2, 0)
    assert rows["10-20 mm"] == (1, 1)
    assert rows[">=20 mm"] == (1, 0)
    assert rows[">=5 mm (all)"] == (4, 1)
    assert rows["0-5 mm"] == (0, 0)


def test_bootstrap_interval_contains_the_estimate_and_is_seeded() -> None:
    scans = _scans()
    low, high = bootstrap_ci(scans, FP_RATES, samples=200, seed=3)
    again = bootstrap_ci(scans, FP_RATES, samples=200, seed=3)
    np.testing.assert_array_equal(low, again[0])
    res = evaluate_froc(scans)
    estimate = np.r_[res.sensitivities, res.cpm]
    assert np.all(low <= estimate + 1e-12) and np.all(estimate <= high + 1e-12)
    assert np.all(low < high)
