"""kill -9 in the middle of deliveries: nothing is lost, duplicates stay bounded."""

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

NOTIFICATIONS = 60
CONCURRENCY = 8
SMTP_DELAY = 0.4
DEFAULT_LEASE = 30.0  # delivery.lease_seconds is left at its default on purpose


@pytest.mark.parametrize(
    "moment",
    [
        # Sessions are waiting for the server's answer to DATA.
        "mid_data",
        # The server has just kept a message and not yet answered 250: the daemon cannot
        # know it was delivered. The worst moment.
        "just_accepted",
    ],
)
async def test_kill_9_mid_delivery_loses_nothing_and_duplicates_at_most_what_was_in_flight(
    routed_launcher: Launcher, db: asyncpg.Connection, smtp: ObservedSmtpServer, moment: str
) -> None:
    launcher = routed_launcher
    smtp.mode = "slow"
    smtp.delay = SMTP_DELAY
    settings = {
        "channels.email.concurrency": CONCURRENCY,
        "delivery.backoff_initial": 0.1,
        "delivery.backoff_max": 0.5,
        "shutdown.grace_seconds": 2,
    }
    first = await launcher.start(settings)
    users = await create_users(db, NOTIFICATIONS)
    ids = await enqueue(db, users, ["email"], f"kill9-{moment}")

    kill_at = NOTIFICATIONS // 4
    seen: dict[str, int] = {}

    def snapshot() -> None:
        seen.update(
            in_flight=smtp.open_connections, in_data=smtp.in_data, received=len(smtp.received)
        )

    if moment == "mid_data":

        async def kill_point() -> bool:
            return len(smtp.received) >= kill_at and smtp.in_data >= CONCURRENCY // 2

        await wait_until(kill_point, deadline=60, interval=0.005, what="sessions in DATA")
        snapshot()
        first.process.process.send_signal(signal.SIGKILL)
    else:

        def kill_on_accept(count: int) -> None:
            if count == kill_at:
                snapshot()
                first.process.process.send_signal(signal.SIGKILL)

        smtp.on_stored = kill_on_accept
    assert await first.process.wait(deadline=60) == -signal.SIGKILL
    smtp.on_stored = None
    left_behind = await snapshot_after_death(db, smtp, ids)
    left = await statuses(db, ids)
    assert left["processing"] > 0, f"the kill came too late to test anything: {dict(left)}"

    restarted = time.monotonic()
    await launcher.start(settings)
    await wait_all_terminal(
        db, ids, deadline=DEFAULT_LEASE + 60, what="every notification after the restart"
    )
    recovery = time.monotonic() - restarted  # from the restart on, startup included

    final = await statuses(db, ids)
    log = await check_sent_have_one_success(db, ids)
    mails = mails_per_notification(smtp)
    dupes = duplicates(mails)
    print(
        f"FAULT kill9[{moment}]: sent={final['sent']} failed={final['failed']}"
        f" duplicates={dupes} sessions_at_kill={seen['in_flight']}"
        f" accepted_unrecorded={len(left_behind.unrecorded)}"
        f" in_data_at_kill={seen['in_data']} received_at_kill={seen['received']}"
        f" processing_at_kill={left['processing']} failed_attempts={log.total_failures()}"
        f" recovery_s={recovery:.1f} lease_s={DEFAULT_LEASE:g}"
    )
    assert final["sent"] == NOTIFICATIONS, dict(final)
    # Every notification reached the server; a second time only if the dead process had
    # handed it to the server without recording that, which an SMTP session still open
    # or an attempt not yet written at the kill explains.
    assert set(mails) == set(ids)
    assert check_duplicates_came_from(mails, left_behind) == dupes
