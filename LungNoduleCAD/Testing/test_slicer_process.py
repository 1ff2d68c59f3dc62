"""Background detection: a real child process running the cascade, its progress, and Cancel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import slicer_phantoms
from LungNoduleCADLib.logic import LungNoduleCADCore, RunRequest
from LungNoduleCADLib.process import (
    DetectionProcess,
    DetectionProcessError,
    State,
    SubprocessRunner,
    overall_fraction,
)
from LungNoduleCADLib.process_tree import child_popen_options, kill_process_tree
from LungNoduleCADLib.volume import add_volume_node_from_ct
from LungNoduleCADLib.worker import WORKER_STAGES

from lungcad.ct import CT, Geometry
from lungcad.pipeline import STAGES, DetectionCancelled, Thresholds

THRESHOLDS = (0.5, 0.5, 0.5)


def _wait(process: DetectionProcess, until, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not until(process):
        assert time.monotonic() < deadline, f"timed out in state {process.state}, {process.stage}"
        process.poll()
        time.sleep(0.05)


def test_overall_progress_grows_through_the_stages():
    fractions = [overall_fraction(stage, f) for stage in STAGES for f in (0.0, 0.5, 1.0)]
    assert fractions == sorted(fractions)
    assert 0.0 < fractions[0] < fractions[-1] == pytest.approx(1.0)
    assert overall_fraction("not a stage", 0.5) == 0.0


def test_child_process_gives_the_in_process_result_and_cleans_up(mrml):
    ct = slicer_phantoms.nodule_crop(0)
    expected = slicer_phantoms.CachedRunner()(ct, RunRequest())
    process = DetectionProcess(ct, THRESHOLDS, device="cpu").start()
    folder = process.folder
    assert folder.is_dir() and (folder / "input.mha").is_file()
    _wait(process, lambda p: p.state is not State.RUNNING)
    assert process.state is State.FINISHED, process.error
    assert process.fraction == 1.0
    assert process.stages_seen == [*WORKER_STAGES, *STAGES]
    import torch

    from lungcad.pipeline import BUNDLED_MODELS, resolve_precision

    expected_precision = resolve_precision("auto", torch.device("cpu")).value
    assert (process.device, process.precision) == ("cpu", expected_precision)
    assert [line for line in process.output_lines if "cascade models loaded" in line] == [
        f"INFO cascade models loaded from {BUNDLED_MODELS} on cpu ({expected_precision})"
    ]
    result = process.result()
    assert not folder.exists(), "the temporary folder is removed once the result is read"
    assert len(result.findings) == len(expected.findings)
    assert [f.p_nodule for f in result.findings] == pytest.approx(
        [f.p_nodule for f in expected.findings], abs=1e-5
    )
    np.testing.assert_allclose(
        [f.center_irc for f in result.findings],
        [f.center_irc for f in expected.findings],
        atol=1e-4,
    )
    for got, want in zip(result.findings, expected.findings, strict=True):
        np.testing.assert_array_equal(got.mask.paste(ct.shape), want.mask.paste(ct.shape))


def test_cancel_kills_the_child_and_leaves_the_scene_as_it_was(mrml):
    ct = slicer_phantoms.nodule_crop(1)
    volume = add_volume_node_from_ct(mrml.scene, ct)
    nodes_before = mrml.scene.GetNumberOfNodes()
    process = DetectionProcess(ct, THRESHOLDS, device="cpu").start()
    folder = process.folder
    _wait(process, lambda p: p.stage != "loading CT" or p.state is not State.RUNNING)
    assert process.state is State.RUNNING, process.error
    process.cancel()
    assert process.state is State.CANCELLED
    assert process.returncode is not None, "the child process is gone"
    assert not folder.exists()
    assert process.poll() is State.CANCELLED
    with pytest.raises(DetectionProcessError, match="cancelled"):
        process.result()
    assert mrml.scene.GetNumberOfNodes() == nodes_before
    assert volume.GetImageData() is not None


def test_subprocess_runner_cancel_event_raises_and_scene_is_untouched(mrml):
    ct = slicer_phantoms.nodule_crop(1)
    volume = add_volume_node_from_ct(mrml.scene, ct)
    nodes_before = mrml.scene.GetNumberOfNodes()
    runner = SubprocessRunner()
    core = LungNoduleCADCore(mrml, runner=runner)

    class CancelOnFirstProgress:
        """A cancel event that becomes set once the child has reported progress."""

        def is_set(self) -> bool:
            return runner.last is not None and runner.last.stage not in ("", "loading CT")

    with pytest.raises(DetectionCancelled):
        core.run(
            volume,
            RunRequest(thresholds=Thresholds(), device="cpu"),
            cancel=CancelOnFirstProgress(),
        )
    assert runner.last.state is State.CANCELLED
    assert runner.last.returncode is not None
    assert mrml.scene.GetNumberOfNodes() == nodes_before
    assert core.result is None and core.outputs is None


def test_a_failing_child_reports_why(tmp_path):
    geometry = Geometry.from_arrays((0, 0, 0), (1, 1, 1), np.eye(3), (4, 8, 8))
    ct = CT(np.full((4, 8, 8), -1000, np.int16), geometry)
    process = DetectionProcess(ct, THRESHOLDS, device="cpu", model_folder=tmp_path / "no-models")
    process.start()
    _wait(process, lambda p: p.state is not State.RUNNING)
    assert process.state is State.FAILED
    assert "no-models" in process.error
    assert process.folder is None
    with pytest.raises(DetectionProcessError, match="no-models"):
        process.result()


#: A stand-in for PythonSlicer: it starts a second Python (as the launcher starts python-real),
#: writes both pids to the file named in argv[1], then sleeps. With argv[2] == "own-session" the
#: grandchild leaves the process group, so only a walk of the tree (psutil) finds it.
_TREE = textwrap.dedent(
    """
    import os, subprocess, sys, time
    own = len(sys.argv) > 2 and sys.argv[2] == "own-session"
    grandchild = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=own
    )
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {grandchild.pid}")
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(120)
    """
)


def _tree_pids(pid_file: Path, timeout_s: float = 30.0) -> tuple[int, int]:
    deadline = time.monotonic() + timeout_s
    while not pid_file.is_file():
        assert time.monotonic() < deadline, "the fake child never wrote its pids"
        time.sleep(0.05)
    child, grandchild = map(int, pid_file.read_text(encoding="utf-8").split())
    return child, grandchild


def _gone(pid: int, timeout_s: float = 5.0) -> bool:
    """True once ``pid`` has ended (a zombie waiting for a reaper that is not ours counts)."""
    psutil = pytest.importorskip("psutil")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(sys.platform == "win32", reason="the fake launcher is a shell script")
def test_cancel_ends_the_grandchild_too(tmp_path):
    """Inside Slicer the child is the PythonSlicer launcher; Cancel must end python-real too,
    even one outside the child's process group."""
    pytest.importorskip("psutil")
    pid_file = tmp_path / "pids.txt"
    launcher = tmp_path / "fake-python"
    script = f'#!/bin/sh\nexec "{sys.executable}" -c \'{_TREE}\' "{pid_file}" own-session\n'
    launcher.write_text(script, encoding="utf-8")
    launcher.chmod(0o755)
    geometry = Geometry.from_arrays((0, 0, 0), (1, 1, 1), np.eye(3), (4, 8, 8))
    ct = CT(np.full((4, 8, 8), -1000, np.int16), geometry)
    process = DetectionProcess(ct, THRESHOLDS, device="cpu", python=str(launcher)).start()
    child, grandchild = _tree_pids(pid_file)
    started = time.monotonic()
    process.cancel()
    assert _gone(child) and _gone(grandchild), "Cancel left part of the process tree running"
    assert time.monotonic() - started < 10.0
    assert process.state is State.CANCELLED and process.returncode is not None
    assert process.folder is None


