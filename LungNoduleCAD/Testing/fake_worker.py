"""A scripted stand-in for ``python -m LungNoduleCADLib.worker`` (the panel's child process).

Usage: ``fake_worker.py SCENARIO RESULT_NPZ PID_FILE -m LungNoduleCADLib.worker --input ...
--output OUT ...`` (the tests' launcher script puts the first three in front of the arguments
DetectionProcess passes). It writes its pid to PID_FILE, then acts out SCENARIO:

- ``normal``: progress for every stage, the device and precision and one log line after the
  models load, RESULT_NPZ copied to OUT, the end marker, exit 0;
- ``fail``: an error message, exit 2 (what the worker does when the weights are missing);
- ``crash``: some progress, a fatal error on stderr, exit 139 with no end marker;
- ``garbage``: bytes that are not UTF-8 and a malformed progress line, then the result and
  exit 0 without the end marker;
- ``garbage-exit``: the same bytes, then exit 0 with no result;
- ``hang``: some progress, then sleep (for Cancel, reload and scene close).
"""

import json
import os
import shutil
import sys
import time

from lungcad.stages import Stage

STAGES = tuple(stage.value for stage in Stage)  # the real worker's stage names
GARBAGE = b"\xff\xfe\x80 not utf-8 \xc3\x28\n"


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def progress(stage: str, fraction: float) -> None:
    say("LUNGCAD_PROGRESS " + json.dumps({"stage": stage, "fraction": fraction}))


def garbage() -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(GARBAGE)
    sys.stdout.buffer.write(b"LUNGCAD_PROGRESS {not json\n")
    sys.stdout.buffer.flush()


def main() -> int:
    scenario, source, pid_file, *args = sys.argv[1:]
    output = args[args.index("--output") + 1]
    with open(pid_file + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(pid_file + ".tmp", pid_file)
    if scenario == "normal":
        for stage in STAGES:
            progress(stage, 0.5)
            if stage == "loading models":
                say("LUNGCAD_INFO " + json.dumps({"device": "cpu", "precision": "float32"}))
                say("INFO cascade models loaded (fake)")
        shutil.copyfile(source, output)
        say("LUNGCAD_DONE " + json.dumps({"result": output}))
        return 0
    if scenario == "fail":
        progress(STAGES[0], 0.0)
        say("LUNGCAD_ERROR " + json.dumps({"message": "no weights in /nowhere"}))
        return 2
    if scenario == "crash":
        progress(STAGES[0], 0.0)
        sys.stderr.write("Fatal Python error: Segmentation fault\n")
        sys.stderr.flush()
        os._exit(139)
    if scenario == "garbage":
        garbage()
        for stage in STAGES:
            progress(stage, 1.0)
        shutil.copyfile(source, output)
        return 0
    if scenario == "garbage-exit":
        garbage()
        return 0
    if scenario == "hang":
        progress(STAGES[0], 0.0)
        progress("segmentation", 0.25)
        time.sleep(300)
        return 0
    raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    sys.exit(main())
