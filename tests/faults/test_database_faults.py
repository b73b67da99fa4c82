"""PostgreSQL going away under a running daemon: the whole server, or one connection."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.faults.harness import (
    Instance,
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

pytestmark = [pytest.mark.faults, pytest.mark.acceptance, pytest.mark.timeout(240)]

CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=20)  # a hang fails the test, not the run
KILL_DAEMON_SESSIONS = """
    SELECT pid, pg_terminate_backend(pid) AS killed FROM pg_stat_activity
    WHERE application_name IN ('notifyd', 'notifyd-listener') AND datname = current_database()
"""
KILL_LISTENER = """
    SELECT pid, pg_terminate_backend(pid) AS killed FROM pg_stat_activity
    WHERE application_name = 'notifyd-listener' AND datname = current_database()
"""


async def post_notify(
    session: aiohttp.ClientSession, instance: Instance, body: dict[str, Any]
) -> tuple[int, str, dict[str, Any], dict[str, str]]:
    async with session.post(f"{instance.base_url}/api/notify/", json=body) as response:
        data: dict[str, Any] = await response.json(content_type=None)
        return response.status, response.content_type, data, dict(response.headers)


@pytest.mark.parametrize("stop_mode", ["fast", "immediate"])
async def test_postgres_stopped_and_started_under_load(
    own_launcher: Launcher,
    own_postgres: StoppablePostgres,
    smtp: ObservedSmtpServer,
    stop_mode: str,
) -> None:
    notifications = 80
    concurrency = 5
    smtp.mode = "slow"
    smtp.delay = 0.3
    daemon = await own_launcher.start(
        {
            "channels.email.concurrency": concurrency,
            "database.connect_timeout": 2,
            "database.command_timeout": 5,
            "delivery.backoff_initial": 0.1,
            "delivery.backoff_max": 1,
        }
    )
    url = own_postgres.url("notifyd")
    db = await asyncpg.connect(url)
    try:
        users = await create_users(db, notifications)
        ids = await enqueue(db, users, ["email"], "pg-outage")
    finally:
        await db.close()

    async def under_load() -> bool:
        return len(smtp.received) >= 15 and smtp.in_data >= 2

    await wait_until(under_load, deadline=60, interval=0.005, what="deliveries under way")
    in_flight_at_stop = smtp.open_connections
    in_data_at_stop = smtp.in_data
    received_at_stop = len(smtp.received)
    stopped = time.monotonic()
    await asyncio.to_thread(own_postgres.stop, stop_mode)

    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
        # While the database is down the API says so, quickly and in its error format.
        answers = []
        for n in range(3):
            body = {"user_id": users[0], "message": f"while down {n}", "channels": ["sms"]}
            started = time.monotonic()
            answers.append((*await post_notify(session, daemon, body), time.monotonic() - started))
        async with session.get(f"{daemon.base_url}/healthz") as response:
            health = response.status
        await daemon.wait_for_events("listener_connect_failed", count=6, deadline=30)

        async def sent_while_down() -> bool:
            # The sessions in DATA at the stop end accepted, with nowhere to record that.
            return len(smtp.received) >= received_at_stop + in_data_at_stop

        await wait_until(sent_while_down, deadline=30, what="the SMTP sessions to finish")
        assert daemon.returncode is None, "the daemon must ride out the outage"
        down_s = time.monotonic() - stopped
        received_while_down = len(smtp.received) - received_at_stop

        await asyncio.to_thread(own_postgres.start)
        restarted = time.monotonic()
        # Rows inserted right after the restart, by SQL: NOTIFY, the listener's reconnect
        # or the poll must pick them up.
        db = await asyncpg.connect(url)
        try:
            late_ids = await enqueue(db, users[:10], ["sms"], "after-restart")

            async def api_back() -> int | None:
                body = {"user_id": users[1], "message": "after restart", "channels": ["sms"]}
                status, *_ = await post_notify(session, daemon, body)
                return status if status == 200 else None

            await wait_until(api_back, deadline=30, interval=0.2, what="the API to recover")
            api_back_s = time.monotonic() - restarted
            all_ids = ids + late_ids
            await wait_all_terminal(db, all_ids, deadline=90, what="all after the restart")
            recovery = time.monotonic() - restarted
            final = await statuses(db, all_ids)
            log = await check_sent_have_one_success(db, all_ids)
        finally:
            await db.close()

    mails = mails_per_notification(smtp)
    codes = [status for status, *_ in answers]
    slowest = max(seconds for *_, seconds in answers)
    print(
        f"FAULT pg_restart[{stop_mode}]: sent={final['sent']} failed={final['failed']}"
        f" duplicates={duplicates(mails)} in_flight_at_stop={in_flight_at_stop}"
        f" received_while_down={received_while_down} down_s={down_s:.1f}"
        f" api_while_down={codes} slowest_503_s={slowest:.2f} healthz_while_down={health}"
        f" api_back_s={api_back_s:.1f} recovery_s={recovery:.1f}"
        f" failed_attempts={log.total_failures()}"
    )
    for status, content_type, data, headers, _ in answers:
        assert status == 503, (status, data)
        assert content_type == "application/problem+json"
        assert data["status"] == 503
        assert "Retry-After" in headers
    assert health == 200
    assert daemon.returncode is None
    assert final["sent"] == len(all_ids), dict(final)
    assert set(mails) == set(ids)
    # The outage is far shorter than a lease: every attempt made meanwhile is recorded
    # once the database is back, and none is made twice.
    assert duplicates(mails) == 0


async def test_listener_connection_killed_by_the_server_is_replaced(
    launcher: Launcher, db: asyncpg.Connection
) -> None:
    # With a poll this long, only NOTIFY or the wake-up after a reconnect can deliver in time.
    poll_interval = 60.0
    daemon = await launcher.start({"dispatcher.poll_interval": poll_interval})
    users = await create_users(db, 4, email=False)
    # A first delivery proves the daemon is past its start-up claim.
    first = await enqueue(db, users[:1], ["sms"], "before")
    await wait_all_terminal(db, first, deadline=20, what="the first notification")

    rounds = []
    for round_number in (1, 2):
        connected = len(daemon.events("listener_connected"))
        old_pid = daemon.events("listener_connected")[-1]["backend_pid"]
        killed = await db.fetch(KILL_LISTENER)
        assert [(row["pid"], row["killed"]) for row in killed] == [(old_pid, True)]
        started = time.monotonic()
        # One inserted while the listener is (probably) away, one after it is back.
        during = await enqueue(db, users[1:2], ["sms"], f"during-{round_number}")
        await daemon.wait_for_events("listener_lost", count=round_number, deadline=30)
        events = await daemon.wait_for_events("listener_connected", connected + 1, deadline=30)
        reconnect_s = time.monotonic() - started
        new_pid = events[-1]["backend_pid"]
        after = await enqueue(db, users[2:3], ["sms"], f"after-{round_number}")
        await wait_all_terminal(db, during + after, deadline=poll_interval / 3, what="delivery")
        delivered_s = time.monotonic() - started
        assert await statuses(db, during + after) == {"sent": 2}
        listeners = await db.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE application_name = 'notifyd-listener' AND datname = current_database()"
        )
        assert [row["pid"] for row in listeners] == [new_pid]
        assert new_pid != old_pid
        rounds.append(f"reconnect_s={reconnect_s:.2f} delivered_s={delivered_s:.2f}")
    reasons = [event["reason"] for event in daemon.events("listener_lost")]
    print(f"FAULT listener_killed: rounds=[{'; '.join(rounds)}] reasons={reasons}")
    assert daemon.returncode is None


async def test_a_database_refusing_new_connections_does_not_stop_the_daemon(
    launcher: Launcher, db: asyncpg.Connection, pg_server_url: str
) -> None:
    """`ALTER DATABASE ... ALLOW_CONNECTIONS false` (maintenance) with connections to renew.

    PostgreSQL refuses a new session with "database ... is not currently accepting
    connections" (SQLSTATE 55000). To the daemon that is the database being unavailable,
    like a refused TCP connection: the API answers 503 and the listener keeps retrying,
    rather than a 500 and a crashed task taking the daemon down.
    """
    daemon = await launcher.start({"dispatcher.poll_interval": 60})
    users = await create_users(db, 2, email=False)
    name = await db.fetchval("SELECT current_database()")
    admin = await asyncpg.connect(pg_server_url)  # a session cannot lock out its own database
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            # The daemon's open sessions end (as at a failover): it has to connect anew.
            killed = await db.fetch(KILL_DAEMON_SESSIONS)
            assert len(killed) >= 2, killed
            async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
                body = {"user_id": users[0], "message": "while refused", "channels": ["sms"]}
                status, _, problem, _ = await post_notify(session, daemon, body)
            await daemon.wait_for_events("listener_lost", deadline=30)
            await daemon.wait_for_events("listener_connect_failed", count=2, deadline=30)
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        crashed = [(event["task"], event["error_type"]) for event in daemon.events("task_crashed")]
        print(
            f"FAULT connections_refused: api_status={locals().get('status')}"
            f" daemon_exit={daemon.returncode} crashed={crashed}"
            f" connect_failures={len(daemon.events('listener_connect_failed'))}"
        )
        await admin.close()
    assert status == 503, problem
    await daemon.wait_for_events("listener_connected", count=2, deadline=30)
    ids = await enqueue(db, users, ["sms"], "after-maintenance")
    await wait_all_terminal(db, ids, deadline=20, what="delivery after the maintenance")
    assert daemon.returncode is None


async def test_an_outage_longer_than_the_lease_repeats_at_most_the_attempts_under_way(
    own_launcher: Launcher, own_postgres: StoppablePostgres, smtp: ObservedSmtpServer
) -> None:
    """Attempts that cannot be written are given up with their lease, and made again.

    Only the attempts under way when the database went away can be repeated: an instance
    that cannot write down what it delivers must not go on delivering its whole backlog,
    or every message sent during the outage goes out twice.
    """
    notifications = 150
    concurrency = 5
    lease = 2.0
    smtp.mode = "slow"
    smtp.delay = 0.05
    daemon = await own_launcher.start(
        {
            "channels.email.concurrency": concurrency,
            "delivery.lease_seconds": lease,
            "database.connect_timeout": 1,
            "database.command_timeout": 2,
        }
    )
    url = own_postgres.url("notifyd")
    db = await asyncpg.connect(url)
    try:
        users = await create_users(db, notifications)
        ids = await enqueue(db, users, ["email"], "long-outage")
    finally:
        await db.close()

    async def under_way() -> bool:
        return len(smtp.received) >= 10 and smtp.in_data >= 2

    await wait_until(under_way, deadline=60, interval=0.005, what="deliveries under way")
    sessions_at_stop = smtp.open_connections
    received_at_stop = len(smtp.received)
    await asyncio.to_thread(own_postgres.stop, "fast")
    # Down until the daemon gives up writing: its leases have lapsed by then.
    await daemon.wait_for_events("attempt_not_recorded", deadline=60)
    received_while_down = len(smtp.received) - received_at_stop
    await asyncio.to_thread(own_postgres.start)

    db = await asyncpg.connect(url)
    try:
        await wait_all_terminal(db, ids, deadline=120, what="all after the long outage")
        final = await statuses(db, ids)
        await check_sent_have_one_success(db, ids)
    finally:
        await db.close()
    mails = mails_per_notification(smtp)
    print(
        f"FAULT pg_outage_beyond_lease: sent={final['sent']} failed={final['failed']}"
        f" duplicates={duplicates(mails)} sessions_at_stop={sessions_at_stop}"
        f" received_while_down={received_while_down}"
        f" not_recorded={len(daemon.events('attempt_not_recorded'))} lease_s={lease:g}"
    )
    assert final["sent"] == notifications, dict(final)
    assert set(mails) == set(ids)
    # The sessions under way, and at most one attempt per actor begun before the first
    # failed write told the daemon the database was gone.
    assert duplicates(mails) <= 2 * concurrency
