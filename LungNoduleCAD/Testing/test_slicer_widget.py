"""The panel (LungNoduleCADLib/widget.py) draws the controller: wiring checked with Qt stand-ins.

No test process has Slicer's Qt, so ``qt.QTimer``, ``slicer.util.loadUI`` and the .ui's widgets
are replaced by recording stand-ins (the .ui itself is checked in test_slicer_ui.py); the scene,
the logic, the controller and the child process are real.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path
from typing import ClassVar

import pytest
import slicer
import vtk
from controller_support import Harness, gone, make_case
from LungNoduleCADLib import controller as ctl
from LungNoduleCADLib.module_logic import ModuleLogic

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="the fake PythonSlicer launcher is a shell script"
)

UI_FILE = Path(__file__).resolve().parents[1] / "Resources" / "UI" / "LungNoduleCAD.ui"


class FakeTimer:
    def __init__(self) -> None:
        self.active, self.slot, self.interval, self.single_shot = False, None, 0, False

    def setInterval(self, ms: int) -> None:  # noqa: N802 (Qt's names)
        self.interval = ms

    def setSingleShot(self, single: bool) -> None:  # noqa: N802
        self.single_shot = single

    def connect(self, signal: str, slot) -> None:
        assert signal == "timeout()"
        self.slot = slot

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False

    def isActive(self) -> bool:  # noqa: N802
        return self.active

    def fire(self) -> None:
        if self.single_shot:
            self.active = False
        self.slot()


class FakeShortcut:
    made: ClassVar[list[FakeShortcut]] = []

    def __init__(self, keys: str, parent) -> None:
        self.keys, self.parent, self.slot = keys, parent, None
        FakeShortcut.made.append(self)

    def connect(self, signal: str, slot) -> None:
        assert signal == "activated()"
        self.slot = slot

    def disconnect(self, signal: str) -> None:
        assert signal == "activated()"
        self.slot = None


class FakeWidget:
    """A .ui widget: properties are attributes, signals are recorded, other calls are logged."""

    def __init__(self, name: str) -> None:
        self.name, self.enabled, self.text, self.value, self.visible = name, True, "", 0, True
        self.currentPath, self.directory, self.checked = "", "", True
        self.slots: dict[str, object] = {}
        self.calls: list[tuple] = []

    def connect(self, signal: str, slot) -> None:
        self.slots[signal] = slot

    def setVisible(self, visible: bool) -> None:  # noqa: N802
        self.visible = bool(visible)

    def click(self) -> None:
        self.slots["clicked(bool)"]()

    def __getattr__(self, method: str):
        if method.startswith("__"):
            raise AttributeError(method)
        return lambda *args: self.calls.append((method, *args))


class FakeParameterNode:
    """The typed parameter node as the panel uses it, observed through a real MRML node."""

    def __init__(self, volume) -> None:
        self._node = slicer.vtkMRMLScriptedModuleNode()
        self.inputVolume, self.modelFolder, self.device = volume, "", "cpu"
        self.segmentationThreshold = self.noduleThreshold = self.malignancyThreshold = 0.5
        self.connected = 0

    def AddObserver(self, event, method, priority=0.0):  # noqa: N802
        return self._node.AddObserver(event, method, priority)

    def RemoveObserver(self, tag) -> None:  # noqa: N802
        self._node.RemoveObserver(tag)

    def connectGui(self, ui) -> str:  # noqa: N802
        self.connected += 1
        return "gui-tag"

    def disconnectGui(self, tag) -> None:  # noqa: N802
        assert tag == "gui-tag"
        self.connected -= 1

    def modified(self) -> None:
        self._node.Modified()


class PanelLogic(ModuleLogic):
    parameter_node: FakeParameterNode

    def getParameterNode(self) -> FakeParameterNode:  # noqa: N802
        return self.parameter_node


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return make_case(tmp_path_factory)


@pytest.fixture
def panel(mrml, case, tmp_path, monkeypatch):
    harness = Harness(mrml, case, tmp_path)
    harness.controller.shutdown()  # the panel makes its own
    lines = UI_FILE.read_text(encoding="utf-8").splitlines()
    names = [line.split('name="')[1].split('"')[0] for line in lines
             if "<widget " in line and 'name="' in line]  # fmt: skip
    widgets = types.SimpleNamespace(**{name: FakeWidget(name) for name in names})
    ui_widget = FakeWidget("LungNoduleCAD")
    views: list = []
    FakeShortcut.made = []
    fake_qt = types.SimpleNamespace(QTimer=FakeTimer, QShortcut=FakeShortcut, QKeySequence=str)
    monkeypatch.setitem(sys.modules, "qt", fake_qt)
    monkeypatch.setattr(slicer.util, "loadUI", lambda path: ui_widget, raising=False)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", lambda w: widgets, raising=False)
    monkeypatch.setattr(
        slicer.util, "setSliceViewerLayers", lambda **kw: views.append(kw), raising=False
    )
    from LungNoduleCADLib.widget import LungNoduleCADPanel

    logic = harness.logic("hang", PanelLogic)
    logic.parameter_node = FakeParameterNode(harness.volume)
    made = LungNoduleCADPanel(UI_FILE, logic, harness.installer)
    made.harness, made.views = harness, views
    yield made
    made.cleanup()


def _tick_until(panel, done, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, panel.ui.statusLabel.text
        if panel._pollTimer.isActive():
            panel._pollTimer.fire()
        time.sleep(0.02)


def test_the_panel_draws_a_run_from_apply_to_cancel(panel):
    ui = panel.ui
    assert (ui.applyButton.enabled, ui.cancelButton.enabled, ui.progressBar.visible) == (
        True,
        False,
        False,
    )
    ui.applyButton.click()
    assert (ui.applyButton.enabled, ui.cancelButton.enabled, ui.progressBar.visible) == (
        False,
        True,
        True,
    )
    assert ui.exportButton.enabled is False
    assert panel._pollTimer.isActive() and panel._pollTimer.interval == 200
    pid = panel.harness.child_pid()
    _tick_until(panel, lambda: ui.statusLabel.text == "Detecting nodules: segmentation...")
    assert 0 < ui.progressBar.value < 100
    ui.cancelButton.click()
    assert (ui.applyButton.enabled, ui.cancelButton.enabled, ui.progressBar.visible) == (
        True,
        False,
        False,
    )
    assert ui.statusLabel.text == ctl.CANCELLED_STATUS
    assert not panel._pollTimer.isActive()
    assert gone(pid)
    ui.cancelButton.click()  # a stray click: nothing happens
    assert ui.statusLabel.text == ctl.CANCELLED_STATUS


def test_a_finished_run_is_shown_and_a_failed_one_leaves_apply_enabled(panel, case):
    ui = panel.ui
    panel.logic.python = str(panel.harness.launcher("normal"))
    ui.applyButton.click()
    _tick_until(panel, lambda: not panel.controller.busy)
    assert ui.statusLabel.text == f"Done: {case.result.summary.text}"
    assert (ui.applyButton.enabled, ui.cancelButton.enabled, ui.exportButton.enabled) == (
        True,
        False,
        True,
    )
    assert panel.views == [{"background": panel.harness.volume, "fit": True}]
    assert ui.findingsTableView.calls == [("setMRMLTableNode", panel.logic.core.outputs.table)]
    assert ui.summaryLabel.text == panel.logic.core.summary_text()
    panel.logic.python = str(panel.harness.launcher("crash"))
    ui.applyButton.click()
    _tick_until(panel, lambda: not panel.controller.busy)
    assert ui.statusLabel.text.startswith("Detection failed: detection process exited with ")
    assert (ui.applyButton.enabled, ui.cancelButton.enabled, ui.progressBar.visible) == (
        True,
        False,
        False,
    )
    assert panel.harness.run_folders() == []


def test_a_threshold_change_refilters_without_a_run(panel):
    panel.logic.python = str(panel.harness.launcher("normal"))
    panel.ui.applyButton.click()
    _tick_until(panel, lambda: not panel.controller.busy)
    node = panel.logic.parameter_node
    node.noduleThreshold = 0.99
    node.modified()
    assert panel._thresholdTimer.isActive()
    panel._thresholdTimer.fire()
    assert panel.logic.core.result.thresholds.nodule == 0.99
    assert panel.ui.statusLabel.text.startswith("Updated in ")


def test_closing_the_scene_mid_run_cancels_and_forgets_the_result(panel, mrml):
    ui = panel.ui
    ui.applyButton.click()
    pid = panel.harness.child_pid()
    mrml.scene.Clear(0)
    assert ui.statusLabel.text == ctl.SCENE_CLOSED_STATUS
    assert not panel._pollTimer.isActive() and ui.cancelButton.enabled is False
    assert gone(pid)
    assert panel.logic.hasResult() is False
    assert panel.logic.parameter_node.connected == 1, "reconnected once the scene was closed"


def test_exit_disconnects_and_cleanup_ends_the_run_and_the_timers(panel, mrml):
    node = panel.logic.parameter_node
    panel.exit()
    assert node.connected == 0
    panel.enter()
    panel.enter()
    assert node.connected == 1, "enter twice does not connect twice"
    panel.ui.applyButton.click()
    pid = panel.harness.child_pid()
    panel.cleanup()
    assert gone(pid)
    assert not panel._pollTimer.isActive() and not panel._thresholdTimer.isActive()
    assert panel.harness.run_folders() == []
    status = panel.ui.statusLabel.text
    mrml.scene.Clear(0)  # no observer is left to react
    assert panel.ui.statusLabel.text == status
    assert node._node.HasObserver(vtk.vtkCommand.ModifiedEvent) == 0


class FakeIndex:
    """A table view's model index: a row whose Finding cell holds ``text``."""

    def __init__(self, row: int, text, valid: bool = True) -> None:
        self._row, self._text, self._valid = row, text, valid

    def isValid(self) -> bool:  # noqa: N802
        return self._valid

    def row(self) -> int:
        return self._row

    def sibling(self, row: int, column: int) -> FakeIndex:
        assert (row, column) == (self._row, 0), "the Finding column of the same row"
        return self

    def data(self):
        return self._text


