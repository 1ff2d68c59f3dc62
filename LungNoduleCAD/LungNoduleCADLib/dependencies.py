"""Which Python packages the engine still needs inside Slicer, and how to add them safely.

Pure functions (no Qt, no pip run here): the widget asks the user, then installs PyTorch through
the PyTorch extension and the rest with pip, passing a constraints file that pins every package
already installed, so Slicer's own numpy, SimpleITK, VTK... are never replaced or upgraded.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

#: Minimum PyTorch the engine is tested with (passed to PyTorchUtils).
TORCH_REQUIREMENT = ">=2.2"
#: Distributions Slicer bundles that an install must never touch (pinned even if not installed
#: by that name on some platform).
SLICER_OWNED = ("numpy", "SimpleITK", "vtk", "packaging", "pip", "setuptools", "requests")

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*(?:#.*)?$")


@dataclass(frozen=True)
class Requirement:
    """One ``name<specifier>`` line of requirements.txt."""

    name: str
    specifier: str = ""

    def __str__(self) -> str:
        return f"{self.name}{self.specifier}"


def read_requirements(path: str | Path) -> list[Requirement]:
    """Parse a requirements.txt (comments, blank lines and pip options are skipped)."""
    found = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = _REQUIREMENT.match(line)
        if not match:
            raise ValueError(f"{path}: cannot parse requirement {raw!r}")
        found.append(Requirement(match.group(1), match.group(2).replace(" ", "")))
    return found


def _satisfied(requirement: Requirement) -> bool:
    try:
        installed = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    if not requirement.specifier:
        return True
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:  # no packaging: presence is all we can check
        return True
    return SpecifierSet(requirement.specifier).contains(installed, prereleases=True)


def missing_requirements(requirements: list[Requirement]) -> list[Requirement]:
    """The requirements not installed at an acceptable version."""
    return [r for r in requirements if not _satisfied(r)]


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def constraints_text(keep: tuple[str, ...] = SLICER_OWNED) -> str:
    """A pip constraints file pinning every installed distribution (Slicer's own first).

    Passing it with ``-c`` makes pip fail rather than replace a package Slicer already has.
    """
    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and dist.version:
            pins[name.lower()] = f"{name}=={dist.version}"
    ordered = [pins[n.lower()] for n in keep if n.lower() in pins]
    ordered += sorted(v for k, v in pins.items() if v not in ordered)
    return "\n".join(ordered) + "\n"


def pip_arguments(missing: list[Requirement], constraints_file: Path) -> list[str]:
    """Arguments for ``slicer.util.pip_install`` (or ``python -m pip install``)."""
    return [*(str(r) for r in missing), "-c", str(constraints_file)]
