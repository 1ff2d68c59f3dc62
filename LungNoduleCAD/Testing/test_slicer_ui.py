"""Static checks of the panel and the packaging: the .ui, the names the code uses, CMake lists."""

from __future__ import annotations

import ast
import json
import re
import struct
import typing
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from LungNoduleCADLib import parameters

MODULE_DIR = Path(__file__).resolve().parents[1]
ROOT = MODULE_DIR.parent
UI_FILE = MODULE_DIR / "Resources" / "UI" / "LungNoduleCAD.ui"
MODULE_FILE = MODULE_DIR / "LungNoduleCAD.py"
PANEL_FILE = MODULE_DIR / "LungNoduleCADLib" / "widget.py"

#: Widget class the parameter node wrapper binds for each kind of field.
BINDABLE = {"node": {"qMRMLNodeComboBox"}, float: {"ctkSliderWidget"}, "choice": {"QComboBox"}}


@pytest.fixture(scope="module")
def ui() -> ET.Element:
    return ET.parse(UI_FILE).getroot()


def _widgets(ui: ET.Element) -> dict[str, str]:
    return {w.get("name"): w.get("class") for w in ui.iter("widget")}


def _parameter_widgets(ui: ET.Element) -> dict[str, ET.Element]:
    found = {}
    for widget in ui.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                assert prop.get("stdset") == "0", "dynamic properties need stdset=0"
                found[prop.findtext("string")] = widget
    return found


def _property(widget: ET.Element, name: str) -> str | None:
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            value = next(iter(prop))
            if value.tag == "stringlist":
                return ",".join(s.text for s in value.findall("string"))
            return value.text
    return None


def test_ui_is_a_valid_designer_file(ui):
    assert ui.tag == "ui" and ui.get("version") == "4.0"
    assert ui.findtext("class") == "LungNoduleCAD"
    top = ui.find("widget")
    assert (top.get("class"), top.get("name")) == ("qMRMLWidget", "LungNoduleCAD")
    names = [w.get("name") for w in ui.iter("widget")]
    assert len(names) == len(set(names)), "widget names must be unique"
    declared = {c.findtext("class") for c in ui.iter("customwidget")}
    used = {w.get("class") for w in ui.iter("widget")}
    assert {c for c in used if c.startswith(("ctk", "qMRML"))} <= declared
    for connection in ui.iter("connection"):
        assert connection.findtext("sender") == "LungNoduleCAD"
        assert connection.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
        assert _widgets(ui)[connection.findtext("receiver")].startswith("qMRML")
    mrml_widgets = {
        n for n, c in _widgets(ui).items() if c.startswith("qMRML") and n != "LungNoduleCAD"
    }
    receivers = {c.findtext("receiver") for c in ui.iter("connection")}
    assert mrml_widgets <= receivers, "every MRML widget gets the scene"


def test_every_widget_the_panel_uses_exists(ui):
    source = PANEL_FILE.read_text(encoding="utf-8")
    used = set(re.findall(r"self\.ui\.(\w+)", source))
    assert {"applyButton", "cancelButton", "progressBar", "statusLabel"} <= used
    missing = used - set(_widgets(ui))
    assert not missing, f"widget.py uses widgets the .ui lacks: {sorted(missing)}"
    assert not re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text(encoding="utf-8")), (
        "the panel is widget.py"
    )


def _top_level(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def test_the_module_file_is_thin_and_delegates():
    source = MODULE_FILE.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 150
    tree = _top_level(MODULE_FILE)
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    assert classes == [
        "LungNoduleCADParameterNode",
        "LungNoduleCAD",
        "LungNoduleCADWidget",
        "LungNoduleCADLogic",
        "LungNoduleCADTest",
    ]
    assert not [n for n in tree.body if isinstance(n, ast.FunctionDef)], "no free functions"
    widget = next(n for n in tree.body if getattr(n, "name", "") == "LungNoduleCADWidget")
    methods = {n.name for n in widget.body if isinstance(n, ast.FunctionDef)}
    assert methods == {"__init__", "setup", "cleanup", "enter", "exit"}
    setup = ast.get_source_segment(
        source, next(n for n in widget.body if getattr(n, "name", "") == "setup")
    )
    check = source.index("raise ImportError(_UNSUPPORTED)")
    assert check < source.index("from LungNoduleCADLib.module_logic"), "version check first"
    assert "LungNoduleCADPanel(" in setup and "Installer.for_slicer(" in setup


def test_the_panel_keeps_no_run_state():
    """The run's states live in the controller: the panel never touches a process itself."""
    tree = _top_level(PANEL_FILE)
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module.startswith("LungNoduleCADLib")
    }
    assert imported == {
        "LungNoduleCADLib.controller",
        "LungNoduleCADLib.parameters",
        "LungNoduleCADLib.review",
    }
    source = PANEL_FILE.read_text(encoding="utf-8")
    source = source.replace("RunState.", "").replace("ReviewState.", "")
    for forbidden in ("DetectionProcess", "_process", "State.", ".poll()", "ensureDependencies"):
        assert forbidden not in source, forbidden


