"""A volume in a real scene, the module logic and a run controller driving a scripted child
(fake_worker.py through a launcher script that stands in for PythonSlicer); shared by the
controller and panel tests."""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path

import slicer_phantoms
from LungNoduleCADLib import controller as ctl
from LungNoduleCADLib.install import InstallError, InstallOutcome
from LungNoduleCADLib.logic import RunRequest
from LungNoduleCADLib.module_logic import ModuleLogic
from LungNoduleCADLib.volume import add_volume_node_from_ct


def make_case(tmp_path_factory):
    """A CT and the result the real cascade gives for it, saved where the fake child copies it."""
    ct = slicer_phantoms.nodule_crop(0)
    result = slicer_phantoms.CachedRunner()(ct, RunRequest())
    path = tmp_path_factory.mktemp("result") / "result.npz"
    result.save(path)
    return types.SimpleNamespace(ct=ct, result=result, npz=path)


FAKE_WORKER = Path(__file__).resolve().parent / "fake_worker.py"


class Harness:
    """A volume in a real scene, the module logic, a controller, and a fake child per scenario."""

    def __init__(self, mrml, case, tmp_path: Path) -> None:
        self.mrml = mrml
        self.case = case
        self.runs = tmp_path / "runs"  # every run's temporary folder is made in here
        self.runs.mkdir()
        self.tmp = tmp_path
        self.volume = add_volume_node_from_ct(mrml.scene, case.ct)
        self.parameters = types.SimpleNamespace(
            inputVolume=self.volume,
            device="cpu",
            segmentationThreshold=0.5,
            noduleThreshold=0.5,
            malignancyThreshold=0.5,
            modelFolder="",
        )
        self.states: list[ctl.RunState] = []
        self.installer = FakeInstaller()
        self.controller = ctl.RunController(self.installer, on_change=self._changed)
        self.shown: list = []

    def _changed(self) -> None:
        if not self.states or self.states[-1] is not self.controller.state:
            self.states.append(self.controller.state)

    def launcher(self, scenario: str) -> Path:
        """A stand-in for PythonSlicer that runs fake_worker.py with ``scenario``."""
        path = self.tmp / f"python-{scenario}"
        path.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_WORKER}" {scenario} '
            f'"{self.case.npz}" "{self.pid_file}" "$@"\n',
            encoding="utf-8",
        )
        path.chmod(0o755)
        return path

    def make_folder(self) -> Path:
        """A new run folder inside :attr:`runs` (what slicer.util.tempDirectory is in Slicer)."""
        return self.runs / f"run-{len(list(self.runs.iterdir()))}-{time.monotonic_ns()}"

    def logic(self, scenario: str, logic_class: type = ModuleLogic) -> ModuleLogic:
        return logic_class(
            services=lambda: self.mrml,
            make_folder=self.make_folder,
            python=str(self.launcher(scenario)),
        )

    @property
    def pid_file(self) -> Path:
        return self.tmp / "child.pid"

    def apply(self, scenario: str, logic: ModuleLogic | None = None) -> ModuleLogic:
        logic = logic or self.logic(scenario)
        self.pid_file.unlink(missing_ok=True)
        assert self.controller.apply(logic.detectionRun(self.parameters, shown=self.shown.append))
        return logic

    def finish(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.controller.poll() is ctl.RunState.RUNNING:
            assert time.monotonic() < deadline, f"still running: {self.controller.status}"
            time.sleep(0.02)

    def child_pid(self, timeout_s: float = 30.0) -> int:
        deadline = time.monotonic() + timeout_s
        while not self.pid_file.is_file():
            assert time.monotonic() < deadline, "the fake child never started"
            time.sleep(0.02)
        return int(self.pid_file.read_text(encoding="utf-8"))

    def run_folders(self) -> list[Path]:
        return sorted(self.runs.iterdir())


class FakeInstaller:
    def __init__(self, outcome: InstallOutcome = InstallOutcome.READY, error: str = "") -> None:
        self.outcome, self.error, self.calls = outcome, error, 0

    def ensure(self) -> InstallOutcome:
        self.calls += 1
        if self.error:
            raise InstallError(self.error)
        return self.outcome


def gone(pid: int, timeout_s: float = 10.0) -> bool:
    """True once ``pid`` has ended (reaped, or a zombie whose parent is not us)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except (FileNotFoundError, IndexError):
            return True
        time.sleep(0.05)
    return False
