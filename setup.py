"""Build hook: the ``lungcad`` wheel carries the bundled weights as package data.

The weights stay in ``LungNoduleCAD/Resources/Models``, where the Slicer extension's CMake
installs them from (beside the engine, outside the ``lungcad`` package). pyproject's package data
can only name files inside a package, so this copies that folder into the wheel as
``lungcad/bundled_models/``; ``lungcad.pipeline.models.bundled_models_dir`` looks in both places.
The same data-files entry puts the folder in the sdist (setuptools' sdist asks build_py for it),
so a wheel built from the sdist has the weights too. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

MODELS = Path("LungNoduleCAD") / "Resources" / "Models"
PACKAGE, FOLDER = "lungcad", "bundled_models"  # keep in step with bundled_models_dir()


class BuildPyWithModels(build_py):
    """build_py that also copies MODELS to ``lungcad/bundled_models`` in the build tree."""

    def _bundled(self) -> tuple[str, str, str, list[str]]:
        names = sorted(p.name for p in MODELS.iterdir() if p.is_file())
        if not any(name.endswith(".safetensors") for name in names):
            raise RuntimeError(f"no .safetensors weights in {MODELS}: nothing to bundle")
        return PACKAGE, str(MODELS), os.path.join(self.build_lib, PACKAGE, FOLDER), names

    def _get_data_files(self):
        return [*super()._get_data_files(), self._bundled()]

    def get_data_files_without_manifest(self):
        return [*super().get_data_files_without_manifest(), self._bundled()]


setup(cmdclass={"build_py": BuildPyWithModels})
