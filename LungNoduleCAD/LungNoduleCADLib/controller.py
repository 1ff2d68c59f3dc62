"""The panel's run, as a state machine without Qt: idle -> installing -> running -> an outcome.

The widget only draws :class:`RunController` (its state, status line and progress) and forwards
clicks and timer ticks to it. Every path out of a run ends at rest (idle, done, failed or
cancelled) with the reason in :attr:`RunController.status`; nothing here raises into the GUI, so
the panel cannot be left with Apply disabled. A run ends when the child process exits, whatever it
printed (see :meth:`LungNoduleCADLib.process.DetectionProcess.poll`), and its temporary folder is
removed on every outcome.

Runs in flight are also listed module-wide, in a list that survives ``importlib.reload``: a new
controller (a reloaded module, a second panel) ends any run an older one left behind, and so does
interpreter exit, so no detection process outlives the panel that started it.
"""

from __future__ import annotations

import atexit
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from LungNoduleCADLib.install import InstallOutcome
from LungNoduleCADLib.process import State

log = logging.getLogger(__name__)

CANCELLED_STATUS = "Cancelled; the scene was not changed."
SCENE_CLOSED_STATUS = "Cancelled: the scene was closed during detection."
REPLACED_STATUS = "Cancelled: a newer panel (a module reload) ended this run."


class RunState(enum.Enum):
    """Where the panel's run is; INSTALLING and RUNNING are busy, the others at rest."""

    IDLE = "idle"
    INSTALLING = "installing"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def busy(self) -> bool:
        return self in (RunState.INSTALLING, RunState.RUNNING)


#: Status shown when the installer says the run cannot go on (and no error occurred).
OUTCOME_STATUS = {
    InstallOutcome.DECLINED: "Not started: the Python packages LungNoduleCAD needs are missing.",
    InstallOutcome.RESTART_NEEDED: "PyTorch was updated: restart Slicer, then press Apply.",
}


class Installer(Protocol):
    """LungNoduleCADLib.install.Installer as the controller uses it."""

    def ensure(self) -> InstallOutcome: ...


class Process(Protocol):
    """LungNoduleCADLib.process.DetectionProcess as the controller uses it."""

    state: State
    stage: str
    fraction: float

    @property
    def error(self) -> str | None: ...

    def poll(self) -> State: ...

    def cancel(self) -> None: ...

    def result(self) -> Any: ...

    # optional (DetectionProcess has them): what the child ran on, and its output
    # device: str | None; precision: str | None; output_lines: list[str]


def run_details(device: str | None, precision: str | None, elapsed_s: float | None) -> str:
    """The status's second line: "cpu, float32, 12.3 s" with what is known so far."""
    parts = [p for p in (device, precision) if p]
    if elapsed_s is not None:
        parts.append(f"{elapsed_s:.1f} s")
    return ", ".join(parts)


@dataclass(frozen=True)
class Run:
    """One Apply: how to start the child, and how to show its result (returns the status)."""

    start: Callable[[], Process]
    finish: Callable[[Any], str]


#: The process of every run in flight, whichever controller started it; this list survives
#: importlib.reload of this module (reload runs the code again in the same namespace).
_IN_FLIGHT: list[Process] = globals().get("_IN_FLIGHT", [])


def end_runs_in_flight() -> int:
    """End every listed run (their controllers are gone or replaced); returns how many."""
    ended = 0
    while _IN_FLIGHT:
        process = _IN_FLIGHT.pop()
        try:
            process.cancel()
        except Exception:  # ending the rest matters more than this one's error
            log.exception("could not end a detection run left behind")
        ended += 1
    return ended


if not globals().get("_AT_EXIT_REGISTERED"):
    atexit.register(end_runs_in_flight)
    _AT_EXIT_REGISTERED = True


