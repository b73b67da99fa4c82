"""The attempt recorder: batched writes, lease checks, and riding out an outage."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg

from notifyd.db import Database
from notifyd.delivery.inflight import InFlight
from notifyd.delivery.leases import LeaseKeeper
from notifyd.delivery.recorder import Recorder
from notifyd.domain import AttemptRecord, AttemptStatus, Channel, ClaimedNotification, Status
from tests.support import statements_and_rows, wait_until
from tests.unit.pipeline import has_room


async def claimed(
    db: asyncpg.Connection, database: Database, owner: uuid.UUID, count: int
) -> list[ClaimedNotification]:
    user_id = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
    )
    await db.execute(
        "INSERT INTO notifyd.notifications (user_id, message, channels) "
        "SELECT $1, 'm' || n, ARRAY['sms', 'email'] FROM generate_series(1, $2) AS n",
        user_id,
        count,
    )
    return await database.queue.claim(count, owner, 30)


def attempt(notification_id: int, status: AttemptStatus = AttemptStatus.SUCCESS) -> AttemptRecord:
    now = time.time()
    ok = status == AttemptStatus.SUCCESS
    return AttemptRecord(
        notification_id=notification_id,
        channel=Channel.SMS,
        attempt=1,
        status=status,
        error=None if ok else "down",
        transient=None if ok else True,
        provider_response={"provider": "stub"},
        started_at=now,
        finished_at=now,
    )


class Outcomes:
    """Hands attempts to the recorder as actors do, and collects what it answers."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self.by_id: dict[int, bool] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def write(self, record: AttemptRecord, final_status: Status | None) -> None:
        async def wait() -> None:
            written = await self._recorder.write(record, final_status)
            self.by_id[record.notification_id] = bool(written)

        task = asyncio.create_task(wait())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, count: int) -> None:
        async def all_in() -> bool:
            return len(self.by_id) >= count

        await wait_until(all_in, deadline=10, what=f"{count} recorder outcomes")


async def test_many_attempts_are_written_by_few_statements(
    db: asyncpg.Connection, database: Database
) -> None:
    owner = uuid.uuid4()
    notifications = await claimed(db, database, owner, 300)
    recorder = Recorder(database.queue, owner, give_up_after=30, max_batch=500)
    outcomes = Outcomes(recorder)
    for n in notifications:
        outcomes.write(attempt(n.id), Status.SENT)
    writer = asyncio.create_task(recorder.run())
    await outcomes.wait(300)
    writer.cancel()
    assert set(outcomes.by_id.values()) == {True}
    assert await statements_and_rows(db, "notification_attempts") == (1, 300)
    assert await db.fetchval("SELECT count(*) FROM notifyd.notification_attempts") == 300
    statuses = await db.fetch("SELECT DISTINCT status, locked_by FROM notifyd.notifications")
    assert [(r["status"], r["locked_by"]) for r in statuses] == [("sent", None)]


async def test_batches_are_capped(db: asyncpg.Connection, database: Database) -> None:
    owner = uuid.uuid4()
    notifications = await claimed(db, database, owner, 25)
    recorder = Recorder(database.queue, owner, give_up_after=30, max_batch=10)
    outcomes = Outcomes(recorder)
    for n in notifications:
        outcomes.write(attempt(n.id), Status.SENT)
    writer = asyncio.create_task(recorder.run())
    await outcomes.wait(25)
    await recorder.wait_idle()
    writer.cancel()
    assert await statements_and_rows(db, "notification_attempts") == (3, 25)


