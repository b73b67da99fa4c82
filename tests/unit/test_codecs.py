"""The pool's codecs: any stored instant is read, any JSON-like value is written."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from notifyd.db.codecs import (
    PG_EPOCH,
    decode_json,
    decode_timestamptz,
    encode_timestamptz,
    json_text,
)
from notifyd.domain import AFTER_ALL_TIME, BEFORE_ALL_TIME

INFINITY = 2**63 - 1
MINUS_INFINITY = -(2**63)


@pytest.mark.parametrize(
    "moment",
    [
        PG_EPOCH,
        datetime(2026, 11, 30, 12, 45, 13, 123456, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 1, 1, 3, tzinfo=timezone(timedelta(hours=3))),
    ],
)
def test_an_instant_goes_there_and_back(moment: datetime) -> None:
    decoded = decode_timestamptz(encode_timestamptz(moment))
    assert decoded == moment
    assert decoded.tzinfo is UTC


@pytest.mark.parametrize(
    ("microseconds", "read_as"),
    [
        (INFINITY, AFTER_ALL_TIME),
        (MINUS_INFINITY, BEFORE_ALL_TIME),
        (encode_timestamptz(AFTER_ALL_TIME)[0] + 1, AFTER_ALL_TIME),  # 10000-01-01
        (encode_timestamptz(BEFORE_ALL_TIME)[0] - 1, BEFORE_ALL_TIME),  # 1 BC
    ],
)
def test_an_instant_python_cannot_hold_is_read_as_the_nearest_it_can(
    microseconds: int, read_as: datetime
) -> None:
    assert decode_timestamptz((microseconds,)) == read_as


def test_a_naive_datetime_is_local_time_as_asyncpg_has_it() -> None:
    naive = datetime(2026, 6, 1, 12, 0)
    assert encode_timestamptz(naive) == encode_timestamptz(naive.astimezone())


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"a": 1, "b": [True, None, "x"]}, '{"a":1,"b":[true,null,"x"]}'),
        ({"big": 10**30}, '{"big": 1000000000000000000000000000000}'),
        (
            {"big": 10**30, "nan": float("nan")},
            '{"big": 1000000000000000000000000000000, "nan": null}',
        ),
    ],
)
def test_json_text_writes_what_orjson_cannot(value: object, text: str) -> None:
    assert json_text(value) == text


def test_json_text_keeps_the_text_of_what_no_writer_takes() -> None:
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    written = json.loads(json_text(deep))
    assert written == "(list nested too deep to be written)"
    # Deeper than orjson writes (254 levels), within what `json` does: still JSON.
    nested = json.loads("[" * 300 + "]" * 300)
    assert json.loads(json_text(nested)) == nested


def test_decode_json_answers_text_it_cannot_read() -> None:
    assert decode_json('{"a": 1}') == {"a": 1}
    assert decode_json('{"a": 1e1000}') == '{"a": 1e1000}'
