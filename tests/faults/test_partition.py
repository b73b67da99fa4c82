"""A silent network partition between one instance and PostgreSQL.

Instance B reaches the database only through a proxy, which stops relaying for a while
without closing anything: B's queries get no answer and no error, and the server keeps
B's sessions (and its presence lock). B's leases lapse meanwhile and instance A takes
its work over. Whatever B sends that it cannot write down, A sends again: an instance
that goes on delivering while its writes hang repeats its whole backlog. Each instance
has an SMTP server of its own, so what each one sent is known exactly.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.tcp_proxy import TcpProxy, postgres_target, proxied_postgres_url
from tests.faults.harness import (
    Instance,
    Launcher,
    ObservedSmtpServer,
    check_sent_have_one_success,
    create_users,
    duplicates,
    enqueue,
    mails_per_notification,
    notification_ids,
    statuses,
    wait_all_terminal,
)
from tests.support import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.acceptance, pytest.mark.timeout(150)]

NOTIFICATIONS = 600
PARTITION_S = 20.0  # the scenario: how long B's packets go nowhere
SMTP_DELAY = 0.2
# B's sending rate is measured over this window before the partition.
RATE_WINDOW = 2.0
SETTINGS = {
    "delivery.lease_seconds": 5,
    # Each instance holds at most half of the backlog: B has work left at the partition
    # whichever instance claims first.
    "dispatcher.batch_size": 100,
    "dispatcher.max_in_flight": NOTIFICATIONS // 2,
}
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=5)  # a probe that hangs is retried, not waited on

HELD_BY = """
    SELECT count(*) FROM notifyd.notifications
    WHERE status = 'processing' AND locked_by = $1::uuid
"""
RECORDED = """
    SELECT DISTINCT notification_id FROM notifyd.notification_attempts
    WHERE status = 'success' AND notification_id = ANY($1::bigint[])