def _run_with_three_findings(panel) -> None:
    panel.logic.python = str(panel.harness.launcher("normal"))
    panel.logic.parameter_node.noduleThreshold = 0.1
    panel.ui.applyButton.click()
    _tick_until(panel, lambda: not panel.controller.busy)
    assert panel.logic.findingNumbers() == [1, 2, 3]


REVIEW_BUTTONS = ("nextFindingButton", "previousFindingButton", "acceptFindingButton")


def test_next_previous_accept_and_reject_from_buttons_shortcuts_and_rows(panel, monkeypatch):
    import LungNoduleCADLib.widget as widget_module
    from LungNoduleCADLib.review import ReviewState

    jumps: list = []
    monkeypatch.setattr(widget_module, "jumpSlicesTo", jumps.append)
    ui, logic = panel.ui, panel.logic
    assert [getattr(ui, name).enabled for name in REVIEW_BUTTONS] == [False] * 3
    _run_with_three_findings(panel)
    assert [getattr(ui, name).enabled for name in REVIEW_BUTTONS] == [True] * 3
    view = ui.findingsTableView
    ui.acceptFindingButton.click()
    assert ui.statusLabel.text == "Select a finding first (click its row, or Next)."
    keys = {shortcut.keys: shortcut for shortcut in FakeShortcut.made}
    assert sorted(keys) == ["Alt+A", "Alt+N", "Alt+P", "Alt+R"]
    keys["Alt+N"].slot()
    assert view.calls[-1] == ("selectRow", 0) and jumps == [logic.target(1).world]
    ui.previousFindingButton.click()  # wraps around to the last row
    assert view.calls[-1] == ("selectRow", 2) and jumps[-1] == logic.target(3).world
    keys["Alt+R"].slot()
    assert logic.exportReview() == {1: "unreviewed", 2: "unreviewed", 3: "rejected"}
    ui.rejectFindingButton.click()  # the same button again takes it back
    assert logic.reviewStates()[3] is ReviewState.UNREVIEWED
    panel.onFindingClicked(FakeIndex(1, "2"))
    assert jumps[-1] == logic.target(2).world
    ui.acceptFindingButton.click()
    assert logic.exportReview() == {1: "unreviewed", 2: "accepted", 3: "unreviewed"}
    assert view.calls[-1] == ("selectRow", 1), "the reviewed row stays selected"
    table = logic.core.outputs.table.GetTable()
    assert table.GetValueByName(1, "Review").ToString() == "accepted"
    for junk in (FakeIndex(0, "Finding"), FakeIndex(0, ""), FakeIndex(0, None, valid=False)):
        panel.onFindingClicked(junk)  # never raises, never jumps
    assert len(jumps) == 3
    # a threshold change keeps the decision (finding 2 at 0.1 is finding 1 at 0.2)
    logic.parameter_node.noduleThreshold = 0.2
    logic.parameter_node.modified()
    panel._thresholdTimer.fire()
    assert logic.exportReview() == {1: "accepted", 2: "unreviewed"}
    assert view.calls[-1] == ("clearSelection",)
    ui.rejectFindingButton.click()  # the old number 2 is another finding now: nothing is set
    assert ui.statusLabel.text == "Select a finding first (click its row, or Next)."
    assert logic.exportReview() == {1: "accepted", 2: "unreviewed"}
    ui.show3DCheckBox.slots["toggled(bool)"](False)
    assert not logic.core.outputs.segmentation.GetDisplayNode().GetVisibility3D()


