"""The cohort runner with an injected detector: inputs, case ids, shards, resume, failures."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from reports_support import bright_result, tiny_ct, write_dicom_series

from lungcad.cohort import (
    SUMMARY_COLUMNS,
    CohortInputError,
    assign_case_ids,
    collect_inputs,
    parse_shard,
    pending,
    run_cohort,
    select_shard,
)
from lungcad.ctio import write_ct
from lungcad.reports import read_results

UIDS = [f"1.2.826.0.1.3680043.2.1125.9.{k}" for k in range(5)]


class CountingDetector:
    """Calls the bright-voxel detector and remembers which series it ran on."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[str | None] = []
        self.fail_on = fail_on

    def __call__(self, ct):
        self.calls.append(ct.series_uid)
        if self.fail_on is not None and ct.series_uid == self.fail_on:
            raise RuntimeError("simulated detector crash\non two lines")
        return bright_result(ct)


def _summary(out: Path) -> dict[str, dict[str, str]]:
    with (out / "summary.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == SUMMARY_COLUMNS
        return {row["case_id"]: row for row in reader}


@pytest.fixture
def cohort(tmp_path) -> Path:
    """Five tiny CTs: LUNA16-style .mhd names (the UID), an .nrrd and a .nii.gz in a subfolder."""
    root = tmp_path / "cts"
    for k, uid in enumerate(UIDS[:3]):
        write_ct(tiny_ct(None, seed=k), root / f"{uid}.mhd")
    write_ct(tiny_ct(UIDS[3], seed=3), root / "sub" / "scan.nrrd")  # UID in the header
    write_ct(tiny_ct(None, seed=4), root / "sub" / "patient 5.nii.gz")  # no UID anywhere
    (root / "notes.txt.bak").write_text("not a CT")
    return root


def test_collect_inputs_from_folders_files_and_lists(tmp_path, cohort):
    found = collect_inputs([cohort])
    assert [p.name for p in found] == [f"{u}.mhd" for u in UIDS[:3]] + [
        "patient 5.nii.gz",
        "scan.nrrd",
    ]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two of them\ncts/{UIDS[0]}.mhd\n\n{cohort / 'sub'}  # a folder\n")
    assert [p.name for p in collect_inputs([listing])] == [
        f"{UIDS[0]}.mhd", "patient 5.nii.gz", "scan.nrrd",
    ]  # fmt: skip
    # the same file named twice, by a folder and directly, is one case
    assert len(collect_inputs([cohort, cohort / f"{UIDS[1]}.mhd"])) == 5
    with pytest.raises(CohortInputError, match=r"nope\.mhd: no such file"):
        collect_inputs([cohort, tmp_path / "nope.mhd"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CohortInputError, match="no CT found"):
        collect_inputs([tmp_path / "empty"])


def test_outputs_inside_the_input_folder_and_label_maps_are_not_cases(tmp_path, cohort):
    write_ct(tiny_ct(None), cohort / "out" / "c" / "x.nrrd")
    (cohort / "a_nodules.nrrd").write_bytes(b"")
    (cohort / "b.seg.nrrd").write_bytes(b"")
    assert len(collect_inputs([cohort], exclude=cohort / "out")) == 5


def test_case_ids_are_uids_then_stems_and_unique(tmp_path, cohort):
    write_ct(tiny_ct(None), tmp_path / "other" / "patient 5.nii.gz")
    cases = assign_case_ids(collect_inputs([cohort, tmp_path / "other"]))
    ids = [c.case_id for c in cases]
    # the space is not kept: the stem changed, so the sha256 of "patient 5" (8 hex) is added
    assert ids[:5] == [*UIDS[:3], "patient_5-cba45335", UIDS[3]]
    assert ids[5] == "patient_5-cba45335-2"  # same stem, later path
    assert len(set(ids)) == len(ids)


def _dicom_folder(folder: Path, uid: str) -> None:
    write_dicom_series(folder, uid)


def test_a_folder_of_dicom_files_is_one_case_named_by_its_series(tmp_path):
    uid = "1.2.826.0.1.3680043.2.1125.9.77"
    _dicom_folder(tmp_path / "patient" / "series1", uid)
    cases = assign_case_ids(collect_inputs([tmp_path / "patient"]))
    assert [(c.path.name, c.case_id) for c in cases] == [("series1", uid)]
    statuses = run_cohort(cases, tmp_path / "out", CountingDetector(), progress=False)
    assert [s.status for s in statuses] == ["ok"]
    assert read_results(tmp_path / "out" / uid / "results.json")["input"]["series_uid"] == uid


def test_dicom_files_named_by_their_uid_or_without_suffix_are_found(tmp_path):
    uid = "1.2.826.0.1.3680043.2.1125.9.78"
    folder = tmp_path / "export" / "series"
    _dicom_folder(folder, uid)
    for k, dcm in enumerate(sorted(folder.iterdir())):  # as PACS exports name them
        dcm.rename(folder / (f"CT.{uid}.{k + 1}" if k % 2 else f"IM{k:04d}"))
    (folder / "notes.txt").write_text("not DICOM")
    cases = assign_case_ids(collect_inputs([tmp_path / "export"]))
    assert [(c.path.name, c.case_id) for c in cases] == [("series", uid)]


def test_the_real_dicom_series_with_uid_file_names_is_found(real_data):
    """dicom_totalseg's files are named CT.1.3.12... (no .dcm); its series UID is blank."""
    found = collect_inputs([real_data])
    assert real_data / "dicom_totalseg" in found
    assert real_data / "dicom_lungmask" in found
    assert real_data / "chest_cta_totalseg.nii.gz" in found
    cases = assign_case_ids(collect_inputs([real_data / "dicom_totalseg"]))
    assert [c.case_id for c in cases] == ["dicom_totalseg"]


@pytest.mark.parametrize(
    ("text", "message"),
    [("2/2", "0 <= I < N"), ("1/0", "N >= 1"), ("a/3", "takes I/N"), ("-1/3", "takes I/N")],
)
def test_bad_shards_are_refused_with_the_rule(text, message):
    with pytest.raises(CohortInputError, match=message):
        parse_shard(text)


def test_shards_partition_the_cases(tmp_path, cohort):
    cases = assign_case_ids(collect_inputs([cohort]))
    assert parse_shard(" 1/3 ") == (1, 3)
    for n in (1, 2, 3, 7):
        parts = [select_shard(cases, i, n) for i in range(n)]
        ids = [c.case_id for part in parts for c in part]
        assert sorted(ids) == sorted(c.case_id for c in cases)  # union = all, no overlap
        assert len(ids) == len(set(ids))
    # two shards writing into one folder: each runs its own cases, the summary holds all
    out = tmp_path / "out"
    first, second = CountingDetector(), CountingDetector()
    run_cohort(select_shard(cases, 0, 2), out, first, progress=False)
    run_cohort(select_shard(cases, 1, 2), out, second, progress=False)
    assert len(first.calls) == 3 and len(second.calls) == 2
    assert not set(first.calls) & set(second.calls)
    rows = _summary(out)
    assert sorted(rows) == sorted(c.case_id for c in cases)
    assert {r["status"] for r in rows.values()} == {"ok"}


def test_resume_skips_finished_cases_and_overwrite_redoes_them(tmp_path, cohort):
    cases = assign_case_ids(collect_inputs([cohort]))
    out = tmp_path / "out"
    detector = CountingDetector()
    statuses = run_cohort(cases, out, detector, progress=False)
    assert [s.status for s in statuses] == ["ok"] * 5
    assert [s.findings for s in statuses] == [1] * 5
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent != out}

    again = CountingDetector()
    assert pending(cases, out, overwrite=False) == []
    statuses = run_cohort(cases, out, again, progress=False)
    assert again.calls == [] and [s.status for s in statuses] == ["skipped"] * 5
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    rows = _summary(out)
    assert {r["status"] for r in rows.values()} == {"ok"}  # a skip keeps the earlier row
    assert rows[UIDS[0]]["findings"] == "1"

    # an unfinished case (no results.json) is redone, its leftovers replaced
    (out / UIDS[1] / "results.json").unlink()
    statuses = run_cohort(cases, out, again, progress=False)
    assert again.calls == [UIDS[1]] and statuses[1].status == "ok"

    redo = CountingDetector()
    statuses = run_cohort(cases, out, redo, overwrite=True, progress=False)
    assert len(redo.calls) == 5 and [s.status for s in statuses] == ["ok"] * 5
    assert pending(cases, out, overwrite=True) == cases


def test_failures_are_recorded_and_the_run_goes_on(tmp_path, cohort):
    (cohort / "broken.nrrd").write_text("NRRD0004\nthis is not an image\n")
    cases = assign_case_ids(collect_inputs([cohort]))
    out = tmp_path / "out"
    detector = CountingDetector(fail_on=UIDS[3])
    statuses = {s.case_id: s for s in run_cohort(cases, out, detector, progress=False)}
    assert [statuses[c.case_id].status for c in cases] == [
        "ok", "ok", "ok", "failed", "ok", "failed",
    ]  # fmt: skip
    assert statuses["broken"].error.startswith("CTFormatError: ")
    assert "broken.nrrd" in statuses["broken"].error
    assert statuses[UIDS[3]].error == "RuntimeError: simulated detector crash on two lines"
    error_text = (out / UIDS[3] / "error.txt").read_text(encoding="utf-8")
    assert error_text.startswith("RuntimeError: simulated detector crash on two lines\n")
    assert "Traceback" in error_text and "scan.nrrd" in error_text
    assert not (out / UIDS[3] / "results.json").exists()
    rows = _summary(out)
    assert rows["broken"]["status"] == "failed" and "CTFormatError" in rows["broken"]["error"]
    assert rows[UIDS[0]]["status"] == "ok" and rows[UIDS[0]]["error"] == ""
    assert float(rows[UIDS[0]]["highest_malignancy"]) == pytest.approx(0.7)

    # the failed case is retried on resume; once it works its error.txt goes
    fixed = CountingDetector()
    statuses = {s.case_id: s for s in run_cohort(cases, out, fixed, progress=False)}
    assert fixed.calls == [UIDS[3]]  # the broken file fails in the reader, before the detector
    assert statuses[UIDS[3]].status == "ok" and statuses["broken"].status == "failed"
    assert not (out / UIDS[3] / "error.txt").exists()
    assert _summary(out)[UIDS[3]]["status"] == "ok"


def test_summary_rows_of_other_runs_are_kept(tmp_path, cohort):
    cases = assign_case_ids(collect_inputs([cohort]))
    out = tmp_path / "out"
    run_cohort(cases[:2], out, CountingDetector(), progress=False)
    run_cohort(cases[3:], out, CountingDetector(), progress=False)
    rows = _summary(out)
    assert sorted(rows) == sorted(c.case_id for c in cases[:2] + cases[3:])
    seconds = [float(r["seconds"]) for r in rows.values()]
    assert all(np.isfinite(seconds)) and min(seconds) >= 0
