"""The batch script's main function on two phantom cases, against a real MRML scene."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import slicer_phantoms
from LungNoduleCADLib.batch import SUMMARY_COLUMNS, find_inputs, main
from LungNoduleCADLib.files import SEGMENTATION_FILE, TABLE_FILE, points_file

from lungcad.ctio import write_ct
from lungcad.pipeline import BAND_COLORS_RGB, MalignancyBand, malignancy_color


@pytest.fixture(scope="module")
def two_cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch-input")
    paths = []
    crop = slicer_phantoms.nodule_crop(0)  # the logic tests' CTs: detection is cached
    for ct in (crop, slicer_phantoms.oblique_flipped(crop)):
        paths.append(write_ct(ct, folder / f"{ct.series_uid}.mha"))
    return folder, paths


def _rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_batch_writes_every_case_and_a_summary(mrml, two_cases, tmp_path, capsys):
    folder, paths = two_cases
    nodes_before = mrml.scene.GetNumberOfNodes()
    runner = slicer_phantoms.CachedRunner()
    out = tmp_path / "results"
    status = main(
        ["--input", str(folder), "--output", str(out), "--device", "cpu"],
        services=mrml,
        runner=runner,
    )
    assert status == 0, capsys.readouterr().out
    assert runner.calls == 2
    assert mrml.scene.GetNumberOfNodes() == nodes_before, "each case's nodes are removed again"
    rows = _rows(out / "summary.csv")
    assert list(rows[0]) == list(SUMMARY_COLUMNS)
    assert [r["input"] for r in rows] == [str(p) for p in paths]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["thresholds"] == {"segmentation": 0.5, "nodule": 0.5, "malignancy": 0.5}
    assert [c["case_id"] for c in summary["cases"]] == [r["case_id"] for r in rows]
    for row, path in zip(rows, paths, strict=True):
        assert row["status"] == "done", row["message"]
        assert row["case_id"] == path.name.removesuffix(".mha")
        case = out / row["case_id"]
        count = int(row["findings"])
        seg = mrml.segmentations.LoadSegmentationFromFile(str(case / SEGMENTATION_FILE), False)
        segmentation = seg.GetSegmentation()
        assert segmentation.GetNumberOfSegments() == count
        table = _rows(case / TABLE_FILE)
        assert len(table) == count
        assert [int(r["Finding"]) for r in table] == list(range(1, count + 1))
        for index, line in enumerate(table):
            segment = segmentation.GetNthSegment(index)
            assert segment.GetName() == line["Name"]
            np.testing.assert_allclose(
                segment.GetColor(), malignancy_color(float(line["Malignancy"])), atol=1e-3
            )
        points = 0
        for band in MalignancyBand:
            node_id = mrml.markups.LoadMarkups(str(case / points_file(band)))
            node = mrml.scene.GetNodeByID(node_id)
            np.testing.assert_allclose(
                node.GetDisplayNode().GetSelectedColor(), BAND_COLORS_RGB[band], atol=1e-3
            )
            assert sorted(
                node.GetNthControlPointLabel(i) for i in range(node.GetNumberOfControlPoints())
            ) == sorted(r["Finding"] for r in table if r["Band"] == band.value)
            points += node.GetNumberOfControlPoints()
        assert points == count
    assert "2 of 2 cases done" in capsys.readouterr().out


def test_batch_reports_a_bad_case_and_keeps_going(mrml, two_cases, tmp_path, capsys):
    _, paths = two_cases
    bad = tmp_path / "broken.mha"
    bad.write_bytes(b"not an image")
    out = tmp_path / "results"
    status = main(
        ["--input", str(paths[0]), str(bad), "--output", str(out)],
        services=mrml,
        runner=slicer_phantoms.CachedRunner(),
    )
    assert status == 1
    rows = _rows(out / "summary.csv")
    assert [r["status"] for r in rows] == ["done", "failed"]
    assert "broken.mha" in rows[1]["message"]
    assert "1 of 2 cases done" in capsys.readouterr().out
    # existing results are not overwritten without --overwrite
    again = main(
        ["--input", str(paths[0]), "--output", str(out)],
        services=mrml,
        runner=slicer_phantoms.CachedRunner(),
    )
    assert again == 1
    assert "already holds results" in _rows(out / "summary.csv")[0]["message"]


def test_batch_refuses_missing_inputs_and_bad_thresholds(mrml, tmp_path, capsys):
    assert main(["--input", str(tmp_path / "nope.mha"), "--output", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().out
    args = ["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--nodule-threshold", "2"]
    assert main(args) == 2
    assert "nodule threshold must lie in [0, 1]" in capsys.readouterr().out


def test_find_inputs_searches_folders_and_skips_segmentations(tmp_path):
    (tmp_path / "a.mhd").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.nii.gz").write_text("x")
    (tmp_path / "sub" / "nodules.seg.nrrd").write_text("x")
    (tmp_path / "sub" / "1.2.3_nodules.nrrd").write_text("x")
    (tmp_path / "sub" / "lung-labelmap.nii.gz").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    assert find_inputs([tmp_path]) == [tmp_path / "a.mhd", tmp_path / "sub" / "b.nii.gz"]
    dicom = tmp_path / "dicom"
    dicom.mkdir()
    (dicom / "IM0001").write_text("x")
    assert find_inputs([dicom]) == [dicom]
