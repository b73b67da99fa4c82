"""Every link between the pages leads somewhere: the file exists, and so does the heading.

Sections move between the README and docs/ as they grow; a link to one that moved would
otherwise break without anyone noticing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.markdown import ROOT, pages

# [text](target), outside code: targets without a scheme are this repository's files.
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)
_FENCED = re.compile(r"^\s*```.*?^\s*```", re.MULTILINE | re.DOTALL)


def without_code(text: str) -> str:
    return re.sub(r"`[^`\n]*`", "", _FENCED.sub("", text))


def anchor(heading: str) -> str:
    """The anchor a heading gets, as GitHub makes it."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {anchor(h) for h in _HEADING.findall(_FENCED.sub("", page.read_text("utf-8")))}


def links(page: Path) -> list[str]:
    return [
        target
        for target in _LINK.findall(without_code(page.read_text("utf-8")))
        if not re.match(r"[a-z]+:", target)
    ]


def test_anchors_are_made_as_github_makes_them() -> None:
    assert anchor("Users: `POST /api/users/`, `GET` and `PATCH /api/users/{id}`") == (
        "users-post-apiusers-get-and-patch-apiusersid"
    )
    assert anchor("Status events: recorded or not") == "status-events-recorded-or-not"


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.name)
def test_every_link_of_a_page_leads_to_a_file_and_a_heading(page: Path) -> None:
    broken = [target for target in links(page) if not leads_somewhere(page, target)]
    assert not broken, f"{page.name} links to what is not there: {broken}"


def leads_somewhere(page: Path, target: str) -> bool:
    path, _, fragment = target.partition("#")
    linked = (page.parent / path).resolve() if path else page
    if not linked.exists() or ROOT not in linked.parents:
        return False
    return not fragment or linked.suffix != ".md" or fragment in anchors(linked)
