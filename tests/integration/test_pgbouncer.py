"""notifyd behind a real PgBouncer, in transaction pooling mode and in session mode.

PgBouncer shares a few server connections between many clients (4 here), so whatever
notifyd left in a session (a prepared statement, a SET, LISTEN, an advisory lock) would
surface on another client's transaction: the tests run enough at once for that to happen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from notifyd.db import Database
from notifyd.db.listen import LISTEN_ELSEWHERE
from notifyd.db.migrations import migrate
from notifyd.delivery.listener import (
    LISTEN_URL_POOLED,
    NO_LISTEN_URL,
    POLL_ONLY,
)
from notifyd.errors import MigrationError
from tests.conftest import EmptyDatabase
from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.telegram import FakeTelegramApi
from tests.pgbouncer import PgBouncer, PoolMode
from tests.support import Daemon, start_daemon, wait_until

pytestmark = pytest.mark.timeout(120)

DaemonFactory = Callable[..., Awaitable[Daemon]]
# Advisory locks held in a database, whatever session holds them.
ADVISORY_LOCKS = """
    SELECT a.application_name, l.classid, l.objid
    FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)
    WHERE l.locktype = 'advisory' AND l.database = (
        SELECT oid FROM pg_database WHERE datname = current_database())
"""


@pytest.fixture
async def pooled_daemon(
    database_url: str,
    pgbouncer: PgBouncer,
    smtp_server: FakeSmtpServer,
    telegram_api: FakeTelegramApi,
) -> Callable[..., Awaitable[Daemon]]:
    """Start in-process daemons whose `database.url` is the transaction pooler."""
    started: list[Daemon] = []

    async def start(**overrides: Any) -> Daemon:
        daemon = await start_daemon(
            pgbouncer.url_for(database_url), smtp_server, telegram_api, **overrides
        )
        started.append(daemon)
        return daemon

    yield start  # type: ignore[misc]
    for daemon in reversed(started):
        await daemon.close()


async def readyz(daemon: Daemon) -> tuple[int, dict[str, Any]]:
    response = await daemon.client.get("/readyz")
    body: dict[str, Any] = await response.json()
    return response.status, body


async def wait_ready(daemon: Daemon) -> dict[str, Any]:
    async def ready() -> dict[str, Any] | None:
        status, body = await readyz(daemon)
        return body if status == 200 else None

    return await wait_until(ready, deadline=20, what="/readyz to answer 200")


async def enqueue_both_ways(daemon: Daemon, db: asyncpg.Connection) -> list[int]:
    """Notifications by the API and by SQL (through whatever `db` is connected to)."""
    user = await daemon.create_user(email="ivan@example.com", phone="+79001234567")
    ids = [(await daemon.notify(user_id=user, message=f"api {n}"))["id"] for n in range(20)]
    rows = await db.fetch(
        "SELECT notifyd.enqueue($1, 'sql ' || n, '', ARRAY['sms']) AS id"
        " FROM generate_series(1, 20) AS n",
        user,
    )
    ids += [row["id"] for row in rows]
    await db.execute(
        "INSERT INTO notifyd.notifications (user_id, message, channels) VALUES ($1, 'insert', $2)",
        user,
        ["email"],
    )
    ids.append(await db.fetchval("SELECT max(id) FROM notifyd.notifications"))
    return ids


async def wait_sent(db: asyncpg.Connection, ids: list[int], deadline: float = 30) -> None:
    async def all_sent() -> bool:
        count = await db.fetchval(
            "SELECT count(*) FROM notifyd.notifications WHERE id = ANY($1) AND status = 'sent'",
            ids,
        )
        return bool(count == len(ids))

    await wait_until(all_sent, deadline=deadline, what=f"{len(ids)} notifications sent")


# Detection and the statement cache


async def test_a_transaction_pooler_is_detected_and_a_direct_server_is_not(
    database_url: str, pgbouncer: PgBouncer
) -> None:
    pooled = await Database.connect(pgbouncer.url_for(database_url), min_size=1, max_size=2)
    direct = await Database.connect(database_url, min_size=1, max_size=2)
    try:
        assert (pooled.route.pooler, pooled.route.detected) == ("transaction", True)
        assert (direct.route.pooler, direct.route.detected) == ("none", True)
    finally:
        await pooled.close()
        await direct.close()


async def test_many_clients_share_few_server_connections_without_statement_errors(
    database_url: str, pgbouncer: PgBouncer
) -> None:
    """The statement that failed first: a prepared statement outliving its transaction.

    Each of 8 pools runs the same queries many times at once over 4 server connections:
    with asyncpg's statement cache on, that fails within a few rounds on `prepared
    statement "__asyncpg_stmt_..." does not exist` (or `already exists`).
    """
    url = pgbouncer.url_for(database_url)
    databases = [await Database.connect(url, min_size=2, max_size=2) for _ in range(8)]
    try:

        async def hammer(database: Database) -> None:
            for n in range(40):
                await database.pool.fetchval("SELECT $1::int + 1", n)
                await database.count_pending(5.0)
                async with database.pool.connection() as connection, connection.transaction():
                    await connection.fetchval("SELECT count(*) FROM notifyd.users WHERE id > $1", n)

        await asyncio.gather(*(hammer(database) for database in databases))
    finally:
        for database in databases:
            await database.close()


async def test_a_forced_session_setting_behind_a_transaction_pooler_is_what_breaks(
    database_url: str, pgbouncer: PgBouncer
) -> None:
    """The control for the test above: with the cache on (pooler = "none"), it fails."""
    url = pgbouncer.url_for(database_url)
    databases = [
        await Database.connect(url, min_size=2, max_size=2, pooler="none") for _ in range(8)
    ]
    try:

        async def hammer(database: Database) -> None:
            for n in range(40):
                await database.pool.fetchval("SELECT $1::int + 1", n)
                await database.count_pending(5.0)

        with pytest.raises(asyncpg.PostgresError, match="prepared statement"):
            await asyncio.gather(*(hammer(database) for database in databases))
    finally:
        for database in databases:
            await database.close()


# Migrations


async def test_migrations_through_a_transaction_pooler_apply_once_and_leave_no_lock(
    empty_database: EmptyDatabase, pgbouncer: PgBouncer
) -> None:
    direct_url = await empty_database()
    url = pgbouncer.url_for(direct_url)
    stores = [await Database.connect(url, min_size=1, max_size=1) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(store.pool) for store in stores))
    finally:
        for store in stores:
            await store.close()
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(set(applied)), "each migration applied once"
    direct = await asyncpg.connect(direct_url)
    try:
        assert await direct.fetch(ADVISORY_LOCKS) == []
        ledger = await direct.fetchval("SELECT count(*) FROM notifyd.schema_migrations")
        assert ledger == len(set(applied))
    finally:
        await direct.close()
    # And again through the pooler: nothing left to do, nothing stuck.
    again = await Database.connect(url, min_size=1, max_size=1)
    try:
        assert await migrate(again.pool) == []
    finally:
        await again.close()


async def test_statement_pooling_is_refused_by_the_migrations_with_the_poolers_words(
    empty_database: EmptyDatabase, own_pgbouncer: Callable[[PoolMode], PgBouncer]
) -> None:
    bouncer = own_pgbouncer("statement")
    store = await Database.connect(bouncer.url_for(await empty_database()), min_size=1)
    try:
        with pytest.raises(MigrationError, match="statement pooling"):
            await migrate(store.pool)
    finally:
        await store.close()


# The daemon


async def test_with_listen_url_it_listens_directly_and_delivers_through_the_pooler(
    pooled_daemon: DaemonFactory, database_url: str, db: asyncpg.Connection, pgbouncer: PgBouncer
) -> None:
    daemon = await pooled_daemon(database={"listen_url": database_url})
    body = await wait_ready(daemon)
    assert body["checks"] == {"database": "ok", "listener": "ok", "delivery": "ok"}
    pooled = await asyncpg.connect(pgbouncer.url_for(database_url), statement_cache_size=0)
    try:
        ids = await enqueue_both_ways(daemon, pooled)
    finally:
        await pooled.close()
    await wait_sent(db, ids)
    # The presence lock is held by the listener's own session, and by nothing else.
    locks = await db.fetch(ADVISORY_LOCKS)
    assert [row["application_name"] for row in locks] == ["notifyd-listener"]
    listening = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'notifyd-listener'"
    )
    assert listening == 1
    samples = await daemon.metrics()
    assert samples[("notifyd_listener_connected", ())] == 1


async def test_without_listen_url_it_says_so_runs_poll_only_and_readyz_tells(
    pooled_daemon: DaemonFactory, db: asyncpg.Connection
) -> None:
    with capture_logs() as logs:
        daemon = await pooled_daemon()
        body = await wait_ready(daemon)
    assert body["checks"]["listener"] == f"{POLL_ONLY}: {NO_LISTEN_URL}"
    warned = [entry for entry in logs if entry["event"] == "listener_disabled"]
    assert len(warned) == 1
    assert warned[0]["log_level"] == "warning"
    assert "NOTIFYD_DATABASE__LISTEN_URL" in warned[0]["hint"]
    ids = await enqueue_both_ways(daemon, db)
    await wait_sent(db, ids)
    assert await db.fetch(ADVISORY_LOCKS) == [], "no session lock taken through the pooler"
    samples = await daemon.metrics()
    assert samples[("notifyd_listener_connected", ())] == 0


async def test_a_listen_url_at_the_pooler_is_named_as_the_mistake_and_it_polls(
    pooled_daemon: DaemonFactory, database_url: str, db: asyncpg.Connection, pgbouncer: PgBouncer
) -> None:
    with capture_logs() as logs:
        daemon = await pooled_daemon(database={"listen_url": pgbouncer.url_for(database_url)})

        async def refused() -> bool:
            return any(entry["event"] == "listener_pooled" for entry in logs)

        await wait_until(refused, deadline=20, what="listener_pooled")
        body = await wait_ready(daemon)
    assert body["checks"]["listener"] == f"{POLL_ONLY}: {LISTEN_URL_POOLED}"
    ids = await enqueue_both_ways(daemon, db)
    await wait_sent(db, ids)
    assert await db.fetch(ADVISORY_LOCKS) == []


async def test_a_listen_url_at_a_transaction_pooler_is_refused_whatever_database_pooler_says(
    database_url: str,
    pgbouncer: PgBouncer,
    pgbouncer_session_mode: PgBouncer,
    smtp_server: FakeSmtpServer,
    telegram_api: FakeTelegramApi,
    db: asyncpg.Connection,
) -> None:
    """`database.pooler` describes `database.url`: a listen_url of its own is looked at.

    Trusting "session" for it too, LISTEN and the presence lock went through the
    transaction pooler, and the lock stayed with a pooled server connection after the
    instance was gone, keeping its work from its peers.
    """
    url = pgbouncer_session_mode.url_for(database_url)
    with capture_logs() as logs:
        daemon = await start_daemon(
            url,
            smtp_server,
            telegram_api,
            database={"pooler": "session", "listen_url": pgbouncer.url_for(database_url)},
        )
        try:

            async def refused() -> bool:
                return any(entry["event"] == "listener_pooled" for entry in logs)

            await wait_until(refused, deadline=20, what="listener_pooled")
            body = await wait_ready(daemon)
            assert body["checks"]["listener"] == f"{POLL_ONLY}: {LISTEN_URL_POOLED}"
            ids = await enqueue_both_ways(daemon, db)
            await wait_sent(db, ids)
            assert await db.fetch(ADVISORY_LOCKS) == []
        finally:
            await daemon.close()


async def test_a_session_pooler_said_to_keep_sessions_serves_the_listener_too(
    database_url: str,
    pgbouncer_session_mode: PgBouncer,
    smtp_server: FakeSmtpServer,
    telegram_api: FakeTelegramApi,
    db: asyncpg.Connection,
) -> None:
    url = pgbouncer_session_mode.url_for(database_url)
    daemon = await start_daemon(url, smtp_server, telegram_api, database={"pooler": "session"})
    try:
        body = await wait_ready(daemon)
        assert body["checks"]["listener"] == "ok"
        ids = await enqueue_both_ways(daemon, db)
        await wait_sent(db, ids)
        locks = await db.fetch(ADVISORY_LOCKS)
        assert [row["application_name"] for row in locks] == ["notifyd-listener"]
    finally:
        await daemon.close()


async def test_a_session_pooler_left_to_detection_is_taken_for_a_transaction_pooler(
    database_url: str,
    pgbouncer_session_mode: PgBouncer,
    smtp_server: FakeSmtpServer,
    telegram_api: FakeTelegramApi,
    db: asyncpg.Connection,
) -> None:
    """Detection cannot tell the modes apart: the cautious reading, which still delivers."""
    url = pgbouncer_session_mode.url_for(database_url)
    daemon = await start_daemon(url, smtp_server, telegram_api)
    try:
        body = await wait_ready(daemon)
        assert body["checks"]["listener"] == f"{POLL_ONLY}: {NO_LISTEN_URL}"
        ids = await enqueue_both_ways(daemon, db)
        await wait_sent(db, ids)
    finally:
        await daemon.close()


async def test_a_listen_url_naming_another_database_is_named_and_it_polls(
    daemon_factory: DaemonFactory, empty_database: EmptyDatabase, db: asyncpg.Connection
) -> None:
    """NOTIFY and the presence locks are per database: there, they would be for nothing."""
    elsewhere = await empty_database()
    with capture_logs() as logs:
        daemon = await daemon_factory(database={"listen_url": elsewhere})

        async def refused() -> bool:
            return any(entry["event"] == "listener_wrong_database" for entry in logs)

        await wait_until(refused, deadline=20, what="listener_wrong_database")
        body = await wait_ready(daemon)
    listener = body["checks"]["listener"]
    assert listener.startswith(f"{POLL_ONLY}: database.listen_url names database")
    assert LISTEN_ELSEWHERE in listener
    ids = await enqueue_both_ways(daemon, db)
    await wait_sent(db, ids)
