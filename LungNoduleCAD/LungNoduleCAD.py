"""LungNoduleCAD: find lung nodules in chest CT and estimate how likely each is to be malignant.

The four classes Slicer expects. They stay thin: the work is in LungNoduleCADLib/ (scene
writing, background run, parameters) and in the engine, lungcad/ (no Slicer import).
"""

# Slicer's API and its module file names are camelCase:
# ruff: noqa: N802, N803

import logging
from pathlib import Path

import qt
import slicer
import vtk
from LungNoduleCADLib.parameters import LungNoduleCADParameters, thresholds_of
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

log = logging.getLogger(__name__)


@parameterNodeWrapper
class LungNoduleCADParameterNode(LungNoduleCADParameters):
    """The module's parameter node, typed (fields: LungNoduleCADLib/parameters.py)."""


class LungNoduleCAD(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Lung Nodule CAD"
        self.parent.categories = ["Chest Imaging"]
        self.parent.dependencies = []
        self.parent.contributors = ["LungNoduleCAD developers"]
        self.parent.helpText = (
            "Finds lung nodules in a chest CT (2D UNet, connected components, two 3D CNNs) and "
            "shows each as a segment and a point coloured by its malignancy probability. Move "
            "the threshold sliders to re-filter the findings at once, without re-running the "
            "networks. Research software: not for clinical use."
        )
        self.parent.acknowledgementText = (
            "Weights are trained by the project's own training tree; see the model cards in "
            "Resources/Models."
        )


class LungNoduleCADWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._process = None
        self._processVolume = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LungNoduleCAD.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LungNoduleCADLogic()
        self.ui.progressBar.hide()
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(200)
        self._pollTimer.connect("timeout()", self._onPollTimer)
        self._thresholdTimer = qt.QTimer()  # coalesces slider drags into one update per event loop
        self._thresholdTimer.setSingleShot(True)
        self._thresholdTimer.setInterval(20)
        self._thresholdTimer.connect("timeout()", self._applyThresholds)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.findingsTableView.connect("clicked(QModelIndex)", self.onFindingClicked)
        self.ui.modelFolderPathLineEdit.connect("currentPathChanged(QString)", self.onModelFolder)
        self.initializeParameterNode()

    def cleanup(self):
        if self._process is not None:
            self._process.cancel()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        # keep the parameter node (a background run may still finish), but stop GUI updates
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameters
            )

    def onSceneStartClose(self, caller, event):
        if self._process is not None:
            self.onCancelButton()
        self.logic.reset()  # the cached result describes nodes that are going away
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, parameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameters
            )
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameters)
            self.ui.modelFolderPathLineEdit.currentPath = self._parameterNode.modelFolder
            self._onParameters()

    def _onParameters(self, caller=None, event=None):
        running = self._process is not None
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        self.ui.applyButton.enabled = bool(volume) and not running
        self.ui.cancelButton.enabled = running
        self.ui.exportButton.enabled = self.logic.hasResult() and not running
        if self.logic.hasResult():
            self._thresholdTimer.start()

    def _applyThresholds(self):
        parameters = self._parameterNode
        if (
            parameters
            and self.logic.hasResult()
            and (parameters.inputVolume is self.logic.core.volume_node)
            and thresholds_of(parameters) != self.logic.core.result.thresholds
        ):
            self.logic.updateThresholds(parameters)
            self._showSummary()

    def onModelFolder(self, path):
        if self._parameterNode:
            self._parameterNode.modelFolder = path

    def onApplyButton(self):
        with slicer.util.tryWithErrorDisplay("Could not start detection.", waitCursor=True):
            if not ensureDependencies():
                return
            self._processVolume = self._parameterNode.inputVolume
            self._process = self.logic.startBackgroundRun(self._parameterNode)
            self.ui.progressBar.value = 0
            self.ui.progressBar.show()
            self.ui.statusLabel.text = "Starting detection..."
            self._pollTimer.start()
            self._onParameters()

    def onCancelButton(self):
        self._stopPolling()
        self._process.cancel()
        self._process = None
        self.ui.statusLabel.text = "Cancelled; the scene was not changed."
        self._onParameters()

    def _stopPolling(self):
        self._pollTimer.stop()
        self.ui.progressBar.hide()

    def _onPollTimer(self):
        from LungNoduleCADLib.process import State

        process = self._process
        if process is None:
            return self._stopPolling()
        state = process.poll()
        self.ui.progressBar.value = int(100 * process.fraction)
        self.ui.statusLabel.text = f"Detecting nodules: {process.stage}..."
        if state is State.RUNNING:
            return None
        self._stopPolling()
        self._process = None
        with slicer.util.tryWithErrorDisplay("Detection failed.", waitCursor=True):
            if state is not State.FINISHED:
                raise RuntimeError(process.error or f"detection {state.value}")
            self.logic.showResult(self._processVolume, process.result(), self._parameterNode)
            self._showResultInViews(self._processVolume)
        self._onParameters()
        return None

    def _showSummary(self):
        result = self.logic.core.result
        self.ui.summaryLabel.text = self.logic.core.summary_text()
        self.ui.statusLabel.text = (
            f"Updated in {self.logic.core.last_update_ms:.0f} ms." if result else ""
        )

    def _showResultInViews(self, volume):
        slicer.util.setSliceViewerLayers(background=volume, fit=True)
        self.ui.findingsTableView.setMRMLTableNode(self.logic.core.outputs.table)
        self._showSummary()

    def onFindingClicked(self, index):
        if not index.isValid() or not self.logic.hasResult():
            return
        number = int(index.sibling(index.row(), 0).data())  # column 0: the finding number
        r, a, s = self.logic.core.finding_ras(number)
        slicer.modules.markups.logic().JumpSlicesToLocation(r, a, s, True)

    def onExportButton(self):
        folder = self.ui.exportDirectoryButton.directory
        with slicer.util.tryWithErrorDisplay("Export failed.", waitCursor=True):
            saved = self.logic.core.export(Path(folder))  # the volume's name made safe
            self.ui.statusLabel.text = f"Exported to {saved.segmentation.parent}"


