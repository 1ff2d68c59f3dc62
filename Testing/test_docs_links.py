"""The README stays a short user's guide, and every relative link in it and in docs/ resolves.

Figures and details moved from the README into docs/ (issue 18); a link that points at a file
nobody has, or at a heading that was renamed, sends a newcomer nowhere, so each is checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 220
DOCS = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]

#: ``[text](target)`` and ``![alt](target)``; the target ends at whitespace or ``)``.
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_EXTERNAL = ("http://", "https://", "mailto:")


def links(text: str) -> list[str]:
    """The link targets of a Markdown text, leaving out code blocks and inline code."""
    prose = _FENCE.sub("", text)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    return _LINK.findall(prose)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    return {anchor(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M)}


def test_links_parse_targets_outside_code_only() -> None:
    text = "see [a](docs/a.md) and ![b](img.png#x)\n`[c](no.md)`\n```\n[d](no.md)\n```\n"
    assert links(text) == ["docs/a.md", "img.png#x"]


def test_anchor_follows_github_rules() -> None:
    assert anchor("Reliability: what is refused, and why") == "reliability-what-is-refused-and-why"
    assert anchor("Outputs (per case, `lungcad detect`)") == "outputs-per-case-lungcad-detect"


def test_readme_is_at_most_220_lines() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines (at most {MAX_README_LINES})"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for target in links(doc.read_text(encoding="utf-8")):
        if target.startswith(_EXTERNAL):
            continue
        file_part, _, fragment = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        if not path.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            broken.append(f"{target} (no heading #{fragment} in {path.name})")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_readme_links_every_docs_page() -> None:
    """The README links every page of docs/, so a page is never left unreachable."""
    readme_targets = {t.partition("#")[0] for t in links(README.read_text(encoding="utf-8"))}
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages - readme_targets == set()
