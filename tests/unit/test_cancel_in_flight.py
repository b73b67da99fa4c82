"""A cancel asked for while a notification is held: no further attempt starts.

The real dispatcher, in-flight, actors and recorder over the in-memory queue, which applies
the cancel as sql/0005_lifecycle.sql does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from notifyd.delivery.inflight import Where
from notifyd.delivery.leases import LeaseKeeper
from notifyd.domain import Channel, OutgoingMessage, Status
from notifyd.errors import TransientProviderError
from tests.support import wait_until
from tests.unit.pipeline import Pipeline, ScriptedProvider

SMS, EMAIL = Channel.SMS, Channel.EMAIL


async def settled(pipeline: Pipeline, notification_id: int, status: Status) -> None:
    async def done() -> bool:
        row = pipeline.queue.rows[notification_id]
        return row.status == status and notification_id not in pipeline.in_flight

    await wait_until(done, deadline=5, what=f"notification {notification_id} to be {status}")


class GatedFailure(ScriptedProvider):
    """Every call waits for `gate`, then fails transiently."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(channel)
        self.gate = asyncio.Event()

    async def send(self, message: OutgoingMessage) -> dict[str, Any]:
        self.calls += 1
        self.running += 1
        try:
            await self.gate.wait()
            raise TransientProviderError("down")
        finally:
            self.running -= 1


async def test_a_cancel_during_an_attempt_stops_the_retries() -> None:
    sms = GatedFailure(SMS)
    email = ScriptedProvider(EMAIL)
    pipeline = Pipeline({SMS: sms, EMAIL: email})
    notification_id = pipeline.queue.add([SMS, EMAIL])
    pipeline.start()
    await pipeline.claim()

    async def sending() -> bool:
        return sms.running == 1

    await wait_until(sending, what="the attempt to start")
    # Only the database knows, as when another instance took the cancel.
    pipeline.queue.rows[notification_id].cancel_requested = True
    sms.gate.set()
    await settled(pipeline, notification_id, Status.CANCELLED)
    await pipeline.stop()

    assert sms.calls == 1
    assert email.calls == 0
    assert len(pipeline.queue.attempts_of(notification_id)) == 1
    assert pipeline.metrics.finished_cancelled.value == 1


async def test_a_cancel_heard_while_waiting_out_a_backoff_ends_it_without_an_attempt() -> None:
    sms = ScriptedProvider(SMS, ["transient"])
    # A backoff long enough that only the cancel can end the wait.
    pipeline = Pipeline({SMS: sms}, max_attempts=3, backoff=3600.0)
    notification_id = pipeline.queue.add([SMS])
    pipeline.start()
    await pipeline.claim()

    async def waiting() -> bool:
        return len(pipeline.queue.attempts_of(notification_id)) == 1 and bool(
            pipeline.in_flight.ids()
        )

    await wait_until(waiting, what="the first attempt to be written")
    pipeline.queue.rows[notification_id].cancel_requested = True
    pipeline.in_flight.cancel_requested([notification_id])
    await settled(pipeline, notification_id, Status.CANCELLED)
    await pipeline.stop()
    assert sms.calls == 1


async def test_a_cancel_heard_before_the_first_attempt_prevents_it() -> None:
    sms = ScriptedProvider(SMS)
    pipeline = Pipeline({SMS: sms})
    notification_id = pipeline.queue.add([SMS])
    await pipeline.claim()  # claimed, queued in the inbox, no actor running yet
    pipeline.queue.rows[notification_id].cancel_requested = True
    pipeline.in_flight.cancel_requested([notification_id, 999])  # 999: not held, ignored
    pipeline.start()
    await settled(pipeline, notification_id, Status.CANCELLED)
    await pipeline.stop()
    assert sms.calls == 0
    assert pipeline.queue.attempts_of(notification_id) == []


async def test_an_attempt_under_way_that_succeeds_stays_sent() -> None:
    gate = asyncio.Event()
    sms = ScriptedProvider(SMS, [gate])
    pipeline = Pipeline({SMS: sms})
    notification_id = pipeline.queue.add([SMS])
    pipeline.start()
    await pipeline.claim()

    async def sending() -> bool:
        return sms.running == 1

    await wait_until(sending, what="the attempt to start")
    pipeline.queue.rows[notification_id].cancel_requested = True
    pipeline.in_flight.cancel_requested([notification_id])
    gate.set()
    await settled(pipeline, notification_id, Status.SENT)
    await pipeline.stop()
    assert pipeline.metrics.finished_cancelled.value == 0


async def test_the_heartbeat_finds_a_cancel_whose_notify_was_missed() -> None:
    sms = ScriptedProvider(SMS, ["transient"])
    pipeline = Pipeline({SMS: sms}, max_attempts=3, backoff=3600.0)
    notification_id = pipeline.queue.add([SMS])
    pipeline.start()
    await pipeline.claim()

    async def waiting() -> bool:
        return len(pipeline.queue.attempts_of(notification_id)) == 1

    await wait_until(waiting, what="the first attempt to be written")
    # Only the database knows: no NOTIFY reached this instance.
    pipeline.queue.rows[notification_id].cancel_requested = True
    present = asyncio.Event()
    present.set()
    keeper = LeaseKeeper(
        pipeline.queue,
        pipeline.owner,
        pipeline.in_flight,
        lease_seconds=30,
        present=present,
        peers_settled=lambda: False,
    )
    await keeper.tick()
    await settled(pipeline, notification_id, Status.CANCELLED)
    await pipeline.stop()
    assert sms.calls == 1


async def test_a_cancel_the_database_does_not_know_of_changes_nothing() -> None:
    # A NOTIFY on notifyd_cancel needs no rights on any table: anyone connected can send
    # one. The delivery goes on.
    sms = ScriptedProvider(SMS)
    pipeline = Pipeline({SMS: sms})
    notification_id = pipeline.queue.add([SMS])
    await pipeline.claim()
    pipeline.in_flight.cancel_requested([notification_id])
    pipeline.start()
    await settled(pipeline, notification_id, Status.SENT)
    await pipeline.stop()
    assert sms.calls == 1
    assert pipeline.metrics.finished_cancelled.value == 0


async def test_a_cancel_the_database_does_not_know_of_does_not_cut_a_backoff_short() -> None:
    sms = ScriptedProvider(SMS, ["transient"])
    pipeline = Pipeline({SMS: sms}, max_attempts=3, backoff=3600.0)
    notification_id = pipeline.queue.add([SMS])
    pipeline.start()
    await pipeline.claim()

    async def waiting() -> bool:
        delivery = pipeline.in_flight._held.get(notification_id)
        return delivery is not None and delivery.where is Where.WAITING

    await wait_until(waiting, what="the backoff")
    pipeline.in_flight.cancel_requested([notification_id])

    async def checked() -> bool:
        return pipeline.queue.calls.get("finish_cancelled", 0) == 1 and await waiting()

    await wait_until(checked, what="the database asked, and the backoff resumed")
    await pipeline.stop()
    assert sms.calls == 1
    assert pipeline.queue.rows[notification_id].status == Status.PROCESSING
