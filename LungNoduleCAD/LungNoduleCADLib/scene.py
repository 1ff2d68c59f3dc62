"""The module's output nodes: one segmentation, three band point lists and a findings table.

Every node the module creates carries the attribute ``LungNoduleCAD.Output`` (its role) and a
``LungNoduleCAD.InputVolume`` reference to the volume it describes. Re-running on the same volume
reuses exactly those nodes and never touches any other node. Updates after a threshold change are
incremental: segments whose finding survives keep their labelmap, only new findings get one.
Names, colours, terminology and descriptions are the engine's (:mod:`lungcad.pipeline.findings`,
:mod:`lungcad.reports`), so the scene shows what the files say. Files are written by
:mod:`LungNoduleCADLib.storage`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from lungcad.characteristics import TypeSource
from lungcad.ct import Geometry
from lungcad.geometry import lps_to_ras
from lungcad.pipeline import (
    BAND_COLORS_RGB,
    Finding,
    MalignancyBand,
    Thresholds,
    malignancy_color,
)
from lungcad.reports.markups import point_description
from lungcad.reports.segmentation import FINDING_TAG, NODULE_TERMINOLOGY
from LungNoduleCADLib.mrml import place_beside_volume
from LungNoduleCADLib.review import (
    APPEARANCE,
    FINDING_COLUMN,
    REJECTED_POINT_COLOR,
    ReviewBook,
    ReviewState,
    point_label,
)
from LungNoduleCADLib.volume import ijk_to_ras_matrix

log = logging.getLogger(__name__)

OUTPUT_ATTRIBUTE = "LungNoduleCAD.Output"
INPUT_REFERENCE_ROLE = "LungNoduleCAD.InputVolume"
SEGMENTATION_ROLE = "segmentation"
TABLE_ROLE = "table"
#: Segment tag holding the finding's review state (so it travels in .seg.nrrd files).
REVIEW_TAG = "LungNoduleCAD.Review"

#: Findings table: (column name, VTK array class, unit); the view's header shows "name [unit]".
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("Finding", "vtkIntArray", ""),
    ("Name", "vtkStringArray", ""),
    ("Band", "vtkStringArray", ""),
    ("Malignancy", "vtkDoubleArray", "probability"),
    ("Nodule", "vtkDoubleArray", "probability"),
    ("Lung-RADS", "vtkStringArray", ""),
    ("Type", "vtkStringArray", ""),
    ("Mean diameter", "vtkDoubleArray", "mm"),
    ("Diameter", "vtkDoubleArray", "mm"),
    ("Volume", "vtkDoubleArray", "mm3"),
    ("Mean HU", "vtkDoubleArray", "HU"),
    ("R", "vtkDoubleArray", "mm"),
    ("A", "vtkDoubleArray", "mm"),
    ("S", "vtkDoubleArray", "mm"),
    ("Segment", "vtkStringArray", ""),
    ("Review", "vtkStringArray", ""),
)
assert TABLE_COLUMNS[FINDING_COLUMN][0] == "Finding"  # the panel reads numbers there


def lung_rads_cells(finding: Finding) -> tuple[str, str, float]:
    """The table's Lung-RADS, Type and Mean diameter cells: the category, the type it was read
    with ("solid (assumed)" where no classifier gave one, so the reader knows to check it) and
    Lung-RADS' mean diameter; empty / NaN for a finding made outside the pipeline."""
    a, m = finding.lung_rads, finding.measurements
    mean = float("nan") if m is None else m.axes.mean_diameter_mm
    if a is None:
        return "", "", mean
    kind = a.nodule_type.value
    if a.type_source is TypeSource.ASSUMED_SOLID:
        kind += " (assumed)"
    return a.category.value, kind, mean


def points_role(band: MalignancyBand) -> str:
    return f"points:{band.value}"


def finding_ras(finding: Finding) -> np.ndarray:
    """The finding's centre in the volume's RAS frame (the engine reports LPS)."""
    return lps_to_ras(finding.center_lps)


