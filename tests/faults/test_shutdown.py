"""SIGTERM in the middle of deliveries: a clean exit in time, the rest released, no repeats."""

from __future__ import annotations

import signal
import time

import asyncpg
import pytest

from tests.faults.harness import (
    Launcher,
    ObservedSmtpServer,
    check_duplicates_came_from,
    check_sent_have_one_success,
    create_users,
    duplicates,
    enqueue,
    mails_per_notification,
    snapshot_after_death,
    statuses,
    wait_all_terminal,
)
from tests.support import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.acceptance, pytest.mark.timeout(180)]

NOTIFICATIONS = 40
CONCURRENCY = 5
GRACE = 3.0
EXIT_MARGIN = 10.0  # generous: the machine may be busy with other work


async def test_sigterm_finishes_running_attempts_releases_the_rest_and_sends_each_once(
    launcher: Launcher, db: asyncpg.Connection, smtp: ObservedSmtpServer
) -> None:
    smtp.mode = "slow"
    smtp.delay = 0.5  # well inside the grace period: running attempts can finish
    settings = {"channels.email.concurrency": CONCURRENCY, "shutdown.grace_seconds": GRACE}
    first = await launcher.start(settings)
    users = await create_users(db, NOTIFICATIONS)
    ids = await enqueue(db, users, ["email"], "sigterm")

    async def mid_delivery() -> bool:
        return len(smtp.received) >= NOTIFICATIONS // 4 and smtp.in_data >= CONCURRENCY - 2

    await wait_until(mid_delivery, deadline=60, interval=0.005, what="deliveries in flight")
    in_data_at_term = smtp.in_data
    signalled = time.monotonic()
    await first.process.signal(signal.SIGTERM)
    code = await first.process.wait(deadline=GRACE + EXIT_MARGIN)
    exit_s = time.monotonic() - signalled
    received_by_exit = len(smtp.received)

    assert code == 0, first.process.tail()
    events = first.process.events()
    names = [event["event"] for event in events]
    assert names[-1] == "notifyd_stopped", first.process.tail()
    assert "shutdown_grace_expired" not in names
    (released,) = first.events("released_unfinished")
    assert released["count"] >= 1
    after_exit = await statuses(db, ids)
    # A clean stop leaves nothing leased: the rest is pending for the next instance.
    assert after_exit["processing"] == 0, dict(after_exit)
    assert after_exit["pending"] >= 1, dict(after_exit)
    # Whatever was inside an SMTP transaction at SIGTERM finished and was recorded.
    assert after_exit["sent"] == received_by_exit, (dict(after_exit), received_by_exit)

    restarted = time.monotonic()
    await launcher.start(settings)
    await wait_all_terminal(db, ids, deadline=60, what="the rest after the restart")
    recovery = time.monotonic() - restarted

    final = await statuses(db, ids)
    log = await check_sent_have_one_success(db, ids)
    mails = mails_per_notification(smtp)
    print(
        f"FAULT sigterm: sent={final['sent']} failed={final['failed']}"
        f" duplicates={duplicates(mails)} in_data_at_term={in_data_at_term}"
        f" sent_before_exit={after_exit['sent']} released={released['count']}"
        f" exit_s={exit_s:.2f} grace_s={GRACE:g} failed_attempts={log.total_failures()}"
        f" recovery_s={recovery:.1f}"
    )
    assert final["sent"] == NOTIFICATIONS, dict(final)
    assert mails == dict.fromkeys(ids, 1), "each notification's e-mail exactly once"


