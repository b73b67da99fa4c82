"""The dispatcher's concurrent claims: each row once, never more than the room."""

from __future__ import annotations

import uuid

import asyncpg

from notifyd.dispatcher import Dispatcher
from notifyd.inflight import InFlight
from notifyd.models import Delivery
from notifyd.store import Store


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


def dispatcher(store: Store, in_flight: InFlight, routed: list[Delivery]) -> Dispatcher:
    return Dispatcher(
        store,
        uuid.uuid4(),
        in_flight,
        routed.append,
        may_claim=lambda: True,
        poll_interval=60.0,
        batch_size=40,
        claimers=3,
        lease_seconds=30.0,
        max_attempts=3,
    )


async def test_concurrent_claims_fill_the_room_exactly_and_take_each_row_once(
    db: asyncpg.Connection, store: Store
) -> None:
    await backlog(db, 500)
    in_flight = InFlight(capacity=190, refill_threshold=1, on_room=lambda: None)
    routed: list[Delivery] = []

    claimed = await dispatcher(store, in_flight, routed).claim_available()

    ids = [delivery.notification.id for delivery in routed]
    assert claimed == len(ids) == len(set(ids)) == len(in_flight) == 190
    assert (
        await db.fetchval("SELECT count(*) FROM notifyd.notifications WHERE status = 'processing'")
        == 190
    )


async def test_concurrent_claims_stop_when_the_table_runs_dry(
    db: asyncpg.Connection, store: Store
) -> None:
    await backlog(db, 130)
    in_flight = InFlight(capacity=1000, refill_threshold=1, on_room=lambda: None)
    routed: list[Delivery] = []

    claimed = await dispatcher(store, in_flight, routed).claim_available()

    assert claimed == 130
    assert sorted(d.notification.id for d in routed) == sorted(
        row["id"] for row in await db.fetch("SELECT id FROM notifyd.notifications")
    )
    assert not in_flight.backlog
