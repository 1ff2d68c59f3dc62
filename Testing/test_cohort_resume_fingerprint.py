"""Resume reuses only what matches: the input's files, the thresholds, the weights, the options.

A case whose recorded fingerprint differs is rerun; the reason is logged, printed by
``lungcad detect`` and recorded in results.json (``rerun_reason``) and summary.csv.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import ClassVar

import pytest
from reports_support import bright_result, loaded_models_stub, tiny_ct, write_dicom_series

import lungcad.cohort
from lungcad.cli import main
from lungcad.cohort import CascadeDetector, assign_case_ids, pending, run_cohort
from lungcad.ctio import write_ct
from lungcad.fingerprint import RunSettings, input_fingerprint, rerun_reason
from lungcad.pipeline import Thresholds
from lungcad.pipeline.models import BUNDLED_MODELS
from lungcad.reports import read_results

UIDS = [f"1.2.826.0.1.3680043.2.1125.5.{k}" for k in range(2)]
SHA_A, SHA_B = "a" * 64, "b" * 64


class Detector:
    """A fast detector that tells its settings as the cascade does."""

    def __init__(self, thresholds=None, models=SHA_A, mirror=True) -> None:
        self.thresholds = thresholds or Thresholds()
        self.models = models
        self.mirror = mirror
        self.calls: list[str | None] = []

    def settings(self) -> RunSettings:
        return RunSettings(
            self.thresholds, {"segmentation": self.models}, {"mirror_nodule": self.mirror}
        )

    def __call__(self, ct):
        self.calls.append(ct.series_uid)
        return bright_result(ct, self.thresholds)


class CliDetector(Detector):
    """Detector with CascadeDetector's constructor, for ``lungcad detect``."""

    runs: ClassVar[list[str | None]] = []

    def __init__(self, models=None, device="auto", thresholds=None, precision="auto", **kw):
        super().__init__(thresholds)
        self.calls = CliDetector.runs

    def load(self):
        return loaded_models_stub()


@pytest.fixture
def two(tmp_path) -> list:
    root = tmp_path / "cts"
    for k, uid in enumerate(UIDS):
        write_ct(tiny_ct(uid, seed=k), root / f"case{k}.nrrd")
    return assign_case_ids(sorted(root.iterdir()))


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "summary.csv").open(newline="") as fh:
        return {r["case_id"]: r for r in csv.DictReader(fh)}


def test_results_record_the_fingerprint(tmp_path, two):
    out = tmp_path / "out"
    run_cohort(two, out, Detector(Thresholds(nodule=0.6)), progress=False)
    doc = read_results(out / UIDS[0] / "results.json")
    path = two[0].path
    assert doc["fingerprint"] == {
        "input": input_fingerprint(path),
        "thresholds": {"segmentation": 0.5, "nodule": 0.6, "malignancy": 0.5},
        "models": {"segmentation": SHA_A},
        "options": {"mirror_nodule": True},
    }
    assert doc["fingerprint"]["input"]["files"] == 1
    assert doc["fingerprint"]["input"]["bytes"] == path.stat().st_size
    assert doc["fingerprint"]["input"]["mtime_ns"] == path.stat().st_mtime_ns
    assert doc["rerun_reason"] is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda d: Detector(Thresholds(nodule=0.7)),
            "thresholds changed (threshold nodule 0.5 -> 0.7)",
        ),
        (
            lambda d: Detector(models=SHA_B),
            "models changed (model segmentation aaaaaaaaaaaa -> bbbbbbbbbbbb)",
        ),
        (
            lambda d: Detector(mirror=False),
            "options changed (option mirror_nodule True -> False)",
        ),
    ],
)
def test_other_settings_rerun_every_case_and_say_why(tmp_path, two, change, reason, caplog):
    out = tmp_path / "out"
    run_cohort(two, out, Detector(), progress=False)
    again = change(None)
    assert pending(two, out, overwrite=False, settings=again.settings()) == two
    with caplog.at_level(logging.WARNING, logger="lungcad.cohort"):
        statuses = run_cohort(two, out, again, progress=False)
    assert again.calls == UIDS
    assert [(s.status, s.rerun_reason) for s in statuses] == [("ok", reason)] * 2
    assert [r.getMessage() for r in caplog.records] == [
        f"{uid}: done before, rerun: {reason}" for uid in UIDS
    ]
    assert read_results(out / UIDS[0] / "results.json")["rerun_reason"] == reason
    assert {r["rerun_reason"] for r in _rows(out).values()} == {reason}
    # now it matches: skipped, and the summary keeps the row of the run that made it
    third = change(None)
    assert [s.status for s in run_cohort(two, out, third, progress=False)] == ["skipped"] * 2
    assert third.calls == []


def test_a_changed_or_touched_input_is_rerun_with_the_reason(tmp_path, two):
    out = tmp_path / "out"
    run_cohort(two, out, Detector(), progress=False)
    first, second = two[0].path, two[1].path
    old = first.stat().st_size
    write_ct(tiny_ct(UIDS[0], seed=5, shape=(9, 24, 24)), first, overwrite=True)
    stamp = second.stat()
    os.utime(second, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))  # touched, not changed
    again = Detector()
    statuses = run_cohort(two, out, again, progress=False)
    assert again.calls == UIDS
    assert statuses[0].rerun_reason == (
        f"the input changed (1 files, {old} bytes -> 1 files, {first.stat().st_size} bytes)"
    )
    assert statuses[1].rerun_reason == "the input was modified since (file times differ)"


