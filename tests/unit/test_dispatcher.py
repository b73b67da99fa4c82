"""The dispatcher over the in-memory queue: claims, resumes from the attempt log, and
never holds one notification twice."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from notifyd.delivery.dispatcher import Dispatcher
from notifyd.delivery.inflight import Inbox, InFlight
from notifyd.domain import Attempt, AttemptStatus, Channel, Status
from tests.fakes.memory_queue import MemoryQueue
from tests.support import wait_until
from tests.unit.pipeline import Pipeline, ScriptedProvider

SMS, EMAIL = Channel.SMS, Channel.EMAIL


def logged(notification_id: int, channel: Channel, attempt: int, *, transient: bool) -> Attempt:
    now = datetime.now(UTC)
    return Attempt(
        id=attempt,
        notification_id=notification_id,
        channel=channel,
        attempt=attempt,
        status=AttemptStatus.FAILED,
        error="down",
        transient=transient,
        provider_response=None,
        started_at=now,
        finished_at=now,
    )


def pipeline(*, capacity: int = 3, claimers: int = 1) -> Pipeline:
    return Pipeline(
        {SMS: ScriptedProvider(SMS), EMAIL: ScriptedProvider(EMAIL)},
        capacity=capacity,
        claimers=claimers,
    )


def claims_made(p: Pipeline, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return p.queue.calls.get("claim", 0) == count

    return check


def held(p: Pipeline, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(p.in_flight) == count

    return check


async def test_claims_the_most_urgent_first_and_never_more_than_the_room() -> None:
    p = pipeline()
    low = [p.queue.add([SMS]) for _ in range(3)]
    urgent = p.queue.add([SMS], priority=10)

    await p.claim()
    assert len(p.in_flight) == 3
    queued = [p.in_flight.inboxes[SMS].get_nowait().id for _ in range(3)]
    assert queued == [urgent, *low[:2]]
    assert p.in_flight.free() == 0


async def test_a_resumed_delivery_skips_what_the_attempt_log_used_up() -> None:
    p = pipeline()
    notification_id = p.queue.add([SMS, EMAIL])
    p.queue.rows[notification_id].claims = 1  # claimed once before, by an instance now gone
    p.queue.attempt_log += [logged(notification_id, SMS, 1, transient=False)]

    await p.claim()
    assert len(p.in_flight) == 1
    delivery = p.in_flight.inboxes[EMAIL].get_nowait()
    assert (delivery.id, delivery.channel, delivery.attempts_on_channel) == (
        notification_id,
        EMAIL,
        0,
    )
    assert p.in_flight.inboxes[SMS].empty()


async def test_a_resumed_delivery_with_nothing_left_is_failed_without_an_attempt() -> None:
    p = pipeline()
    notification_id = p.queue.add([SMS])
    p.queue.rows[notification_id].claims = 1
    p.queue.attempt_log += [logged(notification_id, SMS, n, transient=True) for n in range(1, 4)]

    await p.claim()

    assert p.queue.rows[notification_id].status == Status.FAILED
    assert len(p.in_flight) == 0
    assert all(inbox.empty() for inbox in p.in_flight.inboxes.values())


async def test_a_notification_still_held_is_not_taken_in_twice() -> None:
    # Its lease lapsed during an outage and the claim handed it back to this instance:
    # the delivery in memory goes on; a second one would send it twice.
    p = pipeline()
    notification_id = p.queue.add([SMS])
    await p.claim()
    row = p.queue.rows[notification_id]
    row.status, row.locked_by = Status.PENDING, None

    await p.claim()

    assert p.in_flight.inboxes[SMS].qsize() == 1
    assert len(p.in_flight) == 1


async def test_an_outage_during_a_claim_takes_nothing_in() -> None:
    p = pipeline()
    p.queue.add([SMS])
    p.queue.down = True

    await p.claim()
    assert p.queue.calls["claim"] == 1  # tried, and refused
    assert len(p.in_flight) == 0


async def test_a_wake_during_a_claim_opens_another_lane_at_once() -> None:
    # A row committed just after a claim's snapshot must not wait for that claim to end
    # before its own claim starts: that wait was the tail of the time to delivery.
    p = pipeline(capacity=100, claimers=2)  # room for two claims of 50
    running = asyncio.create_task(p.dispatcher.run())
    p.queue.hang()
    p.queue.add([SMS])
    p.dispatcher.wake()
    await wait_until(claims_made(p, 1), what="the first claim")
    p.queue.add([SMS])
    p.dispatcher.wake()

    await wait_until(claims_made(p, 2), what="a second claim while the first is unanswered")

    p.queue.answer()
    await wait_until(held(p, 2), what="both notifications taken in")
    p.dispatcher.stop_claiming()
    await running


async def test_a_wake_while_every_lane_is_busy_is_followed_by_a_claim() -> None:
    p = pipeline(capacity=100, claimers=1)
    running = asyncio.create_task(p.dispatcher.run())
    p.queue.hang()
    p.dispatcher.wake()
    await wait_until(claims_made(p, 1), what="the first claim")
    p.queue.add([SMS])
    p.dispatcher.wake()  # the one lane is busy: the wake is kept, not dropped

    p.queue.answer()

    # No wake comes after the first claim ends; the lane claims again for the one it kept.
    await wait_until(claims_made(p, 2), what="the claim owed to the kept wake")
    await wait_until(held(p, 1), what="the notification taken in")
    p.dispatcher.stop_claiming()
    await running


def dispatcher_over(
    queue: MemoryQueue, *, capacity: int, refill_threshold: int, claimers: int
) -> tuple[Dispatcher, InFlight]:
    """A dispatcher on `queue` whose in-flight wakes it when room frees, as the service's."""
    in_flight = InFlight(
        capacity,
        refill_threshold=refill_threshold,
        on_room=lambda: dispatcher.room(),
        inboxes={SMS: Inbox()},
    )
    dispatcher = Dispatcher(
        queue,
        uuid.uuid4(),
        in_flight,
        may_claim=lambda: True,
        poll_interval=60.0,
        batch_size=50,
        claimers=claimers,
        lease_seconds=30.0,
        max_attempts=3,
    )
    return dispatcher, in_flight