def test_every_slicer_parameter_name_is_a_parameter_field(ui):
    hints = typing.get_type_hints(parameters.LungNoduleCADParameters, include_extras=True)
    bound = _parameter_widgets(ui)
    assert set(bound) <= set(parameters.parameter_names()), sorted(set(bound) - set(hints))
    assert {
        "inputVolume",
        "device",
        "segmentationThreshold",
        "noduleThreshold",
        "malignancyThreshold",
    } <= set(bound)
    for name, widget in bound.items():
        hint = hints[name]
        base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
        if isinstance(base, type) and base.__name__.startswith("vtkMRML"):
            kind = "node"
            types = _property(widget, "nodeTypes")
            assert types == base.__name__, f"{name}: combo box lists {types}"
        elif any(hasattr(m, "choices") for m in getattr(hint, "__metadata__", ())):
            kind = "choice"
        else:
            kind = base
        assert widget.get("class") in BINDABLE[kind], f"{name} cannot bind to {widget.get('class')}"
        value_range = parameters.field_range(name)
        if value_range is not None:
            low, high = (float(_property(widget, k)) for k in ("minimum", "maximum"))
            assert (low, high) == value_range, f"{name}: slider {low}..{high} != {value_range}"
            assert float(_property(widget, "value")) == getattr(
                parameters.LungNoduleCADParameters, name
            )


def _cmake_list(text: str, variable: str) -> list[str]:
    block = re.search(rf"set\({variable}\n(.*?)\n\s*\)", text, re.S)
    assert block, f"{variable} not found"
    return [
        line.strip().replace("${MODULE_NAME}", "LungNoduleCAD")
        for line in block.group(1).splitlines()
        if line.strip()
    ]


def test_module_cmake_lists_every_script_and_resource():
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "slicerMacroBuildScriptedModule(" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    assert "${CMAKE_CURRENT_SOURCE_DIR}/lungcad/*.py" in text  # the engine, by glob
    scripts = _cmake_list(text, "MODULE_PYTHON_SCRIPTS")
    resources = _cmake_list(text, "MODULE_PYTHON_RESOURCES")
    for listed in scripts + resources:
        assert (MODULE_DIR / listed).is_file(), f"CMakeLists.txt lists a missing file: {listed}"
    on_disk = {
        p.relative_to(MODULE_DIR).as_posix()
        for folder in ("LungNoduleCADLib", "Scripts")
        for p in (MODULE_DIR / folder).glob("*.py")
    }
    on_disk |= {"LungNoduleCAD.py", "Testing/test_slicer_logic.py", "Testing/slicer_phantoms.py"}
    assert on_disk <= set(scripts), f"not in CMakeLists.txt: {sorted(on_disk - set(scripts))}"
    needed = {
        p.relative_to(MODULE_DIR).as_posix()
        for p in (MODULE_DIR / "Resources").rglob("*")
        if p.is_file()
    }
    assert needed <= set(resources), f"not in CMakeLists.txt: {sorted(needed - set(resources))}"


def test_extension_description_files_agree():
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    for key in (
        "HOMEPAGE",
        "CATEGORY",
        "CONTRIBUTORS",
        "DESCRIPTION",
        "ICONURL",
        "SCREENSHOTURLS",
        "DEPENDS",
    ):
        assert re.search(rf'set\(EXTENSION_{key} "[^"]+"\)', cmake), f"EXTENSION_{key} is empty"
    assert "project(LungNoduleCAD)" in cmake and "find_package(Slicer REQUIRED)" in cmake
    assert "add_subdirectory(LungNoduleCAD)" in cmake
    s4ext = dict(
        line.split(" ", 1)
        for line in (ROOT / "LungNoduleCAD.s4ext").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#") and " " in line
    )
    entry = json.loads((ROOT / "LungNoduleCAD.json").read_text(encoding="utf-8"))
    assert {"$schema", "category", "scm_url"} <= set(entry)
    allowed = {
        "$schema",
        "category",
        "scm_url",
        "scm_revision",
        "scm_type",
        "build_dependencies",
        "dicom_support_rule",
        "build_subdirectory",
        "enabled",
        "tier",
    }
    assert set(entry) <= allowed
    category = re.search(r'EXTENSION_CATEGORY "([^"]+)"', cmake).group(1)
    assert entry["category"] == s4ext["category"] == category
    assert entry["build_dependencies"] == s4ext["depends"].split() == ["PyTorch"]
    assert entry["scm_url"] == s4ext["scmurl"]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_icons_are_128_pixel_pngs():
    for path in (
        ROOT / "Resources" / "Icons" / "LungNoduleCAD.png",
        MODULE_DIR / "Resources" / "Icons" / "LungNoduleCAD.png",
    ):
        assert _png_size(path) == (128, 128)
