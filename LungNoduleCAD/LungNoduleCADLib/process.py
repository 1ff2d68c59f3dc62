"""Detection in a child process, so the GUI stays responsive and Cancel can stop it at once.

:class:`DetectionProcess` writes the CT to a private temporary folder (made by an injectable
factory: ``slicer.util.tempDirectory`` inside Slicer), starts ``python -m LungNoduleCADLib.worker``
and reads its progress lines on a reader thread (no Qt here). The run controller
(:mod:`LungNoduleCADLib.controller`) calls :meth:`DetectionProcess.poll` from a QTimer. A run ends
when the child exits, whatever it printed: the exit status decides, the end marker is not needed,
and bytes that are not UTF-8 are replaced rather than stopping the reader.
:meth:`DetectionProcess.cancel` kills the child and removes the folder, and nothing is ever
written to the scene by this module, so a cancelled run leaves the scene exactly as it was.
:class:`SubprocessRunner` wraps the same class as a blocking
:class:`LungNoduleCADLib.logic.Runner` for batch use and tests.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lungcad.ct import CT
from lungcad.ctio import write_ct
from lungcad.stages import Stage
from LungNoduleCADLib.process_tree import child_popen_options, kill_process_tree
from LungNoduleCADLib.worker import DONE, ERROR, INFO, PROGRESS

if TYPE_CHECKING:  # lungcad.pipeline imports PyTorch, which the panel may still have to install
    from lungcad.pipeline import DetectionResult

log = logging.getLogger(__name__)

#: The folder that holds ``lungcad`` and ``LungNoduleCADLib`` (the module's folder).
MODULE_DIR = Path(__file__).resolve().parents[1]

#: Share of the whole run each stage takes (roughly, on CPU); used for one overall progress bar.
STAGE_WEIGHTS: dict[Stage, float] = {
    Stage.LOADING_CT: 0.03,
    Stage.LOADING_MODELS: 0.02,
    Stage.LUNGS: 0.05,
    Stage.RESAMPLE: 0.05,
    Stage.SEGMENTATION: 0.55,
    Stage.GROUPING: 0.05,
    Stage.CLASSIFICATION: 0.2,
    Stage.MAPPING: 0.05,
}
#: How long to wait, after the child exits, for the reader to pass on what it printed last (a
#: grandchild that keeps the pipe open must not keep the run going).
READER_GRACE_S = 2.0
#: How many of the child's plain output lines a run keeps for the panel's log.
LOG_LINES = 2000

#: Makes a new, empty folder for one run's files (``slicer.util.tempDirectory`` in Slicer).
FolderFactory = Callable[[], "str | Path"]


class DetectionProcessError(RuntimeError):
    """The child process failed; the message carries its last words."""


class State(enum.Enum):
    NOT_STARTED = "not started"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


def overall_fraction(stage: str | Stage, fraction: float) -> float:
    """Progress of the whole run (0..1) from one stage's progress (0 for an unknown stage)."""
    try:
        stage = Stage(stage)
    except ValueError:
        return 0.0
    order = list(Stage)
    done = sum(STAGE_WEIGHTS[s] for s in order[: order.index(stage)])
    total = sum(STAGE_WEIGHTS.values())
    return min(1.0, (done + STAGE_WEIGHTS[stage] * min(max(fraction, 0.0), 1.0)) / total)


def default_folder() -> Path:
    """A private temporary folder outside Slicer (inside it the module passes tempDirectory)."""
    return Path(tempfile.mkdtemp(prefix="LungNoduleCAD-"))


def python_executable() -> str:
    """Slicer's PythonSlicer inside Slicer (same packages as the GUI), else this interpreter."""
    try:
        import slicer

        if getattr(slicer, "app", None) is not None:
            found = shutil.which("PythonSlicer")
            if found:
                return found
    except ImportError:
        pass
    return sys.executable


