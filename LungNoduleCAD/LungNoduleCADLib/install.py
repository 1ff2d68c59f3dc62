"""Which Python packages the engine still needs inside Slicer, and the flow that installs them.

:class:`Installer` asks the user, then installs PyTorch through the PyTorch extension (when it is
missing or older than :data:`TORCH_REQUIREMENT`) and the rest with pip, passing a constraints file
that pins every package already installed, so Slicer's own numpy, SimpleITK, VTK... are never
replaced or upgraded. It holds no Qt: the questions, pip and the PyTorch extension are injected
(:meth:`Installer.for_slicer` wires Slicer's own), so tests drive every branch.
"""

from __future__ import annotations

import enum
import importlib.metadata
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet

log = logging.getLogger(__name__)

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
    installed = installed_version(requirement.name)
    if installed is None:
        return False
    return requirement.specifier.contains(installed, prereleases=True)


def missing_requirements(requirements: list[Requirement]) -> list[Requirement]:
    """The requirements not installed at an acceptable version."""
    return [r for r in requirements if not _satisfied(r)]


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, None if it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_acceptable(version: str | None, requirement: str = TORCH_REQUIREMENT) -> bool:
    """True when an installed PyTorch ``version`` meets ``requirement`` (a local build tag such as
    ``+cu121`` does not count against it)."""
    if version is None:
        return False
    return _satisfied_version(version.split("+", 1)[0], requirement)


def _satisfied_version(version: str, specifier: str) -> bool:
    return SpecifierSet(specifier).contains(version, prereleases=True)


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


class InstallOutcome(enum.Enum):
    """What :meth:`Installer.ensure` found; a failure raises :class:`InstallError` instead."""

    READY = "ready"
    DECLINED = "declined"
    RESTART_NEEDED = "restart needed"


class InstallError(RuntimeError):
    """The packages could not be installed; the message says why and what to do."""


class InstallBusyError(InstallError):
    """:meth:`Installer.ensure` was called again while it was still installing."""


NO_PYTORCH_EXTENSION = (
    "LungNoduleCAD needs the PyTorch extension: install it from the Extensions Manager and "
    "restart Slicer."
)


@dataclass
class Installer:
    """Makes sure PyTorch and ``requirements_file`` are installed, asking the user first.

    ``confirm(question)`` asks; ``pip_install(arguments)`` runs pip (``slicer.util.pip_install``);
    ``torch_logic()`` returns the PyTorch extension's ``PyTorchUtilsLogic`` or None when that
    extension is missing; ``temp_folder()`` gives a folder for the pip constraints file.
    """

    requirements_file: Path
    confirm: Callable[[str], bool]
    pip_install: Callable[[list[str]], Any]
    torch_logic: Callable[[], Any]
    temp_folder: Callable[[], str | Path]
    torch_requirement: str = TORCH_REQUIREMENT
    busy: bool = False

    @classmethod
    def for_slicer(cls, requirements_file: Path) -> Installer:
        """The installer inside Slicer: Slicer's dialogs, pip and the PyTorch extension."""
        import slicer

        def torch_logic() -> Any:
            try:
                import PyTorchUtils
            except ImportError:
                return None
            return PyTorchUtils.PyTorchUtilsLogic()

        return cls(
            requirements_file=Path(requirements_file),
            confirm=slicer.util.confirmOkCancelDisplay,
            pip_install=slicer.util.pip_install,
            torch_logic=torch_logic,
            temp_folder=lambda: slicer.app.temporaryPath,
        )

    def ensure(self) -> InstallOutcome:
        """READY when everything is installed (after installing, if the user agreed).

        Raises :class:`InstallBusyError` when called while already installing: pip runs in the GUI
        thread but processes events, so a click can land here again before it is done.
        """
        if self.busy:
            raise InstallBusyError("the Python packages are still being installed; wait for it")
        self.busy = True
        try:
            outcome = self._ensure_torch()
            if outcome is InstallOutcome.READY:
                outcome = self._ensure_requirements()
            return outcome
        finally:
            self.busy = False

    def _ensure_torch(self) -> InstallOutcome:
        version = installed_version("torch")
        if torch_acceptable(version, self.torch_requirement):
            return InstallOutcome.READY
        logic = self.torch_logic()
        if logic is None:
            raise InstallError(NO_PYTORCH_EXTENSION)
        if version is None:
            question = "LungNoduleCAD needs PyTorch. Install it now (a large download)?"
        else:
            question = (
                f"LungNoduleCAD needs PyTorch {self.torch_requirement}, but {version} is "
                "installed. Install a newer PyTorch now (a large download)?"
            )
        if not self.confirm(question):
            return InstallOutcome.DECLINED
        log.info("installing PyTorch %s (found: %s)", self.torch_requirement, version)
        installed = logic.installTorch(
            askConfirmation=False, torchVersionRequirement=self.torch_requirement
        )
        if installed is None:
            raise InstallError("PyTorch could not be installed; the Python console says why.")
        if "torch" in sys.modules:  # the old version is loaded in this process
            return InstallOutcome.RESTART_NEEDED
        return InstallOutcome.READY

    def _ensure_requirements(self) -> InstallOutcome:
        missing = missing_requirements(read_requirements(self.requirements_file))
        if not missing:
            return InstallOutcome.READY
        names = ", ".join(str(r) for r in missing)
        if not self.confirm(
            f"LungNoduleCAD needs these Python packages: {names}. Install them now? "
            "Packages Slicer already has are kept as they are."
        ):
            return InstallOutcome.DECLINED
        constraints = Path(self.temp_folder()) / "LungNoduleCAD-constraints.txt"
        constraints.write_text(constraints_text(), encoding="utf-8")
        log.info("installing %s", names)
        try:
            self.pip_install(pip_arguments(missing, constraints))
        except Exception as exc:
            raise InstallError(f"pip could not install {names}: {exc}") from exc
        still = missing_requirements(missing)
        if still:
            raise InstallError("still missing after pip ran: " + ", ".join(str(r) for r in still))
        return InstallOutcome.READY