def findings_ras(findings: tuple[Finding, ...]) -> np.ndarray:
    """(N, 3) RAS centres of many findings in one conversion."""
    if not findings:
        return np.zeros((0, 3))
    return np.atleast_2d(lps_to_ras(np.array([f.center_lps for f in findings])))


def _finding_key(finding: Finding) -> tuple:
    """Identity of a finding's region across re-filtering (its number may change)."""
    mask = finding.mask
    return (
        tuple(mask.start_irc),
        tuple(mask.array.shape),
        mask.voxel_count,
        tuple(round(float(v), 3) for v in finding.center_irc),
    )


def _centre_key(ras: Iterable[float]) -> tuple[float, ...]:
    """A finding's centre to 0.01 mm, to find it again in a table written earlier."""
    return tuple(round(float(v), 2) for v in ras)


def _matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def _oriented_image(start_irc: Iterable[int], labels: np.ndarray, ijk_to_ras: Any) -> Any:
    """A vtkOrientedImageData holding ``labels`` (index, row, col) placed at ``start_irc``.

    ``ijk_to_ras`` is the grid's vtkMatrix4x4 (:func:`ijk_to_ras_vtk`), computed once per update.
    """
    k0, j0, i0 = (int(v) for v in start_irc)
    k, j, i = labels.shape
    image = slicer.vtkOrientedImageData()
    image.SetExtent(i0, i0 + i - 1, j0, j0 + j - 1, k0, k0 + k - 1)
    labels = labels.astype(np.uint8) if labels.dtype == np.bool_ else labels
    vtk_type = vtk.VTK_UNSIGNED_CHAR if labels.dtype == np.uint8 else vtk.VTK_UNSIGNED_SHORT
    flat = np.ascontiguousarray(labels).ravel()
    image.GetPointData().SetScalars(
        numpy_support.numpy_to_vtk(flat, deep=True, array_type=vtk_type)
    )
    image.SetImageToWorldMatrix(ijk_to_ras)
    return image


def ijk_to_ras_vtk(geometry: Geometry) -> vtk.vtkMatrix4x4:
    return _matrix(ijk_to_ras_matrix(geometry))


def _style_segment(segment: Any, finding: Finding) -> None:
    """Name, colour and tags of a finding's segment; unchanged values are not set again
    (every setter fires events that the views react to)."""
    name = finding.label()
    if segment.GetName() != name:
        segment.SetName(name)
        segment.SetNameAutoGenerated(False)
    color = malignancy_color(finding.p_malignant)
    if max(abs(a - b) for a, b in zip(segment.GetColor(), color, strict=True)) > 1e-6:
        segment.SetColor(*color)
        segment.SetColorAutoGenerated(False)
    number = str(finding.number)
    if segment_tag(segment, FINDING_TAG) != number:  # a new segment also gets its terminology here
        segment.SetTag(segment.GetTerminologyEntryTagName(), NODULE_TERMINOLOGY)
        segment.SetTag(FINDING_TAG, number)


def segment_tag(segment: Any, name: str) -> str | None:
    """A segment tag's value, or None (VTK returns it through an out-parameter)."""
    value = vtk.reference("")
    return str(value.get()) if segment.GetTag(name, value) else None


def _labelmap_name() -> str:
    return slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()


@dataclass
class OutputNodes:
    """The nodes that show one volume's findings."""

    segmentation: Any
    points: dict[MalignancyBand, Any]
    table: Any

    def all(self) -> list[Any]:
        return [self.segmentation, *self.points.values(), self.table]


def _is_output_of(node: Any, role: str, volume_node: Any) -> bool:
    return (
        node.GetAttribute(OUTPUT_ATTRIBUTE) == role
        and node.GetNodeReferenceID(INPUT_REFERENCE_ROLE) == volume_node.GetID()
    )


def find_output_node(scene: Any, role: str, volume_node: Any) -> Any | None:
    """The module's node with ``role`` for ``volume_node``, or None."""
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if _is_output_of(node, role, volume_node):
            return node
    return None


