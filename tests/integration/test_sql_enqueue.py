"""Other applications enqueue with plain SQL; the database enforces the API's rules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from notifyd.web.keys import SERVICE
from tests.support import Daemon, wait_until

DaemonFactory = Callable[..., Awaitable[Daemon]]
# A minute between polls: anything delivered sooner was woken by NOTIFY.
NO_POLLING = {"dispatcher": {"poll_interval": 60}}


async def make_user(db: asyncpg.Connection) -> int:
    user_id: int = await db.fetchval(
        "INSERT INTO notifyd.users (email, phone) VALUES ('a@example.com', '+15551234567')"
        " RETURNING id"
    )
    return user_id


async def test_insert_from_another_connection_is_woken_by_notify(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await daemon_factory(**NO_POLLING)
    user_id = await make_user(db)
    # The daemon claims once right after its listener connects; wait for that to pass.
    await daemon.app_ready()
    async with db.transaction():
        notification_id = await db.fetchval(
            "INSERT INTO notifyd.notifications (user_id, subject, message, channels)"
            " VALUES ($1, 'Привет!', 'Тестовое уведомление', ARRAY['sms', 'email'])"
            " RETURNING id",
            user_id,
        )
    finished = await daemon.wait_finished(notification_id, deadline=10)
    assert finished["status"] == "sent"
    assert [a["channel"] for a in finished["attempts"]] == ["sms"]


async def test_enqueue_function_uses_the_default_channel_order(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await daemon_factory(**NO_POLLING)
    user_id = await make_user(db)
    await daemon.app_ready()
    notification_id = await db.fetchval("SELECT notifyd.enqueue($1, 'hello')", user_id)
    row = await db.fetchrow(
        "SELECT subject, channels FROM notifyd.notifications WHERE id = $1", notification_id
    )
    assert row["subject"] == ""
    assert row["channels"] == ["email", "sms", "telegram"]
    finished = await daemon.wait_finished(notification_id, deadline=10)
    assert finished["status"] == "sent"


async def test_rolled_back_insert_is_never_delivered(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await daemon_factory(**NO_POLLING)
    user_id = await make_user(db)
    await daemon.app_ready()
    transaction = db.transaction()
    await transaction.start()
    rolled_back = await db.fetchval("SELECT notifyd.enqueue($1, 'never')", user_id)
    await transaction.rollback()
    # A committed one after it proves the daemon was awake and listening all along.
    committed = await db.fetchval("SELECT notifyd.enqueue($1, 'later', '', ARRAY['sms'])", user_id)
    await daemon.wait_finished(committed, deadline=10)
    attempts = await db.fetchval(
        "SELECT count(*) FROM notifyd.notification_attempts WHERE notification_id = $1",
        rolled_back,
    )
    assert attempts == 0
    assert await db.fetchval("SELECT count(*) FROM notifyd.notifications") == 1


async def test_bulk_insert_sends_one_notify_and_delivers_all(
    daemon_factory: DaemonFactory, db: asyncpg.Connection, database_url: str
) -> None:
    daemon = await daemon_factory(**NO_POLLING)
    user_id = await make_user(db)
    await daemon.app_ready()
    heard: list[str] = []
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener("notifyd_wakeup", lambda *args: heard.append(args[3]))
        await db.execute(
            "INSERT INTO notifyd.notifications (user_id, message, channels)"
            " SELECT $1, 'bulk ' || n, ARRAY['sms'] FROM generate_series(1, 500) AS n",
            user_id,
        )

        async def all_sent() -> bool:
            sent = await db.fetchval(
                "SELECT count(*) FROM notifyd.notifications WHERE status = 'sent'"
            )
            return bool(sent == 500)

        await wait_until(all_sent, deadline=30, what="500 notifications sent")
        # A round trip on the listening session: every NOTIFY sent before is now read.
        await listener.fetchval("SELECT 1")
    finally:
        await listener.close()
    # One statement of 500 rows, one constant payload: one notification.
    assert heard == [""]


@pytest.mark.parametrize(
    ("columns", "values", "constraint"),
    [
        ("message, channels", "'hi', ARRAY['fax']", "notifications_channels_valid"),
        ("message, channels", "'hi', ARRAY[]::text[]", "notifications_channels_valid"),
        ("message, channels", "'hi', ARRAY['sms', 'sms']", "notifications_channels_valid"),
        ("message, channels", "'hi', ARRAY['sms', NULL]", "notifications_channels_valid"),
        ("message", "''", "notifications_message_not_blank"),
        ("message", "'   '", "notifications_message_not_blank"),
        ("message", "E' \\n\\t '", "notifications_message_not_blank"),
        ("message", "repeat('я', 65537)", "notifications_message_length"),
        ("message, subject", "'hi', E'two\\nlines'", "notifications_subject_single_line"),
        ("message, subject", "'hi', repeat('x', 999)", "notifications_subject_length"),
        ("message, status", "'hi', 'bogus'", "notifications_status_known"),
    ],
)
async def test_database_refuses_rows_that_break_the_rules(
    db: asyncpg.Connection, columns: str, values: str, constraint: str
) -> None:
    user_id = await make_user(db)
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await db.execute(
            f"INSERT INTO notifyd.notifications (user_id, {columns}) VALUES ($1, {values})",
            user_id,
        )
    assert caught.value.constraint_name == constraint
    assert await db.fetchval("SELECT count(*) FROM notifyd.notifications") == 0


@pytest.mark.parametrize(
    ("message", "constraint"),
    [
        ("'  '", "notifications_message_not_blank"),
        ("repeat('x', 65537)", "notifications_message_length"),
    ],
)
async def test_database_refuses_an_update_that_breaks_the_message_rules(
    db: asyncpg.Connection, message: str, constraint: str
) -> None:
    user_id = await make_user(db)
    notification_id = await db.fetchval("SELECT notifyd.enqueue($1, 'fine')", user_id)
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await db.execute(
            f"UPDATE notifyd.notifications SET message = {message} WHERE id = $1", notification_id
        )
    assert caught.value.constraint_name == constraint
    assert (
        await db.fetchval(
            "SELECT message FROM notifyd.notifications WHERE id = $1", notification_id
        )
        == "fine"
    )


@pytest.mark.usefixtures("needs_superuser")
async def test_the_message_rules_hold_for_replicated_rows_too(db: asyncpg.Connection) -> None:
    # Replication apply and some restore tools run as replica, where ordinary triggers do
    # not fire; a CHECK constraint would still be checked, and so is this rule.
    user_id = await make_user(db)
    await db.execute("SET session_replication_role = replica")
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "INSERT INTO notifyd.notifications (user_id, message) VALUES ($1, ' ')", user_id
        )


async def test_a_message_of_the_longest_length_is_accepted(db: asyncpg.Connection) -> None:
    user_id = await make_user(db)
    notification_id = await db.fetchval("SELECT notifyd.enqueue($1, repeat('я', 65536))", user_id)
    # Status updates (what delivery does) never touch the message's rules.
    await db.execute(
        "UPDATE notifyd.notifications SET status = 'failed', finished_at = now() WHERE id = $1",
        notification_id,
    )
    assert (
        await db.fetchval(
            "SELECT length(message) FROM notifyd.notifications WHERE id = $1", notification_id
        )
        == 65536
    )


@pytest.mark.parametrize(
    ("channels", "valid"),
    [
        ("'{email}'", True),
        ("'{email,sms,telegram}'", True),
        ("'{telegram,email}'", True),
        ("'[0:1]={sms,email}'", True),
        ("'{}'", False),
        ("NULL", False),
        ("'{sms,NULL}'", False),
        ("'{NULL}'", False),
        ("'{fax}'", False),
        ("'{SMS}'", False),
        ("'{sms,sms}'", False),
        ("'{sms,email,sms}'", False),
        ("'{email,sms,telegram,email}'", False),
        # An array literal may start at any index: repeats are still found.
        ("'[0:1]={sms,sms}'", False),
        ("'[5:7]={email,sms,email}'", False),
    ],
)
async def test_valid_channels_rules(db: asyncpg.Connection, channels: str, valid: bool) -> None:
    assert await db.fetchval(f"SELECT notifyd.valid_channels({channels}::text[])") is valid


async def test_database_refuses_an_unknown_user(db: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db.execute("SELECT notifyd.enqueue(424242, 'hello')")
    with pytest.raises(asyncpg.NotNullViolationError):
        await db.execute("INSERT INTO notifyd.notifications (user_id) VALUES (NULL)")


async def test_listener_killed_by_the_server_is_replaced_and_nothing_is_missed(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await daemon_factory(dispatcher={"poll_interval": 60, "listen_check_interval": 0.2})
    user_id = await make_user(db)
    await daemon.app_ready()
    listener = daemon.app[SERVICE].listener
    old_pid = listener.backend_pid
    assert await db.fetchval("SELECT pg_terminate_backend($1)", old_pid)
    # Inserted while the listener is down: only the claim after reconnecting can see it.
    missed = await db.fetchval(
        "SELECT notifyd.enqueue($1, 'while down', '', ARRAY['sms'])", user_id
    )

    async def reconnected() -> bool:
        return listener.reconnects >= 1 and listener.backend_pid not in (None, old_pid)

    await wait_until(reconnected, deadline=10, what="the listener to reconnect")
    assert (await daemon.wait_finished(missed, deadline=10))["status"] == "sent"
    await daemon.app_ready()
    after = await db.fetchval("SELECT notifyd.enqueue($1, 'after', '', ARRAY['sms'])", user_id)
    assert (await daemon.wait_finished(after, deadline=10))["status"] == "sent"
