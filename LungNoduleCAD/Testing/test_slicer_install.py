"""What the module installs inside Slicer, how it asks, and that it never replaces Slicer's own
packages."""

from __future__ import annotations

import importlib.metadata
import sys
import types
from pathlib import Path

import pytest
from LungNoduleCADLib import install
from LungNoduleCADLib.install import (
    SLICER_OWNED,
    TORCH_REQUIREMENT,
    InstallBusyError,
    Installer,
    InstallError,
    InstallOutcome,
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


class FakeTorchLogic:
    """PyTorchUtilsLogic as the installer uses it."""

    def __init__(self, installs: bool = True) -> None:
        self.installs = installs
        self.calls: list[dict] = []

    def installTorch(self, **kwargs):  # noqa: N802 (PyTorchUtils' name)
        self.calls.append(kwargs)
        return object() if self.installs else None


def _installer(tmp_path, answers=(), torch_logic=None, pip=None, requirements="tqdm\n"):
    questions: list[str] = []
    answers = list(answers)
    pip_calls: list[list[str]] = []
    requirements_file = tmp_path / "requirements.txt"
    requirements_file.write_text(requirements, encoding="utf-8")

    def confirm(question: str) -> bool:
        questions.append(question)
        return answers.pop(0)

    installer = Installer(
        requirements_file=requirements_file,
        confirm=confirm,
        pip_install=pip or pip_calls.append,
        torch_logic=lambda: torch_logic,
        temp_folder=lambda: tmp_path,
    )
    return installer, questions, pip_calls


@pytest.fixture
def torch_version(monkeypatch):
    """Set what ``installed_version('torch')`` reports; other packages are looked up as usual."""
    versions: dict[str, str | None] = {"torch": "2.13.0+cpu"}

    def fake(name: str) -> str | None:
        return versions[name] if name in versions else real(name)

    real = install.installed_version
    monkeypatch.setattr(install, "installed_version", fake)
    return versions


def test_torch_version_check_ignores_the_build_tag():
    assert install.torch_acceptable("2.13.0+cpu") is True
    assert install.torch_acceptable("2.2.0") is True
    assert install.torch_acceptable("2.1.2+cu121") is False
    assert install.torch_acceptable(None) is False


def test_everything_installed_asks_nothing(tmp_path, torch_version):
    installer, questions, pip_calls = _installer(tmp_path)
    assert installer.ensure() is InstallOutcome.READY
    assert (questions, pip_calls, installer.busy) == ([], [], False)


def test_no_pytorch_extension_is_an_error_that_says_what_to_do(tmp_path, torch_version):
    torch_version["torch"] = None
    installer, questions, _ = _installer(tmp_path, torch_logic=None)
    with pytest.raises(InstallError, match="needs the PyTorch extension: install it from"):
        installer.ensure()
    assert questions == [] and installer.busy is False


def test_missing_torch_is_installed_after_asking(tmp_path, torch_version, monkeypatch):
    torch_version["torch"] = None
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    torch_logic = FakeTorchLogic()
    installer, questions, _ = _installer(tmp_path, answers=[True], torch_logic=torch_logic)
    assert installer.ensure() is InstallOutcome.READY
    assert questions == ["LungNoduleCAD needs PyTorch. Install it now (a large download)?"]
    assert torch_logic.calls == [
        {"askConfirmation": False, "torchVersionRequirement": TORCH_REQUIREMENT}
    ]


def test_an_old_torch_is_upgraded_and_a_loaded_one_needs_a_restart(
    tmp_path, torch_version, monkeypatch
):
    torch_version["torch"] = "1.13.1+cu117"
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    torch_logic = FakeTorchLogic()
    installer, questions, _ = _installer(tmp_path, answers=[False], torch_logic=torch_logic)
    assert installer.ensure() is InstallOutcome.DECLINED
    assert questions == [
        f"LungNoduleCAD needs PyTorch {TORCH_REQUIREMENT}, but 1.13.1+cu117 is installed. "
        "Install a newer PyTorch now (a large download)?"
    ]
    assert torch_logic.calls == []
    installer, _, _ = _installer(tmp_path, answers=[True], torch_logic=torch_logic)
    assert installer.ensure() is InstallOutcome.RESTART_NEEDED
    assert len(torch_logic.calls) == 1


def test_a_failed_torch_install_is_an_error(tmp_path, torch_version):
    torch_version["torch"] = None
    installer, _, _ = _installer(tmp_path, answers=[True], torch_logic=FakeTorchLogic(False))
    with pytest.raises(InstallError, match="PyTorch could not be installed"):
        installer.ensure()


def test_missing_packages_go_through_pip_with_constraints(tmp_path, torch_version, monkeypatch):
    wanted = Requirement("surely-not-installed-lungcad-xyz>=1")
    answers = iter([[wanted], []])  # missing before pip, installed after
    monkeypatch.setattr(install, "missing_requirements", lambda requirements: next(answers))
    installer, questions, pip_calls = _installer(tmp_path, answers=[True])
    assert installer.ensure() is InstallOutcome.READY
    assert questions == [
        "LungNoduleCAD needs these Python packages: surely-not-installed-lungcad-xyz>=1. "
        "Install them now? Packages Slicer already has are kept as they are."
    ]
    constraints = tmp_path / "LungNoduleCAD-constraints.txt"
    assert pip_calls == [["surely-not-installed-lungcad-xyz>=1", "-c", str(constraints)]]
    assert constraints.read_text(encoding="utf-8") == constraints_text()


def test_packages_still_missing_after_pip_are_an_error(tmp_path, torch_version):
    installer, _, pip_calls = _installer(
        tmp_path, answers=[True], requirements="surely-not-installed-lungcad-xyz\n"
    )
    with pytest.raises(InstallError, match="still missing after pip ran: surely-not-installed"):
        installer.ensure()
    assert len(pip_calls) == 1 and installer.busy is False


def test_a_pip_error_says_which_packages(tmp_path, torch_version):
    def pip(arguments):
        raise RuntimeError("network unreachable")

    installer, _, _ = _installer(
        tmp_path, answers=[True], pip=pip, requirements="surely-not-installed-lungcad-xyz\n"
    )
    with pytest.raises(
        InstallError, match="pip could not install surely-not-installed-lungcad-xyz: network"
    ):
        installer.ensure()
    assert installer.busy is False


def test_the_installer_cannot_be_reentered_while_pip_runs(tmp_path, torch_version, monkeypatch):
    """slicer.util.pip_install processes GUI events, so Apply can be clicked again meanwhile."""
    answers = iter([[Requirement("tqdm")], []])
    monkeypatch.setattr(install, "missing_requirements", lambda requirements: next(answers))
    inner: list[BaseException] = []

    def pip(arguments):
        assert installer.busy is True
        with pytest.raises(InstallBusyError, match="still being installed") as caught:
            installer.ensure()
        inner.append(caught.value)

    installer, _, _ = _installer(tmp_path, answers=[True], pip=pip)
    assert installer.ensure() is InstallOutcome.READY
    assert len(inner) == 1 and installer.busy is False
