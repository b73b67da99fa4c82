"""Fixtures of the fault tests: an observable SMTP server, launchers, a PostgreSQL to stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.fakes.telegram import FakeTelegramApi
from tests.faults.harness import Launcher, ObservedSmtpServer
from tests.faults.postgres import StoppablePostgres
from tests.pgbouncer import PgBouncer


@pytest.fixture
async def smtp() -> AsyncIterator[ObservedSmtpServer]:
    server = ObservedSmtpServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def launcher(
    tmp_path: Path, database_url: str, smtp: ObservedSmtpServer, telegram_api: FakeTelegramApi
) -> AsyncIterator[Launcher]:
    launcher = Launcher(tmp_path, database_url, smtp, telegram_api)
    yield launcher
    await launcher.stop_all()


# How the instances reach PostgreSQL: directly; through PgBouncer in transaction mode with
# the LISTEN session on the server itself (database.listen_url); or through PgBouncer
# alone, poll-only, where peers know each other by their lease heartbeats only.
ROUTES = ("direct", "pgbouncer", "pgbouncer-poll-only")


@pytest.fixture(params=ROUTES)
async def routed_launcher(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database_url: str,
    smtp: ObservedSmtpServer,
    telegram_api: FakeTelegramApi,
) -> AsyncIterator[Launcher]:
    """A launcher whose instances reach the test's database by each route in turn."""
    route: str = request.param
    if route == "direct":
        launcher = Launcher(tmp_path, database_url, smtp, telegram_api)
    else:
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        poll_only = route.endswith("poll-only")
        launcher = Launcher(
            tmp_path,
            bouncer.url_for(database_url),
            smtp,
            telegram_api,
            base_settings={} if poll_only else {"database.listen_url": database_url},
            ready_event="delivery_started" if poll_only else "listener_connected",
        )
    yield launcher
    await launcher.stop_all()


@pytest.fixture
async def own_postgres() -> AsyncIterator[StoppablePostgres]:
    """A started server of this test's own, with an empty `notifyd` database.

    The database belongs to the role `notifyd`, not a superuser, as in production: the
    daemon connects as `notifyd`, so per-role limits apply to it.
    """
    try:
        server = StoppablePostgres()
    except ImportError:
        pytest.skip("needs pgserver's PostgreSQL binaries to run a server of its own")
    try:
        await asyncio.to_thread(server.init)
        await asyncio.to_thread(server.start)
        admin = await asyncpg.connect(server.url())
        try:
            await admin.execute("CREATE ROLE notifyd LOGIN")
            await admin.execute("CREATE DATABASE notifyd OWNER notifyd")
        finally:
            await admin.close()
        yield server
    finally:
        await asyncio.to_thread(server.cleanup)


@pytest.fixture
async def own_launcher(
    tmp_path: Path,
    own_postgres: StoppablePostgres,
    smtp: ObservedSmtpServer,
    telegram_api: FakeTelegramApi,
) -> AsyncIterator[Launcher]:
    launcher = Launcher(tmp_path, own_postgres.url("notifyd", "notifyd"), smtp, telegram_api)
    yield launcher
    await launcher.stop_all()
