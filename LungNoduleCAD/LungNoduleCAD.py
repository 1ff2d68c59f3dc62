"""LungNoduleCAD: find lung nodules in chest CT and estimate how likely each is to be malignant.

The four classes Slicer expects, thin as in SlicerNNUnet: the panel is LungNoduleCADLib/widget.py,
the run's state machine LungNoduleCADLib/controller.py, installing LungNoduleCADLib/install.py,
the logic LungNoduleCADLib/module_logic.py, and the engine lungcad/ (no Slicer import).
"""

# Slicer's API and its module file names are camelCase; the Slicer version is checked before the
# imports that need Python 3.12:
# ruff: noqa: N802, E402

import sys

import slicer
from LungNoduleCADLib.slicer_support import unsupported_reason

_UNSUPPORTED = unsupported_reason(
    (slicer.app.majorVersion, slicer.app.minorVersion), sys.version_info
)
if _UNSUPPORTED:
    raise ImportError(_UNSUPPORTED)  # Slicer logs it and does not load the module

import logging
from pathlib import Path

from LungNoduleCADLib.module_logic import ModuleLogic
from LungNoduleCADLib.parameters import LungNoduleCADParameters
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

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


class LungNoduleCADWidget(ScriptedLoadableModuleWidget):
    """Hosts LungNoduleCADLib.widget.LungNoduleCADPanel, built with Slicer's logic and installer."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic = None
        self.panel = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from LungNoduleCADLib.install import Installer
        from LungNoduleCADLib.widget import LungNoduleCADPanel

        self.logic = LungNoduleCADLogic()
        installer = Installer.for_slicer(Path(self.resourcePath("requirements.txt")))
        self.panel = LungNoduleCADPanel(
            self.resourcePath("UI/LungNoduleCAD.ui"),
            self.logic,
            installer,
            isEntered=lambda: self.parent.isEntered,
        )
        self.layout.addWidget(self.panel.uiWidget)

    def cleanup(self):
        if self.panel is not None:
            self.panel.cleanup()

    def enter(self):
        if self.panel is not None:
            self.panel.enter()

    def exit(self):
        if self.panel is not None:
            self.panel.exit()


class LungNoduleCADLogic(ScriptedLoadableModuleLogic, ModuleLogic):
    """Slicer's logic base plus LungNoduleCADLib.module_logic.ModuleLogic (the work, testable)."""

    def __init__(self, runner=None):
        ScriptedLoadableModuleLogic.__init__(self)
        ModuleLogic.__init__(
            self,
            runner=runner,
            make_folder=lambda: slicer.util.tempDirectory("LungNoduleCAD-run-"),
        )

    def getParameterNode(self):
        return LungNoduleCADParameterNode(super().getParameterNode())


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