def test_a_header_change_of_the_same_size_and_time_is_seen(tmp_path):
    path = write_ct(tiny_ct(UIDS[0]), tmp_path / "a.nrrd")
    before = input_fingerprint(path)
    stamp = path.stat()
    data = bytearray(path.read_bytes())
    data[:4] = b"NRRD"[::-1]  # same length, other header bytes
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    expected = {"input": input_fingerprint(path)}
    assert rerun_reason({"input": before}, expected) == "the input's header or file names differ"


def test_a_detached_header_covers_its_data_file_and_a_dicom_folder_every_file(tmp_path):
    mhd = write_ct(tiny_ct(UIDS[0]), tmp_path / "m" / "scan.mhd")
    raw = mhd.with_suffix(".raw")
    fp = input_fingerprint(mhd)
    assert (fp["files"], fp["bytes"]) == (2, mhd.stat().st_size + raw.stat().st_size)
    folder = tmp_path / "dicom"
    write_dicom_series(folder, UIDS[1])
    fp = input_fingerprint(folder)
    files = sorted(folder.iterdir())
    assert (fp["files"], fp["bytes"]) == (8, sum(p.stat().st_size for p in files))
    files[-1].unlink()  # a slice lost
    assert input_fingerprint(folder)["files"] == 7


def test_a_fifo_is_never_opened(tmp_path):
    fifo = tmp_path / "trap.nrrd"
    os.mkfifo(fifo)
    fp = input_fingerprint(fifo)  # returns at once: only regular files are opened
    assert (fp["files"], fp["bytes"], fp["mtime_ns"]) == (1, 0, 0)
    assert fp == input_fingerprint(fifo)


def test_results_without_a_fingerprint_are_rerun(tmp_path, two):
    out = tmp_path / "out"
    run_cohort(two, out, Detector(), progress=False)
    path = out / UIDS[1] / "results.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    del doc["fingerprint"]  # as written before fingerprints
    path.write_text(json.dumps(doc))
    again = Detector()
    statuses = run_cohort(two, out, again, progress=False)
    assert again.calls == [UIDS[1]]
    assert statuses[1].rerun_reason == (
        "its results.json records no fingerprint (written by an older lungcad)"
    )


def test_a_stale_result_is_removed_when_its_rerun_fails(tmp_path, two):
    out = tmp_path / "out"
    run_cohort(two, out, Detector(), progress=False)
    two[0].path.write_bytes(b"NRRD0004\nnot an image any more\n")
    statuses = run_cohort(two, out, Detector(), progress=False)
    assert statuses[0].status == "failed"
    assert statuses[0].rerun_reason.startswith("the input changed (1 files, ")
    assert not (out / UIDS[0] / "results.json").exists()  # it described the old CT
    row = _rows(out)[UIDS[0]]
    assert row["status"] == "failed" and row["rerun_reason"] == statuses[0].rerun_reason


def test_detect_with_other_thresholds_reruns_and_prints_why(tmp_path, two, monkeypatch, capsys):
    CliDetector.runs = []
    monkeypatch.setattr(lungcad.cohort, "CascadeDetector", CliDetector)
    cts, out = two[0].path.parent, tmp_path / "out"
    assert main(["detect", str(cts), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["detect", str(cts), "--out", str(out), "--quiet"]) == 0
    assert "this run: 2, of which 2 already done\n" in capsys.readouterr().out
    assert CliDetector.runs == UIDS
    args = ["detect", str(cts), "--out", str(out), "--quiet", "--nodule-threshold", "0.7"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    reason = "thresholds changed (threshold nodule 0.5 -> 0.7)"
    assert lines[:3] == [
        "2 cases found; this run: 2, of which 0 already done, 2 rerun (results no longer match)",
        f"  rerun {UIDS[0]}: {reason}",
        f"  rerun {UIDS[1]}: {reason}",
    ]
    assert CliDetector.runs == UIDS * 2
    doc = read_results(out / UIDS[1] / "results.json")
    assert doc["thresholds"]["nodule"] == 0.7 and doc["rerun_reason"] == reason
    assert _rows(out)[UIDS[1]]["rerun_reason"] == reason


def test_the_cascade_settings_come_from_the_model_cards_without_loading(tmp_path):
    detector = CascadeDetector(thresholds=Thresholds(malignancy=0.4), mirror_nodule=False)
    settings = detector.settings()
    cards = {
        task: json.loads((BUNDLED_MODELS / f"{task}.json").read_text(encoding="utf-8"))["sha256"]
        for task in ("segmentation", "nodule", "malignancy")
    }
    assert dict(settings.models) == cards
    assert dict(settings.options) == {"mirror_nodule": False}
    assert settings.thresholds == Thresholds(malignancy=0.4)
    assert detector._models is None  # nothing was loaded
