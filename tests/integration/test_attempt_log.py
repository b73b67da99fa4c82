"""The attempt log goes with its notifications: on DELETE and on TRUNCATE."""

from __future__ import annotations

import asyncpg
import pytest

from tests.roles import another_role


async def notifications_with_attempts(db: asyncpg.Connection, count: int) -> list[int]:
    user_id = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
    )
    ids: list[int] = [
        row["id"]
        for row in await db.fetch(
            """
            INSERT INTO notifyd.notifications (user_id, message, channels, status, finished_at)
            SELECT $1, 'm', ARRAY['sms'], 'sent', now() FROM generate_series(1, $2)
            RETURNING id
            """,
            user_id,
            count,
        )
    ]
    await db.execute(
        """
        INSERT INTO notifyd.notification_attempts
            (notification_id, channel, attempt, status, started_at, finished_at)
        SELECT id, 'sms', attempt, 'failed', now(), now()
        FROM unnest($1::bigint[]) AS id, generate_series(1, 3) AS attempt
        """,
        ids,
    )
    return ids


async def attempts_by_notification(db: asyncpg.Connection) -> dict[int, int]:
    rows = await db.fetch(
        """
        SELECT notification_id, count(*) AS attempts
        FROM notifyd.notification_attempts GROUP BY notification_id
        """
    )
    return {row["notification_id"]: row["attempts"] for row in rows}


async def test_deleting_notifications_deletes_their_attempts_and_no_others(
    db: asyncpg.Connection,
) -> None:
    ids = await notifications_with_attempts(db, 6)

    await db.execute("DELETE FROM notifyd.notifications WHERE id = ANY($1::bigint[])", ids[:4])
    await db.execute("DELETE FROM notifyd.notifications WHERE id = $1", ids[4])

    assert await attempts_by_notification(db) == {ids[5]: 3}


async def test_a_rolled_back_delete_keeps_the_attempts(db: asyncpg.Connection) -> None:
    ids = await notifications_with_attempts(db, 2)

    transaction = db.transaction()
    await transaction.start()
    await db.execute("DELETE FROM notifyd.notifications")
    assert await attempts_by_notification(db) == {}
    await transaction.rollback()

    assert await attempts_by_notification(db) == {ids[0]: 3, ids[1]: 3}


async def test_truncating_notifications_truncates_the_attempt_log(
    db: asyncpg.Connection,
) -> None:
    await notifications_with_attempts(db, 3)

    # CASCADE: idempotency keys still reference notifications by a foreign key.
    await db.execute("TRUNCATE notifyd.notifications CASCADE")

    assert await attempts_by_notification(db) == {}


@pytest.mark.usefixtures("needs_createrole")
async def test_a_role_that_may_delete_notifications_needs_no_rights_on_the_attempt_log(
    db: asyncpg.Connection,
) -> None:
    # As with the cascade it replaces: another application's role deletes its rows.
    ids = await notifications_with_attempts(db, 2)
    async with another_role(db) as role:
        await db.execute(f"GRANT USAGE ON SCHEMA notifyd TO {role}")
        await db.execute(f"GRANT SELECT, DELETE ON notifyd.notifications TO {role}")
        await db.execute(f"SET ROLE {role}")
        try:
            await db.execute("DELETE FROM notifyd.notifications WHERE id = $1", ids[0])
        finally:
            await db.execute("RESET ROLE")

        assert await attempts_by_notification(db) == {ids[1]: 3}
