"""Leases: work held by an instance that is gone comes back, work of a live one does not."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from notifyd.db.listen import PRESENCE_LOCK_NAMESPACE
from notifyd.web.keys import SERVICE
from tests.fakes.smtp import FakeSmtpServer
from tests.support import Daemon, wait_until

DaemonFactory = Callable[..., Awaitable[Daemon]]
HOUR = 3600


async def make_user(db: asyncpg.Connection) -> int:
    user_id: int = await db.fetchval(
        "INSERT INTO notifyd.users (email, phone) VALUES ('a@example.com', '+79001234567') "
        "RETURNING id"
    )
    return user_id


async def leased_to(
    db: asyncpg.Connection,
    owner: uuid.UUID,
    user_id: int,
    count: int,
    *,
    lease_seconds: float = HOUR,
    channels: tuple[str, ...] = ("sms",),
) -> list[int]:
    """Notifications as another instance leaves them: claimed by `owner`, lease running."""
    ids: list[int] = [
        row["id"]
        for row in await db.fetch(
            """
            INSERT INTO notifyd.notifications
                (user_id, message, channels, status, locked_by, lease_expires_at, claims)
            SELECT $1, 'held ' || n, $2, 'processing', $3,
                   now() + make_interval(secs => $4), 1
            FROM generate_series(1, $5) AS n
            RETURNING id
            """,
            user_id,
            list(channels),
            owner,
            lease_seconds,
            count,
        )
    ]
    return ids


async def statuses(db: asyncpg.Connection, ids: list[int]) -> list[str]:
    rows = await db.fetch(
        "SELECT status FROM notifyd.notifications WHERE id = ANY($1::bigint[]) ORDER BY id", ids
    )
    return [row["status"] for row in rows]


async def wait_all_sent(db: asyncpg.Connection, ids: list[int], deadline: float = 10) -> None:
    async def all_sent() -> bool:
        return await statuses(db, ids) == ["sent"] * len(ids)

    await wait_until(all_sent, deadline=deadline, what="every notification to be sent")


async def test_work_of_a_dead_instance_is_taken_over_without_waiting_for_its_lease(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    user_id = await make_user(db)
    # A crashed instance: it holds leases for another hour, but no presence lock.
    orphaned = await leased_to(db, uuid.uuid4(), user_id, 5)
    await daemon_factory()
    await wait_all_sent(db, orphaned)
    claims = await db.fetch(
        "SELECT claims FROM notifyd.notifications WHERE id = ANY($1::bigint[])", orphaned
    )
    assert {row["claims"] for row in claims} == {2}


async def test_work_of_a_live_instance_is_left_alone_until_it_is_gone(
    daemon_factory: DaemonFactory, database_url: str, db: asyncpg.Connection
) -> None:
    user_id = await make_user(db)
    peer = uuid.uuid4()
    # The peer's presence: its session holds the lock for as long as it lives.
    peer_session = await asyncpg.connect(database_url)
    try:
        assert await peer_session.fetchval(
            "SELECT pg_try_advisory_lock($1, notifyd.instance_lock_key($2))",
            PRESENCE_LOCK_NAMESPACE,
            peer,
        )
        held = await leased_to(db, peer, user_id, 3)
        daemon = await daemon_factory(delivery={"lease_seconds": 1.5})

        async def rounds_done() -> bool:
            heartbeats = (await daemon.metrics()).get(("notifyd_lease_heartbeats_total", ()))
            return (heartbeats or 0) >= 3

        await wait_until(rounds_done, deadline=10, what="three lease keeper rounds")
        assert await statuses(db, held) == ["processing"] * 3
        # A fresh notification is still delivered meanwhile.
        fresh = await db.fetchval("SELECT notifyd.enqueue($1, 'fresh', '', ARRAY['sms'])", user_id)
        assert (await daemon.wait_finished(fresh))["status"] == "sent"
    finally:
        await peer_session.close()  # the peer dies: PostgreSQL drops its lock
    await wait_all_sent(db, held)


async def test_expired_lease_resumes_from_the_attempt_log(
    daemon_factory: DaemonFactory, db: asyncpg.Connection, smtp_server: FakeSmtpServer
) -> None:
    user_id = await make_user(db)
    peer = uuid.uuid4()
    [notification_id] = await leased_to(
        db, peer, user_id, 1, lease_seconds=-1, channels=("email", "sms")
    )
    # The peer used up email (three failed attempts) before it vanished.
    await db.execute(
        """
        INSERT INTO notifyd.notification_attempts
            (notification_id, channel, attempt, status, error, transient, started_at,
             finished_at)
        SELECT $1, 'email', n, 'failed', 'SMTP connection failed', true, now(), now()
        FROM generate_series(1, 3) AS n
        """,
        notification_id,
    )
    daemon = await daemon_factory()
    finished = await daemon.wait_finished(notification_id)
    assert finished["status"] == "sent"
    assert [(a["channel"], a["attempt"], a["status"]) for a in finished["attempts"]] == [
        ("email", 1, "failed"),
        ("email", 2, "failed"),
        ("email", 3, "failed"),
        ("sms", 1, "success"),
    ]
    assert smtp_server.messages == []


async def test_a_stopped_instance_releases_its_leases_for_an_immediate_restart(
    daemon_factory: DaemonFactory, db: asyncpg.Connection, smtp_server: FakeSmtpServer
) -> None:
    user_id = await make_user(db)
    smtp_server.mode = "slow"
    smtp_server.delay = 30  # longer than the grace period: the attempts cannot finish
    first = await daemon_factory(shutdown={"grace_seconds": 0.3})
    ids = [
        await db.fetchval("SELECT notifyd.enqueue($1, 'slow', '', ARRAY['email'])", user_id)
        for _ in range(3)
    ]

    async def all_in_flight() -> bool:
        return len(first.app[SERVICE].in_flight) == len(ids)

    await wait_until(all_in_flight, deadline=10, what="every notification to be in flight")
    await first.close()
    rows = await db.fetch(
        "SELECT status, locked_by FROM notifyd.notifications WHERE id = ANY($1::bigint[])", ids
    )
    assert {(row["status"], row["locked_by"]) for row in rows} == {("pending", None)}
