"""Shared fixtures: a real PostgreSQL, a database per test, fake vendors, a running daemon.

PostgreSQL is the embedded one (pgserver) unless NOTIFYD_TEST_DATABASE_URL names a server
where the tests may create databases. Every test gets its own database, cloned from a
migrated template: NOTIFY is delivered only on commit, so rollback-per-test isolation
cannot work here.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from notifyd.config import LEGACY_EMAIL_SECURITY, LEGACY_ENV
from notifyd.db import Database
from notifyd.db.embedded import quiet_pgserver_import
from notifyd.db.migrations import migrate
from tests.databases import create_database, database_url_for, drop_database
from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.telegram import FakeTelegramApi
from tests.fakes.twilio import FakeTwilioApi
from tests.pgbouncer import PgBouncer, PoolMode, pgbouncer_missing
from tests.support import Daemon, start_daemon

TEST_DATABASE_URL_ENV = "NOTIFYD_TEST_DATABASE_URL"


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A PostgreSQL server for the whole session: the embedded one by default."""
    external = os.environ.get(TEST_DATABASE_URL_ENV)
    if external:
        yield external
        return
    with quiet_pgserver_import():
        from pgserver.postgres_server import get_server

    data_dir = Path(tempfile.mkdtemp(prefix="notifyd-test-pg-"))
    server = get_server(data_dir, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def _started_pgbouncer(server_url: str, pool_mode: PoolMode, **settings: Any) -> PgBouncer:
    missing = pgbouncer_missing()
    if missing is not None:
        pytest.skip(missing)
    bouncer = PgBouncer(server_url, pool_mode, **settings)
    try:
        bouncer.start()
    except BaseException:
        bouncer.cleanup()
        raise
    return bouncer


@pytest.fixture(scope="session")
def pgbouncer(pg_server_url: str) -> Iterator[PgBouncer]:
    """A PgBouncer in transaction pooling mode in front of the session's PostgreSQL."""
    bouncer = _started_pgbouncer(pg_server_url, "transaction")
    yield bouncer
    bouncer.cleanup()


@pytest.fixture(scope="session")
def pgbouncer_session_mode(pg_server_url: str) -> Iterator[PgBouncer]:
    """A PgBouncer in session pooling mode in front of the session's PostgreSQL.

    A server connection per client connection for as long as it stays: with fewer than a
    daemon's pool holds, a request would wait for another client to leave (a 503).
    """
    bouncer = _started_pgbouncer(pg_server_url, "session", pool_size=40)
    yield bouncer
    bouncer.cleanup()


@pytest.fixture
def own_pgbouncer(pg_server_url: str) -> Iterator[Callable[..., PgBouncer]]:
    """Start PgBouncers of this test's own (to restart, or set otherwise); stopped after."""
    started: list[PgBouncer] = []

    def start(pool_mode: PoolMode, **settings: str | int) -> PgBouncer:
        bouncer = _started_pgbouncer(pg_server_url, pool_mode, **settings)
        started.append(bouncer)
        return bouncer

    yield start
    for bouncer in started:
        bouncer.cleanup()


@dataclass(frozen=True)
class ServerRights:
    """What the test server's role may do (the suite needs CREATEDB; a few tests more)."""

    superuser: bool
    createrole: bool


@pytest.fixture(scope="session")
def server_rights(pg_server_url: str) -> ServerRights:
    async def read() -> ServerRights:
        connection = await asyncpg.connect(pg_server_url)
        try:
            row = await connection.fetchrow(
                "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
            )
        finally:
            await connection.close()
        assert row is not None
        return ServerRights(superuser=row["rolsuper"], createrole=row["rolcreaterole"])

    return asyncio.run(read())


@pytest.fixture
def needs_superuser(server_rights: ServerRights) -> None:
    """Skip, saying so, unless the test server's role is a superuser."""
    if not server_rights.superuser:
        pytest.skip(f"needs a superuser role on {TEST_DATABASE_URL_ENV} (this one is not)")


@pytest.fixture
def needs_createrole(server_rights: ServerRights) -> None:
    """Skip, saying so, unless the test server's role may create roles."""
    if not (server_rights.superuser or server_rights.createrole):
        pytest.skip(f"needs CREATEROLE (or a superuser) on {TEST_DATABASE_URL_ENV}")


@pytest.fixture
def embedded_home() -> Iterator[Path]:
    """A folder for `notifyd` to keep an embedded PostgreSQL in, as under a user's project.

    Not under tmp_path: run as root, pgserver opens every parent of the data directory to
    the user it runs PostgreSQL as, and any pytest session starting meanwhile closes its
    own temporary root (/tmp/pytest-of-root) again, so initdb would fail half-way.
    """
    home = Path(tempfile.mkdtemp(prefix="notifyd-home-"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def template_database(pg_server_url: str) -> Iterator[str]:
    """A database with every migration applied, cloned for each test."""
    name = f"notifyd_template_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        admin = await asyncpg.connect(pg_server_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        store = await Database.connect(database_url_for(pg_server_url, name), min_size=1)
        try:
            await migrate(store.pool)
        finally:
            await store.close()

    asyncio.run(create())
    yield name
    asyncio.run(_drop_database(pg_server_url, name))


async def _drop_database(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await drop_database(admin, name)
    finally:
        await admin.close()


@pytest.fixture
async def database_url(pg_server_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own."""
    name = f"notifyd_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server_url)
    try:
        await create_database(admin, name, template_database)
    finally:
        await admin.close()
    yield database_url_for(pg_server_url, name)
    await _drop_database(pg_server_url, name)


EmptyDatabase = Callable[[], Awaitable[str]]


@pytest.fixture
async def empty_database(pg_server_url: str) -> AsyncIterator[EmptyDatabase]:
    """Make databases without notifyd's schema (each call a new one); dropped after the test."""
    names: list[str] = []

    async def create() -> str:
        name = f"notifyd_empty_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(pg_server_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        names.append(name)
        return database_url_for(pg_server_url, name)

    yield create
    for name in names:
        await _drop_database(pg_server_url, name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test's database, for arranging and checking rows."""
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = await Database.connect(database_url, min_size=1, max_size=4)
    yield database
    await database.close()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the machine's NOTIFYD_* and legacy variables out of every test."""
    for name in os.environ:
        if name.startswith("NOTIFYD_") and name != TEST_DATABASE_URL_ENV:
            monkeypatch.delenv(name)
    for name in (*LEGACY_ENV, *LEGACY_EMAIL_SECURITY):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def smtp_server() -> AsyncIterator[FakeSmtpServer]:
    server = FakeSmtpServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def telegram_api() -> AsyncIterator[FakeTelegramApi]:
    api = FakeTelegramApi(chats={1001, 1002}, blocked={4003})
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
async def twilio_api() -> AsyncIterator[FakeTwilioApi]:
    """A fake Twilio; `twilio_api.settings()` are `channels.sms` settings that use it."""
    async with FakeTwilioApi() as api:
        yield api


@pytest.fixture
async def daemon_factory(
    database_url: str, smtp_server: FakeSmtpServer, telegram_api: FakeTelegramApi
) -> AsyncIterator[Callable[..., Awaitable[Daemon]]]:
    """Start an in-process daemon (API and delivery) wired to the fakes; stop it after."""
    started: list[Daemon] = []

    async def factory(**overrides: Any) -> Daemon:
        daemon = await start_daemon(database_url, smtp_server, telegram_api, **overrides)
        started.append(daemon)
        return daemon

    yield factory
    for daemon in reversed(started):
        await daemon.close()


@pytest.fixture
async def daemon(daemon_factory: Callable[..., Awaitable[Daemon]]) -> Daemon:
    return await daemon_factory()
