"""kill -9 after final statuses were written and before their events were sent: every event
is delivered after the restart (the outbox is written with the status), each once."""

from __future__ import annotations

import json
import signal
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
