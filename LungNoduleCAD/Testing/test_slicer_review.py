"""The review workflow and the scene hygiene of issue 15 against a real MRML scene (slicer-core).

The CT is a phantom crop whose real detection (run once, slicer_phantoms.CachedRunner) gives
three findings at nodule threshold 0.1 and two at 0.2: finding 3 at 0.1 (the phantom's nodule)
is finding 2 at 0.2, and finding 1 at 0.1 is gone at 0.2.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import slicer
import slicer_phantoms
from LungNoduleCADLib.findings_table import TABLE_COLUMNS
from LungNoduleCADLib.logic import RunRequest
from LungNoduleCADLib.module_logic import NOTHING_SHOWN, ModuleLogic
from LungNoduleCADLib.review import (
    FINDING_COLUMN,
    REJECTED_POINT_COLOR,
    ReviewState,
    Step,
    export_review,
    parse_finding_number,
    point_label,
    step_row,
)
from LungNoduleCADLib.scene import REVIEW_TAG, finding_ras, segment_tag
from LungNoduleCADLib.volume import add_volume_node_from_ct, ct_from_volume_node

from lungcad.lungrads.category import DECISION_SUPPORT as LUNG_RADS_DECISION_SUPPORT
from lungcad.lungrads.category import LungRadsCategory
from lungcad.pipeline import BAND_COLORS_RGB

LOW, HIGH = 0.1, 0.2  # nodule thresholds: three findings, then two


@pytest.fixture(scope="module")
def ct():
    return slicer_phantoms.nodule_crop(0)


def _processed(mrml, volume) -> tuple[ModuleLogic, types.SimpleNamespace]:
    """The module logic after a (cached) run on ``volume`` at nodule threshold LOW, and the
    panel's parameters it ran with."""
    parameters = types.SimpleNamespace(
        inputVolume=volume,
        device="cpu",
        modelFolder="",
        segmentationThreshold=0.5,
        noduleThreshold=LOW,
        malignancyThreshold=0.5,
    )
    logic = ModuleLogic(runner=slicer_phantoms.CachedRunner(), services=lambda: mrml)
    logic.process(parameters)
    return logic, parameters


@pytest.fixture
def shown(mrml, ct):
    """The module logic after a run on the phantom at nodule threshold LOW."""
    volume = add_volume_node_from_ct(mrml.scene, ct)
    logic, parameters = _processed(mrml, volume)
    assert logic.findingNumbers() == [1, 2, 3]
    return types.SimpleNamespace(logic=logic, parameters=parameters, volume=volume)


def _set_nodule_threshold(shown, value: float) -> None:
    shown.parameters.noduleThreshold = value
    shown.logic.updateThresholds(shown.parameters)


def _header(table_node, column: int) -> str:
    """The header qMRMLTableModel draws for a column: "title [unit]" (Slicer's own rule)."""
    name = table_node.GetTable().GetColumnName(column)
    title = table_node.GetColumnTitle(name) or name
    unit = table_node.GetColumnUnitLabel(name)
    return f"{title} [{unit}]" if unit else title


def _point(shown, number: int):
    """(points node, index) of finding ``number``'s control point."""
    for node in shown.logic.core.outputs.points.values():
        for index in range(node.GetNumberOfControlPoints()):
            if node.GetNthControlPointLabel(index).split(" ")[0] == str(number):
                return node, index
    raise AssertionError(f"no point for finding {number}")


def _segment(shown, number: int):
    node = shown.logic.core.outputs.segmentation
    table = shown.logic.core.outputs.table.GetTable()
    row = shown.logic.findingNumbers().index(number)
    sid = table.GetValueByName(row, "Segment").ToString()
    return node.GetSegmentation().GetSegment(sid), node.GetDisplayNode(), sid


# -- the table ---------------------------------------------------------------------------------
def test_the_table_has_real_headers_with_units(shown):
    table = shown.logic.core.outputs.table
    assert bool(table.GetUseColumnTitleAsColumnHeader()) is True
    headers = [_header(table, c) for c in range(table.GetNumberOfColumns())]
    assert headers == [
        "Finding",
        "Name",
        "Band",
        "Malignancy [probability]",
        "Nodule [probability]",
        "Lung-RADS",
        "Type",
        "Mean diameter [mm]",
        "Diameter [mm]",
        "Volume [mm3]",
        "Mean HU [HU]",
        "R [mm]",
        "A [mm]",
        "S [mm]",
        "Segment",
        "Review",
    ]
    assert len(headers) == len(TABLE_COLUMNS)
    assert [table.GetCellText(row, 0) for row in range(table.GetNumberOfRows())] == ["1", "2", "3"]


