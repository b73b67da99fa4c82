"""Timestamps outside a sane range: refused when written, and read anyway when stored.

Any application may write notifyd's tables. A timestamp like 'infinity', '10000-01-01' or
'4713-01-01 BC' used to be accepted, and notifyd could not read the row back: the claim
raised OverflowError (or compared a naive datetime with an aware one) at every start, and
the API, the dashboard and the CLI failed on it. Every timestamp column now has a named
range check; and with the checks gone (a row written before them, or a check dropped by
hand) every reader still answers, and the notification is delivered.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from notifyd.db import Database
from notifyd.domain import (
    AFTER_ALL_TIME,
    BEFORE_ALL_TIME,
    EARLIEST_TIMESTAMP,
    TIMESTAMP_LIMIT,
    epoch_in_range,
)
from tests.admin.support import page
from tests.support import Daemon, drop_range_checks, wait_until

# Stored values Python's datetime cannot hold, and how notifyd reads each.
UNREADABLE = {
    "infinity": AFTER_ALL_TIME,
    "10000-01-01 00:00:00+00": AFTER_ALL_TIME,
    "-infinity": BEFORE_ALL_TIME,
    "4713-01-01 00:00:00+00 BC": BEFORE_ALL_TIME,
}
OUT_OF_RANGE = [*UNREADABLE, "1969-12-31 23:59:59.999999+00", "3000-01-01 00:00:00+00"]
IN_RANGE = ["1970-01-01 00:00:00+00", "2999-12-31 23:59:59.999999+00"]

# Every timestamp column, with a row to put a value in (a placeholder for the column).
COLUMNS = {
    (
        "users",
        "created_at",
    ): "INSERT INTO notifyd.users (created_at) VALUES ($1::text::timestamptz)",
    (
        "users",
        "updated_at",
    ): "INSERT INTO notifyd.users (updated_at) VALUES ($1::text::timestamptz)",
    **{
        ("notifications", column): (
            f"INSERT INTO notifyd.notifications (user_id, message, {column})"
            " VALUES ((SELECT min(id) FROM notifyd.users), 'm', $1::text::timestamptz)"
        )
        for column in ("created_at", "updated_at", "finished_at", "send_at", "run_after")
    },
    ("notifications", "lease_expires_at"): (
        "INSERT INTO notifyd.notifications"
        " (user_id, message, status, locked_by, lease_expires_at)"
        " VALUES ((SELECT min(id) FROM notifyd.users), 'm', 'processing',"
        " gen_random_uuid(), $1::text::timestamptz)"
    ),
    **{
        ("notification_attempts", column): (
            "INSERT INTO notifyd.notification_attempts"
            " (notification_id, channel, attempt, status, started_at, finished_at)"
            " VALUES (1, 'sms', 1, 'success', "
            + (
                "$1::text::timestamptz, '2999-12-31 23:59:59.999999Z'"
                if column == "started_at"
                else ""
            )
            + ("'1970-01-01Z', $1::text::timestamptz" if column == "finished_at" else "")
            + ")"
        )
        for column in ("started_at", "finished_at")
    },
    ("notifications", "cancel_requested_at"): (
        "INSERT INTO notifyd.notifications (user_id, message, cancel_requested_at)"
        " VALUES ((SELECT min(id) FROM notifyd.users), 'm', $1::text::timestamptz)"
    ),
    **{
        ("webhook_events", column): (
            f"INSERT INTO notifyd.webhook_events (type, notification_id, {column})"
            " VALUES ('notification.sent', 1, $1::text::timestamptz)"
        )
        for column in ("created_at", "next_attempt_at", "finished_at")
    },
    ("webhook_events", "lease_expires_at"): (
        "INSERT INTO notifyd.webhook_events"
        " (type, notification_id, locked_by, lease_expires_at)"
        " VALUES ('notification.sent', 1, gen_random_uuid(), $1::text::timestamptz)"
    ),
    ("status_event_recording", "since"): (
        "INSERT INTO notifyd.status_event_recording (switched_on_by, since)"
        " VALUES ('a test', $1::text::timestamptz)"
    ),
    ("idempotency_keys", "created_at"): (
        "INSERT INTO notifyd.idempotency_keys (key, fingerprint, created_at)"
        " VALUES (gen_random_uuid()::text, '\\x00', $1::text::timestamptz)"
    ),
    ("pacing", "tat"): (
        "INSERT INTO notifyd.pacing (key, tat) VALUES (gen_random_uuid()::text,"
        " $1::text::timestamptz)"
    ),
    ("suppressions", "since"): (
        "INSERT INTO notifyd.suppressions (user_id, channel, contact, reason, since)"
        " VALUES ((SELECT min(id) FROM notifyd.users), 'email', 'a@example.com', 'test',"
        " $1::text::timestamptz)"
    ),
}


def check_name(table: str, column: str) -> str:
    prefix = "attempts" if table == "notification_attempts" else table
    return f"{prefix}_{column}_in_range"


async def make_user(db: asyncpg.Connection, **columns: str) -> int:
    names = ["phone", *columns]
    values = ["'+15551234567'", *(f"'{value}'::timestamptz" for value in columns.values())]
    user_id: int = await db.fetchval(
        f"INSERT INTO notifyd.users ({', '.join(names)}) VALUES ({', '.join(values)}) RETURNING id"
    )
    return user_id


async def make_notification(db: asyncpg.Connection, user_id: int, **columns: str) -> int:
    names = ["user_id", "message", "channels", *columns]
    values = ["$1", "'hello'", "ARRAY['sms']", *(f"'{v}'::timestamptz" for v in columns.values())]
    notification_id: int = await db.fetchval(
        f"INSERT INTO notifyd.notifications ({', '.join(names)})"
        f" VALUES ({', '.join(values)}) RETURNING id",
        user_id,
    )
    return notification_id


# Refused when written


async def test_every_timestamp_column_has_a_range_check(db: asyncpg.Connection) -> None:
    columns = await db.fetch(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'notifyd' AND data_type = 'timestamp with time zone'"
        " AND table_name <> 'schema_migrations'"
    )
    assert {(r["table_name"], r["column_name"]) for r in columns} == set(COLUMNS)
    checks = await db.fetch(
        "SELECT conname, convalidated FROM pg_constraint"
        " WHERE connamespace = 'notifyd'::regnamespace AND conname LIKE '%\\_in\\_range'"
    )
    assert {r["conname"]: r["convalidated"] for r in checks} == {
        check_name(table, column): True for table, column in COLUMNS
    }


@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize(("table", "column"), list(COLUMNS))
async def test_the_database_refuses_a_timestamp_out_of_range(
    db: asyncpg.Connection, table: str, column: str, value: str
) -> None:
    await make_user(db)
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await db.execute(COLUMNS[(table, column)], value)
    assert caught.value.constraint_name == check_name(table, column)


@pytest.mark.parametrize("value", IN_RANGE)
@pytest.mark.parametrize(("table", "column"), list(COLUMNS))
async def test_the_ends_of_the_range_are_accepted(
    db: asyncpg.Connection, table: str, column: str, value: str
) -> None:
    await make_user(db)
    await db.execute(COLUMNS[(table, column)], value)


async def test_the_range_is_the_one_notifyd_knows(db: asyncpg.Connection) -> None:
    earliest, limit = await db.fetchrow(
        "SELECT notifyd.timestamp_in_range($1), notifyd.timestamp_in_range($2)",
        EARLIEST_TIMESTAMP,
        TIMESTAMP_LIMIT,
    )
    assert (earliest, limit) == (True, False)


async def test_an_update_cannot_move_a_timestamp_out_of_range(db: asyncpg.Connection) -> None:
    user_id = await make_user(db)
    notification_id = await make_notification(db, user_id)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "UPDATE notifyd.notifications SET send_at = 'infinity' WHERE id = $1", notification_id
        )


# Read anyway when stored


@pytest.mark.parametrize("value", list(UNREADABLE))
async def test_the_claim_reads_a_row_with_any_stored_created_at(
    db: asyncpg.Connection, database: Database, value: str
) -> None:
    await drop_range_checks(db)
    user_id = await make_user(db)
    bad = await make_notification(db, user_id, created_at=value, run_after="-infinity")
    good = await make_notification(db, user_id)

    claimed = await database.queue.claim(10, uuid.uuid4(), 30)

    assert [n.id for n in claimed] == [bad, good]
    # Read as the number of seconds the server counts, which no latency is measured from.
    stored = await db.fetchval("SELECT date_part('epoch', $1::text::timestamptz)", value)
    assert claimed[0].created == stored
    assert not epoch_in_range(claimed[0].created)
    assert epoch_in_range(claimed[1].created)


async def test_rows_with_unreadable_timestamps_are_delivered_and_the_rest_too(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    await drop_range_checks(db)
    user_id = await make_user(db)
    due = [
        await make_notification(db, user_id, created_at=value, updated_at=value)
        for value in UNREADABLE
    ]
    # A send_at before all time is due at once; one after it never comes.
    due += [
        await make_notification(db, user_id, send_at=value)
        for value, read_as in UNREADABLE.items()
        if read_as == BEFORE_ALL_TIME
    ]
    never = [
        await make_notification(db, user_id, send_at=value)
        for value, read_as in UNREADABLE.items()
        if read_as == AFTER_ALL_TIME
    ]
    due.append(await make_notification(db, user_id))

    for notification_id in due:
        finished = await daemon.wait_finished(notification_id)
        assert finished["status"] == "sent"
        assert [a["status"] for a in finished["attempts"]] == ["success"]
    for notification_id in never:
        waiting = await daemon.notification(notification_id)
        assert (waiting["status"], waiting["send_at"]) == (
            "pending",
            "9999-12-31T23:59:59.999999+00:00",
        )


async def test_the_api_answers_stored_timestamps_it_cannot_hold(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    await drop_range_checks(db)
    user_id = await make_user(db, created_at="infinity", updated_at="4713-01-01 BC")
    notification_id = await make_notification(
        db,
        user_id,
        created_at="10000-01-01Z",
        updated_at="-infinity",
        send_at="infinity",
        finished_at="-infinity",
    )
    await db.execute(
        "INSERT INTO notifyd.notification_attempts"
        " (notification_id, channel, attempt, status, started_at, finished_at)"
        " VALUES ($1, 'sms', 1, 'failed', '-infinity', 'infinity')",
        notification_id,
    )
    latest = "9999-12-31T23:59:59.999999+00:00"
    earliest = "0001-01-01T00:00:00.000000+00:00"

    response = await daemon.client.get(f"/api/notifications/{notification_id}")
    assert response.status == 200, await response.text()
    found = await response.json()
    assert (found["created_at"], found["updated_at"]) == (latest, earliest)
    assert (found["send_at"], found["finished_at"]) == (latest, earliest)
    [attempt] = found["attempts"]
    assert (attempt["started_at"], attempt["finished_at"]) == (earliest, latest)

    for path in (
        "/api/notifications",
        f"/api/users/{user_id}/notifications",
        "/api/notifications?created_after=2000-01-01T00:00:00Z",
    ):
        response = await daemon.client.get(path)
        assert response.status == 200, await response.text()
        assert [item["created_at"] for item in (await response.json())["items"]] == [latest]

    response = await daemon.client.get(f"/api/users/{user_id}")
    assert response.status == 200, await response.text()
    assert (await response.json())["created_at"] == latest


async def test_the_dashboard_shows_stored_timestamps_it_cannot_hold(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    await daemon.app_ready()
    await drop_range_checks(db)
    user_id = await make_user(db, created_at="-infinity", updated_at="infinity")
    notification_id = await make_notification(
        db, user_id, created_at="10000-01-01Z", finished_at="4713-01-01 BC", send_at="infinity"
    )
    await db.execute(
        "INSERT INTO notifyd.notification_attempts"
        " (notification_id, channel, attempt, status, started_at, finished_at)"
        " VALUES ($1, 'sms', 1, 'failed', '1960-01-01Z', 'infinity')",
        notification_id,
    )
    for path in (
        "/admin/",
        "/admin/users",
        f"/admin/users/{user_id}",
        f"/admin/notifications/{notification_id}",
    ):
        root = await page(await daemon.client.get(path))
        text = root.text()
        assert "out of range" in text, path
    detail = (await page(await daemon.client.get(f"/admin/notifications/{notification_id}"))).text()
    assert "after 9999-12-31 (out of range)" in detail
    assert "before 0001-01-01 (out of range)" in detail
    assert "1960-01-01 00:00:00.000 UTC (out of range)" in detail


async def test_the_dispatcher_keeps_delivering_after_an_unreadable_row(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    await daemon.app_ready()
    await drop_range_checks(db)
    user_id = await make_user(db)
    first = await make_notification(db, user_id, created_at="4713-01-01 BC")
    assert (await daemon.wait_finished(first))["status"] == "sent"

    # Later ones too: nothing stopped behind the first.
    later = await make_notification(db, user_id)

    async def sent() -> bool:
        status = await db.fetchval("SELECT status FROM notifyd.notifications WHERE id = $1", later)
        return bool(status == "sent")

    await wait_until(sent, what="a notification enqueued after the odd one")


def test_the_range_holds_the_instants_notifyd_writes() -> None:
    now = datetime.now(UTC)
    assert EARLIEST_TIMESTAMP < now < TIMESTAMP_LIMIT
