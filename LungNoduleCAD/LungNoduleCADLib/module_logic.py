"""What the module's logic class does, without ``ScriptedLoadableModuleLogic``.

``LungNoduleCADLogic`` in the module file only adds Slicer's base class and the typed parameter
node to :class:`ModuleLogic`, so tests build this class on ``slicer-core`` and drive the panel's
whole run (controller, child process, scene) without Qt. The work itself is in
:class:`LungNoduleCADLib.logic.LungNoduleCADCore`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from LungNoduleCADLib.controller import Run
from LungNoduleCADLib.parameters import thresholds_of
from LungNoduleCADLib.process import DetectionProcess, FolderFactory, default_folder


class ModuleLogic:
    """Blocking runs, background runs for the panel, threshold updates, the cached result.

    ``services`` gives the scene and module logics (default: the running Slicer's);
    ``make_folder`` makes each background run's temporary folder (``slicer.util.tempDirectory``
    in Slicer); ``python`` is the child's interpreter (default: PythonSlicer in Slicer).
    """

    def __init__(
        self,
        runner: Any = None,
        services: Callable[[], Any] | None = None,
        make_folder: FolderFactory = default_folder,
        python: str | None = None,
    ) -> None:
        self._runner = runner
        self._services = services
        self._core = None
        self.make_folder = make_folder
        self.python = python

    @property
    def core(self):
        if self._core is None:
            from LungNoduleCADLib.logic import InProcessRunner, LungNoduleCADCore
            from LungNoduleCADLib.mrml import SlicerServices

            services = (self._services or SlicerServices.from_application)()
            self._core = LungNoduleCADCore(services, runner=self._runner or InProcessRunner())
        return self._core

    def hasResult(self) -> bool:  # noqa: N802 (Slicer's naming)
        return self._core is not None and self._core.result is not None

    def reset(self) -> None:
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

    def startBackgroundRun(self, parameters) -> DetectionProcess:  # noqa: N802
        """Start detection in a child process; poll the returned DetectionProcess."""
        request = self.request(parameters)
        t = request.thresholds
        ct = self.core.ct_from_volume(parameters.inputVolume)
        return DetectionProcess(
            ct,
            (t.segmentation, t.nodule, t.malignancy),
            request.device,
            request.model_folder,
            python=self.python,
            make_folder=self.make_folder,
        ).start()

    def detectionRun(self, parameters, shown: Callable[[Any], None] | None = None) -> Run:  # noqa: N802
        """The panel's run for the controller: start in a child process, then show the findings
        on the volume the run was for (``shown(volume)`` afterwards, e.g. to set up the views)."""
        volume = parameters.inputVolume

        def start() -> DetectionProcess:
            if volume is None:
                raise ValueError("no input volume selected")
            return self.startBackgroundRun(parameters)

        def finish(result) -> str:
            if volume.GetScene() is None:
                raise RuntimeError(f"the volume '{volume.GetName()}' was removed during detection")
            self.showResult(volume, result, parameters)
            if shown is not None:
                shown(volume)
            return f"Done: {self.core.result.summary.text}"

        return Run(start=start, finish=finish)

    def showResult(self, volume, result, parameters=None):  # noqa: N802
        if parameters is not None and result.thresholds != thresholds_of(parameters):
            result = result.refilter(thresholds_of(parameters))
        outputs = self.core.show_result(volume, result)
        if parameters is not None:
            self._remember(parameters, outputs)
        return outputs

    def updateThresholds(self, parameters):  # noqa: N802
        return self.core.update_thresholds(thresholds_of(parameters))

    @staticmethod
    def _remember(parameters, outputs) -> None:
        from lungcad.pipeline import MalignancyBand

        parameters.outputSegmentation = outputs.segmentation
        parameters.outputBenignPoints = outputs.points[MalignancyBand.BENIGN]
        parameters.outputIndeterminatePoints = outputs.points[MalignancyBand.INDETERMINATE]
        parameters.outputSuspiciousPoints = outputs.points[MalignancyBand.SUSPICIOUS]
        parameters.outputTable = outputs.table