def test_device_precision_time_and_log_are_shown(panel):
    _run_with_three_findings(panel)
    text = panel.ui.runDetailsLabel.text
    assert text.startswith("cpu, float32, ") and text.endswith(" s"), text
    assert ("setPlainText", "INFO cascade models loaded (fake)") in panel.ui.logTextEdit.calls


def test_the_table_and_summary_clear_on_input_change_and_scene_close(panel, mrml, case):
    from LungNoduleCADLib.volume import add_volume_node_from_ct
    from LungNoduleCADLib.widget import NO_RESULT_TEXT

    ui, node = panel.ui, panel.logic.parameter_node
    assert ui.findingsTableView.calls == [] and ui.summaryLabel.text == NO_RESULT_TEXT
    _run_with_three_findings(panel)
    table = panel.logic.core.outputs.table
    assert ui.findingsTableView.calls == [("setMRMLTableNode", table)]
    assert ui.summaryLabel.text == panel.logic.core.summary_text() != NO_RESULT_TEXT
    node.inputVolume = add_volume_node_from_ct(mrml.scene, case.ct, name="other")
    node.modified()
    assert ui.findingsTableView.calls[-1] == ("setMRMLTableNode", None)
    assert ui.summaryLabel.text == NO_RESULT_TEXT and not ui.nextFindingButton.enabled
    node.inputVolume = panel.harness.volume
    node.modified()
    assert ui.findingsTableView.calls[-1] == ("setMRMLTableNode", table)
    mrml.scene.Clear(0)
    assert ui.findingsTableView.calls[-1] == ("setMRMLTableNode", None)
    assert ui.summaryLabel.text == NO_RESULT_TEXT
    assert len(ui.findingsTableView.calls) == 4
