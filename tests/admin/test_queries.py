"""The dashboard's queries: right answers, and indexes that keep them cheap on a big table."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from notifyd.db import Database
from notifyd.db.dashboard import DASHBOARD_CHANNELS, DASHBOARD_FINISHED, ChannelRate
from notifyd.db.users import LIST_USERS
from tests.admin.support import insert_attempt, insert_notification, insert_user


async def plan(db: asyncpg.Connection, query: str, *args: object) -> str:
    rows = await db.fetch(f"EXPLAIN {query}", *args)
    return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize(
    ("query", "args", "indexes"),
    [
        (
            DASHBOARD_FINISHED,
            (3600.0,),
            ["notifications_pending_idx", "notifications_finished_idx"],
        ),
        (DASHBOARD_CHANNELS, (3600.0,), ["notification_attempts_finished_idx"]),
        (LIST_USERS, (100, 51), ["users_pkey"]),
    ],
    ids=["finished", "channels", "users"],
)
async def test_dashboard_queries_can_use_an_index_instead_of_reading_the_table(
    db: asyncpg.Connection, query: str, args: tuple[object, ...], indexes: list[str]
) -> None:
    # A fresh test table is tiny and would be read whole anyway; forbidding sequential
    # scans shows whether an index can answer at all, as it must on a big table.
    await db.execute("SET enable_seqscan = off")
    await db.execute("SET plan_cache_mode = force_custom_plan")
    text = await plan(db, query, *args)
    for index in indexes:
        assert index in text, text
    assert "Seq Scan" not in text, text


async def test_dashboard_counts(database: Database, db: asyncpg.Connection) -> None:
    user_id = await insert_user(db, email="a@example.com")
    await insert_notification(db, user_id, status="sent")
    await insert_notification(db, user_id, status="sent", finished_ago=timedelta(minutes=59))
    await insert_notification(db, user_id, status="failed", finished_ago=timedelta(minutes=61))
    notification_id = await insert_notification(db, user_id, status="failed")
    await db.execute(
        "INSERT INTO notifyd.notifications (user_id, message) VALUES ($1, 'waiting')", user_id
    )
    await insert_attempt(db, notification_id, "sms", 1, "failed", error="boom", transient=True)
    await insert_attempt(db, notification_id, "sms", 2, "success")
    await insert_attempt(db, notification_id, "sms", 3, "success")

    counts = await database.dashboard.counts(3600)

    assert (counts.pending, counts.sent, counts.failed) == (1, 2, 1)
    assert counts.channels == (
        ChannelRate("email", 0, 0),
        ChannelRate("sms", 3, 2),
        ChannelRate("telegram", 0, 0),
    )


async def test_list_users_pages_by_id(database: Database, db: asyncpg.Connection) -> None:
    ids = [await insert_user(db, phone=f"+1555000000{n}") for n in range(5)]
    assert [u.id for u in await database.users.page(None, 2)] == ids[:2]
    assert [u.id for u in await database.users.page(ids[1], 2)] == ids[2:4]
    assert [u.id for u in await database.users.page(ids[4], 2)] == []
