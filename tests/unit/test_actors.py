"""Channel actors over the in-memory queue: each owns its retry loop, and none attempts
while its last attempt is unwritten."""

from __future__ import annotations

import asyncio

from notifyd.domain import AttemptStatus, Channel, Status
from notifyd.errors import LocalResourceError
from tests.support import wait_until
from tests.unit.pipeline import Pipeline, ScriptedProvider, has_room

SMS, EMAIL = Channel.SMS, Channel.EMAIL


async def finished(pipeline: Pipeline, count: int) -> None:
    """Wait until `count` notifications are finished in the queue and let go of in memory."""

    async def done() -> bool:
        statuses = pipeline.statuses()
        finals = statuses[Status.SENT] + statuses[Status.FAILED]
        return finals >= count and len(pipeline.in_flight) == 0

    await wait_until(done, deadline=5, what=f"{count} notifications to finish")


async def test_a_success_is_written_with_its_final_status_and_forgotten() -> None:
    pipeline = Pipeline({SMS: ScriptedProvider(SMS)})
    notification_id = pipeline.queue.add([SMS])
    pipeline.start()
    await pipeline.claim()
    await finished(pipeline, 1)
    await pipeline.stop()

    [attempt] = pipeline.queue.attempts_of(notification_id)
    assert (attempt.channel, attempt.attempt, attempt.status) == (SMS, 1, AttemptStatus.SUCCESS)
    assert pipeline.queue.rows[notification_id].status == Status.SENT
    assert len(pipeline.in_flight) == 0


async def test_transient_failures_are_retried_then_the_next_channel_is_tried() -> None:
    sms = ScriptedProvider(SMS, ["transient", "transient", "transient"])
    email = ScriptedProvider(EMAIL)
    pipeline = Pipeline({SMS: sms, EMAIL: email}, max_attempts=3)
    notification_id = pipeline.queue.add([SMS, EMAIL])
    pipeline.start()
    await pipeline.claim()
    await finished(pipeline, 1)
    await pipeline.stop()

    log = [(a.channel, a.attempt, a.status) for a in pipeline.queue.attempts_of(notification_id)]
    assert log == [
        (SMS, 1, AttemptStatus.FAILED),
        (SMS, 2, AttemptStatus.FAILED),
        (SMS, 3, AttemptStatus.FAILED),
        (EMAIL, 1, AttemptStatus.SUCCESS),
    ]
    assert pipeline.queue.rows[notification_id].status == Status.SENT


async def test_a_permanent_failure_on_the_last_channel_fails_the_notification() -> None:
    sms = ScriptedProvider(SMS, ["permanent"])
    pipeline = Pipeline({SMS: sms})
    notification_id = pipeline.queue.add([SMS])
    pipeline.start()
    await pipeline.claim()
    await finished(pipeline, 1)
    await pipeline.stop()

    assert sms.calls == 1
    assert [a.transient for a in pipeline.queue.attempts_of(notification_id)] == [False]
    assert pipeline.queue.rows[notification_id].status == Status.FAILED


async def test_the_vendor_never_sees_more_than_its_concurrency() -> None:
    gate = asyncio.Event()
    sms = ScriptedProvider(SMS, [gate] * 20)
    pipeline = Pipeline({SMS: sms}, concurrency=3, actors=10)
    for _ in range(20):
        pipeline.queue.add([SMS])
    pipeline.start()
    await pipeline.claim()

    async def three_running() -> bool:
        return sms.running == 3

    await wait_until(three_running, deadline=5, what="three attempts under way")
    gate.set()
    await finished(pipeline, 20)
    await pipeline.stop()
    assert sms.most_at_once == 3
    assert sorted(sms.sent) == sorted(pipeline.queue.rows)


async def test_no_attempt_starts_while_the_database_does_not_answer() -> None:
    # The first attempt's write hangs (a partition): the actor that made it waits, and
    # once the write has gone unanswered for stall_after, no other actor starts one.
    sms = ScriptedProvider(SMS)
    pipeline = Pipeline({SMS: sms}, concurrency=1, actors=4, stall_after=0.05)
    for _ in range(10):
        pipeline.queue.add([SMS])
    pipeline.start()
    await pipeline.claim()
    pipeline.queue.hang()

    async def writes_hang() -> bool:
        writing = pipeline.queue.calls.get("record_attempts", 0) >= 1
        return writing and not await has_room(pipeline.recorder)

    await wait_until(writes_hang, deadline=5, what="a write to hang")
    made = sms.calls
    # Each actor has at most one attempt that is not written.
    assert made - len(pipeline.queue.attempt_log) <= 4
    # While the database hangs, nothing new is attempted.
    for _ in range(20):
        await asyncio.sleep(0.01)
        assert sms.calls == made
    pipeline.queue.answer()
    await finished(pipeline, 10)
    await pipeline.stop()
    assert sms.calls == 10


