"""A pooler that misbehaves under a running daemon: restarted mid-run, dropping connections.

The daemon reaches the database through a PgBouncer of the test's own, in transaction
mode, with its LISTEN session on the server itself (`database.listen_url`), as in
production. What was delivered is read from the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from notifyd.web.keys import FATAL
from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.telegram import FakeTelegramApi
from tests.faults.harness import check_sent_have_one_success, create_users, enqueue, statuses
from tests.pgbouncer import PgBouncer
from tests.support import Daemon, start_daemon, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

PgBouncerFactory = Callable[..., PgBouncer]


async def ready(daemon: Daemon) -> bool:
    response = await daemon.client.get("/readyz")
    return response.status == 200


async def test_pgbouncer_killed_and_restarted_mid_run_loses_nothing(
    database_url: str,
    own_pgbouncer: PgBouncerFactory,
    smtp_server: FakeSmtpServer,
    telegram_api: FakeTelegramApi,
    db: asyncpg.Connection,
) -> None:
    bouncer = own_pgbouncer("transaction")
    daemon = await start_daemon(
        bouncer.url_for(database_url),
        smtp_server,
        telegram_api,
        database={"listen_url": database_url},
        dispatcher={"batch_size": 20},
    )
    try:
        await wait_until(lambda: ready(daemon), deadline=20, what="/readyz")
        users = await create_users(db, 400, email=False)
        ids = await enqueue(db, users, ["sms"], "bouncer-restart")

        async def some_sent() -> bool:
            return (await statuses(db, ids))["sent"] >= 40

        await wait_until(some_sent, deadline=30, what="deliveries under way")
        bouncer.restart()  # SIGKILL: every client and server connection cut at once

        async def all_sent() -> bool:
            return (await statuses(db, ids))["sent"] == len(ids)

        await wait_until(all_sent, deadline=60, what="every notification after the restart")
        await check_sent_have_one_success(db, ids)
        await wait_until(lambda: ready(daemon), deadline=20, what="/readyz after the restart")
        assert not daemon.app[FATAL].is_set(), "no task died of it"
    finally:
        await daemon.close()


async def test_a_pooler_that_drops_idle_client_connections_costs_no_request(
    database_url: str,
    own_pgbouncer: PgBouncerFactory,
    smtp_server: FakeSmtpServer,
    telegram_api: FakeTelegramApi,
    db: asyncpg.Connection,
) -> None:
    """PgBouncer's client_idle_timeout closes pooled connections between statements."""
    bouncer = own_pgbouncer("transaction", client_idle_timeout=1)
    daemon = await start_daemon(
        bouncer.url_for(database_url),
        smtp_server,
        telegram_api,
        database={"listen_url": database_url, "pool_min_size": 3, "pool_max_size": 5},
    )
    try:
        await wait_until(lambda: ready(daemon), deadline=20, what="/readyz")
        user = await daemon.create_user(phone="+15551234567")
        sent: list[dict[str, Any]] = []
        for round_ in range(3):
            closed_before = bouncer.log().count("client_idle_timeout")

            async def dropped(before: int = closed_before) -> bool:
                return bouncer.log().count("client_idle_timeout") > before

            # The pooler closes the daemon's idle connections (an idle pool has some).
            await wait_until(dropped, deadline=20, what="the pooler to drop idle clients")
            response = await daemon.client.post(
                "/api/notify/", json={"user_id": user, "message": f"after drop {round_}"}
            )
            assert response.status == 200, await response.text()
            sent.append(await daemon.wait_finished((await response.json())["id"], deadline=20))
        assert [item["status"] for item in sent] == ["sent"] * 3
        assert await ready(daemon)
    finally:
        await daemon.close()