def child_environment() -> dict[str, str]:
    env = dict(os.environ)
    parts = [str(MODULE_DIR), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PYTHONIOENCODING"] = "utf-8"  # the parent decodes UTF-8 whatever the console's code page
    return env


class DetectionProcess:
    """One detection run in a child process; not restartable."""

    def __init__(
        self,
        ct: CT,
        thresholds: tuple[float, float, float],
        device: str = "auto",
        model_folder: Path | None = None,
        python: str | None = None,
        make_folder: FolderFactory = default_folder,
    ) -> None:
        self._ct = ct
        self._thresholds = thresholds
        self._device = device
        self._model_folder = model_folder
        self._python = python or python_executable()
        self._make_folder = make_folder
        self._reader: threading.Thread | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._tail: deque[str] = deque(maxlen=30)
        self._log: deque[str] = deque(maxlen=LOG_LINES)
        self.device: str | None = None  # what the child ran on, once it says (LUNGCAD_INFO)
        self.precision: str | None = None
        self._folder: Path | None = None
        self._result_path: Path | None = None
        self._error: str | None = None
        self.state = State.NOT_STARTED
        self.stage: str = ""  # a Stage once the child has named one (Stage is a str)
        self.stage_fraction = 0.0  # of the current stage
        self.fraction = 0.0  # of the whole run
        self.stages_seen: list[str] = []
        self.exit_code: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> DetectionProcess:
        """Write the CT and start the child; on any failure the folder is removed and the error
        raised (the state becomes FAILED)."""
        if self.state is not State.NOT_STARTED:
            raise RuntimeError("a DetectionProcess runs once")
        try:
            self._launch()
        except BaseException as exc:
            self._error = f"could not start detection: {exc}"
            self.state = State.FAILED
            if self._proc is not None:
                kill_process_tree(self._proc)
            self._cleanup()
            raise
        self.state = State.RUNNING
        self.stage = Stage.LOADING_CT
        return self

    def _launch(self) -> None:
        self._folder = Path(self._make_folder())
        self._folder.mkdir(parents=True, exist_ok=True)
        ct_path = write_ct(self._ct, self._folder / "input.mha")
        self._ct = None  # the child reads the file; drop our reference to the voxels
        self._result_path = self._folder / "result.npz"
        command = [
            self._python,
            "-m",
            "LungNoduleCADLib.worker",
            "--input",
            str(ct_path),
            "--output",
            str(self._result_path),
            "--device",
            self._device,
            "--thresholds",
            ",".join(f"{v:g}" for v in self._thresholds),
        ]
        if self._model_folder:
            command += ["--models", str(self._model_folder)]
        log.info("starting detection: %s", " ".join(command))
        self._proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            encoding="utf-8",
            errors="replace",  # a stray byte must not kill the reader (and so the run)
            env=child_environment(),
            cwd=str(self._folder),
            **child_popen_options(),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def poll(self) -> State:
        """Take in what the child said since the last call; returns the current state.

        The run ends when the child exits: FINISHED needs exit status 0 and a result file, any
        other exit is FAILED with the child's last words (its error message, else its last
        lines). The end-of-output marker is not waited for.
        """
        if self.state is not State.RUNNING:
            return self.state
        self._drain()
        code = self._proc.poll()
        if code is None:
            return self.state
        if self._reader is not None:  # let the reader pass on the child's last lines
            self._reader.join(READER_GRACE_S)
        self._drain()
        self.exit_code = code
        if code == 0 and self._result_path is not None and self._result_path.is_file():
            self.state = State.FINISHED
            self.fraction = 1.0
        else:
            self.state = State.FAILED
            self._error = self._error or self._exit_message(code)
            self._cleanup()
        return self.state

    def _drain(self) -> None:
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self._take(line)

    def _exit_message(self, code: int) -> str:
        said = " | ".join(list(self._tail)[-5:])
        if code == 0:
            return f"detection process exited without a result{': ' + said if said else ''}"
        return f"detection process exited with status {code}{': ' + said if said else ''}"

    def _take(self, line: str) -> None:
        """One line from the child; a malformed protocol line is kept as plain output."""
        kind, _, payload = line.partition(" ")
        try:
            if kind == PROGRESS:
                data = json.loads(payload)
                stage, fraction = str(data["stage"]), float(data["fraction"])
                try:
                    stage = Stage(stage)
                except ValueError:
                    log.debug("worker reported an unknown stage %r", stage)
                self.stage = stage
                if stage not in self.stages_seen:
                    self.stages_seen.append(stage)
                self.stage_fraction = fraction
                self.fraction = max(self.fraction, overall_fraction(stage, fraction))
                return
            if kind == ERROR:
                self._error = str(json.loads(payload)["message"])
                return
            if kind == INFO:
                data = json.loads(payload)
                self.device, self.precision = str(data["device"]), str(data["precision"])
                return
            if kind == DONE:
                return
        except (ValueError, KeyError, TypeError):
            log.debug("malformed worker line: %r", line)
        self._tail.append(line)
        self._log.append(line)
        log.debug("worker: %s", line)

    def cancel(self) -> None:
        """Stop the child now and forget its files; safe to call in any state."""
        if self._proc is not None:
            kill_process_tree(self._proc)
        if self.state in (State.RUNNING, State.NOT_STARTED):
            self.state = State.CANCELLED
        self._cleanup()

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def error(self) -> str | None:
        return self._error

    @property
    def output_lines(self) -> list[str]:
        """The child's plain output so far (its log; the last LOG_LINES lines)."""
        return list(self._log)

    @property
    def output_tail(self) -> list[str]:
        """The child's last plain output lines (not the protocol lines)."""
        return list(self._tail)

    def result(self) -> DetectionResult:
        """The finished run's result (the temporary folder is removed once it is read)."""
        if self.state is not State.FINISHED:
            raise DetectionProcessError(self._error or f"no result: the run is {self.state.value}")
        from lungcad.pipeline import DetectionResult

        try:
            return DetectionResult.load(self._result_path)
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    @property
    def folder(self) -> Path | None:
        return self._folder

    # -- blocking use --------------------------------------------------------------------------
    def wait(
        self,
        progress=None,
        cancel: threading.Event | None = None,
        interval_s: float = 0.1,
    ) -> DetectionResult:
        """Poll until done; ``cancel`` set -> kill the child and raise DetectionCancelled."""
        if self.state is State.NOT_STARTED:
            self.start()
        last = None
        while self.poll() is State.RUNNING:
            if cancel is not None and cancel.is_set():
                from lungcad.pipeline import DetectionCancelled

                self.cancel()
                raise DetectionCancelled("detection cancelled")
            if progress is not None and (self.stage, self.stage_fraction) != last:
                last = (self.stage, self.stage_fraction)
                progress(self.stage, self.stage_fraction)
            time.sleep(interval_s)
        if self.state is State.FAILED:
            raise DetectionProcessError(self._error or "detection failed")
        return self.result()


class SubprocessRunner:
    """A :class:`LungNoduleCADLib.logic.Runner` that runs each detection in a child process."""

    def __init__(
        self, python: str | None = None, make_folder: FolderFactory = default_folder
    ) -> None:
        self.python = python
        self.make_folder = make_folder
        self.last: DetectionProcess | None = None

    def __call__(self, ct, request, progress=None, cancel=None) -> DetectionResult:
        thresholds = request.thresholds
        self.last = DetectionProcess(
            ct,
            (thresholds.segmentation, thresholds.nodule, thresholds.malignancy),
            device=request.device,
            model_folder=request.model_folder,
            python=self.python,
            make_folder=self.make_folder,
        )
        return self.last.wait(progress=progress, cancel=cancel)