def _column(table_node, name: str) -> list:
    table = table_node.GetTable()
    values = [table.GetValueByName(row, name) for row in range(table.GetNumberOfRows())]
    return [v.ToDouble() if v.IsNumeric() else v.ToString() for v in values]


def test_lung_rads_type_and_mean_diameter_columns_follow_the_thresholds(shown):
    """The crop's findings at LOW: 10.7, 6.9 and 26.0 mm, all solid by assumption (no type
    classifier yet): 4A, 3 and 4B; at HIGH the 10.7 mm one is gone."""
    table = shown.logic.core.outputs.table
    assert _column(table, "Lung-RADS") == ["4A", "3", "4B"]
    assert _column(table, "Type") == ["solid (assumed)"] * 3
    assert _column(table, "Mean diameter") == [10.7, 6.9, 26.0]
    _set_nodule_threshold(shown, HIGH)
    assert _column(table, "Lung-RADS") == ["3", "4B"]
    assert _column(table, "Type") == ["solid (assumed)"] * 2
    assert _column(table, "Mean diameter") == [6.9, 26.0]


def test_the_summary_shows_the_exam_category_and_its_management_live(shown):
    logic, parameters = shown.logic, shown.parameters
    first, exam, *_ = logic.shownFindings(parameters).summary.splitlines()
    assert first.startswith("3 nodules found (largest 21 mm)")
    assert exam == (
        f"Lung-RADS 4B (Very suspicious): {LungRadsCategory.C4B.management} "
        f"Type assumed solid for 3 findings. {LUNG_RADS_DECISION_SUPPORT}"
    )
    _set_nodule_threshold(shown, HIGH)
    exam = logic.shownFindings(parameters).summary.splitlines()[1]
    assert "Lung-RADS 4B (Very suspicious)" in exam and "for 2 findings." in exam
    _set_nodule_threshold(shown, 0.999)  # above every finding: none left, category 1
    first, exam, *_ = logic.shownFindings(parameters).summary.splitlines()
    assert first == "No nodule found above the current thresholds."
    assert exam == (
        f"Lung-RADS 1 ({LungRadsCategory.C1.descriptor}): {LungRadsCategory.C1.management} "
        f"{LUNG_RADS_DECISION_SUPPORT}"
    )


def test_each_point_description_carries_its_category(shown):
    for number, category in ((1, "4A"), (2, "3"), (3, "4B")):
        node, index = _point(shown, number)
        assert f", Lung-RADS {category} (" in node.GetNthControlPointDescription(index)
    _set_nodule_threshold(shown, HIGH)
    node, index = _point(shown, 2)
    assert ", Lung-RADS 4B (" in node.GetNthControlPointDescription(index)


def test_a_click_on_every_row_finds_its_finding_and_other_cells_none(shown):
    table = shown.logic.core.outputs.table
    for row in range(table.GetNumberOfRows()):
        target = shown.logic.targetAtCell(table.GetCellText(row, FINDING_COLUMN))
        assert (target.row, target.number) == (row, row + 1)
    for text in ("Finding", "", None, "0", "-2", "2.5", "99", "A"):
        assert shown.logic.targetAtCell(text) is None, text


def test_the_table_shows_nothing_once_the_scene_closes_or_the_input_changes(shown, mrml, ct):
    logic, parameters = shown.logic, shown.parameters
    table = logic.core.outputs.table
    assert logic.shownFindings(parameters).table is table
    assert logic.shownFindings(parameters).summary == logic.core.summary_text()
    parameters.inputVolume = add_volume_node_from_ct(mrml.scene, ct, name="other")
    assert logic.shownFindings(parameters) == NOTHING_SHOWN
    parameters.inputVolume = shown.volume
    assert logic.shownFindings(parameters).table is table
    mrml.scene.Clear(0)
    assert logic.shownFindings(parameters) == NOTHING_SHOWN, "even before the logic is reset"
    logic.reset()
    assert logic.shownFindings(parameters) == NOTHING_SHOWN
    assert logic.findingNumbers() == [] and logic.exportReview() == {}


