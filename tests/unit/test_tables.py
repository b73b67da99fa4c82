"""The terminal table formatter: alignment, wide characters, unsafe cells, durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from notifyd import display
from notifyd.cli import tables


def test_columns_are_aligned_under_their_headers() -> None:
    text = tables.table(
        ("CHANNEL", "ATTEMPT", "ERROR"),
        [("telegram", 1, "chat not found"), ("email", 12, "")],
        right={1},
    )

    assert text.splitlines() == [
        "CHANNEL   ATTEMPT  ERROR",
        "telegram        1  chat not found",
        "email          12",  # no trailing spaces
    ]


def test_wide_characters_take_two_columns() -> None:
    text = tables.table(("NAME", "X"), [("日本", "a"), ("abcd", "b"), ("Привет", "c")])

    lines = text.splitlines()
    # Every X cell starts at the same terminal column.
    columns = [tables.width(line[: line.rindex(" ") + 1]) for line in lines]
    assert len(set(columns)) == 1, lines


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abc", 3),
        ("日本語", 6),
        ("Привет", 6),
        ("e\u0301", 1),  # e + combining acute accent
        ("", 0),
    ],
)
def test_width(text: str, expected: int) -> None:
    assert tables.width(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("two\nlines\tand\rmore", "two lines and more"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),  # no colour, no cursor moves
        ("bell\x07", "bell\\x07"),
        ("\x9b2J", "\\x9b2J"),  # C1 control sequence introducer
        ("abc\u202edcba", "abc\\u202edcba"),  # a right-to-left override reorders the line
        (None, ""),
        (42, "42"),
        ("Привет 日本", "Привет 日本"),
    ],
)
def test_clean_makes_cells_single_line_and_inert(value: object, expected: str) -> None:
    assert tables.clean(value) == expected


def test_cells_are_cleaned_in_tables_and_fields() -> None:
    assert "\x1b" not in tables.table(("A",), [("\x1b[2J",)])
    assert "\n" not in tables.fields([("error", "one\ntwo")])


def test_rows_must_match_the_headers() -> None:
    with pytest.raises(ValueError, match="2 cells"):
        tables.table(("A", "B"), [("only one",)])


def test_fields_align_values() -> None:
    assert tables.fields([("id", 1), ("status", "sent")]).splitlines() == [
        "id      1",
        "status  sent",
    ]
    assert tables.fields([]) == ""


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("a longer sentence", 10, "a longer…"),
        ("日本語日本語", 7, "日本語…"),
    ],
)
def test_shorten(text: str, limit: int, expected: str) -> None:
    assert tables.shorten(text, limit) == expected
    assert tables.width(tables.shorten(text, limit)) <= limit


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.000_85, "850 µs"),
        (0.0123, "12.3 ms"),
        (0.8, "800.0 ms"),
        (4.2, "4.20 s"),
        (125, "2 min 05 s"),
        (7260, "2 h 01 min"),
        (-0.5, "-500.0 ms"),  # clocks can step back; shown, not hidden
    ],
)
def test_duration(seconds: float, expected: str) -> None:
    assert display.duration(seconds) == expected


def test_moment_is_utc_to_the_millisecond() -> None:
    moscow = timezone(timedelta(hours=3))
    value = datetime(2026, 11, 30, 15, 45, 13, 123456, tzinfo=moscow)

    assert tables.moment(value) == "2026-11-30 12:45:13.123 UTC"
    assert tables.moment(value, zone=False) == "2026-11-30 12:45:13.123"
    assert tables.moment(datetime(2026, 1, 1, tzinfo=UTC), zone=False) == "2026-01-01 00:00:00.000"
    assert tables.moment(None) == "-"
