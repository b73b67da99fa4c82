"""A graceful stop with status webhooks under way: one grace period, not two.

The deliveries and the webhook sends under way at a stop each get
`shutdown.grace_seconds` to finish. Given one after the other, a stop with both held up
(an SMTP server that stalls, a receiver that hangs) took twice the grace period; side by
side, it takes one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from structlog.testing import capture_logs

from notifyd.domain import Channel
from notifyd.web.keys import SERVICE
from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.support import Daemon, wait_until

DaemonFactory = Callable[..., Awaitable[Daemon]]
GRACE = 4.0
# Far beyond the grace period: neither the SMTP attempt nor the webhook request ends on
# its own while the daemon stops.
STALL = 60.0


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as started:
        yield started


async def test_a_stop_with_deliveries_and_webhooks_held_up_takes_one_grace_period(
    receiver: WebhookReceiver,
    daemon_factory: DaemonFactory,
    smtp_server: FakeSmtpServer,
    db: asyncpg.Connection,
) -> None:
    daemon = await daemon_factory(
        shutdown={"grace_seconds": GRACE},
        channels={"email": {"timeout": STALL}},
        webhooks={
            "endpoints": [receiver.endpoint()],
            "poll_interval": 0.05,
            "timeout": STALL,
        },
    )
    user = await daemon.create_user(email="ivan@example.com", phone="+79001234567")
    # A webhook request that hangs: the event of a notification sent by SMS.
    receiver.set_mode("hang")
    told = await daemon.notify(user_id=user, message="told", channels=["sms"])
    await daemon.wait_finished(told["id"])

    async def request_held() -> bool:
        return receiver.running == 1

    await wait_until(request_held, deadline=20, what="the webhook request to be held")
    # And an e-mail attempt that stalls.
    smtp_server.mode = "slow"
    smtp_server.delay = STALL
    await daemon.notify(user_id=user, message="stalled", channels=["email"])
    actors = daemon.app[SERVICE].actors[Channel.EMAIL]

    async def attempt_running() -> bool:
        return actors.busy == 1

    await wait_until(attempt_running, deadline=20, what="the e-mail attempt to be under way")

    with capture_logs() as logs:
        started = time.monotonic()
        await daemon.close()
        took = time.monotonic() - started

    names = [entry["event"] for entry in logs]
    assert "shutdown_grace_expired" in names  # the delivery did wait out the grace period
    # One grace period and what the stop itself costs; two would be 2 x GRACE at least.
    assert took < 1.5 * GRACE, f"the stop took {took:.1f}s with a grace period of {GRACE}s"
    # The event held is handed back, due at once for the next instance.
    row = await db.fetchrow("SELECT status, locked_by FROM notifyd.webhook_events")
    assert row is not None
    assert (row["status"], row["locked_by"]) == ("pending", None)
