"""Starting the detection child so that it and everything it starts can be ended together, on
Windows, macOS and Linux (with psutil where Slicer has it, without where it does not)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys

log = logging.getLogger(__name__)


def child_popen_options() -> dict[str, object]:
    """How the child starts: on Windows with no console window (PythonSlicer is a console program,
    so each run would flash one); elsewhere in its own session, so that its process group is
    exactly the run's tree and cancel can end it without psutil."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NO_WINDOW}
    return {"start_new_session": True}


def kill_process_tree(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """End ``proc`` and every process under it, and reap ``proc``.

    Killing only the child is not enough: inside Slicer the child is the PythonSlicer launcher and
    the detection runs in its ``python-real`` child, which would keep running (and holding the GPU)
    after Cancel. psutil lists the descendants where it is installed; on POSIX the child's own
    process group (see :func:`child_popen_options`) is signalled too, which alone suffices without
    psutil; on Windows without psutil ``taskkill /T /F`` ends the tree. Safe to call on a process
    that has already exited.
    """
    try:
        import psutil
    except ImportError:
        psutil = None
    posix = sys.platform != "win32"
    # Popen.returncode is None until Popen reaps the child: until then its pid, and so its
    # process group id, cannot have been reused by an unrelated process
    ours = proc.returncode is None
    descendants: list = []
    if psutil is not None and ours:
        try:  # children of an exited but unreaped child are still listed under it
            descendants = psutil.Process(proc.pid).children(recursive=True)
        except (psutil.Error, OSError):  # already gone, or the process table is hidden
            descendants = []
        for child in descendants:
            with contextlib.suppress(psutil.Error, OSError):
                child.terminate()
    if ours and posix:
        _signal_group(proc.pid, signal.SIGTERM)
    elif ours and psutil is None and proc.poll() is None:
        _taskkill_tree(proc.pid, timeout_s)
    if proc.poll() is None:
        proc.terminate()
    if descendants:
        _, alive = psutil.wait_procs(descendants, timeout=timeout_s)
        for child in alive:
            with contextlib.suppress(psutil.Error, OSError):
                child.kill()
        psutil.wait_procs(alive, timeout=timeout_s)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        if posix:  # still unreaped, so the group id is still the run's
            _signal_group(proc.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
        proc.kill()
        proc.wait(timeout=timeout_s)


def _signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to the process group ``pgid`` (POSIX only); a gone group is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _taskkill_tree(pid: int, timeout_s: float) -> None:
    """Windows without psutil: ``taskkill /T /F`` ends the process and all it started."""
    try:
        done = subprocess.run(
            ["taskkill", "/T", "/F", "/PID", str(pid)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            **child_popen_options(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("taskkill of detection process %d failed: %s", pid, exc)
        return
    if done.returncode != 0:
        log.warning("taskkill of detection process %d: %s", pid, done.stderr.strip())