def output_nodes_of(scene: Any, volume_node: Any) -> list[Any]:
    """Every node the module made for ``volume_node``."""
    found = []
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if node.GetAttribute(OUTPUT_ATTRIBUTE) and (
            node.GetNodeReferenceID(INPUT_REFERENCE_ROLE) == volume_node.GetID()
        ):
            found.append(node)
    return found


def remove_node_with_helpers(scene: Any, node: Any) -> None:
    """Remove a node with its display and storage nodes (MRML leaves those behind otherwise)."""
    helpers = []
    for count, nth in (
        ("GetNumberOfDisplayNodes", "GetNthDisplayNode"),
        ("GetNumberOfStorageNodes", "GetNthStorageNode"),
    ):
        if hasattr(node, count):
            helpers += [getattr(node, nth)(i) for i in range(getattr(node, count)())]
    scene.RemoveNode(node)
    for helper in helpers:
        if helper is not None and scene.IsNodePresent(helper):
            scene.RemoveNode(helper)


def remove_output_nodes(scene: Any, volume_node: Any) -> int:
    """Remove the module's nodes for ``volume_node`` (and only those); returns how many."""
    nodes = output_nodes_of(scene, volume_node)
    for node in nodes:
        remove_node_with_helpers(scene, node)
    return len(nodes)


def _new_output_node(scene: Any, class_name: str, name: str, role: str, volume_node: Any) -> Any:
    node = scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
    node.SetAttribute(OUTPUT_ATTRIBUTE, role)
    node.SetNodeReferenceID(INPUT_REFERENCE_ROLE, volume_node.GetID())
    if hasattr(node, "SetAndObserveTransformNodeID"):  # a table is not transformable
        node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    place_beside_volume(scene, volume_node, node)  # under the CT's study in the data tree
    return node


