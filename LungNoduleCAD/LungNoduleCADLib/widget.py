"""The module's panel: draws the parameter node and the run controller, forwards the clicks.

No run state lives here: :class:`LungNoduleCADLib.controller.RunController` owns it (Apply,
installing, the child process, Cancel, scene close) and this class only redraws it when it
changes. The logic and the installer are injected (the module file passes Slicer's own), so the
panel holds Qt wiring and nothing a test would need to drive. ``qt`` is imported when a panel is
built, so this module imports (and is import-checked) without Slicer's Qt.
"""

# Slicer's API and Qt slots are camelCase:
# ruff: noqa: N802, N803

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import slicer
import vtk
from slicer.util import VTKObservationMixin

from LungNoduleCADLib.controller import Installer, RunController, RunState
from LungNoduleCADLib.parameters import default_export_folder, thresholds_of
from LungNoduleCADLib.review import FINDING_COLUMN, SHORTCUTS, ReviewState, Step

log = logging.getLogger(__name__)

POLL_INTERVAL_MS = 200
#: Slider drags are coalesced into one threshold update per this many milliseconds.
THRESHOLD_DELAY_MS = 20
#: The summary before any result (and after the scene or the input changes).
NO_RESULT_TEXT = "No detection run yet."
REVIEW_BUTTONS = tuple(SHORTCUTS)


def jumpSlicesTo(world) -> None:
    """Centre the slice views on a world RAS position (Slicer's markups logic does it)."""
    slicer.modules.markups.logic().JumpSlicesToLocation(*world, True)