async def test_a_second_signal_during_the_grace_period_exits_at_once(
    launcher: Launcher, db: asyncpg.Connection, smtp: ObservedSmtpServer
) -> None:
    smtp.mode = "slow"
    smtp.delay = 30.0  # the attempts would outlast the grace period
    grace = 60.0
    settings = {
        "channels.email.concurrency": 4,
        "channels.email.timeout": 120,
        "shutdown.grace_seconds": grace,
    }
    first = await launcher.start(settings)
    users = await create_users(db, 10)
    ids = await enqueue(db, users, ["email"], "second-signal")

    async def all_actors_waiting() -> bool:
        return smtp.in_data >= 4

    await wait_until(all_actors_waiting, deadline=30, what="four SMTP sessions in DATA")
    in_flight = smtp.open_connections
    await first.process.signal(signal.SIGTERM)
    await first.process.wait_for_event("shutdown_requested", deadline=10)
    forced = time.monotonic()
    await first.process.signal(signal.SIGINT)
    code = await first.process.wait(deadline=EXIT_MARGIN)
    exit_s = time.monotonic() - forced

    assert code != 0, "a forced stop must not look like a clean one"
    assert first.events("shutdown_forced"), first.process.tail()
    assert "notifyd_stopped" not in {event["event"] for event in first.process.events()}
    left_behind = await snapshot_after_death(db, smtp, ids)

    smtp.mode = "accept"
    restarted = time.monotonic()
    await launcher.start(settings)
    await wait_all_terminal(db, ids, deadline=30 + 30, what="the rest after a forced stop")
    recovery = time.monotonic() - restarted
    final = await statuses(db, ids)
    await check_sent_have_one_success(db, ids)
    mails = mails_per_notification(smtp)
    print(
        f"FAULT second_signal: exit_code={code} exit_s={exit_s:.2f} grace_s={grace:g}"
        f" sent={final['sent']} failed={final['failed']} duplicates={duplicates(mails)}"
        f" in_flight_at_exit={in_flight} accepted_unrecorded={len(left_behind.unrecorded)}"
        f" recovery_s={recovery:.1f}"
    )
    assert final["sent"] == len(ids), dict(final)
    assert set(mails) == set(ids)
    check_duplicates_came_from(mails, left_behind)


async def test_sigterm_with_attempts_outlasting_the_grace_period_still_exits_in_time(
    launcher: Launcher, db: asyncpg.Connection, smtp: ObservedSmtpServer
) -> None:
    smtp.mode = "slow"
    smtp.delay = 30.0  # the sessions under way cannot finish within the grace period
    grace = 2.0
    settings = {
        "channels.email.concurrency": 4,
        "channels.email.timeout": 60,
        "shutdown.grace_seconds": grace,
    }
    first = await launcher.start(settings)
    users = await create_users(db, 12)
    ids = await enqueue(db, users, ["email"], "grace-expired")

    async def all_actors_waiting() -> bool:
        return smtp.in_data >= 4

    await wait_until(all_actors_waiting, deadline=30, what="four SMTP sessions in DATA")
    in_flight = smtp.open_connections
    signalled = time.monotonic()
    await first.process.signal(signal.SIGTERM)
    code = await first.process.wait(deadline=grace + EXIT_MARGIN)
    exit_s = time.monotonic() - signalled
    assert code == 0, first.process.tail()
    assert first.events("shutdown_grace_expired"), first.process.tail()
    (released,) = first.events("released_unfinished")
    after_exit = await statuses(db, ids)
    # The attempts cut short are released too: nothing waits for a lease to run out.
    assert after_exit == {"pending": len(ids)}, dict(after_exit)
    left_behind = await snapshot_after_death(db, smtp, ids)

    smtp.mode = "accept"
    restarted = time.monotonic()
    await launcher.start(settings)
    await wait_all_terminal(db, ids, deadline=60, what="everything after the restart")
    recovery = time.monotonic() - restarted
    final = await statuses(db, ids)
    await check_sent_have_one_success(db, ids)
    mails = mails_per_notification(smtp)
    print(
        f"FAULT sigterm_grace_expired: exit_code={code} exit_s={exit_s:.2f} grace_s={grace:g}"
        f" released={released['count']} sent={final['sent']} failed={final['failed']}"
        f" duplicates={duplicates(mails)} in_flight_at_term={in_flight}"
        f" accepted_unrecorded={len(left_behind.unrecorded)} recovery_s={recovery:.1f}"
    )
    assert final["sent"] == len(ids), dict(final)
    assert set(mails) == set(ids)
    check_duplicates_came_from(mails, left_behind)
