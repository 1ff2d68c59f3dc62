"""Fixtures for the Slicer module tests: a real MRML scene from the PyPI ``slicer-core`` package.

The module folder (LungNoduleCADLib, lungcad) and this folder (slicer_phantoms) go on sys.path,
as they are inside Slicer. Without slicer-core installed these tests are not collected.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
MODULE_DIR = HERE.parent
for folder in (MODULE_DIR, HERE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

if importlib.util.find_spec("slicer") is None:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture
def mrml() -> Iterator:
    """A standalone scene with Slicer's module logics; slicer.mrmlScene / slicer.modules point at
    it for the duration of the test and are restored afterwards."""
    from LungNoduleCADLib.mrml import SlicerServices, slicer_globals

    services = SlicerServices.standalone()
    with slicer_globals(services):
        yield services
    services.close()
