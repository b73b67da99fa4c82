"""The API's group commit: requests that arrive together share one INSERT."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest

from notifyd.db import Database
from notifyd.domain import NewNotification, Notification
from notifyd.errors import ConstraintViolationError, DatabaseUnavailableError, UnknownUserError
from notifyd.web.enqueuer import Enqueuer
from tests.support import statements_and_rows, wait_until

BLOCK_INSERTS = "LOCK TABLE notifyd.notifications IN EXCLUSIVE MODE"
INSERTS_WAITING = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND wait_event_type = 'Lock'
      AND query LIKE '%INSERT INTO notifyd.notifications%'
"""


async def new_user(db: asyncpg.Connection) -> int:
    user_id: int = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
    )
    return user_id


@pytest.fixture
async def user_id(db: asyncpg.Connection) -> int:
    return await new_user(db)


@pytest.fixture
def enqueuer(database: Database) -> Enqueuer:
    """Batches of up to 100, one statement at a time: what queues goes in the next one."""
    return Enqueuer(database.notifications, max_batch=100, writers=1)


async def assert_stored_as_answered(db: asyncpg.Connection, notification: Notification) -> None:
    row = await db.fetchrow(
        "SELECT user_id, subject, message, channels, status, send_at, priority, created_at"
        " FROM notifyd.notifications WHERE id = $1",
        notification.id,
    )
    assert row is not None
    assert (row["user_id"], row["subject"], row["message"]) == (
        notification.user_id,
        notification.subject,
        notification.message,
    )
    assert tuple(row["channels"]) == notification.channels
    assert (row["status"], row["send_at"], row["priority"], row["created_at"]) == (
        notification.status,
        notification.send_at,
        notification.priority,
        notification.created_at,
    )


@asynccontextmanager
async def first_request_held(
    database_url: str, db: asyncpg.Connection, enqueuer: Enqueuer, user_id: int
) -> AsyncIterator[asyncio.Task[Notification]]:
    """Start a request whose INSERT waits on a table lock until the block ends.

    With one writer, every request made inside the block waits for a writer meanwhile.
    """
    blocker = await asyncpg.connect(database_url)
    try:
        async with blocker.transaction():
            await blocker.execute(BLOCK_INSERTS)
            first = asyncio.create_task(enqueuer.enqueue(NewNotification(user_id, "first")))

            async def blocked() -> bool:
                count: int = await db.fetchval(INSERTS_WAITING)
                return count >= 1

            await wait_until(blocked, deadline=10, what="the INSERT waiting on the lock")
            yield first
    finally:
        await blocker.close()


async def queued(enqueuer: Enqueuer, count: int) -> None:
    async def waiting() -> bool:
        return len(enqueuer) >= count

    await wait_until(waiting, deadline=10, what=f"{count} requests waiting for a writer")


async def test_requests_arriving_together_share_one_statement(
    db: asyncpg.Connection, database: Database
) -> None:
    user_id = await new_user(db)
    later = datetime.now(UTC) + timedelta(hours=1)
    news = [
        NewNotification(
            user_id=user_id,
            message=f"message {n}",
            subject=f"subject {n}",
            channels=("sms", "email") if n % 2 else ("telegram",),
            send_at=later if n % 3 == 0 else None,
            priority=n % 7 - 3,
        )
        for n in range(40)
    ]
    enqueuer = Enqueuer(database.notifications, max_batch=100, writers=1)
    answers = await asyncio.gather(*(enqueuer.enqueue(new) for new in news))
    # One writer, and every request queued before it ran: a single statement.
    assert await statements_and_rows(db) == (1, 40)
    assert len({answer.id for answer in answers}) == 40
    for new, answer in zip(news, answers, strict=True):
        # Each request gets its own row back, not its neighbour's.
        assert (answer.message, answer.subject, answer.channels) == (
            new.message,
            new.subject,
            new.channels,
        )
        assert (answer.send_at, answer.priority, answer.status) == (
            new.send_at,
            new.priority,
            "pending",
        )
        await assert_stored_as_answered(db, answer)
    # The BEFORE INSERT trigger still holds back the scheduled ones.
    run_after = await db.fetchval(
        "SELECT min(run_after) FROM notifyd.notifications WHERE send_at IS NOT NULL"
    )
    assert run_after == later


async def test_a_lone_request_is_written_at_once_by_itself(
    db: asyncpg.Connection, user_id: int, enqueuer: Enqueuer
) -> None:
    answer = await enqueuer.enqueue(NewNotification(user_id=user_id, message="alone"))
    assert await statements_and_rows(db) == (1, 1)
    await assert_stored_as_answered(db, answer)


async def test_batches_are_capped(db: asyncpg.Connection, database: Database) -> None:
    user_id = await new_user(db)
    enqueuer = Enqueuer(database.notifications, max_batch=10, writers=1)
    news = [NewNotification(user_id=user_id, message=f"m{n}") for n in range(25)]
    answers = await asyncio.gather(*(enqueuer.enqueue(new) for new in news))
    assert await statements_and_rows(db) == (3, 25)
    assert [answer.message for answer in answers] == [new.message for new in news]
    assert await db.fetchval("SELECT count(*) FROM notifyd.notifications") == 25


async def test_requests_wait_while_every_writer_is_busy_then_go_in_one_batch(
    db: asyncpg.Connection, database_url: str, user_id: int, enqueuer: Enqueuer
) -> None:
    async with first_request_held(database_url, db, enqueuer, user_id) as first:
        rest = [
            asyncio.create_task(enqueuer.enqueue(NewNotification(user_id, f"m{n}")))
            for n in range(5)
        ]
        await queued(enqueuer, 5)
        assert not any(task.done() for task in [first, *rest])
    await first
    await asyncio.gather(*rest)
    assert await statements_and_rows(db) == (2, 6)


