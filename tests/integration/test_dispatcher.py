"""The dispatcher's concurrent claims: each row once, never more than the room."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import asyncpg

from notifyd.db import Database
from notifyd.delivery.dispatcher import Dispatcher
from notifyd.delivery.inflight import Delivery, Inbox, InFlight
from notifyd.domain import Channel


async def backlog(db: asyncpg.Connection, count: int) -> None:
    user_id = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
    )
    await db.execute(
        """
        INSERT INTO notifyd.notifications (user_id, message, channels)
        SELECT $1, 'm' || g, ARRAY['sms'] FROM generate_series(1, $2) AS g
        """,
        user_id,
        count,
    )


async def claim_round(
    database: Database,
    capacity: int,
    refill_threshold: int = 1,
    on_room: Callable[[], None] = lambda: None,
) -> tuple[list[Delivery], InFlight]:
    """One `claim_available()` with up to 3 lanes of 40: the deliveries routed, in-flight."""
    inboxes = {channel: Inbox() for channel in Channel}
    in_flight = InFlight(
        capacity=capacity, refill_threshold=refill_threshold, on_room=on_room, inboxes=inboxes
    )
    dispatcher = Dispatcher(
        database.queue,
        uuid.uuid4(),
        in_flight,
        may_claim=lambda: True,
        poll_interval=60.0,
        batch_size=40,
        claimers=3,
        lease_seconds=30.0,
        max_attempts=3,
    )
    await dispatcher.claim_available()
    routed = [inbox.get_nowait() for inbox in inboxes.values() for _ in range(inbox.qsize())]
    return routed, in_flight


async def test_concurrent_claims_fill_the_room_exactly_and_take_each_row_once(
    db: asyncpg.Connection, database: Database
) -> None:
    await backlog(db, 500)

    routed, in_flight = await claim_round(database, capacity=190)

    ids = [delivery.id for delivery in routed]
    assert len(ids) == len(set(ids)) == len(in_flight) == 190
    assert (
        await db.fetchval("SELECT count(*) FROM notifyd.notifications WHERE status = 'processing'")
        == 190
    )


async def test_concurrent_claims_stop_when_the_table_runs_dry(
    db: asyncpg.Connection, database: Database
) -> None:
    await backlog(db, 130)

    routed, in_flight = await claim_round(database, capacity=1000)
    ids = [delivery.id for delivery in routed]

    assert len(ids) == 130
    assert sorted(ids) == sorted(
        row["id"] for row in await db.fetch("SELECT id FROM notifyd.notifications")
    )
    assert not in_flight.backlog


async def test_behind_a_full_claim_no_claim_is_made_for_less_than_a_batch(
    db: asyncpg.Connection, database: Database
) -> None:
    # A claim of a few rows costs the database nearly what a full one does: with a backlog,
    # the room left after full batches waits until a batch's worth is free.
    await backlog(db, 500)
    wakes: list[None] = []

    routed, in_flight = await claim_round(
        database, capacity=190, refill_threshold=40, on_room=lambda: wakes.append(None)
    )

    assert len(routed) == 160  # four full batches; 30 slots were not worth a claim
    assert in_flight.backlog
    for delivery in routed[:9]:
        in_flight.forget(delivery)
    assert not wakes  # 39 free
    in_flight.forget(routed[9])
    assert wakes  # 40 free: claim again
