"""notifyd.cancel(), notifyd.retry(), rounds and the status event outbox, in SQL alone.

Other applications call these inside their own transactions: what a rolled-back transaction
did must leave no trace, and whoever writes a final status (notifyd or not) emits its event.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from notifyd.db import Database
from notifyd.domain import AttemptRecord, AttemptStatus, Channel, Status
from tests.support import wait_until

FAR_FUTURE = datetime(2999, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
async def _recording(db: asyncpg.Connection) -> None:
    """Status events are recorded, as an instance with webhook endpoints makes them."""
    await db.execute(
        "INSERT INTO notifyd.status_event_recording (switched_on_by) VALUES ('a test')"
    )


@pytest.fixture
async def user_id(db: asyncpg.Connection) -> int:
    found: int = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
    )
    return found


async def enqueue(db: asyncpg.Connection, user_id: int, send_at: datetime | None = None) -> int:
    found: int = await db.fetchval(
        "SELECT notifyd.enqueue($1, 'hello', '', ARRAY['sms', 'email'], $2)",
        user_id,
        send_at,
    )
    return found


async def row(db: asyncpg.Connection, notification_id: int) -> asyncpg.Record:
    found = await db.fetchrow(
        "SELECT status, finished_at, cancel_requested_at, round, claims, locked_by"
        " FROM notifyd.notifications WHERE id = $1",
        notification_id,
    )
    assert found is not None
    return found


async def events(db: asyncpg.Connection) -> list[tuple[str, int]]:
    found = await db.fetch("SELECT type, notification_id FROM notifyd.webhook_events ORDER BY id")
    return [(r["type"], r["notification_id"]) for r in found]


def record(notification_id: int, ok: bool, round_: int = 1) -> AttemptRecord:
    now = time.time()
    return AttemptRecord(
        notification_id=notification_id,
        channel=Channel.SMS,
        attempt=1,
        status=AttemptStatus.SUCCESS if ok else AttemptStatus.FAILED,
        error=None if ok else "down",
        transient=None if ok else True,
        provider_response=None,
        started_at=now,
        finished_at=now,
        round=round_,
    )


async def test_cancel_of_a_pending_notification_finishes_it_at_once(
    db: asyncpg.Connection, user_id: int
) -> None:
    notification_id = await enqueue(db, user_id)
    assert await db.fetchval("SELECT notifyd.cancel($1)", notification_id) is True
    found = await row(db, notification_id)
    assert found["status"] == Status.CANCELLED
    assert found["finished_at"] is not None
    assert await events(db) == [("notification.cancelled", notification_id)]
    # Final now: a second cancel changes nothing.
    assert await db.fetchval("SELECT notifyd.cancel($1)", notification_id) is False
    assert await events(db) == [("notification.cancelled", notification_id)]


async def test_cancel_of_a_scheduled_notification(
    db: asyncpg.Connection, database: Database, user_id: int
) -> None:
    notification_id = await enqueue(db, user_id, send_at=FAR_FUTURE)
    assert await db.fetchval("SELECT notifyd.cancel($1)", notification_id) is True
    assert (await row(db, notification_id))["status"] == Status.CANCELLED
    # Never claimed, not even once its time comes.
    await db.execute("UPDATE notifyd.notifications SET run_after = now() - interval '1 day'")
    assert await database.queue.claim(10, uuid.uuid4(), 30) == []


async def test_cancel_of_an_unknown_or_final_notification_is_false(
    db: asyncpg.Connection, user_id: int
) -> None:
    assert await db.fetchval("SELECT notifyd.cancel(424242)") is False
    notification_id = await enqueue(db, user_id)
    await db.execute(
        "UPDATE notifyd.notifications SET status = 'sent', finished_at = now() WHERE id = $1",
        notification_id,
    )
    before = await row(db, notification_id)
    assert await db.fetchval("SELECT notifyd.cancel($1)", notification_id) is False
    assert await row(db, notification_id) == before


async def test_cancel_of_a_processing_notification_is_asked_of_its_holder(
    db: asyncpg.Connection, database: Database, database_url: str, user_id: int
) -> None:
    owner = uuid.uuid4()
    notification_id = await enqueue(db, user_id)
    (claimed,) = await database.queue.claim(10, owner, 30)
    heard: list[str] = []
    await db.add_listener("notifyd_cancel", lambda *args: heard.append(args[-1]))
    other = await asyncpg.connect(database_url)
    try:
        assert await other.fetchval("SELECT notifyd.cancel($1)", notification_id) is True
    finally:
        await other.close()
    found = await row(db, notification_id)
    assert found["status"] == Status.PROCESSING
    assert found["cancel_requested_at"] is not None
    assert await database.queue.cancel_requested(owner, [notification_id]) == {notification_id}
    assert await database.queue.cancel_requested(uuid.uuid4(), [notification_id]) == set()
    await wait_until(lambda: _true(bool(heard)), what="the cancel's NOTIFY")
    assert heard == [str(notification_id)]
    # The attempt under way is written, and the notification ends cancelled, not retried.
    recorded = await database.queue.record_attempts(owner, [(record(claimed.id, False), None)])
    assert recorded.not_written == set()
    assert recorded.cancelled == {notification_id}
    found = await row(db, notification_id)
    assert (found["status"], found["locked_by"]) == (Status.CANCELLED, None)
    assert found["finished_at"] is not None
    assert await db.fetchval("SELECT count(*) FROM notifyd.notification_attempts") == 1
    assert await events(db) == [("notification.cancelled", notification_id)]


async def test_a_cancelled_attempt_that_succeeded_stays_sent(
    db: asyncpg.Connection, database: Database, user_id: int
) -> None:
    owner = uuid.uuid4()
    notification_id = await enqueue(db, user_id)
    await database.queue.claim(10, owner, 30)
    await db.fetchval("SELECT notifyd.cancel($1)", notification_id)
    recorded = await database.queue.record_attempts(
        owner, [(record(notification_id, True), Status.SENT)]
    )
    assert recorded.cancelled == set()
    assert (await row(db, notification_id))["status"] == Status.SENT
    assert await events(db) == [("notification.sent", notification_id)]


@pytest.mark.parametrize("how", ["failed", "released", "expired"])
async def test_a_processing_notification_asked_to_cancel_never_goes_back_to_the_queue(
    db: asyncpg.Connection, database: Database, user_id: int, how: str
) -> None:
    owner = uuid.uuid4()
    notification_id = await enqueue(db, user_id)
    await database.queue.claim(10, owner, 30)
    await db.fetchval("SELECT notifyd.cancel($1)", notification_id)
    if how == "failed":
        await database.queue.record_attempts(
            owner, [(record(notification_id, False), Status.FAILED)]
        )
    elif how == "released":
        await database.queue.release(owner, [(notification_id, datetime.now(UTC))])
    else:
        await db.execute(
            "UPDATE notifyd.notifications SET lease_expires_at = now() - interval '1 s'"
        )
        assert await database.queue.requeue_expired() == 1
    found = await row(db, notification_id)
    assert (found["status"], found["locked_by"]) == (Status.CANCELLED, None)
    assert found["finished_at"] is not None
    assert await events(db) == [("notification.cancelled", notification_id)]


async def test_retry_starts_a_new_round_and_keeps_the_old_attempts(
    db: asyncpg.Connection, database: Database, user_id: int
) -> None:
    owner = uuid.uuid4()
    notification_id = await enqueue(db, user_id)
    await database.queue.claim(10, owner, 30)
    await database.queue.record_attempts(owner, [(record(notification_id, False), Status.FAILED)])
    assert await db.fetchval("SELECT notifyd.retry($1)", notification_id) is True
    found = await row(db, notification_id)
    assert (found["status"], found["round"], found["claims"]) == (Status.PENDING, 2, 0)
    assert found["finished_at"] is None
    # A second retry: it is pending, not failed.
    assert await db.fetchval("SELECT notifyd.retry($1)", notification_id) is False
    (claimed,) = await database.queue.claim(10, owner, 30)
    assert (claimed.round, claimed.claims) == (2, 1)
    await database.queue.record_attempts(owner, [(record(notification_id, True, 2), Status.SENT)])
    attempts = (await database.notifications.attempts([notification_id]))[notification_id]
    assert [(a.round, a.status) for a in attempts] == [(1, "failed"), (2, "success")]
    assert await events(db) == [
        ("notification.failed", notification_id),
        ("notification.sent", notification_id),
    ]


async def test_retry_of_a_cancelled_notification_and_of_others(
    db: asyncpg.Connection, user_id: int
) -> None:
    notification_id = await enqueue(db, user_id)
    assert await db.fetchval("SELECT notifyd.retry($1)", notification_id) is False  # pending
    await db.fetchval("SELECT notifyd.cancel($1)", notification_id)
    assert await db.fetchval("SELECT notifyd.retry($1)", notification_id) is True
    found = await row(db, notification_id)
    assert (found["status"], found["cancel_requested_at"]) == (Status.PENDING, None)
    assert await db.fetchval("SELECT notifyd.retry(424242)") is False


async def test_a_scheduled_notification_retried_waits_for_its_time(
    db: asyncpg.Connection, database: Database, user_id: int
) -> None:
    notification_id = await enqueue(db, user_id, send_at=FAR_FUTURE)
    await db.fetchval("SELECT notifyd.cancel($1)", notification_id)
    await db.fetchval("SELECT notifyd.retry($1)", notification_id)
    assert await database.queue.claim(10, uuid.uuid4(), 30) == []


async def test_in_a_rolled_back_transaction_nothing_changes(
    db: asyncpg.Connection, database: Database, database_url: str, user_id: int
) -> None:
    pending = await enqueue(db, user_id)
    failed = await enqueue(db, user_id)
    await db.execute(
        "UPDATE notifyd.notifications SET status = 'failed', finished_at = now() WHERE id = $1",
        failed,
    )
    owner = uuid.uuid4()
    processing = await enqueue(db, user_id)
    await db.execute(
        "UPDATE notifyd.notifications SET run_after = now() + interval '1 hour' WHERE id <> $1",
        processing,
    )
    await database.queue.claim(10, owner, 30)
    before = {n: await row(db, n) for n in (pending, failed, processing)}
    events_before = await events(db)
    heard: list[str] = []
    await db.add_listener("notifyd_cancel", lambda *args: heard.append(args[-1]))
    await db.add_listener("notifyd_wakeup", lambda *args: heard.append("wakeup"))

    other = await asyncpg.connect(database_url)
    try:
        transaction = other.transaction()
        await transaction.start()
        assert await other.fetchval("SELECT notifyd.cancel($1)", pending) is True
        assert await other.fetchval("SELECT notifyd.cancel($1)", processing) is True
        assert await other.fetchval("SELECT notifyd.retry($1)", failed) is True
        await transaction.rollback()
        # A NOTIFY that would have come, had it committed, comes after this one.
        await other.execute("NOTIFY notifyd_cancel, 'marker'")
    finally:
        await other.close()
    await wait_until(lambda: _true("marker" in heard), what="the marker NOTIFY")
    assert heard == ["marker"]
    assert {n: await row(db, n) for n in (pending, failed, processing)} == before
    assert await events(db) == events_before


async def test_final_statuses_written_by_another_application_emit_events(
    db: asyncpg.Connection, user_id: int
) -> None:
    notification_id = await enqueue(db, user_id)
    await db.execute(
        "UPDATE notifyd.notifications SET status = 'failed', finished_at = now() WHERE id = $1",
        notification_id,
    )
    # The same status again is no new event.
    await db.execute(
        "UPDATE notifyd.notifications SET status = 'failed' WHERE id = $1", notification_id
    )
    inserted = await db.fetchval(
        "INSERT INTO notifyd.notifications (user_id, message, status, finished_at)"
        " VALUES ($1, 'm', 'sent', now()) RETURNING id",
        user_id,
    )
    assert await events(db) == [
        ("notification.failed", notification_id),
        ("notification.sent", inserted),
    ]


async def test_new_columns_refuse_what_cannot_be_right(
    db: asyncpg.Connection, user_id: int
) -> None:
    notification_id = await enqueue(db, user_id)
    for statement, constraint in [
        ("UPDATE notifyd.notifications SET round = 0", "notifications_round_positive"),
        (
            "UPDATE notifyd.notifications SET cancel_requested_at = 'infinity'",
            "notifications_cancel_requested_at_in_range",
        ),
        (
            "INSERT INTO notifyd.webhook_events (type, notification_id) VALUES ('x', 1)",
            "webhook_events_type_known",
        ),
        (
            "INSERT INTO notifyd.webhook_events (type, notification_id, next_attempt_at)"
            " VALUES ('notification.sent', 1, '10000-01-01')",
            "webhook_events_next_attempt_at_in_range",
        ),
        (
            "INSERT INTO notifyd.webhook_events (type, notification_id, attempts)"
            " VALUES ('notification.sent', 1, -1)",
            "webhook_events_attempts_not_negative",
        ),
    ]:
        with pytest.raises(asyncpg.CheckViolationError) as refused:
            await db.execute(statement)
        assert refused.value.constraint_name == constraint
    assert (await row(db, notification_id))["round"] == 1


async def _true(value: bool) -> bool:
    return value


async def test_retry_of_a_notification_another_instance_holds_is_refused(
    db: asyncpg.Connection, database: Database, user_id: int
) -> None:
    notification_id = await enqueue(db, user_id)
    owner = uuid.uuid4()
    await database.queue.claim(10, owner, 30)
    before = await row(db, notification_id)
    assert await db.fetchval("SELECT notifyd.retry($1)", notification_id) is False
    assert await row(db, notification_id) == before


async def test_cancels_and_retries_racing_on_one_notification_stay_consistent(
    db: asyncpg.Connection, database_url: str, user_id: int
) -> None:
    notification_id = await enqueue(db, user_id, send_at=FAR_FUTURE)
    connections = [await asyncpg.connect(database_url) for _ in range(6)]
    try:

        async def hammer(connection: asyncpg.Connection, action: str) -> int:
            done = 0
            for _ in range(30):
                done += bool(
                    await connection.fetchval(f"SELECT notifyd.{action}($1)", notification_id)
                )
            return done

        results = await asyncio.gather(
            *(
                hammer(connection, "cancel" if n % 2 else "retry")
                for n, connection in enumerate(connections)
            )
        )
    finally:
        for connection in connections:
            await connection.close()
    retries = sum(results[0::2])
    cancels = sum(results[1::2])
    found = await row(db, notification_id)
    # Every retry that answered true made one more round; every cancel that did, one event.
    assert found["round"] == 1 + retries
    assert len(await events(db)) == cancels
    # They alternate: a cancel needs a pending row, a retry a cancelled one.
    assert cancels - retries in (0, 1)
    assert found["status"] == ("cancelled" if cancels > retries else "pending")


async def test_only_a_cancel_the_database_knows_ends_a_held_notification(
    db: asyncpg.Connection, database: Database, user_id: int
) -> None:
    owner = uuid.uuid4()
    notification_id = await enqueue(db, user_id)
    await database.queue.claim(10, owner, 30)
    queue = database.queue
    assert await queue.finish_cancelled(notification_id, owner) == "not_asked"
    assert (await row(db, notification_id))["status"] == Status.PROCESSING
    await db.fetchval("SELECT notifyd.cancel($1)", notification_id)
    assert await queue.finish_cancelled(notification_id, uuid.uuid4()) == "not_held"
    assert await queue.finish_cancelled(notification_id, owner) == "cancelled"
    assert (await row(db, notification_id))["status"] == Status.CANCELLED
    assert await queue.finish_cancelled(notification_id, owner) == "not_held"
