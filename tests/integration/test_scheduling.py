"""send_at and priority: not delivered before its time, the urgent claimed first."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from notifyd.db import Database
from tests.integration.test_api import assert_problem, count_notifications
from tests.support import Daemon

DaemonFactory = Callable[..., Awaitable[Daemon]]


async def make_user(db: asyncpg.Connection) -> int:
    user_id: int = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
    )
    return user_id


async def test_a_scheduled_notification_is_not_delivered_before_send_at(daemon: Daemon) -> None:
    user_id = await daemon.create_user(phone="+79001234567")
    send_at = datetime.now(UTC) + timedelta(seconds=1.5)
    answer = await daemon.notify(
        user_id=user_id, message="later", channels=["sms"], send_at=send_at.isoformat()
    )
    early = await daemon.notify(user_id=user_id, message="now", channels=["sms"])
    assert (await daemon.wait_finished(early["id"]))["status"] == "sent"
    status = (await daemon.notification(answer["id"]))["status"]
    if datetime.now(UTC) < send_at:  # (a very slow machine may already be past it)
        assert status == "pending"
    finished = await daemon.wait_finished(answer["id"], deadline=10)
    assert finished["status"] == "sent"
    assert finished["send_at"] == send_at.isoformat(timespec="microseconds")
    assert datetime.fromisoformat(finished["attempts"][0]["started_at"]) >= send_at


async def test_send_at_works_for_rows_inserted_by_sql(db: asyncpg.Connection) -> None:
    user_id = await make_user(db)
    row = await db.fetchrow(
        "INSERT INTO notifyd.notifications (user_id, message, send_at) "
        "VALUES ($1, 'm', now() + interval '1 hour') RETURNING run_after, send_at",
        user_id,
    )
    assert row["run_after"] == row["send_at"]
    past = await db.fetchrow(
        "INSERT INTO notifyd.notifications (user_id, message, send_at) "
        "VALUES ($1, 'm', now() - interval '1 hour') RETURNING run_after, created_at",
        user_id,
    )
    assert past["run_after"] == past["created_at"]  # due at once
    via_function = await db.fetchval(
        "SELECT notifyd.enqueue($1, 'm', '', ARRAY['sms'], now() + interval '1 day', 7::smallint)",
        user_id,
    )
    scheduled = await db.fetchrow(
        "SELECT priority, run_after > now() + interval '23 hours' AS later "
        "FROM notifyd.notifications WHERE id = $1",
        via_function,
    )
    assert (scheduled["priority"], scheduled["later"]) == (7, True)


async def test_claims_go_by_priority_then_due_time(
    db: asyncpg.Connection, database: Database
) -> None:
    user_id = await make_user(db)
    ids = {}
    for name, priority in [("normal", 0), ("urgent", 5), ("low", -1), ("urgent2", 5)]:
        ids[name] = await db.fetchval(
            "SELECT notifyd.enqueue($1, $2, '', ARRAY['sms'], NULL, $3::smallint)",
            user_id,
            name,
            priority,
        )
    first = await database.queue.claim(2, uuid.uuid4(), 30)
    assert [n.id for n in first] == [ids["urgent"], ids["urgent2"]]
    rest = await database.queue.claim(10, uuid.uuid4(), 30)
    assert [n.id for n in rest] == [ids["normal"], ids["low"]]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("send_at", "2026-12-01T09:00:00"),  # no offset
        ("send_at", 1767261600),
        ("send_at", "tomorrow"),
        ("priority", 101),
        ("priority", -101),
        ("priority", True),
        ("priority", "5"),
    ],
)
async def test_bad_send_at_or_priority_is_a_422_naming_it(
    daemon: Daemon, db: asyncpg.Connection, field: str, value: object
) -> None:
    user_id = await daemon.create_user(phone="+79001234567")
    response = await daemon.client.post(
        "/api/notify/", json={"user_id": user_id, "message": "m", field: value}
    )
    await assert_problem(response, 422, field)
    assert await count_notifications(db) == 0


async def test_the_database_refuses_an_out_of_range_priority(db: asyncpg.Connection) -> None:
    user_id = await make_user(db)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "INSERT INTO notifyd.notifications (user_id, message, priority) VALUES ($1, 'm', 500)",
            user_id,
        )


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("9999-12-31T23:30:00-01:00", "2999-12-31 23:59:59.999999+00"),  # past 9999 in UTC
        ("3000-01-01T00:00:00Z", "2999-12-31 23:59:59.999999+00"),
        ("0001-01-01T00:30:00+01:00", "1970-01-01 00:00:00+00"),  # before year 1 in UTC
        ("1969-07-20T20:17:00Z", "1970-01-01 00:00:00+00"),
    ],
)
async def test_a_send_at_outside_the_stored_range_is_kept_as_its_nearest_end(
    daemon: Daemon, db: asyncpg.Connection, value: str, stored: str
) -> None:
    # Any date-time the OpenAPI document allows is a time to send at: before 1970 is due
    # at once, as any past time is; from the year 3000 on is never, in practice.
    user_id = await daemon.create_user(phone="+79001234567")
    answer = await daemon.notify(user_id=user_id, message="m", channels=["sms"], send_at=value)
    kept = await db.fetchval(
        "SELECT send_at::text FROM notifyd.notifications WHERE id = $1", answer["id"]
    )
    assert kept == stored
