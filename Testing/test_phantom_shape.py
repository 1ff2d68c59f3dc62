"""The chest's shape stands alone: the trees grow inside it and no phantom module imports back."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np

from lungcad.phantom import make_spec
from lungcad.phantom.anatomy import ChestAnatomy
from lungcad.phantom.shape import ChestShape
from lungcad.phantom.trees import grow_airways, grow_vessel_trees

PHANTOM_DIR = Path(__file__).resolve().parents[1] / "LungNoduleCAD" / "lungcad" / "phantom"


def _phantom_imports() -> dict[str, set[str]]:
    """Module -> the phantom modules it imports anywhere (TYPE_CHECKING and function bodies too)."""
    names = {p.stem for p in PHANTOM_DIR.glob("*.py")} - {"__init__"}
    graph: dict[str, set[str]] = {}
    for name in names:
        deps = set()
        for node in ast.walk(ast.parse((PHANTOM_DIR / f"{name}.py").read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module.removeprefix("lungcad.phantom.")
                deps.add(module)
                deps.update(a.name for a in node.names if node.module == "lungcad.phantom")
            elif isinstance(node, ast.Import):
                deps.update(a.name.removeprefix("lungcad.phantom.") for a in node.names)
        graph[name] = (deps & names) - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of module names, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for dep in sorted(graph[node]):
            found = visit(dep, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return None


def test_no_phantom_module_imports_one_that_imports_it_back() -> None:
    graph = _phantom_imports()
    assert graph["trees"] == {"shape", "spec"}
    assert _cycle(graph) is None


def test_the_cycle_finder_reports_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_trees_grow_inside_a_bare_chest_shape() -> None:
    anatomy = make_spec(1000, 0).anatomy
    shape = ChestShape(**{f.name: getattr(anatomy, f.name) for f in dataclasses.fields(ChestShape)})
    assert not isinstance(shape, ChestAnatomy)
    vessels = grow_vessel_trees(shape, np.random.default_rng(5))
    airways = grow_airways(shape, np.random.default_rng(5))
    assert len(vessels) > 500 and len(airways) > 10
    # the vessels start at the hila and stay in the lungs: nearly every segment's end lies inside
    assert shape.inside_lung(vessels.p1).mean() > 0.95
    same = grow_vessel_trees(anatomy, np.random.default_rng(5))
    np.testing.assert_array_equal(same.p1, vessels.p1)