async def test_a_lost_lease_drops_the_delivery_without_acting_on_it() -> None:
    gate = asyncio.Event()
    sms = ScriptedProvider(SMS, [gate])
    pipeline = Pipeline({SMS: sms})
    notification_id = pipeline.queue.add([SMS])
    pipeline.start()
    await pipeline.claim()

    async def attempting() -> bool:
        return sms.running == 1

    await wait_until(attempting, deadline=5, what="the attempt to start")
    # Another instance took the notification over meanwhile.
    row = pipeline.queue.rows[notification_id]
    row.locked_by = None
    row.status = Status.PENDING
    gate.set()

    async def forgotten() -> bool:
        return notification_id not in pipeline.in_flight

    await wait_until(forgotten, deadline=5, what="the delivery to be dropped")
    await pipeline.stop()
    assert pipeline.queue.attempts_of(notification_id) == []
    assert row.status == Status.PENDING


async def test_an_outage_that_outlasts_the_lease_gives_the_attempt_up() -> None:
    gate = asyncio.Event()
    sms = ScriptedProvider(SMS, [gate])
    pipeline = Pipeline({SMS: sms}, lease_seconds=0.2, lease_margin=0.05)
    notification_id = pipeline.queue.add([SMS])
    pipeline.start()
    await pipeline.claim()
    assert notification_id in pipeline.in_flight  # held: queued, or its attempt at the gate
    pipeline.queue.down = True  # the attempt is made, and cannot be written
    gate.set()

    async def given_up() -> bool:
        return notification_id not in pipeline.in_flight

    await wait_until(given_up, deadline=5, what="the attempt to be given up")
    await pipeline.stop()
    assert sms.calls == 1
    assert pipeline.queue.attempts_of(notification_id) == []


async def test_no_attempt_starts_once_the_lease_is_no_longer_known_to_hold() -> None:
    # Nothing renews the leases here (no lease keeper): once the lease runs short, the
    # deliveries still queued are dropped, not attempted. Another instance may already
    # have taken them over after an outage; whoever holds them next resumes them.
    gate = asyncio.Event()
    sms = ScriptedProvider(SMS, [gate])
    pipeline = Pipeline({SMS: sms}, concurrency=1, actors=1, lease_seconds=0.3, lease_margin=0.1)
    ids = [pipeline.queue.add([SMS]) for _ in range(3)]
    pipeline.start()
    await pipeline.claim()

    async def first_attempting() -> bool:
        return sms.running == 1

    await wait_until(first_attempting, deadline=5, what="the first attempt")
    await asyncio.sleep(0.3)  # the scenario: the lease runs short while the attempt hangs
    gate.set()

    async def all_let_go() -> bool:
        return len(pipeline.in_flight) == 0

    await wait_until(all_let_go, deadline=5, what="the queued deliveries to be dropped")
    await pipeline.stop()
    assert sms.calls == 1
    assert [len(pipeline.queue.attempts_of(i)) for i in ids] == [1, 0, 0]


async def test_a_shortage_on_this_host_is_not_an_attempt() -> None:
    # Out of descriptors (EMFILE): the daemon's own fault, never the vendor's. The attempt
    # is made again later and nothing counts against the channel.
    shortage = LocalResourceError("Too many open files")
    sms = ScriptedProvider(SMS, [shortage, shortage])
    pipeline = Pipeline({SMS: sms}, max_attempts=1)
    notification_id = pipeline.queue.add([SMS])
    pipeline.start()
    await pipeline.claim()
    await wait_until(
        lambda: _sent(pipeline, notification_id), deadline=10, what="the notification sent"
    )
    await pipeline.stop()

    assert sms.calls == 3
    log = pipeline.queue.attempts_of(notification_id)
    assert [(a.attempt, a.status) for a in log] == [(1, AttemptStatus.SUCCESS)]


async def _sent(pipeline: Pipeline, notification_id: int) -> bool:
    return pipeline.queue.rows[notification_id].status == Status.SENT and not len(
        pipeline.in_flight
    )
