"""How values cross between PostgreSQL and Python: codecs that read any stored value.

asyncpg's own timestamptz codec raises OverflowError for an instant Python cannot hold
(year 10000, any date BC) and answers 'infinity' and '-infinity' with naive datetimes that
fail the first comparison with an aware one. One such row, written by another application
before the range checks existed, made every query that read it fail: the claim (so the
dispatcher, at every restart), the API, the dashboard, the CLI. These codecs read every
stored instant as an aware UTC datetime, those Python cannot hold as the nearest one it can
(`BEFORE_ALL_TIME`, `AFTER_ALL_TIME`), every stored JSON value as something orjson can
write back out, and write any JSON-like value.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import orjson

from notifyd.domain import AFTER_ALL_TIME, BEFORE_ALL_TIME

# PostgreSQL counts timestamptz in microseconds from this instant; +-infinity are the
# largest and smallest 64-bit values.
PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
# How much of a value no JSON writer takes is kept, as text.
_MAX_REPR: Final = 10_000


def decode_timestamptz(value: tuple[int]) -> datetime:
    """A stored instant as an aware UTC datetime; beyond Python's range, its nearest end."""
    microseconds = value[0]
    try:
        return PG_EPOCH + timedelta(microseconds=microseconds)
    except OverflowError:
        return AFTER_ALL_TIME if microseconds > 0 else BEFORE_ALL_TIME


def encode_timestamptz(value: datetime) -> tuple[int]:
    """An instant as PostgreSQL counts it; a naive datetime is local time, as asyncpg has it."""
    if value.tzinfo is None:
        value = value.astimezone()
    return ((value - PG_EPOCH) // _MICROSECOND,)


def json_text(value: Any) -> str:
    """A value as JSON text for a jsonb column; never fails on what a vendor answered.

    orjson writes no integer past 64 bits and no nesting past 254 levels, both of which a
    vendor's answer (read by `json`) may hold: one such answer failed the statement that
    wrote a whole batch of attempts, and the task writing them. Those go through `json`,
    and what even it cannot write is kept as its text.
    """
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        pass
    try:
        # NaN and infinities, which jsonb refuses, become null as orjson has them.
        return json.dumps(_finite(value), default=str, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        pass
    try:
        text = repr(value)[:_MAX_REPR]
    except RecursionError:
        text = f"({type(value).__name__} nested too deep to be written)"
    return orjson.dumps(text).decode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def decode_json(text: str) -> Any:
    """A stored JSON value; what orjson cannot read (a number beyond a double, nesting past
    1,024 levels: valid jsonb) comes back as its text, which any JSON writer can write."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


async def register(connection: asyncpg.Connection) -> None:
    """Install the codecs on a new connection (the pool's `init`)."""
    await connection.set_type_codec(
        "jsonb",
        encoder=json_text,
        decoder=decode_json,
        schema="pg_catalog",
    )
    await connection.set_type_codec(
        "timestamptz",
        encoder=encode_timestamptz,
        decoder=decode_timestamptz,
        schema="pg_catalog",
        format="tuple",
    )
