"""What the module's logic class does, without ``ScriptedLoadableModuleLogic``.

``LungNoduleCADLogic`` in the module file only adds Slicer's base class and the typed parameter
node to :class:`ModuleLogic`, so tests build this class on ``slicer-core`` and drive the panel's
whole run (controller, child process, scene) without Qt. The work itself is in
:class:`LungNoduleCADLib.logic.LungNoduleCADCore`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from LungNoduleCADLib.controller import Run
from LungNoduleCADLib.parameters import thresholds_of
from LungNoduleCADLib.process import DetectionProcess, FolderFactory, default_folder
from LungNoduleCADLib.review import ReviewState, Step, export_review, parse_finding_number, step_row


@dataclass(frozen=True)
class FindingTarget:
    """Where a finding is: its table row, its number and its centre in world RAS (mm)."""

    row: int
    number: int
    world: tuple[float, float, float]


@dataclass(frozen=True)
class ShownFindings:
    """What the panel's findings view and summary show (None / "" clear them)."""

    table: Any
    summary: str


NOTHING_SHOWN = ShownFindings(None, "")


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
        folder = self.request(parameters).model_folder if parameters is not None else None
        outputs = self.core.show_result(volume, result, folder)
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

    # -- what the panel shows ------------------------------------------------------------------
    def shownFindings(self, parameters) -> ShownFindings:  # noqa: N802
        """The findings table and summary for the selected input: nothing once the scene was
        closed (the result is forgotten), or when another volume is selected."""
        if parameters is None or not self.hasResult():
            return NOTHING_SHOWN
        core = self.core
        table = core.outputs.table if core.outputs else None
        if (
            parameters.inputVolume is not core.volume_node
            or table is None
            or table.GetScene() is None
        ):
            return NOTHING_SHOWN
        return ShownFindings(table, core.summary_text())

    # -- review --------------------------------------------------------------------------------
    def findingNumbers(self) -> list[int]:  # noqa: N802
        """Finding numbers in table row order (the findings' order)."""
        if not self.hasResult():
            return []
        return [f.number for f in self.core.result.findings]

    def target(self, number: int | None) -> FindingTarget | None:
        """Row and world position of finding ``number``; None if there is no such finding."""
        numbers = self.findingNumbers()
        if number not in numbers:
            return None
        from LungNoduleCADLib.mrml import to_world

        world = to_world(self.core.volume_node, self.core.finding_ras(number))
        return FindingTarget(numbers.index(number), number, world)

    def targetAtCell(self, text: object) -> FindingTarget | None:  # noqa: N802
        """The finding a click on a row shows (``text``: the row's Finding cell); never raises."""
        return self.target(parse_finding_number(text))

    def step(self, current: int | None, step: Step) -> FindingTarget | None:
        """The next/previous finding after finding number ``current`` (None: from the ends)."""
        numbers = self.findingNumbers()
        row = numbers.index(current) if current in numbers else None
        new_row = step_row(row, len(numbers), step)
        return None if new_row is None else self.target(numbers[new_row])

    def setReview(self, number: int, state: ReviewState) -> None:  # noqa: N802
        """Accept, reject or un-review finding ``number`` (table, segment and point follow)."""
        if not self.hasResult():
            raise RuntimeError("no findings to review: run detection first")
        self.core.scene_writer.set_review(number, state)

    def toggleReview(self, number: int | None, state: ReviewState) -> FindingTarget | None:  # noqa: N802
        """The review buttons: give finding ``number`` ``state``, or take it back when it has it
        already; returns the finding (None, and nothing changes, when there is no such one)."""
        target = self.target(number)
        if target is None:
            return None
        current = self.reviewStates()[number]
        self.setReview(number, ReviewState.UNREVIEWED if current is state else state)
        return target

    def reviewStates(self) -> dict[int, ReviewState]:  # noqa: N802
        if not self.hasResult() or self.core.scene_writer is None:
            return {}
        return self.core.scene_writer.review_states()

    def exportReview(self) -> dict[int, str]:  # noqa: N802
        """The review as Export writes it: finding number -> "unreviewed"/"accepted"/"rejected"
        (the findings csv's and results.json's ``review`` column/field)."""
        return export_review(self.reviewStates())

    def showSegmentsIn3D(self, visible: bool) -> None:  # noqa: N802
        if self.hasResult() and self.core.scene_writer is not None:
            self.core.scene_writer.set_segments_visible_in_3d(visible)
