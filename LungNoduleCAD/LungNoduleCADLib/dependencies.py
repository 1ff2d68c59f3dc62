"""Which Python packages the engine still needs inside Slicer, and how to add them safely.

Pure functions (no Qt, no pip run here): the widget asks the user, then installs PyTorch through
the PyTorch extension and the rest with pip, passing a constraints file that pins every package
already installed, so Slicer's own numpy, SimpleITK, VTK... are never replaced or upgraded.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

#: Minimum PyTorch the engine is tested with (passed to PyTorchUtils).
TORCH_REQUIREMENT = ">=2.2"
#: Distributions Slicer bundles that an install must never touch (pinned even if not installed
#: by that name on some platform).
SLICER_OWNED = ("numpy", "SimpleITK", "vtk", "packaging", "pip", "setuptools", "requests")


def read_requirements(path: str | Path) -> list[Requirement]:
    """Parse a requirements.txt (comments, blank lines and pip options are skipped).

    Each line is a PEP 508 requirement, parsed by ``packaging`` (which Slicer ships).
    """
    found = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            found.append(Requirement(line))
        except InvalidRequirement as exc:
            raise ValueError(f"{path}: cannot parse requirement {raw!r}: {exc}") from None
    return found


def _satisfied(requirement: Requirement) -> bool:
    if requirement.marker is not None and not requirement.marker.evaluate():
        return True  # not for this Python or platform
    try:
        installed = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return requirement.specifier.contains(installed, prereleases=True)


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
