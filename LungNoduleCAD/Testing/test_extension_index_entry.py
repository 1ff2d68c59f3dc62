"""The ExtensionsIndex entry passes the index's own category check and declares the Slicer range.

(That the three description files agree with each other is checked in test_slicer_ui.py.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from LungNoduleCADLib.slicer_support import MIN_PYTHON, MIN_SLICER

ROOT = Path(__file__).resolve().parents[2]

#: ACCEPTED_EXTENSION_CATEGORIES of scripts/check_description_files.py in
#: https://github.com/Slicer/ExtensionsIndex (main, commit 07f1d1b2781c, August 2026). The index's
#: pull-request check fails an entry whose category is not in this list.
ACCEPTED_EXTENSION_CATEGORIES = (
    "Active Learning",
    "Analysis",
    "Auto3dgm",
    "BigImage",
    "Cardiac",
    "Chest Imaging Platform",
    "Conda",
    "Converters",
    "DICOM",
    "DSCI",
    "Developer Tools",
    "Diffusion",
    "Examples",
    "Exporter",
    "FTV Segmentation",
    "Filtering",
    "Filtering.Morphology",
    "Filtering.Vesselness",
    "Holographic Display",
    "Image Synthesis",
    "IGT",
    "Informatics",
    "Netstim",
    "Neuroimaging",
    "Nuclear Medicine",
    "Orthodontics",
    "Osteotomy Planning",
    "Otolaryngology",
    "Photogrammetry",
    "Pipelines",
    "Planning",
    "Printing",
    "Quantification",
    "Radiotherapy",
    "Registration",
    "Remote",
    "Rendering",
    "SPHARM",
    "Segmentation",
    "Sequences",
    "Shape Analysis",
    "Shape Regression",
    "Shape Visualization",
    "Simulation",
    "SlicerCMF",
    "SlicerMorph",
    "Spectral Imaging",
    "Supervisely",
    "Surface Models",
    "SurfaceLearner",
    "Tomographic Reconstruction",
    "Tracking",
    "Tractography",
    "Training",
    "Ultrasound",
    "Utilities",
    "Vascular Modeling Toolkit",
    "Virtual Reality",
    "VisSimTools",
    "Web System Tools",
    "Wizards",
)


def _s4ext() -> dict[str, str]:
    lines = (ROOT / "LungNoduleCAD.s4ext").read_text(encoding="utf-8").splitlines()
    return dict(line.split(" ", 1) for line in lines if line and not line.startswith("#"))


def _cmake_setting(name: str) -> str:
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    found = re.findall(rf'set\({name} "([^"]*)"\)', cmake)
    assert len(found) == 1, f"{name} is set {len(found)} times in CMakeLists.txt"
    return found[0]


def test_index_entry_category_is_one_the_extensions_index_accepts() -> None:
    entry = json.loads((ROOT / "LungNoduleCAD.json").read_text(encoding="utf-8"))
    assert entry["category"] == "Segmentation"
    assert entry["category"] in ACCEPTED_EXTENSION_CATEGORIES
    assert _s4ext()["category"] in ACCEPTED_EXTENSION_CATEGORIES
    assert _cmake_setting("EXTENSION_CATEGORY") in ACCEPTED_EXTENSION_CATEGORIES


def test_index_entry_json_has_lf_line_endings_like_the_index_requires() -> None:
    assert b"\r" not in (ROOT / "LungNoduleCAD.json").read_bytes()


def test_description_and_build_name_the_oldest_supported_slicer() -> None:
    # The index's JSON schema has no minimum-version field (additionalProperties is false), so
    # the description says it and the build refuses older Slicers.
    slicer, python = (".".join(map(str, version)) for version in (MIN_SLICER, MIN_PYTHON))
    needs = f"Needs 3D Slicer {slicer} or later (Python {python})."
    assert _cmake_setting("EXTENSION_DESCRIPTION").endswith(needs)
    assert _s4ext()["description"].endswith(needs)
    assert _cmake_setting("LungNoduleCAD_MIN_SLICER_VERSION") == slicer
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    guard = (
        "if(Slicer_VERSION VERSION_LESS LungNoduleCAD_MIN_SLICER_VERSION)\n  message(FATAL_ERROR"
    )
    assert guard in cmake
    assert cmake.index(guard) > cmake.index("find_package(Slicer REQUIRED)")
