"""Plain-text tables for the terminal: aligned columns, safe cells, no dependency.

Cells come from users and vendors (subjects, error messages), so each is made one line
that cannot move the cursor or recolour the terminal before it is printed.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from datetime import datetime

from notifyd import display

GAP = "  "
ELLIPSIS = "…"
# Line breaks and tabs become spaces; the other control characters are shown escaped.
_SPACES = frozenset("\t\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
# Bidirectional overrides and isolates reorder what follows them on screen.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def clean(value: object) -> str:
    """`value` as a single line of text with every control character made visible."""
    text = "" if value is None else str(value)
    out = []
    for char in text:
        if char in _SPACES:
            out.append(" ")
        elif char in _BIDI or unicodedata.category(char) == "Cc":
            out.append(char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    return "".join(out)


def width(text: str) -> int:
    """The columns `text` takes in a terminal: wide East Asian characters take two."""
    total = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in {"Mn", "Me", "Cf"}:
            continue
        total += 2 if unicodedata.east_asian_width(char) in {"W", "F"} else 1
    return total


def shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` columns, an ellipsis marking the cut."""
    if width(text) <= limit:
        return text
    kept, used = [], 0
    for char in text:
        used += width(char)
        if used > limit - 1:
            break
        kept.append(char)
    return "".join(kept).rstrip() + ELLIPSIS


def table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, right: Iterable[int] = ()
) -> str:
    """Columns separated by two spaces, under a header; columns in `right` right-aligned."""
    cells = [[clean(header) for header in headers]]
    cells += [[clean(value) for value in row] for row in rows]
    count = len(headers)
    if any(len(row) != count for row in cells):
        raise ValueError(f"every row needs {count} cells")
    widths = [max(width(row[column]) for row in cells) for column in range(count)]
    to_the_right = set(right)
    lines = []
    for row in cells:
        padded = []
        for column, text in enumerate(row):
            fill = " " * (widths[column] - width(text))
            padded.append(fill + text if column in to_the_right else text + fill)
        lines.append(GAP.join(padded).rstrip())
    return "\n".join(lines)


def fields(pairs: Iterable[tuple[str, object]]) -> str:
    """`name  value` lines, the values aligned in one column."""
    items = [(clean(name), clean(value)) for name, value in pairs]
    if not items:
        return ""
    column = max(width(name) for name, _ in items)
    return "\n".join(
        f"{name}{' ' * (column - width(name))}{GAP}{value}".rstrip() for name, value in items
    )


def moment(value: datetime | None, *, zone: bool = True) -> str:
    """A timestamp in UTC to the millisecond, e.g. `2026-11-30 12:45:13.123 UTC`; `-` if None."""
    return "-" if value is None else display.moment(value, zone=zone)