async def test_a_wake_during_a_full_claim_is_claimed_even_with_less_than_a_batch_free() -> None:
    # Behind a full claim the dispatcher waits for a batch's worth of room, which in-flight
    # announces. A row whose NOTIFY came during that claim must not wait for it (or for
    # the poll, a minute here): in-flight does not call for rows it never heard of.
    queue = MemoryQueue()
    dispatcher, in_flight = dispatcher_over(queue, capacity=100, refill_threshold=50, claimers=1)
    elsewhere = MemoryQueue()
    elsewhere._ids = itertools.count(1000)  # ids apart from `queue`'s
    for _ in range(90):
        elsewhere.add([SMS])
    held = [in_flight.hold(n, float("inf")) for n in await elsewhere.claim(90, uuid.uuid4(), 30)]
    for _ in range(10):
        queue.add([SMS])
    running = asyncio.create_task(dispatcher.run())
    queue.hang()
    dispatcher.wake()
    await wait_until(queue_claims(queue, 1), what="the first claim")
    for delivery in held[:5]:
        in_flight.forget(delivery)  # 5 slots free: less than a batch
    late = queue.add([SMS])
    dispatcher.wake()  # its NOTIFY, while the claim (of all 10 free slots) is under way

    queue.answer()

    async def late_claimed() -> bool:
        return queue.rows[late].status == Status.PROCESSING

    await wait_until(late_claimed, what="the row whose wake came during the full claim")
    dispatcher.stop_claiming()
    await running


async def test_an_instance_under_steady_wakes_counts_as_started() -> None:
    # With a NOTIFY during every claim, a lane never ends; the health check's "started"
    # must not wait for it to.
    queue = MemoryQueue()
    dispatcher, _ = dispatcher_over(queue, capacity=10**6, refill_threshold=1, claimers=1)
    claim = queue.claim

    async def claim_while_more_arrive(limit: int, owner: uuid.UUID, lease: float) -> Any:
        queue.add([SMS])
        dispatcher.wake()
        await asyncio.sleep(0)
        return await claim(limit, owner, lease)

    queue.claim = claim_while_more_arrive  # type: ignore[method-assign]
    queue.add([SMS])
    running = asyncio.create_task(dispatcher.run())
    dispatcher.wake()

    await asyncio.wait_for(dispatcher.started.wait(), timeout=10)

    assert queue.calls.get("claim", 0) >= 1
    dispatcher.stop_claiming()
    await running


def queue_claims(queue: MemoryQueue, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return queue.calls.get("claim", 0) == count

    return check


async def test_room_freed_during_a_claim_makes_no_claim_for_less_than_a_batch() -> None:
    # Behind a backlog, in-flight calls for room without counting the claims under way.
    # Such a call is not a wake for rows: it opens a claim only for a batch's worth of
    # room beside those claims (a claim of a few rows costs nearly what a full one does).
    queue = MemoryQueue()
    dispatcher, in_flight = dispatcher_over(queue, capacity=100, refill_threshold=50, claimers=2)
    for _ in range(200):
        queue.add([SMS])
    running = asyncio.create_task(dispatcher.run())
    dispatcher.wake()
    await wait_until(queue_claims(queue, 2), what="two full claims")
    await wait_until(holding(in_flight, 100), what="the room filled")
    held = [in_flight.inboxes[SMS].get_nowait() for _ in range(100)]
    queue.hang()
    for delivery in held[:50]:
        in_flight.forget(delivery)  # a batch's worth: a third claim
    await wait_until(queue_claims(queue, 3), what="the claim for the freed room")
    for delivery in held[50:70]:
        in_flight.forget(delivery)  # 70 free by count, but 50 of it is being claimed

    queue.answer()
    await wait_until(holding(in_flight, 80), what="the third claim taken in")

    assert queue.calls["claim"] == 3
    dispatcher.stop_claiming()
    await running


def holding(in_flight: InFlight, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(in_flight) == count

    return check
