"""InFlight: one record of every held notification, and stopping as one walk over it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from notifyd.delivery.inflight import Inbox, InFlight, Where
from notifyd.domain import Channel, ClaimedNotification, Recipient

SMS, EMAIL = Channel.SMS, Channel.EMAIL
# Lease validity far enough ahead never to matter here (monotonic seconds).
LEASED = float("inf")


def claimed(
    notification_id: int, channels: tuple[Channel, ...] = (SMS, EMAIL)
) -> ClaimedNotification:
    return ClaimedNotification(
        id=notification_id,
        recipient=Recipient(
            user_id=1, email="a@example.com", phone="+79001234567", telegram_chat_id=None
        ),
        subject="",
        message="hello",
        channels=channels,
        created=time.time(),
        claims=1,
    )


def make(capacity: int = 10, refill: int = 1) -> tuple[InFlight, list[None]]:
    wakes: list[None] = []
    in_flight = InFlight(
        capacity,
        refill_threshold=refill,
        on_room=lambda: wakes.append(None),
        inboxes={SMS: Inbox(), EMAIL: Inbox()},
    )
    return in_flight, wakes


async def test_a_started_delivery_waits_in_its_channel_s_inbox() -> None:
    in_flight, _ = make()
    delivery = in_flight.hold(claimed(1), LEASED)
    assert (len(in_flight), in_flight.free(), delivery.where) == (1, 9, Where.RESUMING)
    in_flight.start(delivery, channel_index=1, attempts=2)
    assert in_flight.inboxes[EMAIL].get_nowait() is delivery
    assert (delivery.channel, delivery.attempts_on_channel, delivery.where) == (
        EMAIL,
        2,
        Where.QUEUED,
    )


async def test_a_retry_waits_out_its_backoff_without_an_actor() -> None:
    in_flight, _ = make()
    delivery = in_flight.hold(claimed(1), LEASED)
    in_flight.start(delivery)
    in_flight.inboxes[SMS].get_nowait()
    in_flight.taken(delivery)
    in_flight.retry_later(delivery, 0.05)
    assert (delivery.where, delivery.attempts_on_channel) == (Where.WAITING, 1)
    assert in_flight.inboxes[SMS].empty()
    back = await asyncio.wait_for(in_flight.inboxes[SMS].get(), 5)
    assert back is delivery
    assert delivery.where is Where.QUEUED


async def test_falling_back_moves_to_the_next_channel_s_inbox() -> None:
    in_flight, _ = make()
    delivery = in_flight.hold(claimed(1), LEASED)
    in_flight.start(delivery, attempts=3)
    in_flight.inboxes[SMS].get_nowait()
    in_flight.fall_back(delivery)
    assert (delivery.channel, delivery.attempts_on_channel) == (EMAIL, 0)
    assert in_flight.inboxes[EMAIL].get_nowait() is delivery
    assert delivery.is_last_channel()


async def test_forgetting_frees_room_and_asks_for_more_once_a_batch_is_free() -> None:
    in_flight, wakes = make(capacity=4, refill=2)
    deliveries = [in_flight.hold(claimed(n), LEASED) for n in range(1, 5)]
    in_flight.backlog = True
    in_flight.forget(deliveries[0])
    assert not wakes  # one free: not worth a claim
    in_flight.forget(deliveries[1])
    assert wakes  # two free
    in_flight.forget(deliveries[1])  # forgetting twice is harmless
    assert len(in_flight) == 2


async def test_draining_parks_everything_not_with_an_actor_and_waits_for_the_rest() -> None:
    in_flight, _ = make()
    queued = in_flight.hold(claimed(1), LEASED)
    in_flight.start(queued)
    waiting = in_flight.hold(claimed(2), LEASED)
    in_flight.start(waiting)
    active = in_flight.hold(claimed(3), LEASED)
    in_flight.start(active)
    resuming = in_flight.hold(claimed(4), LEASED)
    for delivery in (waiting, active):
        in_flight.taken(delivery)
    in_flight.retry_later(waiting, 60)
    due = waiting.due
    assert due is not None

    in_flight.drain()

    assert all(inbox.empty() for inbox in in_flight.inboxes.values())
    assert (queued.where, waiting.where, resuming.where) == (Where.PARKED,) * 3
    assert active.where is Where.ACTIVE
    settled = asyncio.create_task(in_flight.wait_settled())
    await asyncio.sleep(0)
    assert not settled.done()  # the active one is still with its actor
    # Its actor finishes and would retry: while draining that parks it instead.
    in_flight.retry_later(active, 1)
    await asyncio.wait_for(settled, 5)
    release = dict(in_flight.unfinished())
    assert set(release) == {1, 2, 3, 4}
    assert release[2] == due  # claimable again when its backoff would have ended
    assert release[3] - datetime.now(UTC) > timedelta(seconds=0.5)


@pytest.mark.parametrize("where", [Where.QUEUED, Where.WAITING])
async def test_a_parked_delivery_is_never_routed_again(where: Where) -> None:
    in_flight, _ = make()
    delivery = in_flight.hold(claimed(1), LEASED)
    in_flight.start(delivery)
    if where is Where.WAITING:
        in_flight.inboxes[SMS].get_nowait()
        in_flight.taken(delivery)
        in_flight.retry_later(delivery, 0.01)
    in_flight.drain()
    await asyncio.sleep(0.05)  # longer than the backoff: its timer must have been cancelled
    assert in_flight.inboxes[SMS].empty()
    assert delivery.where is Where.PARKED
