"""What the module installs inside Slicer, and that it never replaces Slicer's own packages."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from LungNoduleCADLib.dependencies import (
    SLICER_OWNED,
    Requirement,
    constraints_text,
    missing_requirements,
    pip_arguments,
    read_requirements,
)

REQUIREMENTS = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"


def test_requirements_cover_the_engine_but_not_slicer_or_torch():
    names = {r.name.lower() for r in read_requirements(REQUIREMENTS)}
    assert {"scipy", "safetensors", "tqdm", "matplotlib"} <= names
    assert not names & {"torch", "numpy", "simpleitk", "vtk"}


def test_read_requirements_skips_comments_and_options(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("# c\n\n-c constraints.txt\nscipy >= 1.10  # why\nsafetensors\n")
    found = read_requirements(path)
    assert [(r.name, str(r.specifier)) for r in found] == [("scipy", ">=1.10"), ("safetensors", "")]
    path.write_text("=bad\n")
    with pytest.raises(ValueError, match="cannot parse requirement '=bad'"):
        read_requirements(path)


def test_missing_requirements_checks_installed_versions():
    numpy = importlib.metadata.version("numpy")
    wanted = [
        Requirement(f"numpy=={numpy}"),
        Requirement("numpy>=999"),
        Requirement("surely-not-installed-lungcad-xyz"),
        Requirement("surely-not-installed-lungcad-xyz; python_version < '3'"),  # not for us
    ]
    assert missing_requirements(wanted) == wanted[1:3]


def test_constraints_pin_what_is_installed_slicer_packages_first(tmp_path):
    pins = constraints_text().splitlines()
    numpy = f"numpy=={importlib.metadata.version('numpy')}"
    assert numpy.lower() in (p.lower() for p in pins)
    owned = [p.split("==")[0].lower() for p in pins[: len(SLICER_OWNED)]]
    assert owned[0] == "numpy"
    assert all("==" in p for p in pins)
    args = pip_arguments([Requirement("tqdm >= 4.60")], tmp_path / "c.txt")
    assert args == ["tqdm>=4.60", "-c", str(tmp_path / "c.txt")]
