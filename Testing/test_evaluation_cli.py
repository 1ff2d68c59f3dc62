"""``lungcad evaluate`` end to end on the small phantom set with hand-written results folders.

Three of the four series get results (one with zero candidates); the fourth has none and must be
left out. Candidates are placed by rule: the k-th annotated nodule (over the two series with
candidates) is missed (k % 4 == 0), found but filtered (p_nodule 0.4), or kept (p_nodule 0.95)
with p_malignant 0.1 or 0.8; two isolated class-0 points get a kept (0.7) and a filtered (0.05,
below the nodule floor: an empty p_malignant cell, as detection writes it) false positive.
Expected numbers are derived from that construction, with plain loops.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from monai.metrics import compute_roc_auc

from lungcad.cli import main
from lungcad.evaluation.endtoend import (
    COLUMNS,
    FILTERED,
    MISSED,
    PREDICTED_BENIGN,
    PREDICTED_MALIGNANT,
)
from lungcad.luna16 import find_series, read_candidate_arrays, read_malignancy_annotations
from lungcad.reports.candidates_csv import CANDIDATE_COLUMNS

MAL_THRESHOLD = {0: 0.5, 3: 0.9}  # per series index: results.json thresholds differ per case


def _write_case(folder: Path, uid: str, rows: list[dict], malignancy_threshold: float) -> None:
    folder.mkdir(parents=True)
    with (folder / "candidates.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CANDIDATE_COLUMNS)
        number = 0
        for r in rows:
            kept = r["p_nodule"] >= 0.5
            number += kept
            x, y, z = r["xyz"]
            p_mal = "" if r["p_malignant"] is None else f"{r['p_malignant']:.6f}"
            writer.writerow(
                [uid, f"{x:.3f}", f"{y:.3f}", f"{z:.3f}", f"{r['p_nodule']:.6f}", "6.0", "113.0",
                 "-20.0", "0.9", f"{r['p_nodule']:.6f}", p_mal,
                 number if kept else "", "1.0", "2.0", "3.0"]
            )  # fmt: skip
    doc = {
        "schema": "lungcad.results/1",
        "input": {"path": f"{uid}.mhd", "series_uid": uid},
        "thresholds": {"segmentation": 0.5, "nodule": 0.5, "malignancy": malignancy_threshold},
        "models": {},
        "timings_s": {},
        "summary": {"finding_count": 0},
        "candidate_count": 0,
        "findings": [],
    }
    (folder / "results.json").write_text(json.dumps(doc))


def _column(kept: bool, p_mal: float, threshold: float) -> int:
    return (
        FILTERED if not kept else (PREDICTED_MALIGNANT if p_mal >= threshold else PREDICTED_BENIGN)
    )


@pytest.fixture(scope="module")
def scenario(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    uids = sorted(find_series(small_dataset))
    mal = read_malignancy_annotations(small_dataset / "annotations_with_malignancy.csv")
    c_uids, c_xyz, c_nodule = read_candidate_arrays(small_dataset / "candidates.csv")
    results = tmp_path_factory.mktemp("results")
    cands: dict[str, list[dict]] = {uids[0]: [], uids[3]: []}
    nodules = []  # (uid, center, diameter, is_malignant, column, p_mal of kept hit or None)
    k = 0
    for index in (0, 3):
        uid = uids[index]
        for m in (m for m in mal if m.series_uid == uid):
            kind = k % 4
            k += 1
            p_nod, p_mal = {0: (None, None), 1: (0.4, 0.9), 2: (0.95, 0.1), 3: (0.95, 0.8)}[kind]
            if p_nod is None:
                nodules.append((uid, m.center_xyz, m.diameter_mm, m.mal_bool, MISSED, None))
                continue
            cands[uid].append({"xyz": m.center_xyz, "p_nodule": p_nod, "p_malignant": p_mal})
            col = _column(p_nod >= 0.5, p_mal, MAL_THRESHOLD[index])
            nodules.append(
                (
                    uid,
                    m.center_xyz,
                    m.diameter_mm,
                    m.mal_bool,
                    col,
                    p_mal if col > FILTERED else None,
                )
            )
    # two class-0 points of series 0 far (> 20 mm) from every other class-0 point and nodule
    others = [p for u, p in zip(c_uids, c_xyz.tolist(), strict=True) if u == uids[0]]
    isolated = [
        p
        for u, p, n in zip(c_uids, c_xyz.tolist(), c_nodule.tolist(), strict=True)
        if u == uids[0]
        and not n
        and all(q == p or math.dist(p, q) > 20 for q in others)
        and all(math.dist(p, m.center_xyz) > 40 for m in mal if m.series_uid == uids[0])
    ]
    assert len(isolated) >= 2
    cands[uids[0]].append({"xyz": tuple(isolated[0]), "p_nodule": 0.7, "p_malignant": 0.6})
    cands[uids[0]].append({"xyz": tuple(isolated[1]), "p_nodule": 0.05, "p_malignant": None})
    _write_case(results / "case_a", uids[0], cands[uids[0]], MAL_THRESHOLD[0])
    _write_case(results / "case_b", uids[3], cands[uids[3]], MAL_THRESHOLD[3])
    _write_case(results / "case_c", uids[1], [], 0.5)  # zero candidates
    for m in (m for m in mal if m.series_uid == uids[1]):
        nodules.append((uids[1], m.center_xyz, m.diameter_mm, m.mal_bool, 0, None))
    return {
        "data": small_dataset,
        "results": results,
        "uids": uids,
        "cands": cands,
        "nodules": nodules,
        "class0": [
            (u, p)
            for u, p, n in zip(c_uids, c_xyz.tolist(), c_nodule.tolist(), strict=True)
            if not n and u in (uids[0], uids[1], uids[3])
        ],
    }


def _expected_table(s: dict) -> list[list[int]]:
    counts = [[0] * len(COLUMNS) for _ in range(3)]
    for _, _, _, is_mal, col, _ in s["nodules"]:
        counts[2 if is_mal else 1][col] += 1
    spheres = [(u, c, d) for u, c, d, *_ in s["nodules"]]
    threshold = {s["uids"][0]: MAL_THRESHOLD[0], s["uids"][3]: MAL_THRESHOLD[3]}
    for uid, p in s["class0"]:
        if any(u == uid and math.dist(p, c) < d / 2 for u, c, d in spheres):
            continue  # a nodule, not a non-nodule
        col = MISSED
        for c in s["cands"].get(uid, []):
            if math.dist(p, c["xyz"]) < 5.0:
                col = max(col, _column(c["p_nodule"] >= 0.5, c["p_malignant"], threshold[uid]))
        counts[0][col] += 1
    return counts


def test_evaluate_command_end_to_end(scenario: dict, tmp_path: Path, capsys) -> None:
    s = scenario
    out = tmp_path / "eval"
    args = ["evaluate", "--data", str(s["data"]), "--results", str(s["results"]),
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    uids = s["uids"]
    assert metrics["series"] == sorted([uids[0], uids[1], uids[3]])
    assert metrics["series_evaluated"] == 3 and metrics["series_without_candidates"] == 1
    assert "evaluated 3 series with results (1 without candidates)" in text

    # FROC: kept nodules at 0.95, filtered ones at 0.4; FPs at 0.7 and 0.05; 3 scans
    n_all = len(s["nodules"])
    hits_95 = sum(1 for *_, p in s["nodules"] if p is not None)
    hits_40 = sum(1 for *_, col, _ in s["nodules"] if col == FILTERED)
    # curve: (0,0) (0,a) (1/3,a) (1/3,b) (2/3,b) with a = hits_95/N, b = (hits_95+hits_40)/N
    a, b = hits_95 / n_all, (hits_95 + hits_40) / n_all
    sens = metrics["froc"]["sensitivity"]
    assert [sens[k] for k in ("0.125", "0.25")] == pytest.approx([a, a], abs=1e-12)
    assert [sens[k] for k in ("0.5", "1", "2", "4", "8")] == pytest.approx([b] * 5, abs=1e-12)
    assert metrics["froc"]["cpm"] == pytest.approx((2 * a + 5 * b) / 7, abs=1e-12)
    assert metrics["froc"]["false_positives"] == 2 and metrics["froc"]["nodules"] == n_all
    assert f"CPM {(2 * a + 5 * b) / 7:.3f}" in text

    froc_rows = list(csv.DictReader((out / "froc.csv").open()))
    assert [float(r["fps_per_scan"]) for r in froc_rows] == pytest.approx(
        [0, 0, 1 / 3, 1 / 3, 2 / 3]
    )
    assert [float(r["threshold"]) for r in froc_rows[1:]] == pytest.approx([0.95, 0.7, 0.4, 0.05])

    op = metrics["operating_point"]
    assert (op["findings"], op["true_positive_findings"], op["false_positive_findings"]) == (
        hits_95 + 1, hits_95, 1
    )  # fmt: skip

    # >= 5 mm nodules at 4 FP/scan (threshold 0.05: every hit counts)
    big = [n for n in s["nodules"] if n[2] >= 5.0]
    row = metrics["sensitivity_by_size"]["rows"][-1]
    assert row["nodules"] == len(big) and row["detected"] == sum(n[4] > 0 for n in big)

    # end-to-end table, per-case malignancy thresholds from results.json
    assert metrics["end_to_end"]["counts"] == _expected_table(s)
    table_csv = list(csv.reader((out / "end_to_end.csv").open()))
    assert [int(v) for v in table_csv[2][1 : 1 + len(COLUMNS)]] == _expected_table(s)[1]

    # malignancy AUC over kept nodules vs diameter, checked with MONAI
    kept = [n for n in s["nodules"] if n[5] is not None]
    y = torch.tensor([int(n[3]) for n in kept])
    auc = float(compute_roc_auc(torch.tensor([n[5] for n in kept]), y))
    d_auc = float(compute_roc_auc(torch.tensor([n[2] for n in kept]), y))
    assert metrics["malignancy"]["auc"] == pytest.approx(auc, abs=1e-12)
    assert metrics["malignancy"]["diameter_auc"] == pytest.approx(d_auc, abs=1e-12)
    assert f"malignancy ROC AUC {auc:.3f} vs diameter-only {d_auc:.3f}" in text

    for name in ("froc.png", "roc.png"):
        assert mpimg.imread(out / name).shape[2] in (3, 4)
    overlays = sorted(p.stem for p in (out / "overlays").glob("*.png"))
    assert overlays == metrics["series"]
    image = mpimg.imread(out / "overlays" / f"{uids[0]}.png")[..., :3]
    for rgb in ((0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (1.0, 0.647, 0.0)):  # TP, FP, missed
        assert (np.abs(image - rgb).max(axis=2) < 0.05).sum() > 20, rgb


def test_a_nodule_threshold_below_the_floor_drops_the_table_not_the_froc(
    scenario: dict, tmp_path: Path
) -> None:
    """At --nodule-threshold 0.01 the 0.05 false positive is kept but has no p_malignant: the
    end-to-end table and AUC are left out with a note, FROC is as before."""
    s = scenario
    out = tmp_path / "eval"
    args = ["evaluate", "--data", str(s["data"]), "--results", str(s["results"]),
            "--out", str(out), "--no-overlays", "--quiet",
            "--nodule-threshold", "0.01"]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["end_to_end"] is None and metrics["malignancy"] is None
    assert any("1 kept candidate without p_malignant" in n for n in metrics["notes"])
    assert metrics["operating_point"]["false_positive_findings"] == 2


def test_evaluate_a_submission_csv(scenario: dict, tmp_path: Path, capsys) -> None:
    s = scenario
    sub = tmp_path / "submission.csv"
    lines = ["seriesuid,coordX,coordY,coordZ,probability"]
    for case in sorted(s["results"].iterdir()):
        rows = list(csv.reader((case / "candidates.csv").open()))[1:]
        lines += [",".join(r[:5]) for r in rows]
    sub.write_text("\n".join(lines) + "\n")
    out = tmp_path / "eval"
    args = ["evaluate", "--data", str(s["data"]), "--results", str(sub), "--out", str(out),
            "--no-overlays", "--bootstrap", "50"]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    # a csv cannot list a scan without candidates: two series
    assert metrics["series_evaluated"] == 2
    assert metrics["end_to_end"] is None and metrics["malignancy"] is None
    assert not (out / "roc.png").exists() and not (out / "overlays").exists()
    ci = metrics["froc"]["ci"]
    assert ci["samples"] == 50 and ci["low"]["cpm"] <= metrics["froc"]["cpm"] <= ci["high"]["cpm"]
    assert "no AUC or table" in capsys.readouterr().out


def test_evaluate_refuses_bad_inputs(scenario: dict, tmp_path: Path, capsys) -> None:
    s = scenario
    base = ["--out", str(tmp_path / "o"), "--no-overlays", "--quiet"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", "--data", str(empty), "--results", str(s["results"]), *base]) == 2
    assert "annotations.csv: file not found" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(s["data"]), "--results", str(empty), *base]) == 2
    assert "no case folders" in capsys.readouterr().err
    stranger = tmp_path / "stranger"
    _write_case(stranger / "x", "1.2.3.999", [], 0.5)
    assert main(["evaluate", "--data", str(s["data"]), "--results", str(stranger), *base]) == 2
    err = capsys.readouterr().err
    assert "1 result series not in" in err and "1.2.3.999" in err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    args = ["evaluate", "--data", str(s["data"]), "--results", str(s["results"]),
            "--out", str(busy), "--no-overlays"]  # fmt: skip
    assert main(args) == 2
    assert "not empty" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_all_series_counts_scans_without_results(scenario: dict, tmp_path: Path) -> None:
    s = scenario
    uids = s["uids"]
    mal = read_malignancy_annotations(s["data"] / "annotations_with_malignancy.csv")
    c_uids, c_xyz, c_nodule = read_candidate_arrays(s["data"] / "candidates.csv")
    extended = {
        **s,
        "nodules": s["nodules"]
        + [(m.series_uid, m.center_xyz, m.diameter_mm, m.mal_bool, 0, None)
           for m in mal if m.series_uid == uids[2]],
        "class0": s["class0"]
        + [(u, p) for u, p, n in zip(c_uids, c_xyz.tolist(), c_nodule.tolist(), strict=True)
           if u == uids[2] and not n],
    }  # fmt: skip
    out = tmp_path / "eval"
    args = ["evaluate", "--data", str(s["data"]), "--results", str(s["results"]),
            "--out", str(out), "--all-series", "--no-overlays"]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["series"] == uids
    assert metrics["series_without_candidates"] == 2 and metrics["froc"]["scans"] == 4
    assert metrics["froc"]["nodules"] == len(extended["nodules"])
    assert metrics["end_to_end"]["counts"] == _expected_table(extended)
    assert metrics["notes"] == []
