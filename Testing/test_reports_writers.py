"""The per-case writers: each file loads back with the numbers the result holds."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import SimpleITK as sitk
from matplotlib import image as mpimg
from reports_support import empty_result, finding_from_mask, permuted, truth_result
from scipy import ndimage

from lungcad.atomic import write_text_atomic
from lungcad.geometry import world_to_voxel
from lungcad.pipeline.findings import BAND_COLORS_RGB, PatientSummary, Thresholds
from lungcad.reports import (
    CANDIDATE_COLUMNS,
    OUTPUT_FILES,
    RESULTS_SCHEMA,
    OutputExistsError,
    ResultsFileError,
    read_results,
    write_candidates_csv,
    write_case_outputs,
    write_markups_json,
    write_overlay_png,
    write_results_json,
    write_segmentation,
)
from lungcad.reports.overlay import COLUMNS, DPI, PANEL_IN, mask_on_axial_slice
from lungcad.reports.segmentation import NODULE_TERMINOLOGY
from lungcad.show import canonical_image


@pytest.fixture(scope="module")
def flipped_case(small_cases):
    """Case 1 of the shared set: x and y axes flipped (direction diag(-1, -1, 1)), 4 nodules."""
    return small_cases[1]


@pytest.fixture(scope="module")
def result(flipped_case):
    return truth_result(flipped_case, Thresholds(0.4, 0.6, 0.5))


def test_results_json_round_trip(tmp_path, flipped_case, result):
    path = write_results_json(result, tmp_path / "results.json", source="in/ct.mhd", case_id="c1")
    doc = read_results(path)
    g = flipped_case.ct.geometry
    assert doc["schema"] == RESULTS_SCHEMA
    assert doc["case_id"] == "c1"
    assert doc["input"]["path"] == "in/ct.mhd"
    assert doc["input"]["series_uid"] == flipped_case.spec.series_uid
    assert doc["input"]["shape_irc"] == list(g.shape_irc)
    assert doc["input"]["size_xyz"] == list(g.shape_irc[::-1])
    np.testing.assert_allclose(doc["input"]["spacing_xyz"], g.spacing_xyz, atol=1e-6)
    np.testing.assert_allclose(doc["input"]["origin_xyz"], g.origin_xyz, atol=1e-6)
    assert doc["input"]["direction"] == list(g.direction)
    assert doc["thresholds"] == {"segmentation": 0.4, "nodule": 0.6, "malignancy": 0.5}
    assert doc["models"] == result.model_versions
    assert doc["candidate_count"] == len(result.candidates)
    assert doc["summary"]["text"] == result.summary.text
    assert doc["summary"]["finding_count"] == len(result.findings) == 4
    for row, f in zip(doc["findings"], result.findings, strict=True):
        assert row["number"] == f.number
        assert row["label"] == f.label()
        np.testing.assert_allclose(row["center_lps"], f.center_lps, atol=1e-3)
        np.testing.assert_allclose(row["center_irc"], f.center_irc, atol=1e-3)
        assert row["diameter_mm"] == pytest.approx(f.diameter_mm, abs=1e-3)
        assert row["p_malignant"] == pytest.approx(f.p_malignant, abs=1e-4)
        assert row["band"] == f.band(0.5).value
        assert row["voxel_count"] == f.mask.voxel_count
    # every true nodule became a finding, so the voxel counts add up to the truth map's
    truth_voxels = int(np.count_nonzero(flipped_case.rendered.nodule_labels))
    assert sum(r["voxel_count"] for r in doc["findings"]) == truth_voxels
    assert [r["band"] for r in doc["findings"]] == [
        "suspicious", "suspicious", "indeterminate", "benign",
    ]  # fmt: skip


def test_results_json_refuses_overwrite_and_bad_files(tmp_path, result):
    path = write_results_json(result, tmp_path / "results.json")
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="already exists"):
        write_results_json(dataclasses.replace(result, findings=()), path)
    assert path.read_bytes() == before
    write_results_json(result, path, case_id="again", overwrite=True)
    assert read_results(path)["case_id"] == "again"

    path.write_text(before.decode()[:200])
    with pytest.raises(ResultsFileError, match="not readable JSON"):
        read_results(path)
    path.write_text(json.dumps({"schema": "other/9"}))
    with pytest.raises(ResultsFileError, match="schema 'other/9'"):
        read_results(path)
    doc = json.loads(before)
    del doc["findings"]
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultsFileError, match="missing findings"):
        read_results(path)
    with pytest.raises(ResultsFileError, match="no such file"):
        read_results(tmp_path / "absent.json")


def test_candidates_csv_luna16_columns_first(tmp_path, flipped_case, result):
    path = write_candidates_csv(result, tmp_path / "candidates.csv", seriesuid="1.2.3")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
        fh.seek(0)
        header = next(csv.reader(fh))
    assert header[:5] == ["seriesuid", "coordX", "coordY", "coordZ", "probability"]
    assert tuple(header) == CANDIDATE_COLUMNS
    assert len(rows) == len(result.candidates) == 5
    for row, c in zip(rows, result.candidates, strict=True):
        assert row["seriesuid"] == "1.2.3"
        xyz = [float(row[k]) for k in ("coordX", "coordY", "coordZ")]
        np.testing.assert_allclose(xyz, c.center_lps, atol=1e-3)
        assert float(row["probability"]) == pytest.approx(c.p_nodule, abs=1e-6)
        if c.p_malignant is None:  # never scored: an empty cell, not a made-up 0
            assert row["p_malignant"] == ""
        else:
            assert float(row["p_malignant"]) == pytest.approx(c.p_malignant, abs=1e-6)
        assert row["finding"] == ("" if c.finding is None else str(c.finding))
        # the LPS columns and the voxel columns name the same point of the flipped grid
        irc = [float(row[k]) for k in ("index", "row", "col")]
        np.testing.assert_allclose(world_to_voxel(xyz, flipped_case.ct.geometry), irc, atol=2e-3)
    assert [r["finding"] for r in rows] == ["1", "2", "3", "4", ""]
    assert [r["p_malignant"] == "" for r in rows] == [False] * 4 + [True]
    with pytest.raises(OutputExistsError):
        write_candidates_csv(result, path, seriesuid="x")


def _metadata(image: sitk.Image) -> dict[str, str]:
    return {k: image.GetMetaData(k) for k in image.GetMetaDataKeys()}


def test_segmentation_nrrd_in_ct_geometry(tmp_path, flipped_case, result):
    path = write_segmentation(result, tmp_path / "nodules.seg.nrrd")
    image = sitk.ReadImage(str(path))
    ct = flipped_case.ct
    assert image.GetSize() == ct.geometry.shape_irc[::-1]
    np.testing.assert_allclose(image.GetOrigin(), ct.geometry.origin_xyz, atol=1e-6)
    np.testing.assert_allclose(image.GetSpacing(), ct.geometry.spacing_xyz, atol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), ct.geometry.direction, atol=1e-9)
    labels = sitk.GetArrayFromImage(image)
    truth = flipped_case.rendered.nodule_labels
    for f in result.findings:
        assert np.array_equal(labels == f.number, f.mask.paste(ct.shape))
    # finding numbers follow size: the largest true nodule is finding 1
    sizes = sorted((n for n in flipped_case.spec.nodules), key=lambda n: -n.diameter_mm)
    assert np.array_equal(labels == 1, truth == sizes[0].index)
    meta = _metadata(image)
    assert meta["Segmentation_MasterRepresentation"] == "Binary labelmap"
    assert meta["Segmentation_ContainedRepresentationNames"] == "Binary labelmap|"
    assert meta["Segmentation_ReferenceImageExtentOffset"] == "0 0 0"
    for n, f in enumerate(result.findings):
        assert meta[f"Segment{n}_Name"] == f"Nodule {f.number} - malignancy {f.p_malignant:.2f}"
        assert meta[f"Segment{n}_LabelValue"] == str(f.number)
        assert meta[f"Segment{n}_Layer"] == "0"
        assert meta[f"Segment{n}_ColorAutoGenerated"] == "0"
        assert f"TerminologyEntry:{NODULE_TERMINOLOGY}|" in meta[f"Segment{n}_Tags"]
    # one layer: every segment carries the layer's extent (col, row, index), which holds all masks
    extent = [int(v) for v in meta["Segment0_Extent"].split()]
    ii, rr, cc = np.nonzero(labels)
    assert extent == [cc.min(), cc.max(), rr.min(), rr.max(), ii.min(), ii.max()]
    assert len({meta[f"Segment{n}_Extent"] for n in range(4)}) == 1
    with pytest.raises(OutputExistsError):
        write_segmentation(result, path)


def test_overlapping_findings_go_to_separate_layers(tmp_path, flipped_case, result):
    ct = flipped_case.ct
    grown = ndimage.binary_dilation(result.findings[0].mask.paste(ct.shape), iterations=2)
    extra = finding_from_mask(5, grown, ct, 0.7, 0.4)
    findings = (*result.findings, extra)
    both = dataclasses.replace(
        result, findings=findings, summary=PatientSummary.of(findings, result.thresholds)
    )
    image = sitk.ReadImage(str(write_segmentation(both, tmp_path / "two.seg.nrrd")))
    assert image.GetNumberOfComponentsPerPixel() == 2
    layers = sitk.GetArrayFromImage(image)  # (index, row, col, layer)
    meta = _metadata(image)
    assert [meta[f"Segment{n}_Layer"] for n in range(5)] == ["0", "0", "0", "0", "1"]
    assert np.array_equal(layers[..., 1] == 5, grown)
    assert np.array_equal(layers[..., 0] == 1, result.findings[0].mask.paste(ct.shape))


def test_markups_json_one_list_per_band(tmp_path, result):
    path = write_markups_json(result, tmp_path / "findings.mrk.json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert "markups-schema-v1.0.3.json" in doc["@schema"]
    names = [m["name"] for m in doc["markups"]]
    assert names == ["Suspicious nodules", "Indeterminate nodules", "Benign nodules"]
    by_label = {}
    for m in doc["markups"]:
        assert m["type"] == "Fiducial"
        assert m["coordinateSystem"] == "LPS"
        band = m["name"].split()[0].lower()
        expected = [round(c, 4) for c in BAND_COLORS_RGB[next(
            b for b in BAND_COLORS_RGB if b.value == band
        )]]  # fmt: skip
        assert m["display"]["color"] == m["display"]["selectedColor"] == expected
        by_label.update({p["label"]: p for p in m["controlPoints"]})
    assert sorted(by_label) == ["N1", "N2", "N3", "N4"]
    for f in result.findings:
        point = by_label[f"N{f.number}"]
        np.testing.assert_allclose(point["position"], f.center_lps, atol=1e-3)
        assert f"p(malignant) {f.p_malignant:.2f}" in point["description"]
        assert f"diameter {f.diameter_mm:.1f} mm" in point["description"]
        assert f"volume {f.volume_mm3:.0f} mm3" in point["description"]
        assert f"p(nodule) {f.p_nodule:.2f}" in point["description"]


def test_empty_result_still_writes_every_file(tmp_path, flipped_case):
    ct = flipped_case.ct
    out = write_case_outputs(empty_result(ct), ct, tmp_path / "case", case_id="none")
    doc = read_results(out.results)
    assert doc["findings"] == [] and doc["summary"]["finding_count"] == 0
    image = sitk.ReadImage(str(out.segmentation))
    assert not any(k.startswith("Segment0_") for k in image.GetMetaDataKeys())
    assert sitk.GetArrayViewFromImage(image).max() == 0
    markups = json.loads(out.markups.read_text(encoding="utf-8"))["markups"]
    assert len(markups) == 1 and markups[0]["controlPoints"] == []
    picture = mpimg.imread(out.overlay)
    assert picture.shape[:2] == (round((PANEL_IN + 0.9) * DPI), round(PANEL_IN * DPI))
    with out.candidates.open() as fh:
        assert len(fh.read().splitlines()) == 1  # header only


@pytest.mark.parametrize("order", [(0, 1, 2), (1, 2, 0)], ids=["flipped", "permuted"])
def test_overlay_mask_lands_on_the_ct_voxels(flipped_case, small_cases, order):
    """The outline comes from the same canonical slice as the picture, for any axis layout."""
    case = flipped_case if order == (0, 1, 2) else small_cases[3]  # case 3: z flipped
    ct, labels = permuted(case.ct, case.rendered.nodule_labels, order)
    res = truth_result(case, ct=ct, labels=labels)
    canonical = canonical_image(ct)
    label_image = sitk.GetImageFromArray(labels.astype(np.uint8))
    label_image.SetOrigin(ct.geometry.origin_xyz)
    label_image.SetSpacing(ct.geometry.spacing_xyz)
    label_image.SetDirection(ct.geometry.direction)
    oriented = sitk.GetArrayFromImage(sitk.DICOMOrient(label_image, "LPS"))
    for f in res.findings:
        z0 = canonical.GetOrigin()[2]
        k = round((f.center_lps[2] - z0) / canonical.GetSpacing()[2])
        plane = mask_on_axial_slice(f, ct, canonical, z0 + k * canonical.GetSpacing()[2])
        # which true label this finding is: the one its mask covers
        label = int(np.bincount(labels[f.mask.slices][f.mask.array]).argmax())
        assert plane.any()
        assert np.array_equal(plane, oriented[k] == label)


def test_overlay_png_grid(tmp_path, flipped_case, result):
    path = write_overlay_png(result, flipped_case.ct, tmp_path / "overlay.png", title="case 1")
    picture = mpimg.imread(path)
    rows = -(-len(result.findings) // COLUMNS)
    assert picture.shape[:2] == (
        round((PANEL_IN * rows + 0.9) * DPI),
        round(PANEL_IN * COLUMNS * DPI),
    )
    with pytest.raises(OutputExistsError):
        write_overlay_png(result, flipped_case.ct, path)


def test_case_outputs_refuse_then_overwrite(tmp_path, flipped_case, result):
    folder = tmp_path / "case"
    out = write_case_outputs(result, flipped_case.ct, folder, case_id="c", source="x.mhd")
    assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUT_FILES.values())
    doc = read_results(out.results)
    assert doc["outputs"] == {k: v for k, v in OUTPUT_FILES.items() if k != "results"}
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    with pytest.raises(OutputExistsError, match="already holds"):
        write_case_outputs(result, flipped_case.ct, folder, case_id="c")
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps
    one = result.findings[:1]
    fewer = dataclasses.replace(
        result, findings=one, summary=PatientSummary.of(one, result.thresholds)
    )
    write_case_outputs(fewer, flipped_case.ct, folder, case_id="c", overwrite=True)
    assert len(read_results(out.results)["findings"]) == 1
    assert int(np.load(out.detection)["n_findings"]) == 1


def test_an_extra_writer_adds_files_before_results_json(tmp_path, flipped_case, result):
    """A caller's own files (Slicer's storage nodes in batch mode) are listed in results.json;
    one that fails leaves no results.json, so resume takes the case for unfinished."""
    ct = flipped_case.ct
    seen = []

    def extra(res, ct_given, folder):
        seen.append((res is result, ct_given is ct, (folder / "results.json").exists()))
        (folder / "mine").mkdir()
        return {"mine": write_text_atomic(folder / "mine" / "notes.txt", "hello\n")}, {"x": 1}

    out = write_case_outputs(result, ct, tmp_path / "case", case_id="c", extra_writer=extra)
    assert seen == [(True, True, False)]
    assert out.extra == {"mine": tmp_path / "case" / "mine" / "notes.txt"}
    assert read_results(out.results)["outputs"]["mine"] == "mine/notes.txt"
    assert read_results(out.results)["x"] == 1

    def failing(res, ct_given, folder):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_case_outputs(result, ct, tmp_path / "case", overwrite=True, extra_writer=failing)
    assert not out.results.exists()
    assert (tmp_path / "case" / "candidates.csv").is_file()
