"""The delivery path's statements keep their plan when the statistics are wrong.

A fresh database, or a bulk insert that autovacuum has not analyzed yet, is exactly what a
new user and a big enqueue produce: the planner then believes the queue holds a handful of
rows.
"""

from __future__ import annotations

import uuid

import asyncpg

from notifyd.store import CLAIM, CLAIM_PLAN, SERVER_SETTINGS


async def stale_backlog(database_url: str, count: int) -> asyncpg.Connection:
    """A connection like the daemon's, to a queue analyzed empty and then filled."""
    connection = await asyncpg.connect(database_url, server_settings=SERVER_SETTINGS)
    await connection.execute("ALTER TABLE notifyd.notifications SET (autovacuum_enabled = off)")
    user_id = await connection.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
    )
    await connection.execute("VACUUM ANALYZE notifyd.notifications")
    await connection.execute(
        """
        INSERT INTO notifyd.notifications (user_id, message, channels)
        SELECT $1, 'm' || g, ARRAY['sms'] FROM generate_series(1, $2) AS g
        """,
        user_id,
        count,
    )
    return connection


async def claim_plan(connection: asyncpg.Connection, *, settings: str | None) -> str:
    async with connection.transaction():
        if settings is not None:
            await connection.execute(settings)
        rows = await connection.fetch(f"EXPLAIN {CLAIM}", 250, uuid.uuid4(), 30.0)
    return "\n".join(row[0] for row in rows)


async def test_claim_walks_the_pending_index_in_order_even_with_stale_statistics(
    database_url: str,
) -> None:
    connection = await stale_backlog(database_url, 20_000)
    try:
        # The trap is there: left to itself, the planner reads every pending row and sorts.
        unguarded = await claim_plan(connection, settings=None)
        assert "Sort" in unguarded, unguarded

        guarded = await claim_plan(connection, settings=CLAIM_PLAN)
        assert "Index Scan using notifications_pending_idx" in guarded, guarded
        assert "Sort" not in guarded, guarded
        assert "Bitmap" not in guarded, guarded
    finally:
        await connection.close()