async def test_a_retry_attempt_keeps_the_lease_and_a_final_one_ends_it(
    db: asyncpg.Connection, database: Database
) -> None:
    owner = uuid.uuid4()
    retried, finished = await claimed(db, database, owner, 2)
    recorder = Recorder(database.queue, owner, give_up_after=30)
    outcomes = Outcomes(recorder)
    outcomes.write(attempt(retried.id, AttemptStatus.FAILED), None)
    outcomes.write(attempt(finished.id, AttemptStatus.FAILED), Status.FAILED)
    writer = asyncio.create_task(recorder.run())
    await outcomes.wait(2)
    writer.cancel()
    assert outcomes.by_id == {retried.id: True, finished.id: True}
    rows = await db.fetch("SELECT id, status, locked_by FROM notifyd.notifications ORDER BY id")
    assert [(r["status"], r["locked_by"]) for r in rows] == [
        ("processing", owner),
        ("failed", None),
    ]
    assert await db.fetchval("SELECT count(*) FROM notifyd.notification_attempts") == 2


async def test_nothing_is_written_for_a_lease_lost_to_another_instance(
    db: asyncpg.Connection, database: Database
) -> None:
    owner = uuid.uuid4()
    kept, lost_final, lost_retry = await claimed(db, database, owner, 3)
    await db.execute(
        "UPDATE notifyd.notifications SET locked_by = $1 WHERE id = ANY($2::bigint[])",
        uuid.uuid4(),
        [lost_final.id, lost_retry.id],
    )
    recorder = Recorder(database.queue, owner, give_up_after=30)
    outcomes = Outcomes(recorder)
    outcomes.write(attempt(kept.id), Status.SENT)
    outcomes.write(attempt(lost_final.id), Status.SENT)
    outcomes.write(attempt(lost_retry.id, AttemptStatus.FAILED), None)
    writer = asyncio.create_task(recorder.run())
    await outcomes.wait(3)
    writer.cancel()
    assert outcomes.by_id == {kept.id: True, lost_final.id: False, lost_retry.id: False}
    written = await db.fetch("SELECT notification_id FROM notifyd.notification_attempts")
    assert [r["notification_id"] for r in written] == [kept.id]
    statuses = await db.fetch("SELECT status FROM notifyd.notifications ORDER BY id")
    assert [r["status"] for r in statuses] == ["sent", "processing", "processing"]


async def test_too_many_unwritten_attempts_hold_new_attempts_back(
    db: asyncpg.Connection, database: Database
) -> None:
    owner = uuid.uuid4()
    notifications = await claimed(db, database, owner, 3)
    recorder = Recorder(database.queue, owner, give_up_after=30, max_unwritten=3)
    outcomes = Outcomes(recorder)
    for n in notifications[:2]:
        outcomes.write(attempt(n.id), Status.SENT)
    assert await has_room(recorder)
    outcomes.write(attempt(notifications[2].id), Status.SENT)
    assert not await has_room(recorder)
    writer = asyncio.create_task(recorder.run())
    await asyncio.wait_for(recorder.wait_for_room(), 10)
    await outcomes.wait(3)
    writer.cancel()
    assert await has_room(recorder)


async def test_during_an_outage_no_new_attempt_starts_until_writes_go_through(
    database_url: str, db: asyncpg.Connection
) -> None:
    owner = uuid.uuid4()
    database = await Database.connect(database_url, min_size=1, max_size=2)
    notifications = await claimed(db, database, owner, 2)
    await database.close()
    recorder = Recorder(database.queue, owner, give_up_after=30, retry_delay_max=0.05)
    outcomes = Outcomes(recorder)
    outcomes.write(attempt(notifications[0].id), Status.SENT)
    writer = asyncio.create_task(recorder.run())

    async def held_back() -> bool:
        return not await has_room(recorder)

    await wait_until(held_back, deadline=10, what="a failed write to hold actors back")
    writer.cancel()
    # The database is back (a fresh pool): the next write succeeds and lets actors go on.
    fresh = await Database.connect(database_url, min_size=1, max_size=2)
    recorder._store = fresh.queue
    writer = asyncio.create_task(recorder.run())
    await asyncio.wait_for(recorder.wait_for_room(), 10)
    await outcomes.wait(1)
    writer.cancel()
    await fresh.close()
    assert outcomes.by_id == {notifications[0].id: True}