class RunController:
    """Apply, poll, cancel and end one detection run at a time; see the module docstring.

    ``installer`` is asked before each run (None: nothing to install); ``on_change`` is called
    after every change of state, status or progress (the widget redraws there).
    """

    def __init__(
        self,
        installer: Installer | None = None,
        on_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._installer = installer
        self._on_change = on_change
        self._clock = clock
        self._run: Run | None = None
        self._process: Process | None = None
        self._last: Process | None = None  # the latest run's process, kept for its log
        self._started: float | None = None
        self._ended: float | None = None
        self._scene: Any = None
        self._scene_tag: int | None = None
        self.state = RunState.IDLE
        self.status = ""
        left_behind = end_runs_in_flight()
        if left_behind:
            log.warning("ended %d detection run(s) an earlier panel left running", left_behind)

    # -- what the widget draws -----------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.state.busy

    @property
    def fraction(self) -> float | None:
        """Progress of the running detection (0..1), None when no detection runs."""
        if self.state is not RunState.RUNNING or self._process is None:
            return None
        return float(self._process.fraction)

    @property
    def can_cancel(self) -> bool:
        return self.state is RunState.RUNNING

    @property
    def elapsed_s(self) -> float | None:
        """Seconds the latest detection ran (so far, while it runs); None before any."""
        if self._started is None:
            return None
        return (self._ended if self._ended is not None else self._clock()) - self._started

    @property
    def details(self) -> str:
        """Device, precision and elapsed time of the latest detection ("" before any)."""
        last = self._last
        return run_details(
            getattr(last, "device", None), getattr(last, "precision", None), self.elapsed_s
        )

    @property
    def log_lines(self) -> list[str]:
        """The latest detection's output (the child's log), also after it ended."""
        return list(getattr(self._last, "output_lines", ()))

    # -- what the widget forwards --------------------------------------------------------------
    def apply(self, run: Run) -> bool:
        """Install what is missing, then start ``run``; False (and a status) if it did not start.

        Ignored while busy, so a second click (or a click during pip's event processing) cannot
        start a second run.
        """
        if self.busy:
            log.info("Apply ignored: a run is %s", self.state.value)
            return False
        self._set(RunState.INSTALLING, "Checking the Python packages...")
        try:
            outcome = self._installer.ensure() if self._installer else InstallOutcome.READY
        except Exception as exc:
            return self._fail(f"Could not install the Python packages: {exc}")
        if outcome is not InstallOutcome.READY:
            self._set(RunState.IDLE, OUTCOME_STATUS[outcome])
            return False
        self._started, self._ended, self._last = self._clock(), None, None
        self._set(RunState.RUNNING, "Starting detection...")
        try:
            process = run.start()
        except Exception as exc:
            self._ended = self._clock()
            return self._fail(f"Could not start detection: {exc}")
        self._run, self._process, self._last = run, process, process
        _IN_FLIGHT.append(process)
        self._notify()
        return True

    def poll(self) -> RunState:
        """Take in the child's progress; on its exit show the result or the reason it failed."""
        if self.state is not RunState.RUNNING or self._process is None:
            return self.state
        process = self._process
        try:
            state = process.poll()
        except Exception as exc:
            return self._end_failed(f"Detection failed: {exc}")
        if state is State.RUNNING:
            self.status = f"Detecting nodules: {process.stage}..."
            self._notify()
            return self.state
        self._ended = self._clock()  # the child is done; showing its findings is not timed
        if state is State.CANCELLED:  # only another controller cancels our process
            self._release()
            self._set(RunState.CANCELLED, REPLACED_STATUS)
            return self.state
        if state is not State.FINISHED:
            return self._end_failed(f"Detection failed: {process.error or state.value}")
        run = self._run
        try:
            status = run.finish(process.result())
        except Exception as exc:
            return self._end_failed(f"Detection finished, but showing its findings failed: {exc}")
        self._release()
        self._set(RunState.DONE, status)
        return self.state

    def cancel(self, status: str = CANCELLED_STATUS) -> bool:
        """Stop the running detection (the scene stays as it was); without one, do nothing."""
        if self.state is not RunState.RUNNING or self._process is None:
            return False
        self._release()
        self._set(RunState.CANCELLED, status)
        return True

    def shutdown(self) -> None:
        """End any run and stop watching the scene (module cleanup, reload, Slicer exit)."""
        self.cancel()
        self.watch_scene(None)

    def watch_scene(self, scene: Any) -> None:
        """Cancel the run when ``scene`` starts closing (None: stop watching)."""
        if self._scene is not None and self._scene_tag is not None:
            self._scene.RemoveObserver(self._scene_tag)
        self._scene, self._scene_tag = scene, None
        if scene is not None:
            self._scene_tag = scene.AddObserver(scene.StartCloseEvent, self._on_scene_close)

    # -- internals -----------------------------------------------------------------------------
    def _on_scene_close(self, caller: Any = None, event: Any = None) -> None:
        self.cancel(SCENE_CLOSED_STATUS)

    def _release(self) -> None:
        """Forget the process after ending it and removing its folder (harmless once ended)."""
        process, self._process, self._run = self._process, None, None
        if process is None:
            return
        if self._ended is None:
            self._ended = self._clock()
        if process in _IN_FLIGHT:
            _IN_FLIGHT.remove(process)
        try:
            process.cancel()  # ends a live child; for an ended one only removes the folder
        except Exception:
            log.exception("could not end the detection process")

    def _end_failed(self, reason: str) -> RunState:
        self._release()
        self._fail(reason)
        return self.state

    def _fail(self, reason: str) -> bool:
        log.error("%s", reason)
        self._set(RunState.FAILED, reason)
        return False

    def _set(self, state: RunState, status: str) -> None:
        self.state, self.status = state, status
        self._notify()

    def _notify(self) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change()
        except Exception:  # a drawing error must not wedge the run
            log.exception("the panel could not draw the run's state")