@pytest.mark.skipif(sys.platform == "win32", reason="process groups are POSIX")
def test_without_psutil_the_process_group_ends_the_tree(tmp_path, monkeypatch):
    pid_file = tmp_path / "pids.txt"
    proc = subprocess.Popen([sys.executable, "-c", _TREE, str(pid_file)], **child_popen_options())
    try:
        child, grandchild = _tree_pids(pid_file)
        assert child == proc.pid
        with monkeypatch.context() as patched:
            patched.setitem(sys.modules, "psutil", None)  # import psutil raises ImportError
            kill_process_tree(proc)
        assert proc.returncode is not None
        assert _gone(grandchild), "the process group fallback left the grandchild running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kill_process_tree_on_an_exited_child_is_harmless():
    proc = subprocess.Popen([sys.executable, "-c", "pass"], **child_popen_options())
    proc.wait()
    kill_process_tree(proc)
    assert proc.returncode == 0


def test_the_child_console_is_hidden_on_windows(monkeypatch):
    monkeypatch.setattr(subprocess, "CREATE_NO_WINDOW", 0x08000000, raising=False)
    monkeypatch.setattr(sys, "platform", "win32")
    assert child_popen_options() == {"creationflags": 0x08000000}
    monkeypatch.setattr(sys, "platform", "linux")
    assert child_popen_options() == {"start_new_session": True}