async def test_during_an_outage_writes_are_retried_until_the_lease_would_have_lapsed(
    database_url: str, db: asyncpg.Connection
) -> None:
    owner = uuid.uuid4()
    database = await Database.connect(database_url, min_size=1, max_size=2)
    [notification] = await claimed(db, database, owner, 1)
    await database.close()  # every write now fails as if the database were gone
    recorder = Recorder(database.queue, owner, give_up_after=0.3, retry_delay_max=0.05)
    outcomes = Outcomes(recorder)
    outcomes.write(attempt(notification.id), Status.SENT)
    writer = asyncio.create_task(recorder.run())
    await outcomes.wait(1)
    writer.cancel()
    assert outcomes.by_id == {notification.id: False}
    assert await db.fetchval("SELECT count(*) FROM notifyd.notification_attempts") == 0


async def test_an_attempt_the_database_refuses_fails_alone_and_the_writer_goes_on(
    db: asyncpg.Connection, database: Database
) -> None:
    owner = uuid.uuid4()
    good, bad, later = await claimed(db, database, owner, 3)
    recorder = Recorder(database.queue, owner, give_up_after=30)
    refused = attempt(bad.id)
    # A clock far off: the attempt log refuses timestamps outside its range.
    refused.finished_at = datetime(3100, 1, 1, tzinfo=UTC).timestamp()
    outcomes = Outcomes(recorder)
    outcomes.write(attempt(good.id), Status.SENT)
    outcomes.write(refused, Status.SENT)
    writer = asyncio.create_task(recorder.run())
    await outcomes.wait(2)
    # The writer is still there for what comes next.
    outcomes.write(attempt(later.id), Status.SENT)
    await outcomes.wait(3)
    writer.cancel()
    assert outcomes.by_id == {good.id: True, bad.id: False, later.id: True}
    written = await db.fetch("SELECT notification_id FROM notifyd.notification_attempts")
    assert sorted(r["notification_id"] for r in written) == sorted([good.id, later.id])


async def test_an_error_text_the_database_cannot_hold_is_written_with_it_replaced(
    db: asyncpg.Connection, database: Database
) -> None:
    # A vendor's words quoted in the error (Telegram's `description`) may hold a NUL or an
    # unpaired surrogate: the attempt is written all the same, and the batch with it.
    owner = uuid.uuid4()
    good, nul, surrogate = await claimed(db, database, owner, 3)
    recorder = Recorder(database.queue, owner, give_up_after=30)
    outcomes = Outcomes(recorder)
    outcomes.write(attempt(good.id), Status.SENT)
    for notification, error in ((nul, "Bad Request: chat\x00 not found"), (surrogate, "no \ud800")):
        record = attempt(notification.id, AttemptStatus.FAILED)
        record.error = error
        outcomes.write(record, Status.FAILED)
    writer = asyncio.create_task(recorder.run())
    await outcomes.wait(3)
    writer.cancel()

    assert outcomes.by_id == {good.id: True, nul.id: True, surrogate.id: True}
    errors = dict(
        await db.fetch("SELECT notification_id, error FROM notifyd.notification_attempts")
    )
    assert errors == {
        good.id: None,
        nul.id: "Bad Request: chat\ufffd not found (the vendor's answer could not be stored)",
        surrogate.id: "no \ufffd (the vendor's answer could not be stored)",
    }


