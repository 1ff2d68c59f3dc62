"""The panel's run (LungNoduleCADLib.controller) against a real scene and a scripted child.

The child is Testing/fake_worker.py, started through DetectionProcess exactly as the worker is
(a launcher script stands in for PythonSlicer), so these tests cover the real pipe, exit status,
temporary folder and process tree handling; the scene is slicer-core's.
"""

from __future__ import annotations

import importlib
import sys
import time

import pytest
from controller_support import Harness, gone, make_case
from LungNoduleCADLib import controller as ctl
from LungNoduleCADLib.install import InstallOutcome

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="the fake PythonSlicer launcher is a shell script"
)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return make_case(tmp_path_factory)


@pytest.fixture
def harness(mrml, case, tmp_path):
    made = Harness(mrml, case, tmp_path)
    yield made
    made.controller.shutdown()


def _output_nodes(scene) -> int:
    return sum(
        scene.GetNumberOfNodesByClass(c)
        for c in ("vtkMRMLSegmentationNode", "vtkMRMLMarkupsFiducialNode", "vtkMRMLTableNode")
    )


def test_a_normal_run_shows_the_findings_and_removes_its_folder(harness, case):
    harness.apply("normal")
    assert harness.controller.busy and harness.controller.can_cancel
    harness.finish()
    controller = harness.controller
    assert controller.state is ctl.RunState.DONE, controller.status
    assert controller.status == f"Done: {case.result.summary.text}"
    assert harness.states == [ctl.RunState.INSTALLING, ctl.RunState.RUNNING, ctl.RunState.DONE]
    assert not controller.busy and not controller.can_cancel and controller.fraction is None
    assert harness.installer.calls == 1
    assert harness.shown == [harness.volume]
    table = harness.parameters.outputTable
    assert table.GetNumberOfRows() == len(case.result.findings) > 0
    assert harness.parameters.outputSegmentation.GetSegmentation().GetNumberOfSegments() == len(
        case.result.findings
    )
    assert harness.run_folders() == [], "the run's temporary folder is removed"
    assert ctl._IN_FLIGHT == []


def test_device_precision_elapsed_time_and_the_childs_log_outlive_the_run(harness):
    ticks = iter(range(100))  # each clock read is one second later
    harness.controller.shutdown()
    harness.controller = ctl.RunController(harness.installer, clock=lambda: float(next(ticks)))
    assert (harness.controller.details, harness.controller.log_lines) == ("", [])
    harness.apply("normal")
    harness.finish()
    controller = harness.controller
    assert controller.state is ctl.RunState.DONE, controller.status
    assert controller.details == "cpu, float32, 1.0 s"
    assert controller.log_lines == ["INFO cascade models loaded (fake)"]
    harness.apply("crash")  # a new run starts a new log; nothing said about the device
    harness.finish()
    assert controller.details == "1.0 s"
    assert controller.log_lines == ["Fatal Python error: Segmentation fault"]


def test_a_failing_child_returns_to_rest_with_its_reason_and_apply_works_again(harness):
    nodes = _output_nodes(harness.mrml.scene)
    harness.apply("fail")
    harness.finish()
    controller = harness.controller
    assert controller.state is ctl.RunState.FAILED
    assert controller.status == "Detection failed: no weights in /nowhere"
    assert not controller.busy and not controller.can_cancel and controller.fraction is None
    assert harness.run_folders() == []
    assert _output_nodes(harness.mrml.scene) == nodes, "a failed run leaves the scene alone"
    harness.apply("normal")  # the panel is not stuck
    harness.finish()
    assert controller.state is ctl.RunState.DONE


def test_a_crash_without_end_marker_fails_with_the_exit_status_and_last_words(harness):
    harness.apply("crash")
    harness.finish()
    controller = harness.controller
    assert controller.state is ctl.RunState.FAILED
    assert controller.status == (
        "Detection failed: detection process exited with status 139: "
        "Fatal Python error: Segmentation fault"
    )
    assert harness.run_folders() == []


def test_bytes_that_are_not_utf8_do_not_stop_the_run(harness, case):
    harness.apply("garbage")
    harness.finish()
    assert harness.controller.state is ctl.RunState.DONE, harness.controller.status
    assert harness.parameters.outputTable.GetNumberOfRows() == len(case.result.findings)
    assert harness.run_folders() == []


def test_garbage_then_exit_without_result_fails_at_once(harness):
    harness.apply("garbage-exit")
    started = time.monotonic()
    harness.finish(timeout_s=10.0)
    assert time.monotonic() - started < 10.0
    controller = harness.controller
    assert controller.state is ctl.RunState.FAILED
    assert controller.status == (
        "Detection failed: detection process exited without a result: "
        "\ufffd\ufffd\ufffd not utf-8 \ufffd( | LUNGCAD_PROGRESS {not json"
    )
    assert harness.run_folders() == []


