"""nodules.seg.nrrd and findings.mrk.json load in a real MRML scene (PyPI slicer-core).

The scene is built as Slicer builds it (application logic plus the Colors, SubjectHierarchy,
Volumes, Segmentations and Markups logics), then the files are read by the same storage nodes
Slicer's "Add data" uses: the segment names, colours and voxels, and the points' RAS positions
and band colours, must come out as the result holds them.
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest
from reports_support import empty_result, finding_from_mask, truth_result
from scipy import ndimage

from lungcad.ctio import write_ct
from lungcad.geometry import lps_to_ras, ras_to_lps, world_to_voxel
from lungcad.pipeline.findings import (
    BAND_COLORS_RGB,
    PatientSummary,
    Thresholds,
    malignancy_color,
)
from lungcad.reports import write_markups_json, write_segmentation
from lungcad.reports.markups import band_list_name
from lungcad.reports.segmentation import NODULE_TERMINOLOGY

slicer = pytest.importorskip("slicer", reason="slicer-core (the test extra) is not installed")
vtk = pytest.importorskip("vtk")


@pytest.fixture
def scene(monkeypatch):
    """A fresh scene with the module logics the loaders need (see shared/SLICER_CORE.md)."""
    mrml = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(mrml)

    def register(logic, name):
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(mrml)
        app.SetModuleLogic(name, logic)
        return logic

    app.SetColorLogic(register(slicer.vtkSlicerColorLogic(), "Colors"))
    register(slicer.vtkSlicerSubjectHierarchyModuleLogic(), "SubjectHierarchy")
    logics = types.SimpleNamespace(
        app=app,
        scene=mrml,
        volumes=register(slicer.vtkSlicerVolumesLogic(), "Volumes"),
        segmentations=register(slicer.vtkSlicerSegmentationsModuleLogic(), "Segmentations"),
        markups=register(slicer.vtkSlicerMarkupsLogic(), "Markups"),
    )
    # slicer.util looks these up; Slicer itself provides them
    monkeypatch.setattr(slicer, "mrmlScene", mrml, raising=False)
    modules = types.SimpleNamespace(
        volumes=types.SimpleNamespace(logic=lambda: logics.volumes),
        segmentations=types.SimpleNamespace(logic=lambda: logics.segmentations),
    )
    monkeypatch.setattr(slicer, "modules", modules, raising=False)
    return logics


@pytest.fixture(scope="module")
def case(small_cases):
    return small_cases[3]  # z axis flipped (direction diag(1, 1, -1)), 7 nodules


def _in_ct_voxels(mask_kji: np.ndarray, ct_node, geometry) -> set[tuple[int, int, int]]:
    """Voxels set in an array on the Slicer CT node's grid, as (index, row, col) of our CT.

    Slicer may reorient a volume when it loads it (it does for a flipped z axis), so the arrays
    are compared through patient space: Slicer IJK -> RAS -> LPS -> our voxel grid.
    """
    matrix = vtk.vtkMatrix4x4()
    ct_node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    ijk = np.argwhere(mask_kji)[:, ::-1]
    ras = (ijk_to_ras @ np.c_[ijk, np.ones(len(ijk))].T).T[:, :3]
    irc = np.rint(world_to_voxel(ras_to_lps(ras), geometry)).astype(int)
    return set(map(tuple, irc.tolist()))


def _voxels(mask: np.ndarray) -> set[tuple[int, int, int]]:
    return set(map(tuple, np.argwhere(mask).tolist()))


def _load_ct(scene, case, tmp_path):
    path = write_ct(case.ct, tmp_path / "ct.nrrd")
    node = scene.volumes.AddArchetypeVolume(str(path), "ct")
    assert node is not None
    return node


def test_segmentation_loads_with_names_colours_and_voxels(scene, case, tmp_path):
    result = truth_result(case)
    path = write_segmentation(result, tmp_path / "nodules.seg.nrrd")
    ct_node = _load_ct(scene, case, tmp_path)
    node = scene.segmentations.LoadSegmentationFromFile(str(path), False)
    assert node is not None
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(result.findings) > 1
    assert segmentation.GetConversionParameter("Reference image geometry").endswith(
        f"0;{case.ct.shape[2] - 1};0;{case.ct.shape[1] - 1};0;{case.ct.shape[0] - 1};"
    )
    for n, f in enumerate(result.findings):
        segment_id = segmentation.GetNthSegmentID(n)
        segment = segmentation.GetSegment(segment_id)
        assert segment_id == f"Nodule_{f.number}"
        assert segment.GetName() == f"Nodule {f.number} - malignancy {f.p_malignant:.2f}"
        np.testing.assert_allclose(segment.GetColor(), malignancy_color(f.p_malignant), atol=1e-6)
        assert segment.GetTerminology() == NODULE_TERMINOLOGY
        # voxels in the CT's own grid, as Slicer resamples them onto the loaded CT volume
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, ct_node)
        assert int(np.count_nonzero(mask)) == f.mask.voxel_count
        expected = _voxels(f.mask.paste(case.ct.shape))
        assert _in_ct_voxels(mask, ct_node, case.ct.geometry) == expected


def test_segmentation_with_two_layers_loads(scene, case, tmp_path):
    result = truth_result(case)
    grown = ndimage.binary_dilation(result.findings[0].mask.paste(case.ct.shape), iterations=1)
    findings = (*result.findings[:2], finding_from_mask(3, grown, case.ct, 0.8, 0.3))
    result = dataclasses.replace(
        result, findings=findings, summary=PatientSummary.of(findings, result.thresholds)
    )
    path = write_segmentation(result, tmp_path / "layers.seg.nrrd")
    ct_node = _load_ct(scene, case, tmp_path)
    node = scene.segmentations.LoadSegmentationFromFile(str(path), False)
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfLayers() == 2
    for f in findings:
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, f"Nodule_{f.number}", ct_node)
        expected = _voxels(f.mask.paste(case.ct.shape))
        assert _in_ct_voxels(mask, ct_node, case.ct.geometry) == expected


def test_markups_load_at_ras_positions_with_band_colours(scene, case, tmp_path):
    result = truth_result(case, Thresholds(malignancy=0.6))
    path = write_markups_json(result, tmp_path / "findings.mrk.json")
    assert scene.markups.LoadMarkups(str(path)) is not None
    nodes = list(scene.scene.GetNodesByClass("vtkMRMLMarkupsFiducialNode"))
    bands = {f.band(0.6) for f in result.findings}
    assert len(bands) == 3
    assert sorted(n.GetName() for n in nodes) == sorted(band_list_name(b) for b in bands)
    seen = {}
    for node in nodes:
        band = next(b for b in bands if band_list_name(b) == node.GetName())
        display = node.GetDisplayNode()
        np.testing.assert_allclose(display.GetSelectedColor(), BAND_COLORS_RGB[band], atol=1e-4)
        np.testing.assert_allclose(display.GetColor(), BAND_COLORS_RGB[band], atol=1e-4)
        for k in range(node.GetNumberOfControlPoints()):
            position = [0.0, 0.0, 0.0]
            node.GetNthControlPointPosition(k, position)
            seen[node.GetNthControlPointLabel(k)] = (band, position, node, k)
    assert sorted(seen) == sorted(f"N{f.number}" for f in result.findings)
    for f in result.findings:
        band, position, node, k = seen[f"N{f.number}"]
        assert band is f.band(0.6)
        np.testing.assert_allclose(position, lps_to_ras(f.center_lps), atol=1e-3)
        assert node.GetNthControlPointDescription(k).startswith(f.label())


def test_markups_without_findings_load_as_one_empty_list(scene, case, tmp_path):
    path = write_markups_json(empty_result(case.ct), tmp_path / "none.mrk.json")
    assert scene.markups.LoadMarkups(str(path)) is not None
    nodes = list(scene.scene.GetNodesByClass("vtkMRMLMarkupsFiducialNode"))
    assert len(nodes) == 1 and nodes[0].GetNumberOfControlPoints() == 0