# -- positions ---------------------------------------------------------------------------------
def test_jump_positions_are_world_coordinates_of_a_transformed_ct(mrml, ct):
    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    angle = np.radians(30.0)
    matrix = np.array(
        [
            [np.cos(angle), -np.sin(angle), 0.0, 40.0],
            [np.sin(angle), np.cos(angle), 0.0, -15.0],
            [0.0, 0.0, 1.0, 7.5],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(matrix))
    volume = add_volume_node_from_ct(mrml.scene, ct)
    volume.SetAndObserveTransformNodeID(transform.GetID())
    logic, _ = _processed(mrml, volume)
    findings = logic.core.result.findings
    assert len(findings) == 3
    for finding in findings:
        target = logic.target(finding.number)
        local = finding_ras(finding)
        expected = (matrix @ np.append(local, 1.0))[:3]
        np.testing.assert_allclose(target.world, expected, atol=1e-6)
        assert np.linalg.norm(np.subtract(target.world, local)) > 10.0
        node = next(
            n
            for n in logic.core.outputs.points.values()
            for i in range(n.GetNumberOfControlPoints())
            if n.GetNthControlPointLabel(i) == str(finding.number)
        )
        index = next(
            i
            for i in range(node.GetNumberOfControlPoints())
            if node.GetNthControlPointLabel(i) == str(finding.number)
        )
        world = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(index, world)
        np.testing.assert_allclose(target.world, world, atol=1e-6)


def test_next_and_previous_walk_the_rows_and_wrap_around(shown):
    logic = shown.logic
    assert [logic.step(None, Step.NEXT).number, logic.step(None, Step.PREVIOUS).number] == [1, 3]
    assert [logic.step(n, Step.NEXT).row for n in (1, 2, 3)] == [1, 2, 0]
    assert [logic.step(n, Step.PREVIOUS).number for n in (1, 2, 3)] == [3, 1, 2]
    assert logic.step(42, Step.NEXT).number == 1, "a number no longer shown starts again"
    target = logic.step(1, Step.NEXT)
    np.testing.assert_allclose(target.world, finding_ras(logic.core.result.findings[1]))


# -- review states -----------------------------------------------------------------------------
def test_review_states_survive_a_threshold_change_and_reach_the_export_data(shown):
    logic = shown.logic
    logic.setReview(1, ReviewState.REJECTED)
    logic.setReview(3, ReviewState.ACCEPTED)
    assert logic.exportReview() == {1: "rejected", 2: "unreviewed", 3: "accepted"}
    _set_nodule_threshold(shown, HIGH)  # finding 1 drops out, 3 becomes 2
    assert logic.findingNumbers() == [1, 2]
    assert logic.exportReview() == {1: "unreviewed", 2: "accepted"}
    table = logic.core.outputs.table.GetTable()
    assert [table.GetValueByName(r, "Review").ToString() for r in range(2)] == [
        "unreviewed",
        "accepted",
    ]
    _set_nodule_threshold(shown, LOW)  # the rejected one comes back rejected
    assert logic.exportReview() == {1: "rejected", 2: "unreviewed", 3: "accepted"}
    table = logic.core.outputs.table.GetTable()
    assert [table.GetValueByName(r, "Review").ToString() for r in range(3)] == [
        "rejected",
        "unreviewed",
        "accepted",
    ]


def test_the_export_writes_the_review_into_results_json_and_the_findings_csv(shown, tmp_path):
    import csv
    import json

    logic = shown.logic
    logic.setReview(1, ReviewState.REJECTED)
    logic.setReview(3, ReviewState.ACCEPTED)
    saved = logic.core.export(tmp_path, review=logic.exportReview())
    results = json.loads(saved.results.read_text(encoding="utf-8"))
    assert results["review"] == {"1": "rejected", "2": "unreviewed", "3": "accepted"}
    with open(saved.folder / "slicer" / "findings.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["Review"] for r in rows] == ["rejected", "unreviewed", "accepted"]


def test_review_states_are_read_back_from_the_table_by_a_new_logic(shown, mrml):
    shown.logic.setReview(1, ReviewState.REJECTED)
    shown.logic.setReview(3, ReviewState.ACCEPTED)
    table = shown.logic.core.outputs.table
    again = ModuleLogic(runner=slicer_phantoms.CachedRunner(), services=lambda: mrml)
    again.process(shown.parameters)  # a module reload, then Apply on the same volume
    assert again.core.outputs.table is table
    assert again.exportReview() == {1: "rejected", 2: "unreviewed", 3: "accepted"}


def test_review_states_show_on_segments_and_points(shown):
    logic = shown.logic
    logic.setReview(1, ReviewState.REJECTED)
    logic.setReview(3, ReviewState.ACCEPTED)
    expected = {1: ReviewState.REJECTED, 2: ReviewState.UNREVIEWED, 3: ReviewState.ACCEPTED}
    opacity = {ReviewState.REJECTED: 0.2, ReviewState.UNREVIEWED: 1.0, ReviewState.ACCEPTED: 1.0}
    for number, state in expected.items():
        segment, display, sid = _segment(shown, number)
        assert segment_tag(segment, REVIEW_TAG) == state.value
        assert display.GetSegmentOpacity3D(sid) == pytest.approx(opacity[state])
        node, index = _point(shown, number)
        assert node.GetNthControlPointLabel(index) == point_label(number, state)
        assert bool(node.GetNthControlPointSelected(index)) is (state is not ReviewState.REJECTED)
        band = next(b for b, n in logic.core.outputs.points.items() if n is node)
        display = node.GetDisplayNode()
        np.testing.assert_allclose(display.GetColor(), REJECTED_POINT_COLOR)
        np.testing.assert_allclose(display.GetSelectedColor(), BAND_COLORS_RGB[band])
    logic.setReview(1, ReviewState.UNREVIEWED)  # taken back
    node, index = _point(shown, 1)
    assert (node.GetNthControlPointLabel(index), node.GetNthControlPointSelected(index)) == (
        "1",
        True,
    )
    with pytest.raises(KeyError, match="no finding number 7"):
        logic.setReview(7, ReviewState.ACCEPTED)


def test_the_review_buttons_toggle_and_ignore_unknown_findings(shown):
    logic = shown.logic
    assert logic.toggleReview(2, ReviewState.ACCEPTED).row == 1
    assert logic.exportReview()[2] == "accepted"
    logic.toggleReview(2, ReviewState.REJECTED)
    assert logic.exportReview()[2] == "rejected", "the other button changes the decision"
    logic.toggleReview(2, ReviewState.REJECTED)
    assert logic.exportReview()[2] == "unreviewed", "the same button takes it back"
    assert logic.toggleReview(None, ReviewState.ACCEPTED) is None
    assert logic.toggleReview(9, ReviewState.ACCEPTED) is None
    assert set(logic.exportReview().values()) == {"unreviewed"}


def test_the_3d_toggle_switches_the_segments_surfaces(shown):
    display = shown.logic.core.outputs.segmentation.GetDisplayNode()
    shown.logic.showSegmentsIn3D(False)
    assert not display.GetVisibility3D()
    shown.logic.showSegmentsIn3D(True)
    assert display.GetVisibility3D()
    segmentation = shown.logic.core.outputs.segmentation.GetSegmentation()
    assert segmentation.ContainsRepresentation("Closed surface")


# -- DICOM -------------------------------------------------------------------------------------
def test_a_dicom_series_uid_is_read_and_outputs_go_under_the_study(mrml, ct):
    volume = add_volume_node_from_ct(mrml.scene, ct.__class__(ct.hu, ct.geometry, None))
    assert ct_from_volume_node(volume).series_uid is None
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml.scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Patient")
    study = sh.CreateStudyItem(patient, "Study")
    item = sh.GetItemByDataNode(volume) or sh.CreateItem(study, volume)  # Slicer's DICOM loader
    sh.SetItemParent(item, study)
    uid_name = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName()
    sh.SetItemUID(item, uid_name, "1.2.826.0.1.3680043.8.498.77")
    assert ct_from_volume_node(volume).series_uid == "1.2.826.0.1.3680043.8.498.77"
    logic = ModuleLogic(runner=slicer_phantoms.CachedRunner(), services=lambda: mrml)
    outputs = logic.core.run(volume, RunRequest())
    for node in outputs.all():
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == study, node.GetName()


# -- the pure parts ----------------------------------------------------------------------------
def test_step_row_and_parsing():
    assert [step_row(None, 0, Step.NEXT), step_row(3, 0, Step.PREVIOUS)] == [None, None]
    assert [step_row(None, 4, Step.NEXT), step_row(None, 4, Step.PREVIOUS)] == [0, 3]
    assert [step_row(3, 4, Step.NEXT), step_row(0, 4, Step.PREVIOUS)] == [0, 3]
    assert step_row(9, 4, Step.NEXT) == 0
    assert [parse_finding_number(v) for v in (" 12 ", "12", 3, "x", None, "0")] == [
        12,
        12,
        3,
        None,
        None,
        None,
    ]
    assert export_review({2: ReviewState.ACCEPTED, 1: ReviewState.UNREVIEWED}) == {
        1: "unreviewed",
        2: "accepted",
    }


def test_export_starts_in_a_user_folder_not_the_working_folder(tmp_path):
    from LungNoduleCADLib.parameters import default_export_folder

    scenes = tmp_path / "SlicerScenes"
    assert default_export_folder(str(scenes)) == scenes / "LungNoduleCAD"
    assert default_export_folder(None, home=tmp_path) == tmp_path / "LungNoduleCAD"
    (tmp_path / "Documents").mkdir()
    assert default_export_folder("", home=tmp_path) == tmp_path / "Documents" / "LungNoduleCAD"
