"""A non-editable install of the built wheel, outside the checkout, runs ``lungcad demo``.

The bundled weights live beside the engine (``LungNoduleCAD/Resources/Models``, where the Slicer
extension installs them from); setup.py copies them into the wheel as package data and
:func:`lungcad.pipeline.models.bundled_models_dir` finds them in either layout. The slow test
builds the wheel from a copy of the checkout (an in-tree build would leave ``build/`` behind),
installs it with the pinned torch into a fresh venv, deletes the copy, and runs the demo on a
small phantom from a folder outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from lungcad.models import Task
from lungcad.pipeline.models import WHEEL_MODELS, bundled_models_dir

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"  # the README's pin: an unpinned torch pulls a multi-GB CUDA build
#: What a checkout holds that a build must not see (the .gitignore's entries and git's own).
NOT_SOURCE = (
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".*_cache", ".cache",
    "runs", "demo-output", ".whl",
)  # fmt: skip
CARDS = {f"{task.value}.{ext}" for task in Task for ext in ("safetensors", "json")}


def _run(args: list[str | Path], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run a command outside the checkout, with no PYTHONPATH leading back into it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture
def venv_dir(tmp_path: Path):
    """A folder for a fresh venv, removed afterwards (torch alone is about 1 GB)."""
    path = tmp_path / "venv"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_wheel_finds_the_weights_inside_the_package(tmp_path: Path) -> None:
    package = tmp_path / "site-packages" / "lungcad"
    (package / WHEEL_MODELS).mkdir(parents=True)
    assert bundled_models_dir(package) == package / WHEEL_MODELS


def test_the_extension_finds_the_weights_beside_the_engine(tmp_path: Path) -> None:
    modules = tmp_path / "lib" / "Slicer-5.8" / "qt-scripted-modules"
    (modules / "lungcad").mkdir(parents=True)
    (modules / "Resources" / "Models").mkdir(parents=True)
    assert bundled_models_dir(modules / "lungcad") == modules / "Resources" / "Models"


def test_without_either_folder_the_extension_path_is_named(tmp_path: Path) -> None:
    assert bundled_models_dir(tmp_path / "lungcad") == tmp_path / "Resources" / "Models"


def test_this_checkout_uses_the_weights_the_extension_ships() -> None:
    assert bundled_models_dir() == ROOT / "LungNoduleCAD" / "Resources" / "Models"


@pytest.mark.slow
def test_the_installed_wheel_runs_the_demo_outside_the_checkout(
    tmp_path: Path, venv_dir: Path
) -> None:
    started = time.perf_counter()
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist, source], tmp_path, 600)
    (wheel,) = dist.glob("lungcad-*.whl")
    with zipfile.ZipFile(wheel) as z:
        bundled = {Path(n).name for n in z.namelist() if n.startswith(f"lungcad/{WHEEL_MODELS}/")}
    assert bundled >= CARDS
    built = time.perf_counter()

    env = venv_dir
    _run([sys.executable, "-m", "venv", env], tmp_path, 300)
    bin_dir = env / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    # --no-compile: byte-compiling torch's files would take longer than the demo
    _run([python, "-m", "pip", "install", "-q", "--no-compile", TORCH, wheel], tmp_path, 900)
    shutil.rmtree(source)
    installed = time.perf_counter()

    where = _run(
        [python, "-c", "import lungcad.pipeline.models as m; print(m.BUNDLED_MODELS)"],
        tmp_path,
        300,
    )
    site = Path(where.stdout.strip())
    assert site.name == WHEEL_MODELS and env in site.parents

    out = tmp_path / "demo"
    demo = _run(
        [bin_dir / "lungcad", "demo", "--size", "small", "--device", "cpu", "--out", out],
        tmp_path,
        900,
    )
    finished = time.perf_counter()
    assert "detection with the bundled weights:" in demo.stdout, demo.stdout
    (results,) = (out / "results").glob("*/results.json")
    doc = json.loads(results.read_text(encoding="utf-8"))
    for task in Task:
        card = json.loads((site / f"{task.value}.json").read_text(encoding="utf-8"))
        assert f"sha256:{card['sha256'][:12]}" in doc["models"][task.value]
    print(
        f"wheel built in {built - started:.0f} s, installed in {installed - built:.0f} s, "
        f"demo ran in {finished - installed:.0f} s"
    )
