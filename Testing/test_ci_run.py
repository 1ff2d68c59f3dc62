"""CI (.ci/run) runs the README's test command verbatim first, then the oldest-Slicer checks."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CI_RUN = ROOT / ".ci" / "run"
OLDEST = ROOT / ".ci" / "oldest_slicer_python"


def _readme_test_command() -> str:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert block, "README.md has no bash block"
    lines = block.group(1).splitlines()
    assert len(lines) == 2, lines  # run the main job; run the tests
    return lines[1]


def test_ci_runs_the_readme_test_command_verbatim_before_the_oldest_slicer_checks() -> None:
    command = _readme_test_command()
    assert command.endswith(".venv/bin/python -m pytest"), command
    lines = CI_RUN.read_text(encoding="utf-8").splitlines()
    calls = [line for line in lines if line and not line.startswith(("#", " "))]
    assert command in lines
    # The command sits in a function called as one command: under `set -e` a failure before the
    # last step of an && list would not stop the script otherwise.
    assert lines[lines.index(command) - 1] == "readme_test_command() {"
    assert calls[-2:] == ["readme_test_command", ".ci/oldest_slicer_python"]
    assert calls[:2] == ["set -euo pipefail", 'cd "$(dirname "$0")/.."']


def test_ci_scripts_are_executable_bash_that_parses() -> None:
    for script in (CI_RUN, OLDEST):
        assert os.access(script, os.X_OK), f"{script} is not executable"
        done = subprocess.run(
            ["bash", "-n", str(script)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
