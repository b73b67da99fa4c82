"""Retention: old finished notifications and old idempotency keys are pruned in batches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from tests.support import Daemon, wait_until

DaemonFactory = Callable[..., Awaitable[Daemon]]


async def seed(db: asyncpg.Connection) -> dict[str, list[int]]:
    """Notifications of every age and state, each with one attempt."""
    user_id = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
    )
    groups = {
        # (status, finished how many days ago, count)
        "old_sent": ("sent", 40, 5),
        "old_failed": ("failed", 31, 2),
        "recent_sent": ("sent", 29, 3),
        "old_pending": ("pending", None, 2),
    }
    ids: dict[str, list[int]] = {}
    for name, (status, days_ago, count) in groups.items():
        rows = await db.fetch(
            """
            INSERT INTO notifyd.notifications
                (user_id, message, channels, status, created_at, run_after, finished_at)
            SELECT $1, 'm', ARRAY['sms'], $2, now() - interval '60 days',
                   now() + interval '1 day',
                   CASE WHEN $3::int IS NULL THEN NULL ELSE now() - make_interval(days => $3) END
            FROM generate_series(1, $4)
            RETURNING id
            """,
            user_id,
            status,
            days_ago,
            count,
        )
        ids[name] = [row["id"] for row in rows]
        await db.execute(
            """
            INSERT INTO notifyd.notification_attempts
                (notification_id, channel, attempt, status, started_at, finished_at)
            SELECT id, 'sms', 1, 'failed', now(), now() FROM unnest($1::bigint[]) AS id
            """,
            ids[name],
        )
    return ids


async def remaining(db: asyncpg.Connection) -> set[int]:
    return {row["id"] for row in await db.fetch("SELECT id FROM notifyd.notifications")}


async def test_finished_notifications_past_retention_are_pruned_with_their_attempts(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    ids = await seed(db)
    await db.execute(
        "INSERT INTO notifyd.idempotency_keys (key, fingerprint, created_at) VALUES "
        "('old', '\\x00', now() - interval '25 hours'), ('new', '\\x00', now())"
    )
    # Batches of 2: seven rows to delete take four statements.
    daemon = await daemon_factory(retention={"days": 30, "batch_size": 2, "prune_interval": 0.2})

    async def pruned() -> bool:
        found = await daemon.metrics()
        return found.get(("notifyd_pruned_total", (("table", "notifications"),))) == 7

    await wait_until(pruned, deadline=10, what="seven notifications pruned")
    assert await remaining(db) == {*ids["recent_sent"], *ids["old_pending"]}
    attempts = await db.fetchval("SELECT count(*) FROM notifyd.notification_attempts")
    assert attempts == len(ids["recent_sent"]) + len(ids["old_pending"])
    keys = await db.fetch("SELECT key FROM notifyd.idempotency_keys")
    assert [row["key"] for row in keys] == ["new"]


async def test_retention_days_zero_keeps_every_notification(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    ids = await seed(db)
    # Keys are still pruned: their going shows that a pruning round ran.
    await db.execute(
        "INSERT INTO notifyd.idempotency_keys (key, fingerprint, created_at) "
        "VALUES ('old', '\\x00', now() - interval '25 hours')"
    )
    await daemon_factory(retention={"days": 0, "prune_interval": 0.2})

    async def key_pruned() -> bool:
        return not await db.fetchval("SELECT count(*) FROM notifyd.idempotency_keys")

    await wait_until(key_pruned, deadline=10, what="a pruning round")
    assert await remaining(db) == {i for group in ids.values() for i in group}