@dataclass
class FindingsScene:
    """Keeps one input volume's output nodes in step with a detection result."""

    scene: Any
    volume_node: Any
    #: The reader's review states; keyed by region, so they survive threshold changes.
    book: ReviewBook = field(default_factory=ReviewBook)
    _segments: dict[tuple, str] = field(default_factory=dict)
    _next_segment: int = 1
    _shown: tuple | None = None  # (findings, geometry, thresholds) last shown

    # -- nodes -------------------------------------------------------------------------------
    def nodes(self) -> OutputNodes:
        """The output nodes, created on first use and reused afterwards."""
        base = self.volume_node.GetName()
        segmentation = find_output_node(self.scene, SEGMENTATION_ROLE, self.volume_node)
        if segmentation is None:
            segmentation = _new_output_node(
                self.scene,
                "vtkMRMLSegmentationNode",
                f"{base} nodules",
                SEGMENTATION_ROLE,
                self.volume_node,
            )
            segmentation.CreateDefaultDisplayNodes()
            segmentation.SetReferenceImageGeometryParameterFromVolumeNode(self.volume_node)
            self._segments.clear()
        points = {}
        for band in MalignancyBand:
            node = find_output_node(self.scene, points_role(band), self.volume_node)
            if node is None:
                node = _new_output_node(
                    self.scene,
                    "vtkMRMLMarkupsFiducialNode",
                    f"{base} nodules {band.value}",
                    points_role(band),
                    self.volume_node,
                )
                node.CreateDefaultDisplayNodes()
                self._style_points(node, band)
            points[band] = node
        table = find_output_node(self.scene, TABLE_ROLE, self.volume_node)
        if table is None:
            table = _new_output_node(
                self.scene,
                "vtkMRMLTableNode",
                f"{base} nodules table",
                TABLE_ROLE,
                self.volume_node,
            )
            self._make_columns(table)
        return OutputNodes(segmentation, points, table)

    @staticmethod
    def _style_points(node: Any, band: MalignancyBand) -> None:
        node.SetLocked(True)
        node.SetMarkupLabelFormat("%N")
        display = node.GetDisplayNode()
        if display is not None:
            color = BAND_COLORS_RGB[band]
            display.SetColor(*REJECTED_POINT_COLOR)  # unselected points: the rejected ones
            display.SetSelectedColor(*color)
            display.SetActiveColor(*color)

    @staticmethod
    def _make_columns(table_node: Any) -> None:
        table_node.RemoveAllColumns()
        for name, array_class, unit in TABLE_COLUMNS:
            array = getattr(vtk, array_class)()
            array.SetName(name)
            table_node.AddColumn(array)
            if unit:
                table_node.SetColumnUnitLabel(name, unit)
        table_node.SetUseColumnTitleAsColumnHeader(True)  # else names are a bold first row
        table_node.SetLocked(True)

    # -- content -----------------------------------------------------------------------------
    def show(
        self, findings: tuple[Finding, ...], geometry: Geometry, thresholds: Thresholds
    ) -> OutputNodes:
        """Make the output nodes show exactly ``findings`` (in their order)."""
        nodes = self.nodes()
        ras = findings_ras(findings)
        if self._shown is None:  # a new writer over an existing table: take its decisions back
            self._read_review(nodes.table, findings, ras)
        self._shown = (findings, geometry, thresholds)
        states = [self.book.state(_finding_key(f)) for f in findings]
        self._update_segments(nodes.segmentation, findings, geometry, states)
        self._update_points(nodes.points, findings, ras, thresholds, states)
        self._update_table(nodes.table, findings, ras, thresholds, states)
        return nodes

    # -- review --------------------------------------------------------------------------------
    def _read_review(self, table_node: Any, findings: tuple[Finding, ...], ras: np.ndarray) -> None:
        """Review states a table already holds (a module reload, a saved scene, a re-run on the
        same volume), matched to ``findings`` by centre: the same region, the same decision."""
        table = table_node.GetTable()
        if table.GetColumnByName("Review") is None or table.GetColumnByName("R") is None:
            return
        saved = {}
        for row in range(table.GetNumberOfRows()):
            try:
                state = ReviewState(table.GetValueByName(row, "Review").ToString())
            except ValueError:
                continue
            centre = tuple(table.GetValueByName(row, c).ToDouble() for c in ("R", "A", "S"))
            saved[_centre_key(centre)] = state
        for finding, centre in zip(findings, ras, strict=True):
            state = saved.get(_centre_key(centre))
            if state is not None:
                self.book.set(_finding_key(finding), state)

    def review_states(self) -> dict[int, ReviewState]:
        """Finding number -> review state, for the findings shown now."""
        findings = self._shown[0] if self._shown else ()
        return self.book.by_number((f.number, _finding_key(f)) for f in findings)

    def set_review(self, number: int, state: ReviewState) -> OutputNodes:
        """Record the reader's decision on finding ``number`` and redraw it everywhere."""
        if self._shown is None:
            raise RuntimeError("no findings shown yet")
        finding = next((f for f in self._shown[0] if f.number == number), None)
        if finding is None:
            raise KeyError(f"no finding number {number}")
        self.book.set(_finding_key(finding), ReviewState(state))
        return self.show(*self._shown)

    def set_segments_visible_in_3d(self, visible: bool) -> None:
        """The 3D-view toggle: surfaces of the nodule segments on or off (slices unchanged)."""
        node = find_output_node(self.scene, SEGMENTATION_ROLE, self.volume_node)
        display = node.GetDisplayNode() if node is not None else None
        if display is None:
            return
        if visible:
            node.CreateClosedSurfaceRepresentation()
        display.SetVisibility3D(bool(visible))

    def _update_segments(
        self,
        node: Any,
        findings: tuple[Finding, ...],
        geometry: Geometry,
        states: list[ReviewState],
    ) -> None:
        ijk_to_ras = ijk_to_ras_vtk(geometry)
        segmentation = node.GetSegmentation()
        known = {key: sid for key, sid in self._segments.items() if segmentation.GetSegment(sid)}
        if not known:  # first write into this node (or reloaded scene): start clean
            segmentation.RemoveAllSegments()
        wanted = [(_finding_key(f), f) for f in findings]
        wanted_keys = {key for key, _ in wanted}
        was_modifying = node.StartModify()
        try:
            for key, sid in list(known.items()):
                if key not in wanted_keys:
                    segmentation.RemoveSegment(sid)
                    del known[key]
            for index, (key, finding) in enumerate(wanted):
                sid = known.get(key)
                if sid is None:
                    sid = self._add_segment(segmentation, finding, ijk_to_ras)
                    known[key] = sid
                _style_segment(segmentation.GetSegment(sid), finding)
                if segmentation.GetNthSegmentID(index) != sid:
                    segmentation.SetSegmentIndex(sid, index)
        finally:
            node.EndModify(was_modifying)
        self._segments = known
        self._show_review_on_segments(node, findings, states)

    def _show_review_on_segments(
        self, node: Any, findings: tuple[Finding, ...], states: list[ReviewState]
    ) -> None:
        segmentation, display = node.GetSegmentation(), node.GetDisplayNode()
        for finding, state in zip(findings, states, strict=True):
            sid = self._segments[_finding_key(finding)]
            segment = segmentation.GetSegment(sid)
            if segment_tag(segment, REVIEW_TAG) != state.value:
                segment.SetTag(REVIEW_TAG, state.value)
            opacity = APPEARANCE[state].segment_opacity
            if display is not None and abs(display.GetSegmentOpacity3D(sid) - opacity) > 1e-6:
                display.SetSegmentOpacity(sid, opacity)

    def _add_segment(self, segmentation: Any, finding: Finding, ijk_to_ras: Any) -> str:
        sid = f"nodule_{self._next_segment}"
        while segmentation.GetSegment(sid) is not None:
            self._next_segment += 1
            sid = f"nodule_{self._next_segment}"
        self._next_segment += 1
        segment = slicer.vtkSegment()
        segment.AddRepresentation(
            _labelmap_name(),
            _oriented_image(finding.mask.start_irc, finding.mask.array, ijk_to_ras),
        )
        _style_segment(segment, finding)
        segmentation.AddSegment(segment, sid)
        return sid

    @staticmethod
    def _update_points(
        lists: dict[MalignancyBand, Any],
        findings: tuple[Finding, ...],
        ras: np.ndarray,
        thresholds: Thresholds,
        states: list[ReviewState],
    ) -> None:
        bands = [f.band(thresholds.malignancy) for f in findings]
        rows = list(zip(findings, ras, bands, states, strict=True))
        for band, node in lists.items():
            was_modifying = node.StartModify()
            try:
                node.RemoveAllControlPoints()
                for finding, position, finding_band, state in rows:
                    if finding_band is not band:
                        continue
                    label = point_label(finding.number, state)
                    index = node.AddControlPoint(vtk.vtkVector3d(*position), label)
                    node.SetNthControlPointDescription(index, point_description(finding))
                    node.SetNthControlPointLocked(index, True)
                    node.SetNthControlPointSelected(index, APPEARANCE[state].point_selected)
            finally:
                node.EndModify(was_modifying)

    def _update_table(
        self,
        node: Any,
        findings: tuple[Finding, ...],
        ras: np.ndarray,
        thresholds: Thresholds,
        states: list[ReviewState],
    ) -> None:
        table = node.GetTable()
        if table.GetNumberOfColumns() != len(TABLE_COLUMNS):
            self._make_columns(node)
            table = node.GetTable()
        segment_ids = self._segments
        rows = []
        for finding, (r, a, s), state in zip(findings, ras, states, strict=True):
            rows.append(
                (
                    finding.number,
                    finding.label(),
                    finding.band(thresholds.malignancy).value,
                    finding.p_malignant,
                    finding.p_nodule,
                    *lung_rads_cells(finding),
                    finding.diameter_mm,
                    finding.volume_mm3,
                    finding.mean_hu,
                    float(r),
                    float(a),
                    float(s),
                    segment_ids.get(_finding_key(finding), ""),
                    state.value,
                )
            )
        was_modifying = node.StartModify()
        try:
            for column, (name, _, _) in enumerate(TABLE_COLUMNS):
                array = table.GetColumnByName(name)
                array.SetNumberOfTuples(len(rows))
                for row, values in enumerate(rows):
                    array.SetValue(row, values[column])
                array.Modified()
            table.Modified()
            node.Modified()
        finally:
            node.EndModify(was_modifying)
