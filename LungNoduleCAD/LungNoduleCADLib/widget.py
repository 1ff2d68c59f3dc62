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
from LungNoduleCADLib.parameters import thresholds_of

log = logging.getLogger(__name__)

POLL_INTERVAL_MS = 200
#: Slider drags are coalesced into one threshold update per this many milliseconds.
THRESHOLD_DELAY_MS = 20


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
        self.ui.findingsTableView.connect("clicked(QModelIndex)", self.onFindingClicked)
        self.ui.modelFolderPathLineEdit.connect("currentPathChanged(QString)", self.onModelFolder)
        self.initializeParameterNode()

    # -- module widget lifecycle ---------------------------------------------------------------
    def cleanup(self) -> None:
        """Module reload or Slicer exit: end the run, stop the timers, drop the observers."""
        self.controller.shutdown()
        self._pollTimer.stop()
        self._thresholdTimer.stop()
        self.removeObservers()

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
        if controller.state is RunState.RUNNING:
            if not self._pollTimer.isActive():
                self._pollTimer.start()
        else:
            self._pollTimer.stop()

    def _applyThresholds(self) -> None:
        parameters = self._parameterNode
        if (
            parameters
            and self.logic.hasResult()
            and (parameters.inputVolume is self.logic.core.volume_node)
            and thresholds_of(parameters) != self.logic.core.result.thresholds
        ):
            self.logic.updateThresholds(parameters)
            self._showSummary()
            core = self.logic.core
            self.ui.statusLabel.text = f"Updated in {core.last_update_ms:.0f} ms."

    def _showSummary(self) -> None:
        self.ui.summaryLabel.text = self.logic.core.summary_text()

    def _showResultInViews(self, volume) -> None:
        slicer.util.setSliceViewerLayers(background=volume, fit=True)
        self.ui.findingsTableView.setMRMLTableNode(self.logic.core.outputs.table)
        self._showSummary()

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
        if not index.isValid() or not self.logic.hasResult():
            return
        number = int(index.sibling(index.row(), 0).data())  # column 0: the finding number
        r, a, s = self.logic.core.finding_ras(number)
        slicer.modules.markups.logic().JumpSlicesToLocation(r, a, s, True)

    def onExportButton(self) -> None:
        folder = self.ui.exportDirectoryButton.directory
        with slicer.util.tryWithErrorDisplay("Export failed.", waitCursor=True):
            saved = self.logic.core.export(Path(folder))  # the volume's name made safe
            self.ui.statusLabel.text = f"Exported to {saved.segmentation.parent}"
