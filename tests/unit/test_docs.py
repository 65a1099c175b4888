"""The README stays a short entry point, and no relative link in it or in docs/ is dead.

The depth lives in docs/*.md; README.md links to it. A link whose file was moved or
renamed, or whose #anchor names no heading of its target, fails here instead of on a
reader.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
MAX_README_LINES = 250
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^```.*?^```", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.M)


def prose(path: Path) -> str:
    """The page without its fenced code blocks (code may hold brackets and parentheses)."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def relative_links(path: Path) -> list[str]:
    return [target for target in LINK.findall(prose(path))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto: ...


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_readme_is_short():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_README_LINES, (
        f"README.md has {lines} lines (at most {MAX_README_LINES}): move the depth to docs/")


def test_there_are_pages_to_check():
    assert len(PAGES) > 1 and relative_links(README)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_at_files_that_exist(page):
    dead = [target for target in relative_links(page)
            if target.split("#", 1)[0] and not (page.parent / target.split("#", 1)[0]).exists()]
    assert not dead, f"{page.relative_to(REPO)}: links to missing files: {dead}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_anchors_name_a_heading_of_their_markdown_page(page):
    dead = []
    for target in relative_links(page):
        name, _, fragment = target.partition("#")
        linked = (page.parent / name) if name else page
        if not fragment or linked.suffix != ".md" or not linked.is_file():
            continue  # missing files are the test above's
        if fragment not in {anchor(h) for h in HEADING.findall(prose(linked))}:
            dead.append(target)
    assert not dead, f"{page.relative_to(REPO)}: links to headings that do not exist: {dead}"
