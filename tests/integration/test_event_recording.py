"""The switch that says whether status events are recorded (sql/0006).

Off, a notification that ends writes no row of notifyd.webhook_events, however it ends;
on, every way writes its event. An instance with endpoints turns it on before it delivers
anything; none turns it off. A database that recorded events before the upgrade keeps
recording them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from notifyd.db import Database
from notifyd.web.keys import SERVICE
from tests.conftest import EmptyDatabase
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.roles import another_role
from tests.schema import migrate_database, migrations_up_to
from tests.support import Daemon, wait_until

DaemonFactory = Callable[..., Awaitable[Daemon]]
# How a notification can end; each must write its event exactly when recording is on.
WAYS = ("notifyd", "cancel", "update", "insert")


async def switch_on(db: asyncpg.Connection) -> None:
    await db.execute(
        "INSERT INTO notifyd.status_event_recording (switched_on_by) VALUES ('a test')"
    )


async def events(db: asyncpg.Connection) -> list[tuple[str, int]]:
    found = await db.fetch("SELECT type, notification_id FROM notifyd.webhook_events ORDER BY id")
    return [(r["type"], r["notification_id"]) for r in found]


async def recording(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch("SELECT since, switched_on_by FROM notifyd.status_event_recording")


async def end_one(
    way: str, daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> tuple[str, int]:
    """End a notification `way`; the event it would write."""
    user_id: int = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
    )
    if way == "notifyd":
        # notifyd's own attempt write, by a daemon without endpoints.
        daemon = await daemon_factory()
        sent = await daemon.notify(user_id=user_id, message="hi", channels=["sms"])
        finished = await daemon.wait_finished(sent["id"])
        assert finished["status"] == "sent"
        return "notification.sent", sent["id"]
    if way == "insert":
        inserted: int = await db.fetchval(
            "INSERT INTO notifyd.notifications (user_id, message, status, finished_at)"
            " VALUES ($1, 'm', 'sent', now()) RETURNING id",
            user_id,
        )
        return "notification.sent", inserted
    notification_id: int = await db.fetchval(
        "SELECT notifyd.enqueue($1, 'hello', '', ARRAY['sms'], '2999-01-01Z')", user_id
    )
    if way == "cancel":
        assert await db.fetchval("SELECT notifyd.cancel($1)", notification_id) is True
        return "notification.cancelled", notification_id
    # Another application's plain UPDATE.
    await db.execute(
        "UPDATE notifyd.notifications SET status = 'failed', finished_at = now() WHERE id = $1",
        notification_id,
    )
    return "notification.failed", notification_id


@pytest.mark.parametrize("way", WAYS)
async def test_while_off_no_way_of_ending_writes_an_event(
    way: str, daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    assert await recording(db) == []  # a new database records nothing
    await end_one(way, daemon_factory, db)
    status = await db.fetchval(
        "SELECT count(*) FROM notifyd.notifications WHERE finished_at IS NOT NULL"
    )
    assert status == 1
    assert await events(db) == []


@pytest.mark.parametrize("way", WAYS)
async def test_while_on_every_way_of_ending_writes_its_event(
    way: str, daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    await switch_on(db)
    expected = await end_one(way, daemon_factory, db)
    assert await events(db) == [expected]


async def test_a_daemon_with_endpoints_turns_it_on_before_it_delivers(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    user_id: int = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
    )
    # Due before the daemon starts: its very first claim takes it.
    waiting: int = await db.fetchval(
        "SELECT notifyd.enqueue($1, 'hello', '', ARRAY['sms'])", user_id
    )
    async with WebhookReceiver() as receiver:
        with capture_logs() as logs:
            daemon = await daemon_factory(
                webhooks={"endpoints": [receiver.endpoint()], "poll_interval": 0.05}
            )
            await daemon.wait_finished(waiting)

            async def told() -> bool:
                return len(receiver.delivered()) == 1

            await wait_until(told, deadline=20, what="the event of the first notification")
        (body,) = receiver.bodies().values()
        assert (body["type"], body["data"]["id"]) == ("notification.sent", waiting)

    (row,) = await recording(db)
    assert str(daemon.app[SERVICE].owner) in row["switched_on_by"]
    finished_at = await db.fetchval(
        "SELECT finished_at FROM notifyd.notifications WHERE id = $1", waiting
    )
    assert row["since"] <= finished_at
    names = [entry["event"] for entry in logs]
    assert names.count("webhook_events_recording_on") == 1
    assert names.index("webhook_events_recording_on") < names.index("delivery_started")


async def test_a_second_daemon_with_endpoints_leaves_it_as_it_is(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    await switch_on(db)
    (before,) = await recording(db)
    async with WebhookReceiver() as receiver:
        with capture_logs() as logs:
            daemon = await daemon_factory(webhooks={"endpoints": [receiver.endpoint()]})
            await daemon.app_ready()
    assert await recording(db) == [before]
    assert "webhook_events_recording_on" not in [entry["event"] for entry in logs]


async def test_a_daemon_without_endpoints_never_turns_it_off_and_warns(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    await switch_on(db)
    with capture_logs() as logs:
        daemon = await daemon_factory()
        await daemon.app_ready()
        await daemon.close()
    assert len(await recording(db)) == 1
    (warning,) = [e for e in logs if e["event"] == "webhook_events_recorded_without_endpoints"]
    assert warning["switched_on_by"] == "a test"
    assert "notifyd webhooks off" in warning["hint"]


async def test_switching_on_is_idempotent_and_off_says_what_it_was(database: Database) -> None:
    first = await database.recording.switch_on("host-a (instance 1)")
    assert first is not None
    assert first.switched_on_by == "host-a (instance 1)"
    assert await database.recording.switch_on("host-b (instance 2)") is None
    assert await database.recording.state() == first
    assert await database.recording.switch_off() == first
    assert await database.recording.state() is None
    assert await database.recording.switch_off() is None


async def test_the_switch_holds_one_row_at_most(db: asyncpg.Connection) -> None:
    await switch_on(db)
    with pytest.raises(asyncpg.UniqueViolationError):
        await switch_on(db)
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await db.execute(
            "INSERT INTO notifyd.status_event_recording (singleton, switched_on_by)"
            " VALUES (false, 'x')"
        )
    assert caught.value.constraint_name == "status_event_recording_one_row"
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await db.execute("UPDATE notifyd.status_event_recording SET switched_on_by = ''")
    assert caught.value.constraint_name == "status_event_recording_switched_on_by_length"


async def test_turned_off_events_already_recorded_stay_pending(
    db: asyncpg.Connection, database: Database
) -> None:
    await switch_on(db)
    user_id: int = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
    )
    first: int = await db.fetchval(
        "INSERT INTO notifyd.notifications (user_id, message, status, finished_at)"
        " VALUES ($1, 'm', 'sent', now()) RETURNING id",
        user_id,
    )
    assert await database.recording.switch_off() is not None
    await db.execute(
        "INSERT INTO notifyd.notifications (user_id, message, status, finished_at)"
        " VALUES ($1, 'm', 'failed', now())",
        user_id,
    )
    assert await events(db) == [("notification.sent", first)]
    assert await database.recording.pending() == 1


@pytest.mark.usefixtures("needs_createrole")
@pytest.mark.parametrize("on", [True, False], ids=["on", "off"])
async def test_a_role_granted_before_the_switch_existed_still_finishes_notifications(
    on: bool, db: asyncpg.Connection
) -> None:
    # Another application's role, granted what 0005 asked for, and nothing on the switch.
    if on:
        await switch_on(db)
    user_id: int = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
    )
    notification_id: int = await db.fetchval(
        "SELECT notifyd.enqueue($1, 'hello', '', ARRAY['sms'], '2999-01-01Z')", user_id
    )
    async with another_role(db) as role:
        await db.execute(f"GRANT USAGE ON SCHEMA notifyd TO {role}")
        await db.execute(f"GRANT SELECT, UPDATE ON notifyd.notifications TO {role}")
        await db.execute(f"GRANT INSERT ON notifyd.webhook_events TO {role}")
        await db.execute(f"SET ROLE {role}")
        try:
            await db.execute(
                "UPDATE notifyd.notifications SET status = 'failed', finished_at = now()"
                " WHERE id = $1",
                notification_id,
            )
        finally:
            await db.execute("RESET ROLE")
        expected = [("notification.failed", notification_id)] if on else []
        assert await events(db) == expected


# The upgrade


@pytest.mark.parametrize("had_events", [True, False], ids=["with-events", "without-events"])
async def test_the_upgrade_keeps_recording_where_events_were_recorded(
    had_events: bool, empty_database: EmptyDatabase, tmp_path: Path
) -> None:
    url = await empty_database()
    applied = await migrate_database(url, migrations_up_to(5, tmp_path))
    assert applied[-1] == "0005_lifecycle"
    connection = await asyncpg.connect(url)
    try:
        user_id = await connection.fetchval(
            "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
        )
        notification_id = await connection.fetchval(
            "SELECT notifyd.enqueue($1, 'hello', '', ARRAY['sms'], '2999-01-01Z')", user_id
        )
        if had_events:
            await connection.execute("SELECT notifyd.cancel($1)", notification_id)
        assert len(await events(connection)) == int(had_events)

        assert await migrate_database(url, migrations_up_to(6, tmp_path)) == [
            "0006_status_event_switch"
        ]

        found = await recording(connection)
        assert len(found) == int(had_events)
        # And the triggers follow the switch from then on.
        await connection.execute(
            "INSERT INTO notifyd.notifications (user_id, message, status, finished_at)"
            " VALUES ($1, 'm', 'sent', now())",
            user_id,
        )
        assert len(await events(connection)) == 2 * int(had_events)
    finally:
        await connection.close()


@pytest.mark.usefixtures("needs_createrole")
async def test_the_upgrade_needs_no_new_grant_where_functions_are_not_public(
    empty_database: EmptyDatabase, tmp_path: Path
) -> None:
    # A hardened database: functions created from now on are not everyone's to call. Every
    # UPDATE of notifications calls the switch's function, so without its own grant every
    # claim, attempt write and other application's status update would be refused.
    url = await empty_database()
    await migrate_database(url, migrations_up_to(5, tmp_path))
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC")
        async with another_role(connection) as role:
            await connection.execute(f"GRANT USAGE ON SCHEMA notifyd TO {role}")
            await connection.execute(f"GRANT SELECT, UPDATE ON notifyd.notifications TO {role}")
            await connection.execute(f"GRANT INSERT ON notifyd.webhook_events TO {role}")
            assert await migrate_database(url, migrations_up_to(6, tmp_path)) == [
                "0006_status_event_switch"
            ]
            user_id = await connection.fetchval(
                "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
            )
            notification_id = await connection.fetchval(
                "SELECT notifyd.enqueue($1, 'hello', '', ARRAY['sms'], '2999-01-01Z')", user_id
            )
            await connection.execute(f"SET ROLE {role}")
            try:
                status = await connection.fetchval(
                    "UPDATE notifyd.notifications SET status = 'failed', finished_at = now()"
                    " WHERE id = $1 RETURNING status",
                    notification_id,
                )
            finally:
                await connection.execute("RESET ROLE")
            assert status == "failed"
    finally:
        await connection.close()
