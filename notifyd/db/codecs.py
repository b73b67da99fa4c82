"""How values cross between PostgreSQL and Python: codecs that read any stored value.

asyncpg's own timestamptz codec raises OverflowError for an instant Python cannot hold
(year 10000, any date BC) and answers 'infinity' and '-infinity' with naive datetimes that
fail the first comparison with an aware one. One such row, written by another application
before the range checks existed, made every query that read it fail: the claim (so the
dispatcher, at every restart), the API, the dashboard, the CLI. These codecs read every
stored instant as an aware UTC datetime, those Python cannot hold as the nearest one it can
(`BEFORE_ALL_TIME`, `AFTER_ALL_TIME`), and every stored JSON value as something orjson can
write back out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import orjson

from notifyd.domain import AFTER_ALL_TIME, BEFORE_ALL_TIME

# PostgreSQL counts timestamptz in microseconds from this instant; +-infinity are the
# largest and smallest 64-bit values.
PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


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
    return orjson.dumps(value).decode()


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
