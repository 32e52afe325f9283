"""Every registered problem and method has its documentation page (the brief: one page
per problem and method), and the pages' relative links resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pbdl_cli.methods import METHODS
from pbdl_cli.problems import PROBLEMS

DOCS = Path(__file__).resolve().parents[1] / "docs"
#: methods documented together on one page
SHARED_PAGES = {"non": "grid", "pre": "grid", "sol": "grid", "unrolled": "grid"}


@pytest.mark.parametrize("name", sorted(PROBLEMS.names()))
def test_every_problem_has_a_page(name):
    page = DOCS / "problems" / f"{name}.md"
    assert page.is_file(), f"docs/problems/{name}.md is missing"
    assert f"`{name}`" in page.read_text() or name in page.read_text()


@pytest.mark.parametrize("name", sorted(METHODS.names()))
def test_every_method_has_a_page(name):
    page = DOCS / "methods" / f"{SHARED_PAGES.get(name, name)}.md"
    assert page.is_file(), f"{page.relative_to(DOCS.parent)} is missing"
    assert f"`{name}`" in page.read_text(), f"{page.name} does not name method `{name}`"


def test_relative_links_between_pages_resolve():
    broken = []
    for page in DOCS.rglob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text()):
            if not (page.parent / target).resolve().is_file():
                broken.append(f"{page.relative_to(DOCS)} -> {target}")
    assert not broken, broken
