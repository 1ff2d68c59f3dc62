"""The batch script's main function on two phantom crops, against a real MRML scene.

Batch mode is ``lungcad detect`` (:func:`lungcad.cli_detect.run_detect`) plus the files Slicer's
storage nodes write: the crops sit in a LUNA16 layout with their truth, so ``lungcad evaluate``
reads what the batch wrote; a second run skips both cases and ``--shard`` splits them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import slicer
import slicer_phantoms
from LungNoduleCADLib.batch import main
from LungNoduleCADLib.storage import (
    SEGMENTATION_FILE,
    SEGMENTATION_KIND,
    SLICER_FOLDER,
    TABLE_FILE,
    TABLE_KIND,
    TABLE_SCHEMA_KIND,
    points_file,
    points_kind,
)

from lungcad.cli import main as lungcad_main
from lungcad.cohort import SUMMARY_COLUMNS
from lungcad.ctio import write_ct
from lungcad.pipeline import BAND_COLORS_RGB, MalignancyBand
from lungcad.reports import OUTPUT_FILES, read_results

CPU = ["--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def luna(tmp_path_factory) -> tuple[Path, list[str]]:
    """Two 70 mm phantom crops as ``subset0/<uid>.mhd`` with an annotations.csv of the nodules
    inside each (the logic tests' CTs: their detection is cached for the session)."""
    data = tmp_path_factory.mktemp("batch-luna")
    rows = ["seriesuid,coordX,coordY,coordZ,diameter_mm"]
    uids = []
    for rank in (0, 1):
        ct = slicer_phantoms.nodule_crop(rank)
        write_ct(ct, data / "subset0" / f"{ct.series_uid}.mhd")
        uids.append(ct.series_uid)
        for (x, y, z), diameter in slicer_phantoms.nodules_in(ct):
            rows.append(f"{ct.series_uid},{x:.3f},{y:.3f},{z:.3f},{diameter:.3f}")
    (data / "annotations.csv").write_text("\n".join(rows) + "\n")
    return data, sorted(uids)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _labels(node) -> list[str]:
    return [node.GetNthControlPointLabel(i) for i in range(node.GetNumberOfControlPoints())]


def _check_slicer_files(mrml, case: Path, doc: dict, ct_path: Path) -> None:
    """The slicer/ files load back and agree with the engine's files and results.json."""
    outputs = doc["outputs"]
    slicer_dir = case / SLICER_FOLDER
    assert outputs[SEGMENTATION_KIND] == f"{SLICER_FOLDER}/{SEGMENTATION_FILE}"
    assert outputs[TABLE_KIND] == f"{SLICER_FOLDER}/{TABLE_FILE}"
    assert outputs[TABLE_SCHEMA_KIND] == f"{SLICER_FOLDER}/findings.schema.csv"
    assert sorted(p.relative_to(case).as_posix() for p in slicer_dir.iterdir()) == sorted(
        v for k, v in outputs.items() if k.startswith("slicer_")
    )
    findings = doc["findings"]
    ours = mrml.segmentations.LoadSegmentationFromFile(str(slicer_dir / SEGMENTATION_FILE), False)
    engine = mrml.segmentations.LoadSegmentationFromFile(
        str(case / OUTPUT_FILES["segmentation"]), False
    )
    volume = mrml.volumes.AddArchetypeVolume(str(ct_path), "ct")
    for node in (ours, engine):
        assert node.GetSegmentation().GetNumberOfSegments() == len(findings)
    for index, finding in enumerate(findings):
        mine = ours.GetSegmentation().GetNthSegment(index)
        theirs = engine.GetSegmentation().GetNthSegment(index)
        assert mine.GetName() == theirs.GetName() == finding["label"]
        np.testing.assert_allclose(mine.GetColor(), theirs.GetColor(), atol=1e-6)
        voxels = [
            slicer.util.arrayFromSegmentBinaryLabelmap(
                node, node.GetSegmentation().GetNthSegmentID(index), volume
            )
            > 0
            for node in (ours, engine)
        ]
        np.testing.assert_array_equal(voxels[0], voxels[1])
        assert int(voxels[0].sum()) == finding["voxel_count"]
    table = _rows(slicer_dir / TABLE_FILE)
    assert [int(r["Finding"]) for r in table] == [f["number"] for f in findings]
    assert [r["Band"] for r in table] == [f["band"] for f in findings]
    engine_points = json.loads((case / OUTPUT_FILES["markups"]).read_text(encoding="utf-8"))[
        "markups"
    ]
    descriptions = {
        point["label"]: point["description"]
        for markup in engine_points
        for point in markup["controlPoints"]
    }
    points = 0
    for band in MalignancyBand:
        assert outputs[points_kind(band)] == f"{SLICER_FOLDER}/{points_file(band)}"
        node = mrml.scene.GetNodeByID(mrml.markups.LoadMarkups(str(slicer_dir / points_file(band))))
        np.testing.assert_allclose(
            node.GetDisplayNode().GetSelectedColor(), BAND_COLORS_RGB[band], atol=1e-3
        )
        assert sorted(_labels(node)) == sorted(
            str(f["number"]) for f in findings if f["band"] == band.value
        )
        for i in range(node.GetNumberOfControlPoints()):  # one description, the engine's
            label = node.GetNthControlPointLabel(i)
            assert node.GetNthControlPointDescription(i) == descriptions[f"N{label}"]
        points += node.GetNumberOfControlPoints()
    assert points == len(findings)


def test_batch_writes_what_evaluate_reads_and_a_second_run_skips(mrml, luna, tmp_path, capsys):
    data, uids = luna
    out = tmp_path / "results"
    nodes_before = mrml.scene.GetNumberOfNodes()
    argv = ["--input", str(data / "subset0"), "--output", str(out), *CPU]
    runner = slicer_phantoms.CachedRunner()
    assert main(argv, services=mrml, runner=runner) == 0, capsys.readouterr()
    printed = capsys.readouterr().out
    assert "2 cases found; this run: 2, of which 0 already done" in printed
    assert "2 ok, 0 skipped (done before), 0 failed" in printed
    assert runner.calls == 2
    assert mrml.scene.GetNumberOfNodes() == nodes_before, "each case's nodes are removed again"

    rows = _rows(out / "summary.csv")
    assert list(rows[0]) == list(SUMMARY_COLUMNS)
    assert [(r["case_id"], r["status"], r["error"]) for r in rows] == [
        (uid, "ok", "") for uid in uids
    ]
    total_candidates = 0
    for row, uid in zip(rows, uids, strict=True):
        case = out / uid
        assert sorted(p.name for p in case.iterdir()) == sorted(
            [*OUTPUT_FILES.values(), SLICER_FOLDER]
        )
        doc = read_results(case / "results.json")
        assert doc["input"]["series_uid"] == uid
        assert int(row["findings"]) == doc["summary"]["finding_count"] == len(doc["findings"])
        assert doc["input"]["path"] == str((data / "subset0" / f"{uid}.mhd").resolve())
        assert doc["fingerprint"]["input"]["files"] == 2  # .mhd and .raw
        assert set(doc["fingerprint"]["models"]) == {"segmentation", "nodule", "malignancy"}
        candidates = _rows(case / "candidates.csv")
        assert {c["seriesuid"] for c in candidates} <= {uid}
        total_candidates += len(candidates)
        _check_slicer_files(mrml, case, doc, data / "subset0" / f"{uid}.mhd")
        mrml.scene.Clear(0)

    evaluation = tmp_path / "evaluation"
    argv_eval = ["evaluate", "--data", str(data), "--results", str(out), "--out", str(evaluation)]
    assert lungcad_main([*argv_eval, "--no-overlays", "--quiet", "--bootstrap", "0"]) == 0
    metrics = json.loads((evaluation / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["series"] == uids
    assert metrics["series_evaluated"] == 2
    truth_rows = len((data / "annotations.csv").read_text(encoding="utf-8").splitlines()) - 1
    assert metrics["froc"]["nodules"] == truth_rows
    assert metrics["froc"]["candidates"] == total_candidates

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = slicer_phantoms.CachedRunner()
    assert main(argv, services=mrml, runner=again) == 0
    printed = capsys.readouterr().out
    assert "2 cases found; this run: 2, of which 2 already done" in printed
    assert "0 ok, 2 skipped (done before), 0 failed" in printed
    assert again.calls == 0
    changed = [p for p, t in stamps.items() if p.stat().st_mtime_ns != t]
    assert changed == [out / "summary.csv"]  # rewritten with the same rows
    assert _rows(out / "summary.csv") == rows


def test_shards_split_the_cases_and_share_one_summary(mrml, luna, tmp_path, capsys):
    data, uids = luna
    out = tmp_path / "results"
    for index in range(2):
        runner = slicer_phantoms.CachedRunner()
        argv = ["--input", str(data), "--output", str(out), "--shard", f"{index}/2", *CPU]
        assert main(argv, services=mrml, runner=runner) == 0
        printed = capsys.readouterr().out
        assert "2 cases found; this run (shard " + f"{index}/2): 1, of which 0 already done" in (
            printed
        )
        assert runner.calls == 1
        assert sorted(p.name for p in out.iterdir() if p.is_dir()) == uids[: index + 1]
        assert [r["case_id"] for r in _rows(out / "summary.csv")] == uids[: index + 1]
    assert (out / uids[1] / SLICER_FOLDER / SEGMENTATION_FILE).is_file()


def test_batch_records_a_bad_case_keeps_going_and_retries_only_it(mrml, luna, tmp_path, capsys):
    data, uids = luna
    bad = tmp_path / "in" / "broken.mha"
    bad.parent.mkdir()
    bad.write_bytes(b"not an image")
    good = data / "subset0" / f"{uids[0]}.mhd"
    out = tmp_path / "results"
    argv = ["--input", str(good), str(bad), "--output", str(out), *CPU]
    assert main(argv, services=mrml, runner=slicer_phantoms.CachedRunner()) == 1
    printed = capsys.readouterr().out
    assert "1 ok, 0 skipped (done before), 1 failed" in printed
    rows = {r["case_id"]: r for r in _rows(out / "summary.csv")}
    assert (rows[uids[0]]["status"], rows["broken"]["status"]) == ("ok", "failed")
    assert bad.name in rows["broken"]["error"]
    error_txt = (out / "broken" / "error.txt").read_text(encoding="utf-8")
    assert error_txt.splitlines()[0] == rows["broken"]["error"]
    assert f"FAILED broken ({bad}): {rows['broken']['error']}" in printed
    # resume: the finished case is skipped, the failed one runs again
    runner = slicer_phantoms.CachedRunner()
    assert main(argv, services=mrml, runner=runner) == 1
    assert "0 ok, 1 skipped (done before), 1 failed" in capsys.readouterr().out
    assert runner.calls == 0  # the broken file fails in read_ct, before detection


def test_batch_refuses_missing_inputs_and_bad_thresholds(mrml, tmp_path, capsys):
    assert main(["--input", str(tmp_path / "nope.mha"), "--output", str(tmp_path / "o")]) == 2
    assert f"error: {tmp_path / 'nope.mha'}: no such file or folder" in capsys.readouterr().err
    args = ["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--nodule-threshold", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err  # the check every command shares (lungcad.cli.options)
    assert "argument --nodule-threshold: must be a finite number in [0, 1], got 2" in err
    assert not (tmp_path / "o").exists()