def ensureDependencies():
    """PyTorch through the PyTorch extension, then missing requirements.txt packages, after asking.

    Packages already installed (Slicer's own numpy, SimpleITK, ...) are pinned while installing.
    """
    from LungNoduleCADLib import dependencies

    if not dependencies.torch_installed():
        try:
            import PyTorchUtils
        except ImportError:
            slicer.util.errorDisplay(
                "LungNoduleCAD needs the PyTorch extension: install it from "
                "the Extensions Manager and restart Slicer."
            )
            return False
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            if not slicer.util.confirmOkCancelDisplay(
                "LungNoduleCAD needs PyTorch. Install it now (a large download)?"
            ):
                return False
            if (
                torchLogic.installTorch(
                    askConfirmation=False, torchVersionRequirement=dependencies.TORCH_REQUIREMENT
                )
                is None
            ):
                return False
    requirements = dependencies.read_requirements(
        Path(__file__).parent / "Resources" / "requirements.txt"
    )
    missing = dependencies.missing_requirements(requirements)
    if missing:
        names = ", ".join(str(r) for r in missing)
        if not slicer.util.confirmOkCancelDisplay(
            f"LungNoduleCAD needs these Python packages: {names}. Install them now? "
            "Packages Slicer already has are kept as they are."
        ):
            return False
        constraints = Path(slicer.app.temporaryPath) / "LungNoduleCAD-constraints.txt"
        constraints.write_text(dependencies.constraints_text(), encoding="utf-8")
        slicer.util.pip_install(dependencies.pip_arguments(missing, constraints))
    return True


class LungNoduleCADLogic(ScriptedLoadableModuleLogic):
    """Slicer-facing logic; the work is LungNoduleCADLib.logic.LungNoduleCADCore (no GUI calls)."""

    def __init__(self, runner=None):
        ScriptedLoadableModuleLogic.__init__(self)
        self._runner = runner
        self._core = None

    def getParameterNode(self):
        return LungNoduleCADParameterNode(super().getParameterNode())

    @property
    def core(self):
        if self._core is None:
            from LungNoduleCADLib.logic import InProcessRunner, LungNoduleCADCore
            from LungNoduleCADLib.mrml import SlicerServices

            self._core = LungNoduleCADCore(
                SlicerServices.from_application(), runner=self._runner or InProcessRunner()
            )
        return self._core

    def hasResult(self):
        return self._core is not None and self._core.result is not None

    def reset(self):
        """Forget the cached result (e.g. when the scene closes)."""
        self._core = None

    @staticmethod
    def request(parameters):
        from LungNoduleCADLib.logic import RunRequest

        folder = parameters.modelFolder.strip()
        return RunRequest(
            thresholds_of(parameters), parameters.device, Path(folder) if folder else None
        )

    def process(self, parameters, progress=None, cancel=None):
        """Blocking run (batch mode, tests): detection, then the output nodes."""
        outputs = self.core.run(parameters.inputVolume, self.request(parameters), progress, cancel)
        self._remember(parameters, outputs)
        return outputs

    def startBackgroundRun(self, parameters):
        """Start detection in a child process; poll the returned DetectionProcess."""
        from LungNoduleCADLib.process import DetectionProcess

        request = self.request(parameters)
        t = request.thresholds
        ct = self.core.ct_from_volume(parameters.inputVolume)
        return DetectionProcess(
            ct, (t.segmentation, t.nodule, t.malignancy), request.device, request.model_folder
        ).start()

    def showResult(self, volume, result, parameters=None):
        if parameters is not None and result.thresholds != thresholds_of(parameters):
            result = result.refilter(thresholds_of(parameters))
        outputs = self.core.show_result(volume, result)
        if parameters is not None:
            self._remember(parameters, outputs)
        return outputs

    def updateThresholds(self, parameters):
        return self.core.update_thresholds(thresholds_of(parameters))

    @staticmethod
    def _remember(parameters, outputs):
        from lungcad.pipeline import MalignancyBand

        parameters.outputSegmentation = outputs.segmentation
        parameters.outputBenignPoints = outputs.points[MalignancyBand.BENIGN]
        parameters.outputIndeterminatePoints = outputs.points[MalignancyBand.INDETERMINATE]
        parameters.outputSuspiciousPoints = outputs.points[MalignancyBand.SUSPICIOUS]
        parameters.outputTable = outputs.table


class LungNoduleCADTest(ScriptedLoadableModuleTest):
    """Runs the module's logic tests (Testing/test_slicer_logic.py) in this Slicer."""

    def runTest(self):
        import importlib.util
        import sys
        import unittest

        path = Path(__file__).parent / "Testing" / "test_slicer_logic.py"
        if str(path.parent) not in sys.path:  # for slicer_phantoms
            sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location("test_slicer_logic", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        suite = unittest.defaultTestLoader.loadTestsFromModule(module)
        result = unittest.TextTestRunner(verbosity=2).run(suite)
        self.assertTrue(
            result.wasSuccessful(),
            f"{len(result.failures)} failures, {len(result.errors)} errors in {path.name}",
        )
