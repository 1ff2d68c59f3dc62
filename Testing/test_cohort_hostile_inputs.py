"""``lungcad detect`` against hostile and careless inputs: series UIDs that are paths or too long,
an output that is a file or read-only, a case whose folder cannot be made, a MemoryError, a
summary that cannot be written. Each case the run cannot do is a failed row; the rest finish.

The cascade is swapped for a fast detector (the bright-voxel one of reports_support) that raises
if a test expects no model to be touched.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import ClassVar

import pytest
from bad_inputs_support import strip_preambles
from reports_support import bright_result, loaded_models_stub, tiny_ct, write_dicom_series

import lungcad.cohort
from lungcad.cli import main
from lungcad.cohort import SUMMARY_COLUMNS, CaseInput, assign_case_ids, run_cohort
from lungcad.ctio import write_ct
from lungcad.fingerprint import RunSettings
from lungcad.pipeline import Thresholds
from lungcad.reports import OUTPUT_FILES, read_results

GOOD_UID = "1.2.826.0.1.3680043.2.1125.6.1"
LONG_UID = "1." + "2" * 401  # 403 characters: ENAMETOOLONG as a folder name
HOSTILE = {"up": "../../../../tmp/x", "absolute": "/abs/path", "long": LONG_UID}


class Detector:
    """Stands in for CascadeDetector (same constructor); counts runs and loads."""

    runs: ClassVar[list[str | None]] = []
    loads: ClassVar[int] = 0
    memory_error_on: ClassVar[str | None] = None

    def __init__(
        self, models=None, device="auto", thresholds=None, precision="auto", mirror_nodule=True
    ) -> None:
        self.thresholds = thresholds or Thresholds()

    def load(self):
        Detector.loads += 1
        return loaded_models_stub()

    def settings(self) -> RunSettings:
        return RunSettings(self.thresholds, {"segmentation": "a" * 64}, {"mirror_nodule": True})

    def __call__(self, ct):
        Detector.runs.append(ct.series_uid)
        if Detector.memory_error_on is not None and ct.series_uid == Detector.memory_error_on:
            raise MemoryError("simulated: 97 GB asked for")
        return bright_result(ct, self.thresholds)


class NoModels:
    """A CascadeDetector that fails the test if it is even built."""

    def __init__(self, *args, **kwargs) -> None:
        raise AssertionError("the models were reached before the output folder was checked")


@pytest.fixture
def detector(monkeypatch):
    Detector.runs, Detector.loads, Detector.memory_error_on = [], 0, None
    monkeypatch.setattr(lungcad.cohort, "CascadeDetector", Detector)
    return Detector


def _tree(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its size: what a run may not have changed."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "summary.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == SUMMARY_COLUMNS
        return {row["case_id"]: row for row in reader}


def test_series_uids_that_are_paths_write_nothing_outside_out(tmp_path, detector, capsys):
    inputs = tmp_path / "in"
    for name, uid in HOSTILE.items():
        write_dicom_series(inputs / name, uid)
    write_dicom_series(inputs / "good", GOOD_UID, seed=1)
    out = tmp_path / "work" / "out"
    before = _tree(tmp_path)
    tmp_x_before = Path("/tmp/x").exists(), Path("/abs/path").exists()

    assert main(["detect", str(inputs), "--out", str(out), "--quiet"]) == 0
    assert "4 ok, 0 skipped (done before), 0 failed" in capsys.readouterr().out
    after = _tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("work/out/")} == before
    assert (Path("/tmp/x").exists(), Path("/abs/path").exists()) == tmp_x_before
    # the folder names: the header's UID only where it is one, else the folder's own name
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(
        ["absolute", "long", "up", GOOD_UID]
    )
    assert sorted(detector.runs, key=str) == sorted([*HOSTILE.values(), GOOD_UID])
    for name, uid in HOSTILE.items():
        doc = read_results(out / name / "results.json")
        assert doc["case_id"] == name
        assert doc["input"]["series_uid"] is None
        shown = uid if len(uid) <= 80 else f"{uid[:80]}... (403 characters)"
        assert doc["warnings"] == [
            f"series UID '{shown}' is not a DICOM UID (digits and dots, at most 64 characters): "
            "not used as one; the case id names the series instead"
        ]
        rejected = uid if len(uid) <= 200 else f"{uid[:200]}... (403 characters)"
        assert doc["input"]["series_uid_rejected"] == rejected
        with (out / name / "candidates.csv").open(newline="") as fh:
            assert {row["seriesuid"] for row in csv.DictReader(fh)} == {name}
    good = read_results(out / GOOD_UID / "results.json")
    assert good["input"]["series_uid"] == GOOD_UID and good["warnings"] == []
    assert "series_uid_rejected" not in good["input"]
    rows = _rows(out)
    assert rows["long"]["warnings"].startswith("series UID '1.222")


@pytest.mark.parametrize("case_id", [*HOSTILE.values(), "a/../../b"])
def test_a_case_id_that_leaves_out_is_a_failed_row_and_writes_nothing(tmp_path, case_id):
    ct_path = write_ct(tiny_ct(GOOD_UID), tmp_path / "in" / "scan.nrrd")
    good = write_ct(tiny_ct(None, seed=2), tmp_path / "in" / "other.nrrd")
    out = tmp_path / "out"
    before = _tree(tmp_path)
    cases = [CaseInput(ct_path, case_id), CaseInput(good, "other")]  # built by a library user
    statuses = run_cohort(cases, out, Detector(), progress=False)
    assert [s.status for s in statuses] == ["failed", "ok"]
    if case_id == LONG_UID:  # inside out, but no file system takes such a name
        assert statuses[0].error.startswith("OSError: [Errno 36] File name too long: ")
        # both parts capped at 500 characters, so the summary stays readable
        assert " (error.txt not written: OSError: [Errno 36] File name too long: " in (
            statuses[0].error
        )
        full = f"OSError: [Errno 36] File name too long: '{out.resolve() / LONG_UID}'"
        assert statuses[0].error.endswith(f"{full[:500]}... ({len(full)} characters))")
    else:
        assert statuses[0].error.startswith("UnsafeOutputPathError: '")
        assert statuses[0].error.endswith(
            f"': would be written outside the output folder {out.resolve()}"
        )
    after = _tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("out/")} == before
    assert sorted(p.name for p in out.iterdir()) == [".summary.lock", "other", "summary.csv"]
    assert _rows(out)[case_id]["status"] == "failed"


def test_out_that_is_a_file_exits_2_before_any_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lungcad.cohort, "CascadeDetector", NoModels)
    write_ct(tiny_ct(GOOD_UID), tmp_path / "in" / "scan.nrrd")
    out = tmp_path / "results.csv"
    out.write_text("a user's file\n")
    assert main(["detect", str(tmp_path / "in"), "--out", str(out), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"lungcad detect: error: {out}: exists and is not a folder (the output must be a folder)\n"
    )
    assert out.read_text(encoding="utf-8") == "a user's file\n"
    sub = out / "sub"
    assert main(["detect", str(tmp_path / "in"), "--out", str(sub), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"lungcad detect: error: {sub}: cannot create the output folder (Not a directory)\n"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_exits_2_before_any_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lungcad.cohort, "CascadeDetector", NoModels)
    write_ct(tiny_ct(GOOD_UID), tmp_path / "in" / "scan.nrrd")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert main(["detect", str(tmp_path / "in"), "--out", str(out), "--quiet"]) == 2
    finally:
        out.chmod(0o755)
    assert capsys.readouterr().err == (
        f"lungcad detect: error: {out}: the output folder does not take new files "
        "(Permission denied)\n"
    )
    assert list(out.iterdir()) == []


def test_a_nonexistent_input_stops_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lungcad.cohort, "CascadeDetector", NoModels)
    out = tmp_path / "out"
    assert main(["detect", str(tmp_path / "gone.nrrd"), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"lungcad detect: error: {tmp_path / 'gone.nrrd'}: no such file or folder\n"
    )
    assert not out.exists()


def test_mixed_batch_finishes_the_good_phantom_and_records_each_bad_case(
    tmp_path, small_dataset, detector, capsys
):
    """A corrupt file, a case whose folder is blocked (so no error.txt), a MemoryError, and a
    small phantom: the phantom's results are written, each bad case is a failed row, exit 1."""
    phantom = sorted(small_dataset.rglob("*.mhd"))[0]
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "random.nrrd").write_bytes(os.urandom(300))
    write_ct(tiny_ct("1.2.3.44"), inputs / "blocked.nrrd")
    write_ct(tiny_ct("1.2.3.55"), inputs / "huge.nrrd")
    listing = inputs / "cohort.txt"
    listing.write_text(f"{phantom}\n{inputs}\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "1.2.3.44").write_text("a file where the case folder goes\n")
    detector.memory_error_on = "1.2.3.55"

    assert main(["detect", str(listing), "--out", str(out), "--quiet"]) == 1
    text = capsys.readouterr().out
    assert "4 cases found; this run: 4, of which 0 already done" in text
    assert "1 ok, 0 skipped (done before), 3 failed" in text
    uid = phantom.name.removesuffix(".mhd")
    assert sorted(p.name for p in (out / uid).iterdir()) == sorted(OUTPUT_FILES.values())
    assert read_results(out / uid / "results.json")["input"]["series_uid"] == uid
    rows = _rows(out)
    assert sorted(rows) == sorted(["1.2.3.44", "1.2.3.55", "random", uid])
    assert rows[uid]["status"] == "ok" and rows[uid]["error"] == ""
    assert rows["random"]["status"] == "failed"
    assert rows["random"]["error"].startswith("CTFormatError: ") and "random.nrrd" in text
    assert (out / "random" / "error.txt").is_file()
    assert rows["1.2.3.55"]["error"] == "MemoryError: simulated: 97 GB asked for"
    assert (
        (out / "1.2.3.55" / "error.txt")
        .read_text(encoding="utf-8")
        .startswith("MemoryError: simulated: 97 GB asked for\ninput: ")
    )
    blocked = out.resolve() / "1.2.3.44"
    assert rows["1.2.3.44"]["error"] == (
        f"FileExistsError: [Errno 17] File exists: '{blocked}' (error.txt not written: "
        f"FileExistsError: [Errno 17] File exists: '{blocked}')"
    )
    assert (out / "1.2.3.44").read_text(encoding="utf-8") == "a file where the case folder goes\n"
    assert f"  FAILED 1.2.3.44 ({inputs.resolve() / 'blocked.nrrd'}): FileExistsError" in text


def test_a_summary_that_cannot_be_written_ends_the_run_with_exit_1(tmp_path, detector, capsys):
    write_ct(tiny_ct(GOOD_UID), tmp_path / "in" / "scan.nrrd")
    out = tmp_path / "out"
    (out / "summary.csv").mkdir(parents=True)  # replacing it fails, as in a read-only folder
    assert main(["detect", str(tmp_path / "in"), "--out", str(out), "--quiet"]) == 1
    text = capsys.readouterr().out
    assert "1 ok, 0 skipped (done before), 0 failed" in text
    assert read_results(out / GOOD_UID / "results.json")["summary"]["finding_count"] == 1
    assert text.splitlines()[-1] == (
        f"outputs: {out}/<case_id>/; summary NOT written: IsADirectoryError: [Errno 21] Is a "
        f"directory: '{out / 'summary.csv'}'"
    )


def test_case_ids_from_names_are_safe_and_distinct(tmp_path):
    a = write_ct(tiny_ct(None), tmp_path / "in" / "a b.nrrd")
    b = write_ct(tiny_ct(None), tmp_path / "in" / "a_b.nrrd")
    c = write_ct(tiny_ct(None), tmp_path / "in" / ("n" * 150 + ".nrrd"))
    ids = [case.case_id for case in assign_case_ids([a, b, c])]
    assert ids[:2] == ["a_b-c8687a08", "a_b"]
    assert len(ids[2]) == 100 and ids[2].startswith("n" * 91 + "-")


def test_detect_runs_a_dicom_folder_without_preambles(tmp_path, detector, capsys):
    """Raw DICOM (no suffix, no preamble, no 'DICM') is a case: GDCM finds its series."""
    folder = tmp_path / "in" / "raw"
    ct = write_dicom_series(folder, GOOD_UID)
    for path in sorted(folder.iterdir()):
        path.rename(path.with_suffix(""))
    strip_preambles(folder)
    out = tmp_path / "out"
    assert main(["detect", str(tmp_path / "in"), "--out", str(out), "--quiet"]) == 0
    assert "1 ok, 0 skipped (done before), 0 failed" in capsys.readouterr().out
    assert detector.runs == [GOOD_UID]
    doc = read_results(out / GOOD_UID / "results.json")
    assert doc["input"]["path"] == str(folder.resolve())
    assert doc["input"]["shape_irc"] == list(ct.shape)