"""


@pytest.fixture
async def smtp_b() -> AsyncIterator[ObservedSmtpServer]:
    server = ObservedSmtpServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    # Torn down before the launcher's instances: B then stops without waiting on a
    # database it cannot reach.
    async with TcpProxy(postgres_target(database_url)) as proxy:
        yield proxy


async def status_of(session: aiohttp.ClientSession, url: str) -> int | None:
    """The HTTP status of GET `url`, or None if it does not answer in time."""
    try:
        async with session.get(url) as response:
            return response.status
    except (TimeoutError, aiohttp.ClientError):
        return None


async def held_in_memory(session: aiohttp.ClientSession, instance: Instance) -> float | None:
    """The notifications `instance` holds (its `notifyd_in_flight` gauge), None if unknown."""
    try:
        async with session.get(f"{instance.base_url}/metrics") as response:
            text = await response.text()
    except (TimeoutError, aiohttp.ClientError):
        return None
    for family in text_string_to_metric_families(text):
        if family.name == "notifyd_in_flight":
            return family.samples[0].value
    raise AssertionError(f"no notifyd_in_flight gauge in /metrics: {text[:500]}")


async def test_a_silent_partition_repeats_at_most_the_attempts_in_flight(
    launcher: Launcher,
    proxy: TcpProxy,
    smtp: ObservedSmtpServer,
    smtp_b: ObservedSmtpServer,
    db: asyncpg.Connection,
) -> None:
    for server in (smtp, smtp_b):
        server.mode = "slow"
        server.delay = SMTP_DELAY
    a = await launcher.start(SETTINGS)  # wired to `smtp`
    b = await launcher.start(
        {
            **SETTINGS,
            "database.url": proxied_postgres_url(launcher.database_url, proxy),
            "channels.email.host": smtp_b.host,
            "channels.email.port": smtp_b.port,
        }
    )
    b_instance = b.events("delivery_started")[0]["instance"]
    users = await create_users(db, NOTIFICATIONS, phone=False)
    ids = await enqueue(db, users, ["email"], "partition")

    async def b_sending_steadily() -> bool:
        times = smtp_b.received_at
        return bool(times) and time.monotonic() - times[0] >= RATE_WINDOW

    await wait_until(b_sending_steadily, deadline=60, interval=0.005, what="B sending for a while")
    # Nothing below yields until the pause: the SMTP server's counts are B's at its start.
    paused_at = time.monotonic()
    received_before = len(smtp_b.received)
    in_transaction = smtp_b.in_transaction
    rate = sum(1 for t in smtp_b.received_at if t > paused_at - RATE_WINDOW) / RATE_WINDOW
    proxy.pause()
    # Delivered by B, but no success in the database: the write had not reached the server.
    delivered = set(notification_ids(smtp_b.received[:received_before]))
    recorded = {row["notification_id"] for row in await db.fetch(RECORDED, list(delivered))}
    unrecorded = len(delivered - recorded)
    held_by_b = await db.fetchval(HELD_BY, b_instance)
    in_flight = in_transaction + unrecorded
    allowed = in_flight + math.ceil(rate)  # in flight, plus one second of B's sending
    assert held_by_b > allowed, f"B held {held_by_b}: too little left to tell anything"

    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:

        async def b_unready() -> bool:
            return await status_of(session, f"{b.base_url}/readyz") == 503

        # Bounded so that a probe started at the deadline still ends within the partition.
        await wait_until(b_unready, deadline=PARTITION_S / 2, interval=0.1, what="B's 503")
        unready_after_s = time.monotonic() - paused_at
        # The scenario's length, not a wait for something to happen.
        await asyncio.sleep(max(0.0, paused_at + PARTITION_S - time.monotonic()))
        proxy.resume()
        resumed_at = time.monotonic()
        sent_during = [t - paused_at for t in smtp_b.received_at[received_before:]]

        await wait_all_terminal(db, ids, deadline=60, what="every notification")

        async def b_settled() -> bool:
            # Duplicates are counted once B can send nothing more: it holds nothing.
            if b.returncode is not None:
                return True
            return smtp_b.in_transaction == 0 and await held_in_memory(session, b) == 0

        await wait_until(b_settled, deadline=30, interval=0.1, what="B to hold nothing")
        settled_s = time.monotonic() - resumed_at

    final = await statuses(db, ids)
    mails = mails_per_notification(smtp) + mails_per_notification(smtp_b)
    repeated = duplicates(mails)
    print(
        f"FAULT silent_partition: sent={final['sent']} duplicates={repeated}"
        f" allowed={allowed} in_flight_at_pause={in_flight}"
        f" (in_smtp_transaction={in_transaction} delivered_unrecorded={unrecorded})"
        f" b_rate_per_s={rate:.1f} b_held_at_pause={held_by_b}"
        f" b_sent_during_partition={len(sent_during)}"
        f" b_kept_sending_s={max(sent_during, default=0.0):.1f}"
        f" b_sent_after_resume={len(smtp_b.received) - received_before - len(sent_during)}"
        f" a_sent={len(smtp.received)} b_sent={len(smtp_b.received)}"
        f" b_503_after_s={unready_after_s:.1f} b_settled_after_resume_s={settled_s:.1f}"
        f" b_connections_through_proxy={proxy.connections} partition_s={PARTITION_S:g}"
    )
    assert a.returncode is None, "A must not be disturbed by its peer's partition"
    assert final["sent"] == NOTIFICATIONS, dict(final)
    assert set(mails) == set(ids), "every notification delivered at least once"
    assert repeated <= allowed, (
        f"{repeated} e-mails sent twice after a {PARTITION_S:g} s partition; at most"
        f" {allowed} may be: {in_flight} in flight at its start ({in_transaction} in an SMTP"
        f" transaction, {unrecorded} delivered but not written) plus one second of B's"
        f" sending ({rate:.1f}/s). B sent {len(sent_during)} during the partition, the last"
        f" {max(sent_during, default=0.0):.1f} s into it."
    )
    await check_sent_have_one_success(db, ids)
