"""The root conftest skips exactly the tests that need a missing torch, only where it is missing.

A small test tree runs in a child pytest with the repository's conftest.py, once with torch
blocked (``sys.modules["torch"] = None``, what a virtual environment without torch looks like to
an import) and once as it is here. Each test's outcome is read back from the JUnit XML report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD_WITHOUT_TORCH = (
    "import subprocess, sys; subprocess.run([sys.executable, '-c', "
    "\"raise ModuleNotFoundError(\\\"No module named 'torch'\\\", name='torch')\"], check=True)"
)

TREE = {
    "test_plain.py": "def test_plain():\n    assert 1 + 1 == 2\n",
    "test_imports_torch.py": "import torch\n\n\ndef test_a():\n    pass\n",
    "test_imports_torch_in_test.py": "def test_b():\n    import torch.nn\n",
    "test_fixture_imports_torch.py": """
        import pytest


        @pytest.fixture
        def model():
            import torch
            return torch


        def test_c(model):
            pass
        """,
    "test_child_without_torch.py": f"def test_d():\n    {CHILD_WITHOUT_TORCH}\n",
    "test_handles_missing_torch.py": """
        def test_e():
            try:
                import torch
            except ImportError:
                torch = None
            assert torch is None
        """,
    "test_other_module_missing.py": "def test_f():\n    import not_a_module_anywhere\n",
    "test_torchvision_missing.py": "def test_g():\n    import torchvision_not_torch\n",
    "test_ordinary_failure.py": "def test_h():\n    assert 'torch' == 'numpy'\n",
    "needs_torch/conftest.py": "import torch\n",
    "needs_torch/test_inside.py": "def test_i():\n    pass\n",
}


def _outcomes(tmp_path: Path, block_torch: bool) -> dict[str, str]:
    tree = tmp_path / ("blocked" if block_torch else "as-is")
    for name, text in TREE.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    shutil.copy(ROOT / "conftest.py", tree / "conftest.py")
    (tree / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    report = tree / "report.xml"
    block = "sys.modules['torch'] = None; " if block_torch else ""
    run = f"import sys; {block}import pytest; raise SystemExit(pytest.main(sys.argv[1:]))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(
        [sys.executable, "-c", run, "-p", "no:cacheprovider", f"--junit-xml={report}", "-q"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert report.is_file(), done.stdout + done.stderr
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kind = next((c.tag for c in case if c.tag in ("skipped", "failure", "error")), "passed")
        outcomes[case.get("name") or case.get("classname")] = kind
    return outcomes


def test_without_torch_only_what_needs_torch_is_skipped(tmp_path: Path) -> None:
    outcomes = _outcomes(tmp_path, block_torch=True)
    assert outcomes == {
        "test_plain": "passed",
        "test_imports_torch": "skipped",
        "test_b": "skipped",
        "test_c": "skipped",
        "test_d": "skipped",
        "test_e": "passed",
        "test_f": "failure",
        "test_g": "failure",
        "test_h": "failure",
        "needs_torch": "skipped",
    }


def test_with_torch_installed_nothing_is_turned_into_a_skip(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the main suite installs torch")
    outcomes = _outcomes(tmp_path, block_torch=False)
    assert outcomes == {
        "test_plain": "passed",
        "test_a": "passed",
        "test_b": "passed",
        "test_c": "passed",
        "test_d": "failure",  # a child's missing torch where this one has it: a real failure
        "test_e": "failure",  # it asserts that torch is missing
        "test_f": "failure",
        "test_g": "failure",
        "test_h": "failure",
        "test_i": "passed",
    }
