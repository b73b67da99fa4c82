"""Two `notifyd serve` instances on one database: each notification delivered exactly once."""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import UTC, datetime

import asyncpg
import pytest

from tests.faults.harness import (
    Launcher,
    ObservedSmtpServer,
    check_sent_have_one_success,
    create_users,
    duplicates,
    enqueue,
    mails_per_notification,
    statuses,
    wait_all_terminal,
)
from tests.faults.postgres import StoppablePostgres
from tests.support import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.acceptance, pytest.mark.timeout(180)]

# Small claims, so that neither instance can take the whole backlog in one go.
SHARED = {
    "dispatcher.batch_size": 10,
    "dispatcher.max_in_flight": 20,
    "channels.email.concurrency": 5,
    "channels.sms.concurrency": 5,
}


async def test_two_instances_deliver_each_notification_exactly_once(
    routed_launcher: Launcher, db: asyncpg.Connection, smtp: ObservedSmtpServer
) -> None:
    launcher = routed_launcher
    emails, texts = 150, 150
    smtp.mode = "slow"
    smtp.delay = 0.02
    first = await launcher.start(SHARED)
    second = await launcher.start(SHARED)
    users = await create_users(db, emails + texts)
    # Interleaved in several transactions, as several applications would enqueue.
    ids: list[int] = []
    for start in range(0, emails + texts, 50):
        chunk = users[start : start + 50]
        ids += await enqueue(db, chunk[:25], ["email"], f"two-email-{start}")
        ids += await enqueue(db, chunk[25:], ["sms"], f"two-sms-{start}")
    await wait_all_terminal(db, ids, deadline=120, what="every notification")

    final = await statuses(db, ids)
    log = await check_sent_have_one_success(db, ids)
    mails = mails_per_notification(smtp)
    per_instance = [
        Counter(event["channel"] for event in instance.events("notification_sent"))
        for instance in (first, second)
    ]
    sms_sent = Counter(
        event["notification_id"]
        for instance in (first, second)
        for event in instance.events("sms_stub_sent")
    )
    email_ids = set(mails)
    print(
        f"FAULT two_instances: sent={final['sent']} failed={final['failed']}"
        f" duplicates={duplicates(mails)} sms_duplicates={duplicates(sms_sent)}"
        f" first={dict(per_instance[0])} second={dict(per_instance[1])}"
        f" attempts={len(log.rows)} failed_attempts={log.total_failures()}"
    )
    assert final["sent"] == emails + texts, dict(final)
    assert len(log.rows) == emails + texts, "exactly one attempt each, all successful"
    assert len(email_ids) == emails
    assert set(mails.values()) == {1}, "each e-mail exactly once"
    assert len(sms_sent) == texts
    assert set(sms_sent.values()) == {1}, "each text exactly once"
    assert all(sum(counts.values()) > 0 for counts in per_instance), "both did work"
    assert sum(sum(counts.values()) for counts in per_instance) == emails + texts


async def test_a_peer_takes_over_the_work_of_a_killed_instance_without_a_restart(
    routed_launcher: Launcher, db: asyncpg.Connection, smtp: ObservedSmtpServer
) -> None:
    launcher = routed_launcher
    notifications = 40
    smtp.mode = "slow"
    smtp.delay = 0.3
    settings = {**SHARED, "channels.email.concurrency": 4}  # default 30 s lease
    a = await launcher.start(settings)
    b = await launcher.start(settings)
    users = await create_users(db, notifications)
    ids = await enqueue(db, users, ["email"], "peer-takeover")

    async def both_sending() -> bool:
        return (
            len(a.events("notification_sent")) >= 2
            and len(b.events("notification_sent")) >= 2
            and smtp.in_data >= 4
        )

    await wait_until(both_sending, deadline=60, interval=0.005, what="both instances sending")
    in_flight = smtp.open_connections
    a_instance = a.events("delivery_started")[0]["instance"]
    held_by_a = await db.fetchval(
        "SELECT count(*) FROM notifyd.notifications"
        " WHERE status = 'processing' AND locked_by = $1::uuid",
        a_instance,
    )
    killed = time.monotonic()
    killed_at = datetime.now(UTC)
    a.process.process.send_signal(signal.SIGKILL)
    await a.process.wait(deadline=10)
    await wait_all_terminal(db, ids, deadline=30 + 30, what="B finishing A's work")
    takeover_s = time.monotonic() - killed

    final = await statuses(db, ids)
    await check_sent_have_one_success(db, ids)
    mails = mails_per_notification(smtp)
    taken = b.events("orphaned_leases_requeued") + b.events("expired_leases_requeued")
    first_taken_s = min(
        (datetime.fromisoformat(event["timestamp"]) - killed_at).total_seconds() for event in taken
    )
    print(
        f"FAULT peer_takeover: sent={final['sent']} failed={final['failed']}"
        f" duplicates={duplicates(mails)} in_flight_at_kill={in_flight}"
        f" held_by_killed={held_by_a} taken_over={sum(event['count'] for event in taken)}"
        f" taken_after_s={first_taken_s:.1f} all_done_after_kill_s={takeover_s:.1f} lease_s=30"
    )
    assert held_by_a > 0, "the kill came too late to test anything"
    assert final["sent"] == notifications, dict(final)
    assert set(mails) == set(ids)
    assert duplicates(mails) <= in_flight