def test_cancel_mid_run_ends_the_child_and_leaves_the_scene(harness):
    nodes = _output_nodes(harness.mrml.scene)
    harness.apply("hang")
    pid = harness.child_pid()
    deadline = time.monotonic() + 30
    while harness.controller.status != "Detecting nodules: segmentation...":
        assert time.monotonic() < deadline, harness.controller.status
        harness.controller.poll()
        time.sleep(0.02)
    assert 0.0 < harness.controller.fraction < 1.0
    assert harness.controller.cancel() is True
    assert harness.controller.state is ctl.RunState.CANCELLED
    assert harness.controller.status == ctl.CANCELLED_STATUS
    assert gone(pid), "Cancel left the child running"
    assert harness.run_folders() == []
    assert harness.controller.cancel() is False, "a second Cancel does nothing"
    assert harness.controller.poll() is ctl.RunState.CANCELLED
    assert _output_nodes(harness.mrml.scene) == nodes
    assert ctl._IN_FLIGHT == []


def test_cancel_without_a_run_does_nothing():
    changes = []
    controller = ctl.RunController(on_change=lambda: changes.append(1))
    assert controller.cancel() is False
    assert controller.poll() is ctl.RunState.IDLE
    assert (controller.state, controller.status, changes) == (ctl.RunState.IDLE, "", [])


def test_a_scene_close_during_a_run_cancels_it(harness):
    harness.controller.watch_scene(harness.mrml.scene)
    harness.apply("hang")
    pid = harness.child_pid()
    harness.mrml.scene.Clear(0)
    controller = harness.controller
    assert controller.state is ctl.RunState.CANCELLED
    assert controller.status == ctl.SCENE_CLOSED_STATUS
    assert gone(pid)
    assert harness.run_folders() == []
    harness.controller.watch_scene(None)
    harness.mrml.scene.Clear(0)  # no longer watched: nothing happens
    assert controller.status == ctl.SCENE_CLOSED_STATUS


def test_a_module_reload_during_a_run_ends_the_old_child(harness):
    harness.apply("hang")
    pid = harness.child_pid()
    assert len(ctl._IN_FLIGHT) == 1
    reloaded = importlib.reload(ctl)  # what Slicer's Reload does to the Lib modules
    assert reloaded._IN_FLIGHT is ctl._IN_FLIGHT, "the list of runs survives the reload"
    fresh = reloaded.RunController()  # the new panel's controller
    assert gone(pid), "the old panel's child outlived the reload"
    assert harness.run_folders() == []
    assert reloaded._IN_FLIGHT == []
    assert fresh.state is reloaded.RunState.IDLE and fresh.status == ""


def test_a_volume_removed_during_the_run_fails_with_the_reason(harness):
    harness.apply("normal")
    harness.mrml.scene.RemoveNode(harness.volume)
    harness.finish()
    assert harness.controller.state is ctl.RunState.FAILED
    assert harness.controller.status.startswith("Detection finished, but showing its findings")
    assert "was removed during detection" in harness.controller.status
    assert harness.run_folders() == []


def test_a_start_that_fails_removes_the_folder_and_returns_to_rest(harness):
    logic = harness.logic("normal")
    logic.python = str(harness.tmp / "no-such-python")
    assert harness.controller.apply(logic.detectionRun(harness.parameters)) is False
    assert harness.controller.state is ctl.RunState.FAILED
    assert harness.controller.status.startswith("Could not start detection: ")
    assert "no-such-python" in harness.controller.status
    assert harness.run_folders() == [], "the CT's folder is removed when the child cannot start"
    assert ctl._IN_FLIGHT == []


def test_an_install_failure_or_refusal_never_starts_the_child(harness):
    harness.installer.error = "LungNoduleCAD needs the PyTorch extension."
    run = harness.logic("normal").detectionRun(harness.parameters)
    assert harness.controller.apply(run) is False
    assert harness.controller.state is ctl.RunState.FAILED
    assert harness.controller.status == (
        "Could not install the Python packages: LungNoduleCAD needs the PyTorch extension."
    )
    assert not harness.pid_file.exists()
    harness.installer.error = ""
    for outcome in (InstallOutcome.DECLINED, InstallOutcome.RESTART_NEEDED):
        harness.installer.outcome = outcome
        run = harness.logic("normal").detectionRun(harness.parameters)
        assert harness.controller.apply(run) is False
        assert harness.controller.state is ctl.RunState.IDLE
        assert harness.controller.status == ctl.OUTCOME_STATUS[outcome]
    assert not harness.pid_file.exists()
    assert harness.run_folders() == []


def test_apply_while_running_is_ignored(harness):
    harness.apply("hang")
    pid = harness.child_pid()
    second = harness.logic("normal").detectionRun(harness.parameters)
    assert harness.controller.apply(second) is False
    assert harness.controller.state is ctl.RunState.RUNNING
    assert harness.installer.calls == 1
    assert len(harness.run_folders()) == 1
    harness.controller.shutdown()
    assert gone(pid)
    assert harness.controller.state is ctl.RunState.CANCELLED
    assert harness.run_folders() == []
