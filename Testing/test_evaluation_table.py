"""The seeds' end-to-end table and the malignancy AUC set, on hand-placed truths and candidates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lungcad.evaluation import CaseResult, EvaluationOptions, Truth, evaluate, truth_outcomes
from lungcad.evaluation.endtoend import (
    FILTERED,
    MISSED,
    OUTSIDE_LUNG,
    PREDICTED_BENIGN,
    PREDICTED_MALIGNANT,
)
from lungcad.luna16 import Annotation, MalignancyAnnotation
from lungcad.pipeline import Thresholds


def test_truth_outcomes_take_the_furthest_column_of_any_hit() -> None:
    truth = np.array([[0, 0, 0], [50, 0, 0], [100, 0, 0], [150, 0, 0], [200, 0, 0]], float)
    cands = np.array(
        [[1, 0, 0], [50, 1, 0], [51, 0, 0], [100, 0, 1], [101, 0, 0], [155, 0, 0]], float
    )
    p_nodule = np.array([0.3, 0.8, 0.3, 0.5, 0.9, 0.9])  # 0.5 = threshold: kept
    p_mal = np.array([0.9, 0.2, 0.99, 0.5, 0.1, 0.9])  # 0.5 = threshold: malignant
    kept = p_nodule >= 0.5
    columns, best = truth_outcomes(truth, np.full(5, 10.0), cands, kept, p_mal, 0.5)
    # T0 filtered only; T1 benign beats filtered; T2 malignant beats benign;
    # T3's candidate is exactly 5 mm away (not a hit); T4 has none.
    assert columns.tolist() == [FILTERED, PREDICTED_BENIGN, PREDICTED_MALIGNANT, MISSED, MISSED]
    # the filtered c2 (p_mal 0.99) does not count: only kept hits give a malignancy score
    np.testing.assert_array_equal(best, [np.nan, 0.2, 0.5, np.nan, np.nan])


def test_a_truth_hit_only_outside_the_lung_is_counted_outside_lung() -> None:
    truth = np.array([[0, 0, 0], [50, 0, 0], [100, 0, 0]], float)
    cands = np.array([[1, 0, 0], [50, 1, 0], [51, 0, 0], [100, 0, 1]], float)
    in_lung = np.array([False, False, True, True])
    kept = np.array([False, False, False, True])  # outside-lung candidates are never kept
    p_mal = np.array([0.0, 0.0, 0.3, 0.9])
    columns, best = truth_outcomes(truth, np.full(3, 10.0), cands, kept, p_mal, 0.5, in_lung)
    # T0: only an outside-lung hit; T1: filtered beats outside lung; T2: malignant
    assert columns.tolist() == [OUTSIDE_LUNG, FILTERED, PREDICTED_MALIGNANT]
    np.testing.assert_array_equal(best, [np.nan, np.nan, 0.9])


def _truth() -> Truth:
    def mal(x, d, is_mal):
        c = (float(x), 0.0, 0.0)
        return MalignancyAnnotation("S1", c, d, is_mal, (3,), c, c)

    rows = (mal(0, 10.0, False), mal(50, 10.0, True), mal(100, 4.0, True))
    return Truth(
        data_dir=Path("data"),
        series_paths={},
        annotations=tuple(Annotation(m.series_uid, m.center_xyz, m.diameter_mm) for m in rows),
        excluded=(),
        malignancy=rows,
        non_nodules=tuple(("S1", (0.0, y, 0.0)) for y in (200.0, 250.0, 0.0, 300.0)),
    )


RESULT_THRESHOLDS = Thresholds(nodule=0.5, malignancy=0.5)


def _case(thresholds: Thresholds | None = RESULT_THRESHOLDS) -> CaseResult:
    # on M0: benign call; on M1: malignant; on M2: filtered; near P0 (4 mm): malignant call;
    # near P1 (6 mm): filtered; nothing near P3.
    xyz = np.array([[0, 1, 0], [50, 0, 1], [100, 0, 1], [0, 204, 0], [0, 256, 0]], float)
    p_nodule = np.array([0.9, 0.9, 0.4, 0.7, 0.2])
    p_mal = np.array([0.2, 0.8, 0.9, 0.6, 0.1])
    return CaseResult(
        "S1", Path("S1/candidates.csv"), xyz, p_nodule, p_nodule, p_mal, thresholds=thresholds
    )


def test_end_to_end_table_counts() -> None:
    ev = evaluate(_truth(), [_case()])
    table = ev.table
    assert table is not None
    # P2 (0, 0, 0) lies inside M0's sphere: a nodule, not a non-nodule, so it is left out
    assert table.non_nodules_inside_annotations == 1
    assert table.counts.tolist() == [[2, 0, 0, 0, 1], [0, 0, 0, 1, 0], [0, 0, 1, 0, 1]]
    rows = table.as_rows()
    assert rows[2] == {
        "truth": "malignant",
        "missed_by_segmentation": 0,
        "outside_lung": 0,
        "filtered_by_nodule_classifier": 1,
        "predicted_benign": 0,
        "predicted_malignant": 1,
        "total": 2,
    }
    assert table.csv_text().splitlines()[1] == "non-nodule,2,0,0,0,1,3"
    mal = ev.malignancy
    assert mal is not None
    # detected (kept) nodules: M0 benign p .2, M1 malignant p .8; both 10 mm
    assert (mal.n_benign, mal.n_malignant, mal.n_all) == (1, 1, 3)
    assert mal.auc == 1.0 and mal.diameter_auc == 0.5
    # all annotated: positives {10, 4} vs negative {10}: (0.5 + 0) / 2
    assert mal.diameter_auc_all == 0.25


def test_table_options_radius_min_diameter_and_threshold_override() -> None:
    wide = evaluate(_truth(), [_case()], EvaluationOptions(non_nodule_radius_mm=7.0))
    assert wide.table.counts[0].tolist() == [1, 0, 1, 0, 1]  # P1's candidate 6 mm away now found
    big = evaluate(_truth(), [_case()], EvaluationOptions(min_diameter_mm=5.0))
    assert big.table.counts[2].tolist() == [0, 0, 0, 0, 1]  # the 4 mm M2 is left out
    assert big.froc.n_nodules == 2 and big.n_small_annotations_ignored == 1
    strict = evaluate(_truth(), [_case()], EvaluationOptions(nodule_threshold=0.95))
    assert strict.table.counts.tolist() == [[2, 0, 1, 0, 0], [0, 0, 1, 0, 0], [0, 0, 2, 0, 0]]
    assert strict.malignancy.auc is None  # nothing kept
    low_mal = evaluate(_truth(), [_case()], EvaluationOptions(malignancy_threshold=0.1))
    assert low_mal.table.counts[1].tolist() == [0, 0, 0, 0, 1]


def test_defaults_without_thresholds_and_no_table_without_malignancy_scores() -> None:
    ev = evaluate(_truth(), [_case(thresholds=None)])
    assert ev.cases[0].thresholds == Thresholds()
    assert any("defaults" in n for n in ev.notes)
    case = _case()
    plain = CaseResult("S1", case.source, case.xyz, case.probability, case.p_nodule)
    ev = evaluate(_truth(), [plain])
    assert ev.table is None and ev.malignancy is None
    assert any("no AUC or table" in n for n in ev.notes)
    assert ev.froc.n_nodules == 3


def test_operating_point_counts_findings() -> None:
    op = evaluate(_truth(), [_case()]).operating_point()
    # kept: M0, M1 hits and the candidate 4 mm from P0 (a false positive: no annotation there)
    assert op["findings"] == 3 and op["true_positive_findings"] == 2
    assert op["false_positive_findings"] == 1 and op["false_positives_per_scan"] == 1.0
    assert op["nodules_detected"] == 2 and op["sensitivity"] == pytest.approx(2 / 3)