class LungNoduleCADPanel(VTKObservationMixin):
    """The widgets of ``uiPath``, bound to ``logic``'s parameter node and a run controller."""

    def __init__(
        self,
        uiPath: str | Path,
        logic: Any,
        installer: Installer | None,
        isEntered: Callable[[], bool] = lambda: True,
    ) -> None:
        import qt

        VTKObservationMixin.__init__(self)
        self.logic = logic
        self._isEntered = isEntered
        self.uiWidget = slicer.util.loadUI(str(uiPath))
        self.ui = slicer.util.childWidgetVariables(self.uiWidget)
        self.uiWidget.setMRMLScene(slicer.mrmlScene)
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._shownTable = None  # the table node the findings view shows
        self._currentFinding: int | None = None  # number of the finding last centred on
        self._shownLog: list[str] = []
        self.controller = RunController(installer, on_change=self._draw)
        self.controller.watch_scene(slicer.mrmlScene)  # a scene close cancels the run
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self.controller.poll)
        self._thresholdTimer = qt.QTimer()
        self._thresholdTimer.setSingleShot(True)
        self._thresholdTimer.setInterval(THRESHOLD_DELAY_MS)
        self._thresholdTimer.connect("timeout()", self._applyThresholds)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        scenes = getattr(getattr(slicer, "app", None), "defaultScenePath", None)  # Slicer setting
        self.ui.exportDirectoryButton.directory = str(default_export_folder(scenes))
        self.ui.findingsTableView.connect("clicked(QModelIndex)", self.onFindingClicked)
        self.ui.modelFolderPathLineEdit.connect("currentPathChanged(QString)", self.onModelFolder)
        self.ui.nextFindingButton.connect("clicked(bool)", self.onNextFinding)
        self.ui.previousFindingButton.connect("clicked(bool)", self.onPreviousFinding)
        self.ui.acceptFindingButton.connect("clicked(bool)", self.onAcceptFinding)
        self.ui.rejectFindingButton.connect("clicked(bool)", self.onRejectFinding)
        self.ui.show3DCheckBox.connect("toggled(bool)", self.onShow3D)
        self._shortcuts = []
        for name, keys in SHORTCUTS.items():
            shortcut = qt.QShortcut(qt.QKeySequence(keys), self.uiWidget)
            shortcut.connect("activated()", getattr(self.ui, name).click)
            self._shortcuts.append(shortcut)
        self.initializeParameterNode()

    # -- module widget lifecycle ---------------------------------------------------------------
    def cleanup(self) -> None:
        """Module reload or Slicer exit: end the run, stop the timers, drop the observers."""
        self.controller.shutdown()
        self._pollTimer.stop()
        self._thresholdTimer.stop()
        self.removeObservers()
        for shortcut in self._shortcuts:
            shortcut.disconnect("activated()")
        self._shortcuts = []

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        # keep the parameter node (a background run may still finish), but stop GUI updates
        self.setParameterNode(None)

    def onSceneStartClose(self, caller=None, event=None) -> None:
        self.logic.reset()  # the cached result describes nodes that are going away
        self.setParameterNode(None)

    def onSceneEndClose(self, caller=None, event=None) -> None:
        if self._isEntered():
            self.initializeParameterNode()

    # -- parameter node ------------------------------------------------------------------------
    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameters
            )
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameters)
            self.ui.modelFolderPathLineEdit.currentPath = self._parameterNode.modelFolder
        self._onParameters()

    def _onParameters(self, caller=None, event=None) -> None:
        self._draw()
        if self.logic.hasResult():
            self._thresholdTimer.start()

    # -- drawing -------------------------------------------------------------------------------
    def _draw(self) -> None:
        """Buttons, progress and status from the controller; the poll timer runs while it runs."""
        controller = self.controller
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        self.ui.applyButton.enabled = bool(volume) and not controller.busy
        self.ui.cancelButton.enabled = controller.can_cancel
        self.ui.exportButton.enabled = self.logic.hasResult() and not controller.busy
        fraction = controller.fraction
        self.ui.progressBar.setVisible(fraction is not None)
        if fraction is not None:
            self.ui.progressBar.value = int(100 * fraction)
        self.ui.statusLabel.text = controller.status
        self.ui.runDetailsLabel.text = controller.details
        self._drawLog()
        if controller.state is RunState.RUNNING:
            if not self._pollTimer.isActive():
                self._pollTimer.start()
        else:
            self._pollTimer.stop()
        self._drawFindings()

    def _drawLog(self) -> None:
        lines = self.controller.log_lines
        if lines != self._shownLog:
            self.ui.logTextEdit.setPlainText("\n".join(lines))
            self._shownLog = lines

    def _drawFindings(self) -> None:
        """Table view, summary and review buttons for the selected input (empty for another
        volume, or once the scene was closed)."""
        shown = self.logic.shownFindings(self._parameterNode)
        if shown.table is not self._shownTable:
            self.ui.findingsTableView.setMRMLTableNode(shown.table)
            self._shownTable, self._currentFinding = shown.table, None
        self.ui.summaryLabel.text = shown.summary or NO_RESULT_TEXT
        reviewable = shown.table is not None and not self.controller.busy
        for name in REVIEW_BUTTONS:
            getattr(self.ui, name).enabled = reviewable

    def _applyThresholds(self) -> None:
        parameters = self._parameterNode
        if (
            parameters
            and self.logic.hasResult()
            and (parameters.inputVolume is self.logic.core.volume_node)
            and thresholds_of(parameters) != self.logic.core.result.thresholds
        ):
            self.logic.updateThresholds(parameters)
            # findings are renumbered: a remembered number may now name another finding
            self._currentFinding = None
            self.ui.findingsTableView.clearSelection()
            self._drawFindings()
            core = self.logic.core
            self.ui.statusLabel.text = f"Updated in {core.last_update_ms:.0f} ms."

    def _showResultInViews(self, volume) -> None:
        slicer.util.setSliceViewerLayers(background=volume, fit=True)
        self.logic.showSegmentsIn3D(bool(self.ui.show3DCheckBox.checked))
        self._drawFindings()

    # -- clicks --------------------------------------------------------------------------------
    def onApplyButton(self) -> None:
        if self._parameterNode is None:
            return
        run = self.logic.detectionRun(self._parameterNode, shown=self._showResultInViews)
        self.controller.apply(run)

    def onCancelButton(self) -> None:
        self.controller.cancel()

    def onModelFolder(self, path: str) -> None:
        if self._parameterNode:
            self._parameterNode.modelFolder = path

    def onFindingClicked(self, index) -> None:
        if index.isValid():  # the row's Finding cell, whatever the view's sorting
            self._goTo(self.logic.targetAtCell(index.sibling(index.row(), FINDING_COLUMN).data()))

    def onNextFinding(self) -> None:
        self._goTo(self.logic.step(self._currentFinding, Step.NEXT), select=True)

    def onPreviousFinding(self) -> None:
        self._goTo(self.logic.step(self._currentFinding, Step.PREVIOUS), select=True)

    def onAcceptFinding(self) -> None:
        self._review(ReviewState.ACCEPTED)

    def onRejectFinding(self) -> None:
        self._review(ReviewState.REJECTED)

    def onShow3D(self, visible: bool) -> None:
        self.logic.showSegmentsIn3D(visible)

    def _goTo(self, target, select: bool = False) -> None:
        if target is None:
            return
        self._currentFinding = target.number
        if select:
            self.ui.findingsTableView.selectRow(target.row)
        jumpSlicesTo(target.world)

    def _review(self, state: ReviewState) -> None:
        target = self.logic.toggleReview(self._currentFinding, state)
        if target is None:
            self.ui.statusLabel.text = "Select a finding first (click its row, or Next)."
        else:
            self.ui.findingsTableView.selectRow(target.row)

    def onExportButton(self) -> None:
        folder = self.ui.exportDirectoryButton.directory
        with slicer.util.tryWithErrorDisplay("Export failed.", waitCursor=True):
            # the folder is the series UID, else the volume's name made safe
            saved = self.logic.core.export(Path(folder), review=self.logic.exportReview())
            note = self.logic.core.dicom_note
            if note is None and _add_to_dicom_database(saved):
                note = "SEG and SR added to the DICOM database"
            suffix = f" ({note})" if note else ""
            self.ui.statusLabel.text = f"Exported to {saved.folder}{suffix}"


def _add_to_dicom_database(saved) -> bool:
    """Index the export's DICOM SEG and SR in Slicer's DICOM database, where one is open (the
    files stay where they are); False, and nothing happens, otherwise."""
    database = getattr(slicer, "dicomDatabase", None)
    if database is None or not database.isOpen or "dicom_sr" not in saved.extra:
        return False
    from DICOMLib import DICOMUtils

    return bool(DICOMUtils.importDicom(str(saved.folder)))