async def test_a_live_instance_that_loses_its_session_connection_is_not_duplicated(
    own_launcher: Launcher, own_postgres: StoppablePostgres, smtp: ObservedSmtpServer
) -> None:
    """The presence lock lives on the LISTEN connection, not on the process.

    Instance A keeps delivering what it holds while its session connection is gone and
    cannot come back at once: here its role is at its connection limit (the pools keep
    their open connections), as when max_connections is reached. A peer that takes A's
    leases over as "orphaned" then sends the same messages again, although A never
    stopped.
    """
    notifications = 5  # all of them in A's SMTP sessions at once
    smtp.mode = "slow"
    smtp.delay = 2.0
    settings = {
        "delivery.lease_seconds": 3,  # the peer looks for orphans every second
        "database.pool_min_size": 10,  # every pool connection open before the fault
        "database.pool_max_size": 10,
        "channels.email.concurrency": notifications,
        "channels.email.timeout": 30,
    }
    a = await own_launcher.start(settings)
    db = await asyncpg.connect(own_postgres.url("notifyd"))  # a superuser: no limit
    try:
        users = await create_users(db, notifications)
        ids = await enqueue(db, users, ["email"], "session-lost")

        async def a_busy() -> bool:
            return smtp.in_data >= notifications

        await wait_until(a_busy, deadline=30, what="A to be sending")
        b = await own_launcher.start(settings)
        a_pid = a.events("listener_connected")[-1]["backend_pid"]
        # Open connections stay; a new one gets "too many connections for role".
        await db.execute("ALTER ROLE notifyd CONNECTION LIMIT 0")
        assert await db.fetchval("SELECT pg_terminate_backend($1)", a_pid)
        await a.wait_for_events("listener_connect_failed", deadline=15)
        try:
            # B looks every second: ten chances to take A's work while A is still alive.
            await b.wait_for_events("orphaned_leases_requeued", deadline=10)
            taken_over = True
        except AssertionError:
            taken_over = False
        await db.execute("ALTER ROLE notifyd CONNECTION LIMIT -1")
        smtp.delay = 0.01  # for what comes next; the sessions under way keep their 2 s
        await wait_all_terminal(db, ids, deadline=60, what="every notification")
        # A's attempts were under way at the fault: count the mail only once they ended.
        await a.wait_for_events("attempt_finished", count=notifications, deadline=30)
        assert a.returncode is None
        final = await statuses(db, ids)
        await check_sent_have_one_success(db, ids)
    finally:
        await db.close()

    mails = mails_per_notification(smtp)
    print(
        f"FAULT session_lost_with_peer: sent={final['sent']} failed={final['failed']}"
        f" duplicates={duplicates(mails)} taken_over_by_peer={taken_over}"
        f" a_lease_lost={len(a.events('lease_lost'))}"
    )
    assert final["sent"] == notifications, dict(final)
    assert duplicates(mails) == 0, f"A was alive, yet {duplicates(mails)} e-mails went twice"
