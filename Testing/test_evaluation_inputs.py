"""Reading truth folders and results (case folders, submission csv) and refusing bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lungcad.evaluation import (
    CaseResult,
    EvaluationError,
    evaluate,
    load_results,
    load_truth,
    select_cases,
)
from lungcad.evaluation.inputs import read_excluded
from lungcad.luna16 import DatasetError, DatasetFileNotFoundError

HEADER = (
    "seriesuid,coordX,coordY,coordZ,probability,diameter_mm,volume_mm3,mean_hu,"
    "max_probability,p_nodule,p_malignant,finding,index,row,col\n"
)


def _truth_folder(root: Path) -> Path:
    root.mkdir()
    (root / "annotations.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm\nS1,0,0,0,10\nS1,50,0,0,6\nS2,0,0,0,8\n"
    )
    (root / "annotations_excluded.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm\nS1,100,0,0,-1\nS1,200,0,0,4\n"
    )
    (root / "candidates.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,class\nS1,0,0,0,1\nS1,0,80,0,0\nS3,0,0,0,0\n"
    )
    return root


def _case(root: Path, uid: str | None, rows: list[str], json_uid: str | None = "same") -> Path:
    root.mkdir(parents=True)
    (root / "candidates.csv").write_text(HEADER + "".join(r + "\n" for r in rows))
    doc = {
        "schema": "lungcad.results/1",
        "input": {"series_uid": uid if json_uid == "same" else json_uid},
        "thresholds": {"segmentation": 0.3, "nodule": 0.6, "malignancy": 0.4},
        "models": {},
        "timings_s": {},
        "summary": {"finding_count": 0},
        "candidate_count": len(rows),
        "findings": [],
    }
    (root / "results.json").write_text(json.dumps(doc))
    return root


def _row(uid: str, x: float, p_nod: float, p_mal: float, finding: str) -> str:
    return f"{uid},{x},0,0,{p_nod},6,100,-10,0.9,{p_nod},{p_mal},{finding},1,2,3"


def test_truth_reads_excluded_with_unknown_size_as_10_mm(tmp_path: Path) -> None:
    truth = load_truth(_truth_folder(tmp_path / "d"))
    assert [a.diameter_mm for a in truth.excluded] == [10.0, 4.0]
    assert len(truth.annotations) == 3 and truth.malignancy is None
    assert truth.non_nodules == (("S1", (0.0, 80.0, 0.0)), ("S3", (0.0, 0.0, 0.0)))
    assert truth.known_series == {"S1", "S2", "S3"}


def test_truth_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetFileNotFoundError, match=r"annotations\.csv: file not found"):
        load_truth(tmp_path)
    with pytest.raises(DatasetFileNotFoundError, match="data folder not found"):
        load_truth(tmp_path / "nope")
    bad = tmp_path / "excluded.csv"
    bad.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\nS1,0,zero,0,4\n")
    with pytest.raises(DatasetError, match=r"line 2: column coordY: 'zero' is not a number"):
        read_excluded(bad)


def test_case_folders_give_thresholds_findings_and_empty_cases(tmp_path: Path) -> None:
    results = tmp_path / "r"
    _case(results / "a", "S1", [_row("S1", 1, 0.9, 0.2, "1"), _row("S1", 60, 0.6, 0.5, "")])
    _case(results / "b", "S2", [])
    (results / "logs").mkdir()  # not a case: ignored
    failed = results / "c"
    failed.mkdir()
    (failed / "error.txt").write_text("CTReadError: truncated .raw")
    (results / "d").mkdir()
    (results / "d" / "candidates.csv").write_text(HEADER)  # results.json not yet written
    loaded = load_results(results)
    assert loaded.skipped == [
        "c: failed (error.txt), left out",
        "d: unfinished (candidates.csv without results.json, which detect writes last), left out",
    ]
    cases = loaded.cases
    assert [c.series_uid for c in cases] == ["S1", "S2"]
    a, b = cases
    assert a.thresholds.nodule == 0.6 and a.thresholds.segmentation == 0.3
    assert a.finding.tolist() == [1, 0] and a.p_malignant.tolist() == [0.2, 0.5]
    assert len(b) == 0 and b.thresholds.malignancy == 0.4 and b.xyz.shape == (0, 3)
    # the finding column is what the pipeline kept; p_nodule 0.6 is the threshold itself but the
    # csv says not kept (rounded in the csv), so it is not a finding
    truth = load_truth(_truth_folder(tmp_path / "d"))
    ev = evaluate(truth, select_cases(truth, cases), notes=loaded.skipped)
    assert ev.notes[:2] == loaded.skipped
    assert ev.cases[0].kept.tolist() == [True, False]
    assert ev.operating_point()["findings"] == 1
    assert ev.froc.n_scans == 2 and ev.froc.n_nodules == 3 and ev.n_excluded_annotations == 2


def test_an_empty_p_malignant_cell_is_a_score_never_computed(tmp_path: Path) -> None:
    """Detection leaves p_malignant empty below its nodule floor: NaN here, never a made-up 0."""
    rows = [_row("S1", 1, 0.9, 0.2, "1"), _row("S1", 60, 0.05, 0.0, "").replace(",0.0,,", ",,,")]
    assert rows[1].split(",")[10] == ""
    loaded = load_results(_case(tmp_path / "r", "S1", rows))
    (case,) = loaded.cases
    assert case.p_malignant[0] == 0.2 and np.isnan(case.p_malignant[1])
    bad = _case(tmp_path / "bad", "S1", [_row("S1", 1, 0.9, 0.2, "1").replace(",0.2,", ",x,")])
    with pytest.raises(EvaluationError, match="column p_malignant: 'x' is not a number"):
        load_results(bad)


def test_a_folder_holding_one_case_and_a_submission_csv(tmp_path: Path) -> None:
    one = _case(tmp_path / "one", "S1", [_row("S1", 1, 0.9, 0.2, "1")])
    assert [c.series_uid for c in load_results(one).cases] == ["S1"]
    sub = tmp_path / "sub.csv"
    sub.write_text(
        "seriesuid,coordX,coordY,coordZ,probability\nS2,0,0,0,0.3\nS1,1,0,0,0.9\nS1,3,0,0,0.1\n"
    )
    cases = load_results(sub).cases
    assert [(c.series_uid, len(c)) for c in cases] == [("S1", 2), ("S2", 1)]
    assert cases[0].p_malignant is None and cases[0].thresholds is None
    np.testing.assert_array_equal(cases[0].p_nodule, [0.9, 0.1])


def test_all_series_adds_scans_on_disk_without_results(tmp_path: Path) -> None:
    truth = load_truth(_truth_folder(tmp_path / "d"))
    truth.series_paths["S2"] = tmp_path / "S2.mhd"  # as if subset0/S2.mhd existed
    s1 = CaseResult.empty("S1", tmp_path)
    assert [c.series_uid for c in select_cases(truth, [s1])] == ["S1"]
    both = select_cases(truth, [s1], all_series=True)
    assert [(c.series_uid, len(c)) for c in both] == [("S1", 0), ("S2", 0)]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: r.mkdir(), r"no case folders with results\.json"),
        (lambda r: _case(r / "a", "S1", [_row("S2", 1, 0.9, 0.2, "1")]), "names series S1"),
        (
            lambda r: (_case(r / "a", "S1", []), _case(r / "b", "S1", [])),
            "series S1 has two results",
        ),
        (
            lambda r: _case(r / "a", "S1", ["S1,1,0,0,nan"]),
            "line 2: column probability: 'nan' is not a finite",
        ),
        (lambda r: _case(r / "a", "S1", [_row("S1", 1, 0.9, 0.2, "x")]), "'x' is not a finding"),
        (lambda r: (r.mkdir(), (r / "c.csv").write_text("a,b\n1,2\n")), None),
    ],
)
def test_bad_results_are_refused_with_a_clear_message(tmp_path: Path, make, message) -> None:
    root = tmp_path / "r"
    make(root)
    target = root / "c.csv" if message is None else root
    with pytest.raises(EvaluationError, match=message or "missing column"):
        load_results(target)


def test_bad_case_files(tmp_path: Path) -> None:
    folder = _case(tmp_path / "a", "S1", [])
    (folder / "results.json").write_text('{"schema": "other/2"}')
    with pytest.raises(EvaluationError, match=r"schema 'other/2', expected 'lungcad\.results/1'"):
        load_results(folder)
    (folder / "results.json").write_text("{")
    with pytest.raises(EvaluationError, match=r"results\.json: not readable JSON"):
        load_results(folder)
    (folder / "results.json").write_text('{"schema": "lungcad.results/1", "input": {}}')
    with pytest.raises(EvaluationError, match=r"incomplete, missing thresholds, models"):
        load_results(folder)
    (folder / "candidates.csv").unlink()
    (folder / "results.json").write_text('{"schema": "lungcad.results/1"}')
    with pytest.raises(EvaluationError, match=r"no candidates\.csv"):
        load_results(folder)
    (folder / "results.json").unlink()
    (folder / "error.txt").write_text("failed")
    with pytest.raises(
        EvaluationError, match=r"no case folders with results\.json .*; 1 failed or unfinished"
    ):
        load_results(folder.parent)


def test_unknown_series_are_refused(tmp_path: Path) -> None:
    truth = load_truth(_truth_folder(tmp_path / "d"))
    with pytest.raises(EvaluationError, match=r"1 result series not in .*: S9 \(src\)"):
        select_cases(
            truth, [CaseResult.empty("S1", Path("a")), CaseResult.empty("S9", Path("src"))]
        )
