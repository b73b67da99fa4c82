"""A listen_url that reaches the wrong server: named as the mistake, and the instance polls.

A read replica's endpoint (say, a cloud database's reader endpoint) given for the LISTEN
session: PostgreSQL refuses LISTEN there, and NOTIFY is sent on the primary only. Another
server holding a database of the same name (staging's, an old primary): LISTEN works
there, and hears nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from structlog.testing import capture_logs

from notifyd.db import Database
from notifyd.db.listen import LISTEN_ELSEWHERE, LISTEN_STANDBY, Place
from notifyd.delivery.listener import POLL_ONLY, Listener
from tests.acceptance.test_cli import run_notifyd
from tests.faults.postgres import StoppablePostgres
from tests.integration.test_pgbouncer import enqueue_both_ways, wait_ready, wait_sent
from tests.support import Daemon, wait_until

pytestmark = pytest.mark.timeout(120)


@asynccontextmanager
async def another_server(database_url: str, standby: bool) -> AsyncIterator[str]:
    """A server of its own holding a database of the test database's name: its URL."""
    try:
        server = StoppablePostgres()
    except ImportError:
        pytest.skip("needs pgserver's PostgreSQL binaries to run a server of its own")
    name = urlsplit(database_url).path.lstrip("/")
    try:
        await asyncio.to_thread(server.init)
        await asyncio.to_thread(server.start)
        admin = await asyncpg.connect(server.url())
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        if standby:
            await asyncio.to_thread(server.stop)
            server.make_standby()
            await asyncio.to_thread(server.start)
        yield server.url(name)
    finally:
        await asyncio.to_thread(server.cleanup)


@pytest.fixture
async def standby_url(database_url: str) -> AsyncIterator[str]:
    """A standby server holding a database of the test database's name."""
    async with another_server(database_url, standby=True) as url:
        yield url


@pytest.fixture
async def other_primary_url(database_url: str) -> AsyncIterator[str]:
    """Another primary server holding a database of the test database's name."""
    connection = await asyncpg.connect(database_url)
    try:
        readable = await connection.fetchval(
            "SELECT has_function_privilege('pg_control_system()', 'execute')"
        )
    finally:
        await connection.close()
    if not readable:
        # notifyd then compares the databases' names only.
        pytest.skip("needs a role that may read the server's system identifier")
    async with another_server(database_url, standby=False) as url:
        yield url


async def test_a_listen_url_at_a_standby_is_named_and_it_polls(
    daemon_factory: Callable[..., Awaitable[Daemon]], standby_url: str, db: asyncpg.Connection
) -> None:
    with capture_logs() as logs:
        daemon = await daemon_factory(database={"listen_url": standby_url})

        async def refused() -> bool:
            return any(entry["event"] == "listener_wrong_database" for entry in logs)

        await wait_until(refused, deadline=20, what="listener_wrong_database")
        body = await wait_ready(daemon)
    assert body["checks"]["listener"] == f"{POLL_ONLY}: {LISTEN_STANDBY}"
    assert not [entry for entry in logs if entry["event"] == "task_crashed"]
    ids = await enqueue_both_ways(daemon, db)
    await wait_sent(db, ids)


@pytest.mark.acceptance
async def test_check_config_fails_a_listen_url_at_a_standby(
    tmp_path: Path, database_url: str, standby_url: str
) -> None:
    env = {"DATABASE_URL": database_url, "NOTIFYD_DATABASE__LISTEN_URL": standby_url}
    result = await run_notifyd("check-config", env=env, cwd=tmp_path)
    assert result.code == 1, result
    listener = result.line("listener")
    assert listener.split()[1] == "failed"
    assert LISTEN_STANDBY in listener


async def test_a_listen_url_at_another_server_is_named_and_it_polls(
    daemon_factory: Callable[..., Awaitable[Daemon]],
    other_primary_url: str,
    db: asyncpg.Connection,
) -> None:
    """Without the check: "listener: ok", and every wake-up lost to the poll."""
    with capture_logs() as logs:
        daemon = await daemon_factory(database={"listen_url": other_primary_url})

        async def refused() -> bool:
            return any(entry["event"] == "listener_wrong_database" for entry in logs)

        await wait_until(refused, deadline=20, what="listener_wrong_database")
        body = await wait_ready(daemon)
    listener = body["checks"]["listener"]
    assert listener.startswith(f"{POLL_ONLY}: database.listen_url reaches another server")
    assert LISTEN_ELSEWHERE in listener
    ids = await enqueue_both_ways(daemon, db)
    await wait_sent(db, ids)


@pytest.mark.acceptance
async def test_check_config_fails_a_listen_url_at_another_server(
    tmp_path: Path, database_url: str, other_primary_url: str
) -> None:
    env = {"DATABASE_URL": database_url, "NOTIFYD_DATABASE__LISTEN_URL": other_primary_url}
    result = await run_notifyd("check-config", env=env, cwd=tmp_path)
    assert result.code == 1, result
    listener = result.line("listener")
    assert listener.split()[1] == "failed"
    assert "reaches another server" in listener


async def test_the_pools_database_is_asked_again_at_each_reconnect(
    database_url: str, db: asyncpg.Connection
) -> None:
    """Where database.url leads can change under a running instance (a switchover to
    another cluster): a place read once at start would refuse every later session."""
    database = await Database.connect(database_url, min_size=1, max_size=2)
    asked: list[Place] = []

    async def place() -> Place:
        asked.append(await database.place())
        return asked[-1]

    listener = Listener(
        database_url,
        uuid.uuid4(),
        lambda: None,
        ping=database.ping,
        check_interval=0.05,
        connect_timeout=5.0,
        backoff_max=0.5,
        place=place,
    )
    task = asyncio.create_task(listener.run())
    try:
        await wait_until(lambda: _is_set(listener.present), deadline=10, what="presence")
        await db.execute("SELECT pg_terminate_backend($1)", listener.backend_pid)

        async def reconnected() -> bool:
            return listener.reconnects == 1 and listener.present.is_set()

        await wait_until(reconnected, deadline=10, what="the listener to reconnect")
        assert len(asked) == 2
        assert listener.poll_only is None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await database.close()


async def _is_set(event: asyncio.Event) -> bool:
    return event.is_set()
