"""A message needs something visible: whitespace and invisible characters alone are blank.

A message made only of U+200B ZERO WIDTH SPACE (or other characters that render as
nothing) passed both the API and the database, and was delivered as an empty e-mail or
chat message. The API, the CLI (the same model) and the database now agree on one rule,
character by character.
"""

from __future__ import annotations

import asyncpg
import pytest

from notifyd.domain import INVISIBLE_RANGES, has_visible_text
from tests.support import Daemon

INVISIBLE_MESSAGES = [
    "\u200b",  # zero width space
    "\u200b\u200c\u200d\u2060\ufeff",  # ...non-joiner, joiner, word joiner, byte order mark
    " \u200b\t\u200b\n",
    "\u00a0\u3000\u2007",  # no-break, ideographic and figure spaces
    "\u00ad\u034f\u180e\u2800",  # soft hyphen, grapheme joiner, vowel separator, blank Braille
    "\u3164\uffa0",  # Hangul fillers
    "\u202e\u2066\u200f",  # bidirectional controls
    "\ufe0f\U000e0100",  # variation selectors
    "\U000e0041\U000e007f",  # tags
    "\x01\x7f\x85",  # control characters
]
VISIBLE_MESSAGES = ["\u200bhi\u200b", "👍", "\u0600", "·", "\u3164x", "\u2061a"]


@pytest.mark.parametrize("message", INVISIBLE_MESSAGES)
async def test_the_api_refuses_a_message_with_nothing_visible(
    daemon: Daemon, db: asyncpg.Connection, message: str
) -> None:
    user_id = await daemon.create_user(phone="+15551234567")

    response = await daemon.client.post(
        "/api/notify/", json={"user_id": user_id, "message": message}
    )

    assert response.status == 422
    problem = await response.json()
    assert problem["errors"] == [{"field": "message", "message": "must not be blank"}]
    assert await db.fetchval("SELECT count(*) FROM notifyd.notifications") == 0


@pytest.mark.parametrize("message", INVISIBLE_MESSAGES)
async def test_the_database_refuses_a_message_with_nothing_visible(
    db: asyncpg.Connection, message: str
) -> None:
    user_id = await db.fetchval("INSERT INTO notifyd.users DEFAULT VALUES RETURNING id")
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await db.execute(
            "INSERT INTO notifyd.notifications (user_id, message) VALUES ($1, $2)",
            user_id,
            message,
        )
    assert caught.value.constraint_name == "notifications_message_not_blank"
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("SELECT notifyd.enqueue($1, $2)", user_id, message)


@pytest.mark.parametrize("message", VISIBLE_MESSAGES)
async def test_a_visible_character_among_invisible_ones_is_enough(
    daemon: Daemon, db: asyncpg.Connection, message: str
) -> None:
    user_id = await daemon.create_user(phone="+15551234567")

    await daemon.notify(user_id=user_id, message=message, channels=["sms"])

    stored = await db.fetchval("SELECT message FROM notifyd.notifications")
    assert stored == message


async def test_the_database_and_notifyd_agree_on_every_character(db: asyncpg.Connection) -> None:
    # Every code point PostgreSQL text can hold: no NUL, no surrogates.
    characters = [chr(code) for code in range(1, 0x110000) if not 0xD800 <= code <= 0xDFFF]
    visible_in_sql = await db.fetchval(
        "SELECT array_agg(notifyd.has_visible_text(c) ORDER BY i)"
        " FROM unnest($1::text[]) WITH ORDINALITY AS t(c, i)",
        characters,
    )
    differ = [
        f"U+{ord(c):04X}"
        for c, in_sql in zip(characters, visible_in_sql, strict=True)
        if in_sql != has_visible_text(c)
    ]
    assert differ == []
    invisible = sum(b - a + 1 for a, b in INVISIBLE_RANGES) - 1  # NUL is not stored
    assert visible_in_sql.count(False) == invisible


def test_everything_python_calls_whitespace_is_invisible() -> None:
    spaces = [chr(code) for code in range(0x110000) if chr(code).isspace()]
    assert spaces
    assert not any(has_visible_text(space) for space in spaces)
