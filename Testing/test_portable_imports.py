"""Every module imports where Unix-only modules are missing (Windows, where most radiologists are).

A module-level ``import resource`` once made ``lungcad.pipeline``, and so Apply in Slicer, fail on
Windows. Each package is imported module by module in a fresh interpreter with ``resource`` and
``fcntl`` made unavailable (``sys.modules[name] = None`` makes ``import name`` raise ImportError).
``LungNoduleCAD.py`` itself needs Slicer's Qt (``qt``, ``ctk``, ``slicer.ScriptedLoadableModule``),
which no test process has, so it is checked by reading its source instead.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "LungNoduleCAD"
TRAINING_DIR = ROOT / "training"

#: Standard-library modules that exist only on Unix.
UNIX_ONLY = ("resource", "fcntl", "termios", "tty", "pty", "pwd", "grp", "posix", "syslog")
#: Made unavailable before anything is imported.
BLOCKED = ("resource", "fcntl")

_PROBE = """
import importlib, json, pkgutil, sys
for name in {blocked!r}:
    sys.modules[name] = None
failures = {{}}
names = []
def failed(name, exc):
    failures[name] = f"{{type(exc).__name__}}: {{exc}}"
try:
    package = importlib.import_module({package!r})
except BaseException as exc:
    failed({package!r}, exc)
else:
    names.append({package!r})
    walk = pkgutil.walk_packages(
        package.__path__, {package!r} + ".", onerror=lambda n: failed(n, sys.exc_info()[1])
    )
    for info in walk:
        names.append(info.name)
        try:
            importlib.import_module(info.name)
        except BaseException as exc:
            failed(info.name, exc)
print(json.dumps({{"imported": names, "failures": failures}}))
"""


@pytest.mark.parametrize("package", ["lungcad", "lungcad_training", "LungNoduleCADLib"])
def test_every_module_imports_without_unix_only_modules(package: str) -> None:
    if package == "LungNoduleCADLib" and importlib.util.find_spec("slicer") is None:
        pytest.skip("LungNoduleCADLib needs Slicer's MRML (pip install slicer-core)")
    env = dict(os.environ)
    paths = [str(MODULE_DIR), str(TRAINING_DIR), *filter(None, [env.get("PYTHONPATH")])]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(blocked=BLOCKED, package=package)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    failures = report["failures"]
    assert not failures, f"{len(failures)} modules fail to import without {BLOCKED}: " + "; ".join(
        f"{name} ({why})" for name, why in sorted(failures.items())
    )
    assert len(report["imported"]) > 1, report


def _unguarded_unix_imports(path: Path) -> list[str]:
    """Module-level imports of Unix-only modules not inside ``try: ... except ImportError``."""
    found: list[str] = []

    def visit(statements: list[ast.stmt], guarded: bool) -> None:
        for node in statements:
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [alias.name for alias in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                for name in names:
                    if name.split(".")[0] in UNIX_ONLY and not guarded:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
            elif isinstance(node, ast.Try):
                catches = any(
                    handler.type is None
                    or "ImportError" in ast.unparse(handler.type)
                    or "ModuleNotFoundError" in ast.unparse(handler.type)
                    for handler in node.handlers
                )
                visit(node.body, guarded or catches)
                for block in (node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                    visit(block, guarded)
            elif isinstance(node, ast.If):  # e.g. if sys.platform != "win32": import fcntl
                visit(node.body, True)
                visit(node.orelse, True)

    visit(ast.parse(path.read_text(encoding="utf-8")).body, False)
    return found


def test_no_module_level_unix_only_import_anywhere() -> None:
    """Also covers LungNoduleCAD.py and the scripts, which cannot be imported outside Slicer."""
    files = [MODULE_DIR / "LungNoduleCAD.py"]
    for folder in ("lungcad", "LungNoduleCADLib", "Scripts"):
        files += sorted((MODULE_DIR / folder).rglob("*.py"))
    files += sorted((TRAINING_DIR / "lungcad_training").rglob("*.py"))
    found = [hit for path in files for hit in _unguarded_unix_imports(path)]
    assert not found, "Unix-only modules imported at module level: " + "; ".join(found)


def test_peak_memory_falls_back_to_psutil_then_to_none(monkeypatch) -> None:
    """Windows has no ``resource``: psutil's peak working set, else current RSS, else unknown."""
    from types import SimpleNamespace

    from lungcad import peak_memory

    monkeypatch.setitem(sys.modules, "resource", None)
    fake = SimpleNamespace(
        Error=Exception,
        Process=lambda: SimpleNamespace(
            memory_info=lambda: SimpleNamespace(rss=1024**2, peak_wset=3 * 1024**2)
        ),
    )
    monkeypatch.setitem(sys.modules, "psutil", fake)
    assert peak_memory.peak_rss_bytes() == 3 * 1024**2  # Windows: the peak working set
    assert peak_memory.peak_rss_mb() == 3.0
    fake.Process = lambda: SimpleNamespace(memory_info=lambda: SimpleNamespace(rss=1024**2))
    assert peak_memory.peak_rss_mb() == 1.0  # no peak figure: current RSS as a floor
    monkeypatch.setitem(sys.modules, "psutil", None)
    assert peak_memory.peak_rss_bytes() is None and peak_memory.peak_rss_mb() is None
