"""The Slicer versions LungNoduleCAD supports: 5.10 (Python 3.12) and later, refused before that.

The refusal runs inside Slicer 5.8's Python 3.9, so the files it needs are parsed here with the
3.9 grammar too (``.ci/run`` also imports slicer_support with a real Python 3.9).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from LungNoduleCADLib import slicer_support
from LungNoduleCADLib.slicer_support import MIN_PYTHON, MIN_SLICER, unsupported_reason

MODULE_DIR = Path(__file__).resolve().parents[1]


def test_slicer_5_8_with_python_3_9_is_refused_with_both_versions_named() -> None:
    assert unsupported_reason((5, 8), (3, 9)) == (
        "LungNoduleCAD needs 3D Slicer 5.10 or later (Python 3.12); this is Slicer 5.8 with "
        "Python 3.9. Install the current Slicer release from https://download.slicer.org, then "
        "install LungNoduleCAD from its Extensions Manager."
    )


@pytest.mark.parametrize("slicer_version", [(5, 10), (5, 11), (6, 0), (6, 2)])
def test_slicer_5_10_and_later_with_python_3_12_are_supported(
    slicer_version: tuple[int, int],
) -> None:
    assert unsupported_reason(slicer_version, (3, 12)) is None


@pytest.mark.parametrize("slicer_version", [(4, 11), (5, 6), (5, 8), (5, 9)])
def test_slicer_before_5_10_is_refused_even_with_python_3_12(
    slicer_version: tuple[int, int],
) -> None:
    reason = unsupported_reason(slicer_version, (3, 12))
    assert reason is not None
    assert f"this is Slicer {slicer_version[0]}.{slicer_version[1]} with Python 3.12." in reason


@pytest.mark.parametrize("python_version", [(3, 9), (3, 10), (3, 11)])
def test_python_before_3_12_is_refused_even_on_slicer_5_10(
    python_version: tuple[int, int],
) -> None:
    reason = unsupported_reason((5, 10), python_version)
    assert reason is not None
    assert f"this is Slicer 5.10 with Python {python_version[0]}.{python_version[1]}." in reason


def test_full_version_tuples_and_sys_version_info_count_by_major_and_minor() -> None:
    assert unsupported_reason((5, 10, 0), (3, 12, 10, "final", 0)) is None
    assert unsupported_reason((5, 8, 1), (3, 9, 10)) == unsupported_reason((5, 8), (3, 9))
    assert unsupported_reason((5, 10), sys.version_info) == unsupported_reason(
        (5, 10), tuple(sys.version_info[:2])
    )


def test_the_oldest_supported_slicer_is_5_10_with_python_3_12() -> None:
    assert (MIN_SLICER, MIN_PYTHON) == ((5, 10), (3, 12))


@pytest.mark.parametrize(
    "path",
    [
        MODULE_DIR / "LungNoduleCADLib" / "slicer_support.py",
        MODULE_DIR / "LungNoduleCADLib" / "__init__.py",
        MODULE_DIR / "LungNoduleCAD.py",
    ],
    ids=lambda path: path.name,
)
def test_what_runs_before_the_refusal_parses_with_the_python_3_9_grammar(path: Path) -> None:
    ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=(3, 9))


def test_slicer_support_imports_only_the_standard_library_and_evaluates_no_annotations() -> None:
    source = Path(slicer_support.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source)
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"__future__"}
    # Annotations such as ``str | None`` stay strings on Python 3.9 only with this import.
    assert "from __future__ import annotations" in source


def test_the_module_file_refuses_to_load_on_slicer_5_8_before_importing_the_engine(
    tmp_path: Path,
) -> None:
    """The module file itself raises the one message on an old Slicer (a stand-in ``slicer``
    reporting 5.8) and imports nothing of the engine first."""
    stand_in = tmp_path / "slicer"
    stand_in.mkdir()
    (stand_in / "__init__.py").write_text(
        "from types import SimpleNamespace\napp = SimpleNamespace(majorVersion=5, minorVersion=8)\n"
    )
    probe = (
        "import sys\n"
        "try:\n"
        "    import LungNoduleCAD\n"
        "except ImportError as exc:\n"
        "    print('REFUSED', exc)\n"
        "print('LOADED', sorted(m for m in sys.modules if m.startswith(('LungNoduleCADLib', "
        "'lungcad'))))\n"
    )
    env_path = f"{tmp_path}{os.pathsep}{MODULE_DIR}"
    run = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": env_path},
    )
    assert run.returncode == 0, run.stderr
    assert (
        "REFUSED LungNoduleCAD needs 3D Slicer 5.10 or later (Python 3.12); this is Slicer 5.8"
        in run.stdout
    )
    assert "LOADED ['LungNoduleCADLib', 'LungNoduleCADLib.slicer_support']" in run.stdout