async def test_a_row_another_application_has_locked_holds_back_only_its_own_attempt(
    database_url: str, db: asyncpg.Connection, database: Database
) -> None:
    """Another application's open `SELECT ... FOR UPDATE` on one notification in flight
    delays that notification's write until the lock goes, and nobody else's."""
    owner = uuid.uuid4()
    locked, retried, *others = await claimed(db, database, owner, 6)
    other_application = await asyncpg.connect(database_url)
    transaction = other_application.transaction()
    await transaction.start()
    await other_application.execute(
        "SELECT 1 FROM notifyd.notifications WHERE id = ANY($1::bigint[]) FOR UPDATE",
        [locked.id, retried.id],
    )
    recorder = Recorder(database.queue, owner, give_up_after=30)
    outcomes = Outcomes(recorder)
    outcomes.write(attempt(locked.id), Status.SENT)
    outcomes.write(attempt(retried.id, AttemptStatus.FAILED), None)
    for n in others:
        outcomes.write(attempt(n.id), Status.SENT)
    writer = asyncio.create_task(recorder.run())
    try:
        await outcomes.wait(len(others))
        assert outcomes.by_id == {n.id: True for n in others}
        assert len(recorder) == 2  # still waiting for the lock, not given up
        await transaction.rollback()
        await outcomes.wait(len(others) + 2)
        await recorder.wait_idle()
    finally:
        writer.cancel()
        await other_application.close()
    assert outcomes.by_id[locked.id] is True
    assert outcomes.by_id[retried.id] is True
    rows = await db.fetch(
        "SELECT notification_id, count(*) AS n FROM notifyd.notification_attempts "
        "GROUP BY notification_id"
    )
    assert {r["notification_id"]: r["n"] for r in rows} == {
        n.id: 1 for n in [locked, retried, *others]
    }
    statuses = await db.fetch("SELECT id, status FROM notifyd.notifications")
    assert {r["id"]: r["status"] for r in statuses} == {
        **{n.id: "sent" for n in [locked, *others]},
        retried.id: "processing",
    }


async def test_a_locked_row_keeps_the_others_leases_renewed(
    database_url: str, db: asyncpg.Connection, database: Database
) -> None:
    owner = uuid.uuid4()
    locked, free = await claimed(db, database, owner, 2)
    other_application = await asyncpg.connect(database_url)
    transaction = other_application.transaction()
    await transaction.start()
    await other_application.execute(
        "SELECT 1 FROM notifyd.notifications WHERE id = $1 FOR UPDATE", locked.id
    )
    before = await db.fetchval(
        "SELECT lease_expires_at FROM notifyd.notifications WHERE id = $1", free.id
    )
    try:
        renewed = await asyncio.wait_for(
            database.queue.extend_leases(owner, [locked.id, free.id], 300), timeout=5
        )
    finally:
        await transaction.rollback()
        await other_application.close()
    after = await db.fetchval(
        "SELECT lease_expires_at FROM notifyd.notifications WHERE id = $1", free.id
    )
    assert after > before
    # Only what was renewed is said to be: the locked row's lease runs on to its end.
    assert renewed == {free.id}


async def test_the_heartbeat_does_not_count_a_locked_row_as_renewed(
    database_url: str, db: asyncpg.Connection, database: Database
) -> None:
    """A lease that could not be renewed must run out in memory too: past it, the actor
    starts no attempt that another instance might be making as well."""
    owner = uuid.uuid4()
    locked, free = await claimed(db, database, owner, 2)
    # Both claimed long enough ago to be due for renewal.
    await db.execute("UPDATE notifyd.notifications SET updated_at = now() - interval '1 minute'")
    in_flight = InFlight(capacity=10, refill_threshold=1, on_room=lambda: None, inboxes={})
    held_locked = in_flight.hold(locked, lease_until=0.0)
    held_free = in_flight.hold(free, lease_until=0.0)
    present = asyncio.Event()
    present.set()
    keeper = LeaseKeeper(
        database.queue,
        owner,
        in_flight,
        lease_seconds=30,
        present=present,
        peers_settled=lambda: False,
    )
    other_application = await asyncpg.connect(database_url)
    transaction = other_application.transaction()
    await transaction.start()
    await other_application.execute(
        "SELECT 1 FROM notifyd.notifications WHERE id = $1 FOR UPDATE", locked.id
    )
    try:
        await asyncio.wait_for(keeper.tick(), timeout=5)
    finally:
        await transaction.rollback()
        await other_application.close()
    assert held_free.lease_until > 0.0
    assert held_locked.lease_until == 0.0