async def test_a_refused_row_fails_only_its_own_request(
    db: asyncpg.Connection, user_id: int, enqueuer: Enqueuer
) -> None:
    news = [
        NewNotification(user_id=user_id, message="good 1"),
        NewNotification(user_id=user_id + 1000, message="unknown user"),
        NewNotification(user_id=user_id, message="good 2"),
        # Past the API's validation, the database's own check refuses it.
        NewNotification(user_id=user_id, message="   "),
        NewNotification(user_id=user_id, message="good 3"),
    ]
    results = await asyncio.gather(*(enqueuer.enqueue(new) for new in news), return_exceptions=True)
    assert isinstance(results[1], UnknownUserError)
    assert results[1].user_id == user_id + 1000
    assert isinstance(results[3], ConstraintViolationError)
    assert results[3].constraint == "notifications_message_not_blank"
    good = [results[0], results[2], results[4]]
    assert all(isinstance(result, Notification) for result in good)
    messages = await db.fetchval("SELECT array_agg(message ORDER BY id) FROM notifyd.notifications")
    assert messages == ["good 1", "good 2", "good 3"]


async def test_a_refused_row_splits_its_batch_into_few_statements(
    db: asyncpg.Connection, user_id: int, enqueuer: Enqueuer
) -> None:
    news = [NewNotification(user_id=user_id, message=f"m{n}") for n in range(16)]
    news[5] = NewNotification(user_id=user_id + 1000, message="unknown user")
    results = await asyncio.gather(*(enqueuer.enqueue(new) for new in news), return_exceptions=True)
    assert [n for n, result in enumerate(results) if not isinstance(result, Notification)] == [5]
    # Halves: rows 0-3, 4, 6-7 and 8-15 are written; one statement per row would be 15.
    assert await statements_and_rows(db) == (4, 15)


async def test_a_value_the_driver_cannot_send_fails_only_its_own_request(
    db: asyncpg.Connection, user_id: int, enqueuer: Enqueuer
) -> None:
    # Valid ISO 8601, but past the last instant Python holds in UTC: asyncpg cannot encode it.
    beyond = datetime(9999, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1)))
    news = [
        NewNotification(user_id=user_id, message="good 1"),
        NewNotification(user_id=user_id, message="beyond", send_at=beyond),
        NewNotification(user_id=user_id, message="good 2"),
    ]
    results = await asyncio.gather(*(enqueuer.enqueue(new) for new in news), return_exceptions=True)
    assert isinstance(results[0], Notification)
    assert isinstance(results[1], Exception)
    assert isinstance(results[2], Notification)
    messages = await db.fetchval("SELECT array_agg(message ORDER BY id) FROM notifyd.notifications")
    assert messages == ["good 1", "good 2"]


async def test_writers_come_back_after_a_burst(db: asyncpg.Connection, database: Database) -> None:
    user_id = await new_user(db)
    enqueuer = Enqueuer(database.notifications, max_batch=5, writers=3)
    for burst in range(3):
        await asyncio.gather(
            *(enqueuer.enqueue(NewNotification(user_id, f"{burst}-{n}")) for n in range(20))
        )
    # Every writer slot was given back: a lone request still finds a writer.
    await asyncio.wait_for(enqueuer.enqueue(NewNotification(user_id, "lone")), 10)
    assert (await statements_and_rows(db))[1] == 61


async def test_a_request_cancelled_before_its_batch_is_written_writes_nothing(
    db: asyncpg.Connection, database_url: str, user_id: int, enqueuer: Enqueuer
) -> None:
    async with first_request_held(database_url, db, enqueuer, user_id) as first:
        cancelled = asyncio.create_task(enqueuer.enqueue(NewNotification(user_id, "gone")))
        kept = asyncio.create_task(enqueuer.enqueue(NewNotification(user_id, "kept")))
        await queued(enqueuer, 2)
        cancelled.cancel()
    await first
    await kept
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    messages = await db.fetchval("SELECT array_agg(message ORDER BY id) FROM notifyd.notifications")
    assert messages == ["first", "kept"]


async def test_every_request_of_a_batch_hears_that_the_database_is_away(
    database_url: str, db: asyncpg.Connection
) -> None:
    user_id = await new_user(db)
    database = await Database.connect(database_url, min_size=1, max_size=2)
    await database.close()
    enqueuer = Enqueuer(database.notifications, max_batch=100, writers=1)
    results = await asyncio.gather(
        *(enqueuer.enqueue(NewNotification(user_id, f"m{n}")) for n in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(result, DatabaseUnavailableError) for result in results), results
    # Each request has its own exception object: they are raised in different handlers.
    assert len({id(result) for result in results}) == 3
    assert await db.fetchval("SELECT count(*) FROM notifyd.notifications") == 0


async def test_closing_fails_the_requests_still_waiting_and_refuses_new_ones(
    db: asyncpg.Connection, database_url: str, user_id: int, enqueuer: Enqueuer
) -> None:
    async with first_request_held(database_url, db, enqueuer, user_id) as first:
        waiting = asyncio.create_task(enqueuer.enqueue(NewNotification(user_id, "waiting")))
        await queued(enqueuer, 1)
        await enqueuer.close()
    for task in (first, waiting):
        with pytest.raises(DatabaseUnavailableError):
            await task
    with pytest.raises(DatabaseUnavailableError):
        await enqueuer.enqueue(NewNotification(user_id, "late"))
    # Whether "first" got in before its statement was cancelled is up to the server, as
    # for any request cut off mid-write; the ones never written are certainly not there.
    written = await db.fetchval("SELECT array_agg(message) FROM notifyd.notifications")
    assert not {"waiting", "late"} & set(written or [])
