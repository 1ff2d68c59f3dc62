"""The layers' one-way arrows (docs/architecture.md), read from every file's import statements.

The engine ``lungcad`` runs on clusters and inside Slicer alike, so it never imports Slicer, Qt or
the training tree; the Slicer client ``LungNoduleCADLib`` never imports the training tree, which
the Extension Manager does not install. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "LungNoduleCAD" / "lungcad"
CLIENT = ROOT / "LungNoduleCAD" / "LungNoduleCADLib"

SLICER_SIDE = ("slicer", "qt", "ctk", "vtk", "mrml", "LungNoduleCADLib", "LungNoduleCAD")
TRAINING = ("lungcad_training",)


def imported_roots(source: str) -> set[str]:
    """The top-level package of every absolute import in a Python source."""
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def forbidden_imports(package: Path, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        bad = imported_roots(path.read_text(encoding="utf-8")) & set(forbidden)
        found.extend(f"{path.relative_to(ROOT)} imports {name}" for name in sorted(bad))
    return found


def test_imported_roots_reads_nested_and_from_imports() -> None:
    source = "import a.b, c\nfrom d.e import f\nfrom . import g\ndef h():\n    import slicer\n"
    assert imported_roots(source) == {"a", "c", "d", "slicer"}


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [(ENGINE, SLICER_SIDE + TRAINING), (CLIENT, TRAINING)],
    ids=["engine", "slicer-client"],
)
def test_layer_never_imports_upward(package: Path, forbidden: tuple[str, ...]) -> None:
    assert len(list(package.rglob("*.py"))) > 10
    assert forbidden_imports(package, forbidden) == []
