"""A subject holds no line break of any kind, in the table as in the API (sql/0008)."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from notifyd.db import Database
from notifyd.domain import LINE_BREAKS
from tests.conftest import EmptyDatabase
from tests.schema import migrate_database, migrations_up_to

# Characters beside the line breaks, which a subject may hold.
NOT_LINE_BREAKS = ["\t", " ", "\x1b", "\x1f", "\x84", "\x86", "\u2027", "\u202a", "\u200b"]


async def make_user(db: asyncpg.Connection) -> int:
    user_id: int = await db.fetchval(
        "INSERT INTO notifyd.users (email) VALUES ('a@example.com') RETURNING id"
    )
    return user_id


@pytest.mark.parametrize("character", sorted(LINE_BREAKS), ids=lambda c: f"U+{ord(c):04X}")
async def test_the_table_refuses_every_line_break_the_api_refuses(
    db: asyncpg.Connection, character: str
) -> None:
    user_id = await make_user(db)
    with pytest.raises(asyncpg.CheckViolationError) as refused:
        await db.execute(
            "SELECT notifyd.enqueue($1, 'hi', $2, ARRAY['email'])", user_id, f"a{character}b"
        )
    assert refused.value.constraint_name == "notifications_subject_single_line"


@pytest.mark.parametrize("character", NOT_LINE_BREAKS, ids=lambda c: f"U+{ord(c):04X}")
async def test_the_table_takes_what_is_not_a_line_break(
    db: asyncpg.Connection, character: str
) -> None:
    user_id = await make_user(db)
    subject = f"a{character}b"
    notification_id = await db.fetchval(
        "SELECT notifyd.enqueue($1, 'hi', $2, ARRAY['email'])", user_id, subject
    )
    stored = await db.fetchval(
        "SELECT subject FROM notifyd.notifications WHERE id = $1", notification_id
    )
    assert stored == subject


async def test_the_upgrade_replaces_stored_line_breaks_and_the_claim_goes_on(
    empty_database: EmptyDatabase, tmp_path: Path
) -> None:
    url = await empty_database()
    await migrate_database(url, migrations_up_to(7, tmp_path))
    connection = await asyncpg.connect(url)
    try:
        user_id = await make_user(connection)
        # Written by another application while the check let them in.
        pending = await connection.fetchval(
            "INSERT INTO notifyd.notifications (user_id, subject, message, channels)"
            " VALUES ($1, $2, 'hi', ARRAY['email']) RETURNING id",
            user_id,
            "a\u2028b\x0bc",
        )
        sent = await connection.fetchval(
            "INSERT INTO notifyd.notifications (user_id, subject, message, status, finished_at)"
            " VALUES ($1, $2, 'hi', 'sent', now()) RETURNING id",
            user_id,
            "x\x85y",
        )
        kept = await connection.fetchval(
            "INSERT INTO notifyd.notifications (user_id, subject, message)"
            " VALUES ($1, 'one line', 'hi') RETURNING id",
            user_id,
        )

        with capture_logs() as logs:
            assert await migrate_database(url) == ["0008_subject_one_line"]

        warnings = [entry for entry in logs if entry["event"] == "migration_warning"]
        assert len(warnings) == 1
        assert "2 notification(s) had a line break in the subject" in warnings[0]["message"]
        rows = await connection.fetch(
            "SELECT id, subject, status FROM notifyd.notifications ORDER BY id"
        )
        assert [tuple(row) for row in rows] == [
            (pending, "a b c", "pending"),
            (sent, "x y", "sent"),
            (kept, "one line", "pending"),
        ]
    finally:
        await connection.close()
    # The repaired row is claimed like any other.
    database = await Database.connect(url, min_size=1, max_size=2)
    try:
        claimed = await database.queue.claim(10, uuid.uuid4(), 30)
    finally:
        await database.close()
    assert sorted(n.id for n in claimed) == [pending, kept]
    assert {n.subject for n in claimed} == {"a b c", "one line"}
