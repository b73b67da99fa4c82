"""kill -9 and status webhooks: events of statuses written before the kill are delivered
after the restart (the outbox is written with the status), each once; an event whose
request a receiver held at the kill is sent again, with the same `webhook-id`."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.fakes.webhook_receiver import WebhookReceiver
from tests.faults.harness import Launcher, create_users, enqueue, wait_all_terminal
from tests.support import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.acceptance, pytest.mark.timeout(180)]

NOTIFICATIONS = 30


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as started:
        yield started


def webhook_settings(receiver: WebhookReceiver, poll_interval: float) -> dict[str, object]:
    return {
        "webhooks.endpoints": json.dumps([receiver.endpoint()]),
        "webhooks.poll_interval": poll_interval,
        "webhooks.backoff_initial": 0.05,
        "webhooks.backoff_max": 0.2,
    }


async def test_events_of_statuses_written_before_a_kill_9_are_delivered_after_restart(
    receiver: WebhookReceiver, launcher: Launcher, db: asyncpg.Connection
) -> None:
    # The first instance looks at the outbox once, at start, and not again for an hour:
    # it delivers notifications and writes their final statuses, but sends no event.
    first = await launcher.start(webhook_settings(receiver, poll_interval=3600))
    users = await create_users(db, NOTIFICATIONS, email=False)
    ids = await enqueue(db, users, ["sms"], "webhook-crash")
    await wait_all_terminal(db, ids, deadline=60)
    pending = await db.fetchval(
        "SELECT count(*) FROM notifyd.webhook_events WHERE status = 'pending'"
    )
    assert pending == NOTIFICATIONS
    assert receiver.requests == 0
    first.process.process.send_signal(signal.SIGKILL)
    await first.process.process.wait()

    await launcher.start(webhook_settings(receiver, poll_interval=0.05))

    async def all_delivered() -> bool:
        return len(receiver.delivered()) == NOTIFICATIONS

    await wait_until(all_delivered, deadline=60, what="every event after the restart")
    assert set(receiver.delivered().values()) == {1}
    assert receiver.forged == 0
    told = sorted(body["data"]["id"] for body in receiver.bodies().values())
    assert told == sorted(ids)
    assert {body["type"] for body in receiver.bodies().values()} == {"notification.sent"}

    async def settled() -> bool:
        return not await db.fetchval(
            "SELECT count(*) FROM notifyd.webhook_events WHERE status <> 'delivered'"
        )

    await wait_until(settled, deadline=30, what="the outbox to be settled")


async def test_an_event_held_by_the_receiver_at_a_kill_9_is_sent_again_with_its_id(
    receiver: WebhookReceiver, launcher: Launcher, db: asyncpg.Connection
) -> None:
    timeout = 3.0  # the lease is 3 x this + 30 s: what the restart waits for
    settings = webhook_settings(receiver, poll_interval=0.05) | {"webhooks.timeout": timeout}
    receiver.set_mode("hang")
    first = await launcher.start(settings)
    users = await create_users(db, 1, email=False)
    (notification_id,) = await enqueue(db, users, ["sms"], "webhook-held")

    async def held() -> bool:
        return receiver.running == 1

    await wait_until(held, deadline=60, what="the event's request to be held")
    first.process.process.send_signal(signal.SIGKILL)
    await first.process.process.wait()
    killed = time.monotonic()
    # Killed while the request was held: the event is still leased to the dead instance,
    # counted as one send, and not settled.
    row = await db.fetchrow("SELECT id, status, attempts, locked_by FROM notifyd.webhook_events")
    assert row is not None
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["locked_by"] is not None
    webhook_id = f"evt_{row['id']}"
    assert receiver.arrived == [webhook_id]
    assert receiver.delivered() == {}

    receiver.set_mode("ok")
    await launcher.start(settings)

    async def delivered() -> bool:
        return bool(receiver.delivered())

    await wait_until(delivered, deadline=3 * timeout + 60, what="the event after the lease")
    resent_after = time.monotonic() - killed
    assert receiver.arrived == [webhook_id, webhook_id]
    assert receiver.delivered() == {webhook_id: 1}
    assert receiver.bodies()[webhook_id]["data"]["id"] == notification_id
    assert receiver.forged == 0

    async def settled() -> bool:
        status = await db.fetchval("SELECT status FROM notifyd.webhook_events")
        return bool(status == "delivered")

    await wait_until(settled, deadline=30, what="the event to be settled")
    print(f"FAULT webhook held at kill -9: sent again after {resent_after:.1f}s, same id")
