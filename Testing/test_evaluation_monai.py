"""Cross-checks against MONAI's independent FROC and ROC AUC implementations (monai 1.6.1).

MONAI's FROC (from the CAMELYON16 code) decides hits by looking detections up in a label mask,
so each scan here is a 1 mm grid whose label k is the voxels strictly inside annotation k's
sphere; detections sit on integer millimetre points, where that mask and the LUNA16 distance
rule agree exactly. Excluded annotations are ``labels_to_exclude`` (hits on them are neither TP
nor FP, as in LUNA16).

Matching definitions: MONAI's ``compute_froc_curve_data`` skips the lowest distinct probability
(CAMELYON gives missed targets probability 0), so every probability here is above 0 and a
0-probability false positive is appended, which makes its curve the LUNA16 curve point for
point. It stores true-positive probabilities as float32, so probabilities are multiples of
1/64 (exact in float32) for ties between TP and FP to compare equal in both.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import compute_roc_auc
from monai.metrics.froc import (
    compute_fp_tp_probs_nd,
    compute_froc_curve_data,
    compute_froc_score,
)

from lungcad.evaluation import FP_RATES, evaluate_froc, match_scan, roc_auc, roc_curve

GRID = 64


def _sphere_labels(nodules: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """Label volume: voxel (x, y, z) gets k+1 when strictly inside sphere k."""
    zz, yy, xx = np.meshgrid(*(np.arange(GRID),) * 3, indexing="ij")
    labels = np.zeros((GRID, GRID, GRID), dtype=np.int64)
    for k, (center, diameter) in enumerate(nodules):
        d2 = (xx - center[0]) ** 2 + (yy - center[1]) ** 2 + (zz - center[2]) ** 2
        inside = d2 < (diameter / 2) ** 2
        assert not (labels[inside] > 0).any(), "spheres must not overlap for a label mask"
        labels[inside] = k + 1
    return labels


def _random_scan(rng: np.random.Generator, scan: int):
    """Nodules (some excluded), candidates on and near them (duplicates), misses, far FPs."""
    nodules: list[tuple[np.ndarray, float]] = []
    while len(nodules) < rng.integers(0, 5):
        center = rng.integers(8, GRID - 8, size=3)
        diameter = float(rng.choice([4.0, 6.0, 9.0, 12.0]))
        if all(np.linalg.norm(center - c) > (diameter + d) / 2 + 1 for c, d in nodules):
            nodules.append((center, diameter))
    excluded = [k for k in range(len(nodules)) if rng.random() < 0.25]
    points, probs = [], []
    for center, diameter in nodules:
        for _ in range(rng.choice([0, 1, 1, 2, 3])):  # 0 = missed, 2-3 = duplicate hits
            offset = rng.integers(-1, 2, size=3) * int(diameter // 4)
            points.append(center + offset)
            probs.append(rng.integers(1, 65) / 64)
    for _ in range(rng.integers(0, 12)):  # false positives anywhere
        points.append(rng.integers(0, GRID, size=3))
        probs.append(rng.integers(1, 65) / 64)
    xyz = np.array(points, dtype=float).reshape(-1, 3)
    return nodules, excluded, xyz, np.array(probs, dtype=float)


def _ours_and_monai(seed: int, n_scans: int):
    rng = np.random.default_rng(seed)
    matches, fp_all, tp_all, targets = [], [], [], 0
    for s in range(n_scans):
        nodules, excluded, xyz, probs = _random_scan(rng, s)
        counted = [n for k, n in enumerate(nodules) if k not in excluded]
        ignored = [n for k, n in enumerate(nodules) if k in excluded]

        def arr(items):
            return (np.array([c for c, _ in items], dtype=float).reshape(-1, 3),
                    np.array([d for _, d in items], dtype=float))  # fmt: skip

        matches.append(match_scan(f"s{s}", xyz, probs, *arr(counted), *arr(ignored), None))
        if not nodules:  # MONAI's max over an empty mask fails; a scan without labels is all FP
            fp_all.append(probs)
            continue
        labels = _sphere_labels(nodules)
        coords = xyz.astype(np.int64)[:, ::-1]  # (z, y, x) index into the (z, y, x) volume
        fp, tp, n = compute_fp_tp_probs_nd(
            probs, coords, labels, labels_to_exclude=[k + 1 for k in excluded]
        )
        fp_all.append(fp)
        tp_all.append(tp)
        targets += n
    fp = np.concatenate([*fp_all, [0.0]])  # the 0-probability sentinel (module docstring)
    tp = np.concatenate(tp_all).astype(np.float32)
    fps, sens = compute_froc_curve_data(fp, tp, targets, n_scans)
    return evaluate_froc(matches), fps, sens, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_froc_sensitivities_and_cpm_equal_monai(seed: int) -> None:
    ours, fps, sens, targets = _ours_and_monai(seed, n_scans=8)
    assert ours.n_nodules == targets > 5
    assert ours.n_duplicates > 0 and ours.n_ignored > 0 and ours.n_detected < ours.n_nodules
    # same curve, point for point (MONAI lists it from the highest threshold down)
    np.testing.assert_allclose(ours.curve.fps_per_scan, fps[::-1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.curve.sensitivity, sens[::-1], rtol=0, atol=1e-12)
    monai_sens = np.interp(FP_RATES, fps[::-1], sens[::-1])
    np.testing.assert_allclose(ours.sensitivities, monai_sens, rtol=0, atol=1e-12)
    assert ours.cpm == pytest.approx(compute_froc_score(fps, sens, FP_RATES), abs=1e-12)
    assert 0.0 < ours.cpm < 1.0


def test_auc_with_ties_equals_monai() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(4, 60))
        scores = np.round(rng.random(n) * 5) / 5  # few distinct values: many ties
        labels = rng.random(n) < 0.4
        labels[:2] = [True, False]
        expected = compute_roc_auc(torch.tensor(scores), torch.tensor(labels.astype(np.int64)))
        assert roc_auc(scores, labels) == pytest.approx(float(expected), abs=1e-12)


def test_auc_is_the_share_of_positive_negative_pairs_ranked_right_ties_half() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(2, 80))
        scores = rng.integers(0, 6, n).astype(np.float64)  # many ties
        labels = rng.random(n) < 0.5
        labels[:2] = [True, False]
        pos, neg = scores[labels][:, None], scores[~labels][None, :]
        pairs = float(np.sum(pos > neg) + 0.5 * np.sum(pos == neg))
        assert roc_auc(scores, labels) == pairs / (pos.size * neg.size)


def test_auc_by_hand_and_undefined_cases() -> None:
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    # positives {2, 3} vs negatives {1, 2}: 1 + 0.5 + 1 + 1 over 4 pairs
    assert roc_auc(np.array([1.0, 2.0, 2.0, 3.0]), np.array([0, 0, 1, 1])) == 0.875
    assert roc_auc(np.full(4, 0.5), np.array([0, 1, 0, 1])) == 0.5
    assert roc_auc(np.array([0.2, 0.9]), np.array([1, 1])) is None
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        roc_auc(np.zeros(3), np.zeros(2))


def test_roc_curve_area_equals_the_auc() -> None:
    rng = np.random.default_rng(11)
    scores = np.round(rng.random(40) * 8) / 8
    labels = rng.random(40) < 0.5
    fpr, tpr, thr = roc_curve(scores, labels)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0) and np.isinf(thr[0])
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids: ties half
    assert area == pytest.approx(roc_auc(scores, labels), abs=1e-12)
