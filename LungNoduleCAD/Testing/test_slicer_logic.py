"""The module logic against a real MRML scene: volume in, real detection, findings out.

Runs under pytest with the PyPI ``slicer-core`` package (a standalone scene with the Volumes,
Segmentations, Markups and Tables logics registered) and unchanged inside a real Slicer, where
the module's test class (LungNoduleCAD.py) runs this file against ``slicer.mrmlScene``:

    Slicer --no-main-window --testing --python-code "import slicer.testing; \
        slicer.testing.runUnitTest(['LungNoduleCAD', 'LungNoduleCAD/Testing'], 'test_slicer_logic')"

Detection is the real cascade with the bundled weights on 70 mm phantom crops, run once per CT
(slicer_phantoms.CachedRunner); assertions check structure, never detection quality.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import threading
import unittest
from pathlib import Path

import numpy as np
import slicer
import slicer_phantoms
import vtk
from LungNoduleCADLib import parameters
from LungNoduleCADLib.findings_table import TABLE_COLUMNS
from LungNoduleCADLib.logic import LungNoduleCADCore, RunRequest
from LungNoduleCADLib.mrml import SlicerServices, in_slicer_application, slicer_globals
from LungNoduleCADLib.output_nodes import OUTPUT_ATTRIBUTE
from LungNoduleCADLib.review import REJECTED_POINT_COLOR
from LungNoduleCADLib.scene import FINDING_TAG, NODULE_TERMINOLOGY, segment_tag
from LungNoduleCADLib.storage import (
    SEGMENTATION_KIND,
    TABLE_FILE,
    TABLE_KIND,
    points_file,
    points_kind,
)
from LungNoduleCADLib.volume import (
    add_volume_node_from_ct,
    ct_from_volume_node,
    voxel_to_ras,
)

from lungcad.geometry import lps_to_ras, voxel_to_world
from lungcad.pipeline import (
    BAND_COLORS_RGB,
    MIN_NODULE_THRESHOLD,
    MIN_SEGMENTATION_THRESHOLD,
    DetectionCancelled,
    MalignancyBand,
    Thresholds,
    malignancy_color,
)
from lungcad.reports import read_results

POSITION_TOLERANCE_MM = 1e-3


class LungNoduleCADLogicTest(unittest.TestCase):
    """Each test gets a clean scene; detection results are shared through the session cache."""

    def setUp(self) -> None:
        self._stack = contextlib.ExitStack()
        if in_slicer_application():
            slicer.mrmlScene.Clear(0)
            self.services = SlicerServices.from_application()
        else:
            self.services = self._stack.enter_context(slicer_globals(SlicerServices.standalone()))
        self.scene = self.services.scene
        self.runner = slicer_phantoms.CachedRunner()
        self.core = LungNoduleCADCore(self.services, runner=self.runner)
        self.tmp = Path(tempfile.mkdtemp(prefix="lungcad-slicer-test-"))

    def tearDown(self) -> None:
        self.scene.Clear(0)
        self._stack.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------------
    def load_volume(self, ct, name="CT"):
        return add_volume_node_from_ct(self.scene, ct, name=name)

    def run_on_crop(self, ct=None, thresholds=None):
        volume = self.load_volume(ct or slicer_phantoms.nodule_crop(0))
        outputs = self.core.run(volume, RunRequest(thresholds=thresholds or Thresholds()))
        return volume, outputs, self.core.result

    def assert_nodes_match(self, outputs, result):
        """Segments, points and table rows are exactly the result's findings."""
        findings = result.findings
        segmentation = outputs.segmentation.GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), len(findings))
        for index, finding in enumerate(findings):
            segment = segmentation.GetNthSegment(index)
            self.assertEqual(segment.GetName(), finding.label())
            np.testing.assert_allclose(segment.GetColor(), malignancy_color(finding.p_malignant))
            self.assertEqual(segment_tag(segment, FINDING_TAG), str(finding.number))
            self.assertEqual(
                segment_tag(segment, segment.GetTerminologyEntryTagName()), NODULE_TERMINOLOGY
            )
        total = 0
        for band, node in outputs.points.items():
            display = node.GetDisplayNode()
            np.testing.assert_allclose(display.GetSelectedColor(), BAND_COLORS_RGB[band])
            # unselected points are the rejected findings' (LungNoduleCADLib.review)
            np.testing.assert_allclose(display.GetColor(), REJECTED_POINT_COLOR)
            expected = [f for f in findings if f.band(result.thresholds.malignancy) is band]
            self.assertEqual(node.GetNumberOfControlPoints(), len(expected))
            for i, finding in enumerate(expected):
                self.assertEqual(node.GetNthControlPointLabel(i), str(finding.number))
                description = node.GetNthControlPointDescription(i)
                self.assertIn(f"diameter {finding.diameter_mm:.1f} mm", description)
                self.assertIn(f"volume {finding.volume_mm3:.0f} mm3", description)
                self.assertIn(f"p(nodule) {finding.p_nodule:.2f}", description)
                self.assertIn(f"p(malignant) {finding.p_malignant:.2f}", description)
            total += len(expected)
        self.assertEqual(total, len(findings))
        table = outputs.table
        self.assertEqual(table.GetNumberOfRows(), len(findings))
        self.assertEqual(
            [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())],
            [name for name, _, _ in TABLE_COLUMNS],
        )
        for row, finding in enumerate(findings):
            self.assertEqual(int(table.GetCellText(row, 0)), finding.number)
            self.assertEqual(table.GetCellText(row, 1), finding.label())
            self.assertEqual(
                table.GetCellText(row, 2), finding.band(result.thresholds.malignancy).value
            )
            self.assertAlmostEqual(float(table.GetCellText(row, 3)), finding.p_malignant, places=5)

    def assert_positions_match_voxels(self, volume, outputs, result):
        """Each point sits at the IJK-to-RAS image of the voxel position its finding came from,
        and each segment holds exactly its finding's voxels in the volume's own grid."""
        by_number = {f.number: f for f in result.findings}
        for node in outputs.points.values():
            for i in range(node.GetNumberOfControlPoints()):
                finding = by_number[int(node.GetNthControlPointLabel(i))]
                ras = np.array(node.GetNthControlPointPosition(i))
                from_voxel = voxel_to_ras(volume, finding.center_irc[::-1])
                np.testing.assert_allclose(ras, from_voxel, atol=POSITION_TOLERANCE_MM)
                np.testing.assert_allclose(
                    ras, lps_to_ras(finding.center_lps), atol=POSITION_TOLERANCE_MM
                )
        segmentation = outputs.segmentation
        for index, finding in enumerate(result.findings):
            segment_id = segmentation.GetSegmentation().GetNthSegmentID(index)
            voxels = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, volume)
            np.testing.assert_array_equal(voxels > 0, finding.mask.paste(result.geometry.shape_irc))

    # -- volume conversion -----------------------------------------------------------------------
    def test_volume_round_trip_keeps_voxels_and_geometry(self):
        crop = slicer_phantoms.nodule_crop(0)
        flipped = slicer_phantoms.reoriented(crop, np.diag([-1.0, 1.0, -1.0]), "flipped")
        for ct in (crop, flipped, slicer_phantoms.oblique_flipped(crop)):
            volume = self.load_volume(ct)
            back = ct_from_volume_node(volume)
            np.testing.assert_array_equal(back.hu, ct.hu)
            np.testing.assert_allclose(back.geometry.origin_xyz, ct.geometry.origin_xyz, atol=1e-6)
            np.testing.assert_allclose(
                back.geometry.spacing_xyz, ct.geometry.spacing_xyz, atol=1e-9
            )
            np.testing.assert_allclose(back.geometry.direction, ct.geometry.direction, atol=1e-9)
            for irc in ((0, 0, 0), (3, 11, 17), tuple(n - 1 for n in ct.shape)):
                expected = lps_to_ras(voxel_to_world(irc, ct.geometry))
                np.testing.assert_allclose(voxel_to_ras(volume, irc[::-1]), expected, atol=1e-6)

    # -- run -------------------------------------------------------------------------------------
    def test_run_shows_findings_as_segments_points_and_table(self):
        volume, outputs, result = self.run_on_crop()
        self.assertEqual(self.runner.calls, 1)
        self.assertGreater(len(result.findings), 0, "the bundled weights found nothing to check")
        self.assert_nodes_match(outputs, result)
        self.assert_positions_match_voxels(volume, outputs, result)
        self.assertEqual(
            outputs.segmentation.GetNodeReferenceID(
                slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
            ),
            volume.GetID(),
        )
        for node in outputs.all():
            self.assertTrue(node.GetAttribute(OUTPUT_ATTRIBUTE))

    def test_summary_text_shows_each_warning_of_the_result(self):
        volume, _, result = self.run_on_crop()
        self.assertEqual(self.core.summary_text().splitlines()[0], result.summary.text)
        warnings = (  # what lungcad.pipeline.input_checks says of a 5 mm CTA, one model named
            "5.0 mm slices: the malignancy model was trained on 0.6-2.5 mm (detection on "
            "0.6-5.0 mm); its malignancy scores are less reliable",
            "Contrast-enhanced scan (blood pool about 178 HU): the malignancy model was trained "
            "without contrast; its malignancy scores are less reliable",
        )
        warned = dataclasses.replace(result, warnings=warnings)
        self.core.show_result(volume, warned)
        self.assertEqual(
            self.core.summary_text(),
            "\n".join(
                [
                    result.summary.text,
                    result.summary.lung_rads.text,
                    *(f"Warning: {w}" for w in warnings),
                ]
            ),
        )
        self.core.update_thresholds(Thresholds(0.6, 0.4, 0.3))  # refiltering keeps them
        self.assertIn("Warning: 5.0 mm slices", self.core.summary_text())

    def test_oblique_flipped_volume_points_and_segments_sit_on_their_voxels(self):
        ct = slicer_phantoms.oblique_flipped(slicer_phantoms.nodule_crop(0))
        volume, outputs, result = self.run_on_crop(ct)
        self.assertGreater(len(result.findings), 0, "the bundled weights found nothing to check")
        self.assert_nodes_match(outputs, result)
        self.assert_positions_match_voxels(volume, outputs, result)

    def test_thresholds_refilter_without_running_a_network(self):
        _, outputs, result = self.run_on_crop()
        floor = result.min_nodule_threshold  # the nodule slider's lowest value
        self.assertEqual(floor, MIN_NODULE_THRESHOLD)
        scores = sorted({c.p_nodule for c in result.candidates if c.p_nodule >= floor})
        self.assertGreater(len(scores), 1, "need two candidate scores to move the nodule slider")
        middle = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2
        counts = []
        for nodule in (floor, middle, 1.0):
            updated = self.core.update_thresholds(Thresholds(0.5, nodule, 0.5))
            # candidates outside the lung are never findings, even at the lowest nodule threshold
            expected = sum(c.in_lung and c.p_nodule >= nodule for c in updated.candidates)
            self.assertEqual(len(updated.findings), expected)
            self.assert_nodes_match(self.core.outputs, updated)
            counts.append(len(updated.findings))
        self.assertGreater(counts[0], counts[1])
        self.assertEqual(counts[2], sum(c.in_lung and c.p_nodule >= 1.0 for c in result.candidates))
        # the malignancy slider moves points between bands, never hides a finding
        low = self.core.update_thresholds(Thresholds(0.5, floor, 0.0))
        high = self.core.update_thresholds(Thresholds(0.5, floor, 1.0))
        self.assertEqual(len(low.findings), len(high.findings))
        points = self.core.outputs.points
        self.assertEqual(
            points[MalignancyBand.SUSPICIOUS].GetNumberOfControlPoints(),
            sum(f.p_malignant >= 1.0 for f in high.findings),
        )
        self.assert_nodes_match(self.core.outputs, high)
        values = sorted({f.p_malignant for f in low.findings})
        if len(values) > 1:  # a threshold between two scores splits the points over two bands
            split = (values[0] + values[-1]) / 2
            mixed = self.core.update_thresholds(Thresholds(0.5, floor, split))
            bands = {f.band(split) for f in mixed.findings}
            self.assertIn(MalignancyBand.SUSPICIOUS, bands)
            self.assertGreater(len(bands), 1)
            self.assert_nodes_match(self.core.outputs, mixed)
        # neither slider can go below the floor the result kept
        with self.assertRaises(ValueError):
            self.core.update_thresholds(Thresholds(MIN_SEGMENTATION_THRESHOLD / 2, 0.5, 0.5))
        with self.assertRaises(ValueError):
            self.core.update_thresholds(Thresholds(0.5, MIN_NODULE_THRESHOLD / 2, 0.5))
        self.assertEqual(self.runner.calls, 1, "threshold changes must not run detection")
        self.assertEqual(self.core.outputs.segmentation, outputs.segmentation)

    def test_rerun_replaces_only_the_modules_own_nodes(self):
        other_volume = self.load_volume(slicer_phantoms.nodule_crop(1), name="other CT")
        user_segmentation = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "user seg")
        user_segmentation.GetSegmentation().AddEmptySegment("mine", "mine")
        user_points = self.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "user points")
        user_points.AddControlPoint(vtk.vtkVector3d(1, 2, 3), "p")
        user_table = self.scene.AddNewNodeByClass("vtkMRMLTableNode", "user table")
        volume, first, _ = self.run_on_crop()
        nodes_after_first = self.scene.GetNumberOfNodes()
        first_ids = [n.GetID() for n in first.all()]
        second = self.core.run(volume, RunRequest(thresholds=Thresholds(0.5, 0.3, 0.5)))
        self.assertEqual(self.scene.GetNumberOfNodes(), nodes_after_first)
        self.assertEqual([n.GetID() for n in second.all()], first_ids)
        self.assert_nodes_match(second, self.core.result)
        self.assertEqual(user_segmentation.GetSegmentation().GetNumberOfSegments(), 1)
        self.assertEqual(user_points.GetNumberOfControlPoints(), 1)
        self.assertEqual(user_table.GetNumberOfRows(), 0)
        for node in (user_segmentation, user_points, user_table, other_volume):
            self.assertIsNone(node.GetAttribute(OUTPUT_ATTRIBUTE))
            self.assertIs(self.scene.GetNodeByID(node.GetID()), node)

    def test_cancelled_run_leaves_the_scene_unchanged(self):
        volume = self.load_volume(slicer_phantoms.nodule_crop(0))
        before = self.scene.GetNumberOfNodes()
        cancel = threading.Event()
        cancel.set()
        with self.assertRaises(DetectionCancelled):
            self.core.run(volume, RunRequest(), cancel=cancel)
        self.assertEqual(self.scene.GetNumberOfNodes(), before)
        self.assertIsNone(self.core.result)

    def test_saved_findings_load_back(self):
        _, outputs, result = self.run_on_crop()
        nodes_before = self.scene.GetNumberOfNodes()
        saved = self.core.save(self.tmp / "case", case_id="case")
        self.assertEqual(self.scene.GetNumberOfNodes(), nodes_before, "saving adds no node")
        doc = read_results(saved.results)  # the files `lungcad detect` writes, then Slicer's
        self.assertEqual(doc["case_id"], "case")
        self.assertEqual(doc["summary"]["finding_count"], len(result.findings))
        self.assertEqual(
            {k: v for k, v in doc["outputs"].items() if k.startswith("slicer_")},
            {k: p.relative_to(saved.folder).as_posix() for k, p in saved.extra.items()},
        )
        self.assertEqual(saved.extra[TABLE_KIND].name, TABLE_FILE)
        loaded = self.services.segmentations.LoadSegmentationFromFile(
            str(saved.extra[SEGMENTATION_KIND]), False
        )
        segmentation = loaded.GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), len(result.findings))
        for index, finding in enumerate(result.findings):
            segment = segmentation.GetNthSegment(index)
            self.assertEqual(segment.GetName(), finding.label())
            np.testing.assert_allclose(
                segment.GetColor(), malignancy_color(finding.p_malignant), atol=1e-6
            )
            voxels = slicer.util.arrayFromSegmentBinaryLabelmap(
                loaded, segmentation.GetNthSegmentID(index), self.core.volume_node
            )
            np.testing.assert_array_equal(voxels > 0, finding.mask.paste(result.geometry.shape_irc))
        for band in MalignancyBand:
            path = saved.extra[points_kind(band)]
            self.assertEqual(path.name, points_file(band))
            node = self.scene.GetNodeByID(self.services.markups.LoadMarkups(str(path)))
            original = outputs.points[band]
            self.assertEqual(node.GetNumberOfControlPoints(), original.GetNumberOfControlPoints())
            for i in range(node.GetNumberOfControlPoints()):
                np.testing.assert_allclose(
                    node.GetNthControlPointPosition(i),
                    original.GetNthControlPointPosition(i),
                    atol=1e-3,
                )
                self.assertEqual(
                    node.GetNthControlPointLabel(i), original.GetNthControlPointLabel(i)
                )
            np.testing.assert_allclose(
                node.GetDisplayNode().GetSelectedColor(), BAND_COLORS_RGB[band], atol=1e-3
            )
        table = self.services.tables.AddTable(str(saved.extra[TABLE_KIND]))
        self.assertEqual(table.GetNumberOfRows(), len(result.findings))
        for row, finding in enumerate(result.findings):
            self.assertEqual(int(table.GetCellText(row, 0)), finding.number)

    def test_parameters_match_the_engine(self):
        self.assertEqual(parameters.MIN_SEGMENTATION_THRESHOLD, MIN_SEGMENTATION_THRESHOLD)
        self.assertEqual(
            parameters.field_range("segmentationThreshold"), (MIN_SEGMENTATION_THRESHOLD, 1.0)
        )
        self.assertEqual(parameters.MIN_NODULE_THRESHOLD, MIN_NODULE_THRESHOLD)
        self.assertEqual(parameters.field_range("noduleThreshold"), (MIN_NODULE_THRESHOLD, 1.0))
        self.assertEqual(parameters.field_range("malignancyThreshold"), (0.0, 1.0))
        defaults = Thresholds()
        p = parameters.LungNoduleCADParameters
        self.assertEqual(
            parameters.thresholds_of(p),
            Thresholds(defaults.segmentation, defaults.nodule, defaults.malignancy),
        )


if __name__ == "__main__":
    unittest.main()