def test_every_stage_weighs_in_the_progress_bar_in_run_order():
    from LungNoduleCADLib.process import STAGE_WEIGHTS

    from lungcad.stages import Stage

    assert list(STAGE_WEIGHTS) == list(Stage)
    assert WORKER_STAGES == ("loading CT", "loading models")
    assert [overall_fraction(s, 0.0) for s in Stage] == sorted(
        overall_fraction(s, 0.0) for s in Stage
    )
    assert overall_fraction(Stage.MAPPING, 1.0) == pytest.approx(1.0)


def test_the_worker_without_pytorch_reports_why(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # import torch raises ImportError
        from LungNoduleCADLib import worker
        sys.exit(worker.main(["--input", "in.mha", "--output", "out.npz"]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout.startswith('LUNGCAD_ERROR {"message": "cannot import the engine: ')


@pytest.mark.skipif(sys.platform == "win32", reason="the fake launcher is a shell script")
def test_the_run_ends_when_the_child_exits_even_if_a_grandchild_holds_its_output(tmp_path):
    """The end of the output never comes while a grandchild keeps the pipe open; the child's exit
    status ends the run all the same."""
    pid_file = tmp_path / "pids.txt"
    script = textwrap.dedent(
        f"""
        import subprocess, sys
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pid_file)!r}, "w").write(str(grandchild.pid))
        print("LUNGCAD_ERROR {{\\"message\\": \\"models missing\\"}}", flush=True)
        sys.exit(2)
        """
    )
    launcher = tmp_path / "fake-python"
    child = tmp_path / "child.py"
    child.write_text(script, encoding="utf-8")
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{child}"\n', encoding="utf-8")
    launcher.chmod(0o755)
    geometry = Geometry.from_arrays((0, 0, 0), (1, 1, 1), np.eye(3), (4, 8, 8))
    ct = CT(np.full((4, 8, 8), -1000, np.int16), geometry)
    folders = tmp_path / "runs"
    process = DetectionProcess(
        ct, THRESHOLDS, python=str(launcher), make_folder=lambda: folders / "run"
    ).start()
    assert process.folder == folders / "run"
    started = time.monotonic()
    try:
        _wait(process, lambda p: p.state is not State.RUNNING, timeout_s=30.0)
        assert time.monotonic() - started < 15.0
        assert process.state is State.FAILED and process.exit_code == 2
        assert process.error == "models missing"
        assert not (folders / "run").exists()
    finally:
        grandchild = int(pid_file.read_text(encoding="utf-8"))
        os.kill(grandchild, signal.SIGKILL)
