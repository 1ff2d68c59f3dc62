"""``lungcad detect``: usage errors (exit 2), failures (exit 1), resume, and one real run.

Most tests swap the cascade for a fast detector (``lungcad.cohort.CascadeDetector``); the last
one runs the bundled weights end to end on a small crop of a phantom and checks that the files
agree with the DetectionResult saved beside them (not what the weights find).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from bad_inputs_support import good_crop_ct
from reports_support import bright_result, loaded_models_stub, tiny_ct

import lungcad.cohort
from lungcad.cli import main
from lungcad.ctio import write_ct
from lungcad.fingerprint import RunSettings
from lungcad.pipeline import (
    DetectionOptions,
    DetectionResult,
    MalignancyBand,
    Precision,
    Thresholds,
)
from lungcad.reports import OUTPUT_FILES, read_results

UIDS = [f"1.2.826.0.1.3680043.2.1125.8.{k}" for k in range(3)]


class FakeDetector:
    """Stands in for CascadeDetector: same constructor, loads nothing, counts its runs."""

    runs: ClassVar[list[str | None]] = []
    precisions: ClassVar[list[Precision]] = []
    mirrors: ClassVar[list[bool]] = []

    def __init__(
        self, models=None, device="auto", thresholds=None, precision="auto", mirror_nodule=True
    ) -> None:
        self.thresholds = thresholds
        self.precision = Precision(precision)
        FakeDetector.precisions.append(self.precision)
        FakeDetector.mirrors.append(mirror_nodule)

    def load(self):
        return loaded_models_stub(self.precision)

    def settings(self):
        return RunSettings(self.thresholds or Thresholds(), {"segmentation": "fake-sha"})

    def __call__(self, ct):
        FakeDetector.runs.append(ct.series_uid)
        return bright_result(ct, self.thresholds)


@pytest.fixture
def fake(monkeypatch):
    FakeDetector.runs = []
    FakeDetector.precisions = []
    FakeDetector.mirrors = []
    monkeypatch.setattr(lungcad.cohort, "CascadeDetector", FakeDetector)
    return FakeDetector


@pytest.fixture
def cts(tmp_path) -> Path:
    root = tmp_path / "cts"
    for k, uid in enumerate(UIDS):
        write_ct(tiny_ct(uid, seed=k), root / f"case{k}.nrrd")
    return root


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "summary.csv").open(newline="") as fh:
        return {r["case_id"]: r for r in csv.DictReader(fh)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard", "3/3"], "0 <= I < N"),
        (["--shard", "x"], "takes I/N"),
        (["--models", "{tmp}/no-weights"], "weights folder not found"),
    ],
)
def test_usage_errors_exit_2_with_a_message(tmp_path, cts, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["detect", str(cts), "--out", str(tmp_path / "out"), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lungcad detect: error: ") and message in err


def test_missing_or_empty_inputs_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["detect", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no CT found" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "gone.mhd"), "--out", str(tmp_path / "o")]) == 2
    assert "gone.mhd: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["1.5", "-0.1", "abc"])
def test_thresholds_outside_0_1_are_argparse_errors(tmp_path, value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["detect", str(tmp_path), "--out", str(tmp_path), "--nodule-threshold", value])
    assert exc.value.code == 2
    assert "--nodule-threshold" in capsys.readouterr().err


def test_thresholds_reach_the_detector_and_results(tmp_path, cts, fake):
    out = tmp_path / "out"
    args = ["--segmentation-threshold", "0.3", "--nodule-threshold", "0.7"]
    assert main(["detect", str(cts), "--out", str(out), "--quiet", *args]) == 0
    doc = read_results(out / UIDS[0] / "results.json")
    assert doc["thresholds"] == {"segmentation": 0.3, "nodule": 0.7, "malignancy": 0.5}
    assert fake.precisions == [Precision.AUTO]
    assert fake.mirrors == [True]
    again = ["--precision", "bf16", "--no-mirror"]
    assert main(["detect", str(cts), "--out", str(out), "--quiet", *again]) == 0
    assert fake.precisions[-1] is Precision.BF16  # all done already: nothing ran, nothing loaded
    assert fake.mirrors[-1] is False


def test_a_corrupt_file_fails_alone_and_resume_skips_the_rest(tmp_path, cts, fake, capsys):
    (cts / "corrupt.mhd").write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\n")
    out = tmp_path / "out"
    assert main(["detect", str(cts), "--out", str(out), "--quiet"]) == 1
    text = capsys.readouterr().out
    assert "4 cases found" in text and "3 ok, 0 skipped (done before), 1 failed" in text
    assert "FAILED corrupt" in text
    assert sorted(fake.runs) == sorted(UIDS)
    rows = _rows(out)
    assert rows["corrupt"]["status"] == "failed" and rows["corrupt"]["error"]
    assert [rows[u]["status"] for u in UIDS] == ["ok"] * 3
    for uid in UIDS:
        assert sorted(p.name for p in (out / uid).iterdir()) == sorted(OUTPUT_FILES.values())
    assert (out / "corrupt" / "error.txt").is_file()

    fake.runs.clear()
    assert main(["detect", str(cts), "--out", str(out), "--quiet"]) == 1  # still broken
    assert fake.runs == []
    assert "0 ok, 3 skipped (done before), 1 failed" in capsys.readouterr().out

    (cts / "corrupt.mhd").unlink()
    assert main(["detect", str(cts), "--out", str(out), "--quiet", "--overwrite"]) == 0
    assert sorted(fake.runs) == sorted(UIDS)
    assert "3 ok, 0 skipped" in capsys.readouterr().out


def test_shards_of_one_cohort_cover_it_once(tmp_path, cts, fake, capsys):
    out = tmp_path / "out"
    for i in range(2):
        assert main(["detect", str(cts), "--out", str(out), "--shard", f"{i}/2", "--quiet"]) == 0
    assert sorted(fake.runs) == sorted(UIDS) and len(fake.runs) == 3
    assert "this run (shard 1/2): 1," in capsys.readouterr().out
    assert sorted(_rows(out)) == sorted(UIDS)


@pytest.fixture(scope="module")
def crop_ct(tmp_path_factory) -> Path:
    """12 x 28 x 28 voxels of a small phantom around its largest nodule (fast on a CPU)."""
    return good_crop_ct(tmp_path_factory.mktemp("crop") / "crop.nrrd")


def test_end_to_end_with_the_bundled_weights(tmp_path, crop_ct, capsys):
    out = tmp_path / "out"
    args = ["--device", "cpu", "--precision", "float32", "--quiet"]
    assert main(["detect", str(crop_ct), "--out", str(out), *args]) == 0
    text = capsys.readouterr().out
    assert "models on cpu (float32): SegmentationUNet sha256:" in text
    folder = out / "1.2.826.0.1.3680043.2.1125.8.99"
    assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUT_FILES.values())
    doc = read_results(folder / "results.json")
    saved = DetectionResult.load(folder / "detection.npz")
    assert doc["input"]["path"] == str(crop_ct.resolve())
    assert doc["input"]["shape_irc"] == [12, 28, 28]
    assert doc["models"] == saved.model_versions and len(doc["models"]) == 3
    assert doc["candidate_count"] == len(saved.candidates)
    assert [f["number"] for f in doc["findings"]] == [f.number for f in saved.findings]
    for row, f in zip(doc["findings"], saved.findings, strict=True):
        np.testing.assert_allclose(row["center_lps"], f.center_lps, atol=1e-3)
        assert row["band"] == MalignancyBand.of(f.p_malignant, 0.5).value
        assert row["voxel_count"] == f.mask.voxel_count
    with (folder / "candidates.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(saved.candidates)
    probs = [float(r["probability"]) for r in rows]
    np.testing.assert_allclose(probs, [c.p_nodule for c in saved.candidates], atol=1e-6)
    markups = json.loads((folder / "findings.mrk.json").read_text(encoding="utf-8"))["markups"]
    points = sum(len(m["controlPoints"]) for m in markups)
    assert points == len(saved.findings)
    row = _rows(out)["1.2.826.0.1.3680043.2.1125.8.99"]
    assert row["status"] == "ok" and int(row["findings"]) == len(saved.findings)


@pytest.mark.parametrize("mirror", [True, False])
def test_cascade_detector_passes_the_mirror_choice_to_detect(monkeypatch, mirror):
    seen = []

    def fake_detect(ct, models, thresholds, *options):
        seen.append((ct, models, options))
        return "result"

    monkeypatch.setattr(lungcad.cohort.detector, "detect", fake_detect)
    detector = lungcad.cohort.CascadeDetector(mirror_nodule=mirror)
    monkeypatch.setattr(detector, "load", lambda: "models")
    assert detector("ct") == "result"
    assert seen == [("ct", "models", (DetectionOptions(mirror_nodule=mirror),))]
