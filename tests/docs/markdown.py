"""Reading the documentation as data: its tables, its shell commands, its SQL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

_HEADING = re.compile(r"^(#{1,6}) (.*)$")
_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
_CODE = re.compile(r"`([^`]+)`")


def pages() -> list[Path]:
    """The README and every page under docs/."""
    return [README, *sorted(DOCS.glob("*.md"))]


@dataclass(frozen=True)
class Table:
    """A Markdown table, its cells as written, under the last heading before it."""

    heading: str
    header: list[str]
    rows: list[list[str]]


def tables(text: str) -> list[Table]:
    """Every table of a page, outside code blocks."""
    found: list[Table] = []
    heading = ""
    block: list[list[str]] = []
    in_code = False

    def flush() -> None:
        if len(block) >= 2:
            found.append(Table(heading, block[0], block[2:]))
        block.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            in_code = not in_code
        if in_code:
            continue
        if line.startswith("|"):
            block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
            continue
        flush()
        if match := _HEADING.match(line):
            heading = match.group(2).strip()
    flush()
    return found


def code_spans(cell: str) -> list[str]:
    """The `code` in a piece of Markdown."""
    return _CODE.findall(cell)


@dataclass(frozen=True)
class Command:
    """A shell command of a code block, and the answer written under it as `# ...`."""

    section: str
    text: str
    expected: str | None


@dataclass(frozen=True)
class Block:
    section: str
    language: str
    text: str


def blocks(text: str) -> list[Block]:
    """Every fenced code block, dedented, with the heading it is under."""
    found: list[Block] = []
    heading = ""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if (match := _HEADING.match(line)) is not None:
            heading = match.group(2).strip()
        fence = _FENCE.match(line)
        if fence is None:
            index += 1
            continue
        indent = len(fence.group(1))
        body = []
        index += 1
        while not lines[index].strip().startswith("```"):
            body.append(lines[index][indent:])
            index += 1
        found.append(Block(heading, fence.group(2), "\n".join(body)))
        index += 1
    return found


def commands(block: Block) -> list[Command]:
    """A shell block's commands (continuation lines joined), each with its `# answer`."""
    found: list[Command] = []
    pending = ""
    for raw in block.text.splitlines():
        line = raw.rstrip()
        if pending:
            pending += " " + line.strip()
        elif line.startswith("# ") and found and found[-1].expected is None:
            last = found.pop()
            found.append(Command(last.section, last.text, line[2:]))
            continue
        elif not line.strip() or line.startswith("#"):
            continue
        else:
            pending = line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        found.append(Command(block.section, pending, None))
        pending = ""
    return found
