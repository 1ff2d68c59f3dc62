"""OpenMP's wait policy is set by the entry points before torch loads, never by importing lungcad.

Each check runs in a fresh interpreter with ``OMP_WAIT_POLICY`` unset and a finder that records
the variable's value at the moment something first imports torch (when the OpenMP runtime reads
it); where the command itself loads no torch (``lungcad --help`` does not), torch is imported
right after it, as a command that goes on to run the networks would.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lungcad.openmp import WAIT_POLICY

MODULE_DIR = Path(__file__).resolve().parents[1] / "LungNoduleCAD"

_SPY = """
import json, os, sys
seen = {{}}

class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and "torch" not in seen:
            seen["torch"] = os.environ.get({policy!r})
        return None

sys.meta_path.insert(0, Spy())
try:
    {body}
except SystemExit:
    pass
import torch  # noqa: F401  the first use, if the command itself (``--help``) loaded none
print("SEEN " + json.dumps({{"at_torch": seen.get("torch", "no torch"),
                            "after": os.environ.get({policy!r})}}))
"""


def _seen(body: str) -> dict:
    """Run ``body`` (one line) in a fresh interpreter: the policy at torch's import and after."""
    env = {k: v for k, v in os.environ.items() if k != WAIT_POLICY}
    env["PYTHONPATH"] = os.pathsep.join([str(MODULE_DIR), env.get("PYTHONPATH", "")])
    code = _SPY.format(policy=WAIT_POLICY, body=body)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("SEEN ")]
    assert lines, result.stdout + result.stderr
    return json.loads(lines[-1].removeprefix("SEEN "))


def test_importing_the_engine_and_its_pipeline_leaves_the_environment_alone() -> None:
    seen = _seen("import lungcad, lungcad.pipeline")
    assert seen == {"at_torch": None, "after": None}


@pytest.mark.parametrize("script", ["lungcad", "lungcad-train"])
def test_each_command_sets_passive_waits_before_torch_loads(script: str) -> None:
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name=script)
    module, function = entry.value.split(":")
    seen = _seen(f"import {module}; {module}.{function}(['--help'])")
    assert seen == {"at_torch": "PASSIVE", "after": "PASSIVE"}


def test_a_policy_the_user_chose_is_kept() -> None:
    seen = _seen(
        "import os; os.environ['OMP_WAIT_POLICY'] = 'ACTIVE'; "
        "import lungcad.__main__ as m; m.main(['--help'])"
    )
    assert seen == {"at_torch": "ACTIVE", "after": "ACTIVE"}


def test_the_slicer_worker_sets_passive_waits_before_torch_loads(tmp_path: Path) -> None:
    missing = tmp_path / "missing.nrrd"
    seen = _seen(
        "import LungNoduleCADLib.worker as w; "
        f"w.main(['--input', {str(missing)!r}, '--output', {str(tmp_path / 'r.npz')!r}])"
    )
    assert seen == {"at_torch": "PASSIVE", "after": "PASSIVE"}
